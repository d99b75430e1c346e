//! The behaviour every deployment must show, run against each real server kind and topology.

use std::time::Duration;

use kvcache_redis::{Client, Error};

use super::{unique, value};

/// Reads a key's TTL from outside the client.
pub type TtlProbe<'a> = &'a dyn Fn(&[u8]) -> i64;

pub fn single_key_operations(client: &Client) {
    let p = unique("single");
    let key = format!("{p}a");
    assert_eq!(client.get(&key).unwrap(), None);
    assert!(!client.exists(&key).unwrap());
    client.put(&key, b"hello".to_vec()).unwrap();
    assert_eq!(client.get(&key).unwrap().as_deref(), Some(&b"hello"[..]));
    assert!(client.exists(&key).unwrap());
    client.put(&key, b"again".to_vec()).unwrap();
    assert_eq!(client.get(&key).unwrap().as_deref(), Some(&b"again"[..]));
    assert!(client.remove(&key).unwrap());
    assert!(!client.remove(&key).unwrap());
    assert_eq!(client.get(&key).unwrap(), None);

    // Binary keys (not UTF-8, CR/LF inside) and a zero-length value.
    let binary: Vec<u8> = [p.as_bytes(), &[0xff, 0x00, b'\r', b'\n', 0xfe]].concat();
    client.put(&binary, Vec::new()).unwrap();
    assert_eq!(client.get(&binary).unwrap().as_deref(), Some(&b""[..]));
    assert!(client.exists(&binary).unwrap());
    client.ping().unwrap();
}

/// The empty key is a valid key; tests that own their server use it (it cannot be made unique).
pub fn empty_key(client: &Client) {
    client.put(b"", b"empty-key".to_vec()).unwrap();
    assert_eq!(client.get(b"").unwrap().as_deref(), Some(&b"empty-key"[..]));
    assert!(client.remove(b"").unwrap());
}

pub fn batched_get_is_positional(client: &Client) {
    let p = unique("positional");
    let keys: Vec<String> = (0..40).map(|i| format!("{p}{i}")).collect();
    let values: Vec<Vec<u8>> = (0..40).map(|i| value(&p, i, 100 + i)).collect();
    let put = client.batched_put(&keys, values.clone()).unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    let missing = format!("{p}missing");
    let ask = [
        keys[3].clone(),
        missing.clone(),
        keys[0].clone(),
        keys[3].clone(),
        missing,
        keys[39].clone(),
    ];
    let got = client.batched_get(&ask).unwrap();
    let got: Vec<Option<Vec<u8>>> = got.into_iter().map(|r| r.unwrap().map(|b| b.to_vec())).collect();
    assert_eq!(
        got,
        vec![
            Some(values[3].clone()),
            None,
            Some(values[0].clone()),
            Some(values[3].clone()),
            None,
            Some(values[39].clone())
        ]
    );
    let all = client.batched_get(&keys).unwrap();
    for (i, r) in all.into_iter().enumerate() {
        assert_eq!(r.unwrap().as_deref(), Some(&values[i][..]), "key {i}");
    }
    // Removed in one call, positionally: present keys true, the missing one false, and they are gone.
    let removed = client.batched_remove(&ask[..3]).unwrap();
    let removed: Vec<bool> = removed.into_iter().map(Result::unwrap).collect();
    assert_eq!(removed, vec![true, false, true]);
    let got = client.batched_get(&[&keys[3], &keys[0], &keys[1]]).unwrap();
    let got: Vec<bool> = got.into_iter().map(|r| r.unwrap().is_some()).collect();
    assert_eq!(got, vec![false, false, true]);
    assert!(client.batched_remove::<&str>(&[]).unwrap().is_empty());
}

/// Values read straight into caller buffers: larger buffers take smaller values (nothing written past them),
/// a buffer too small is that key's error with nothing written into it, misses and duplicates in place, large
/// values included.
pub fn batched_get_into_fills_callers_buffers(client: &Client) {
    let p = unique("into");
    let sizes = [0usize, 7, 5000, 300_000, 3 << 20];
    let keys: Vec<String> = (0..sizes.len()).map(|i| format!("{p}{i}")).collect();
    let values: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| value(&p, i, n)).collect();
    let put = client.batched_put(&keys, values.clone()).unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    let missing = format!("{p}missing");
    let ask = [
        &keys[0], &keys[1], &missing, &keys[2], &keys[3], &keys[4], &keys[1], &keys[3],
    ];
    let fill = 0x5Au8;
    let lens = [16, 7, 64, 5000 + 100, 300_000, 3 << 20, 6, 299_999];
    let bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![fill; n]).collect();
    let got = client.batched_get_into(&ask, bufs);
    assert_eq!(got.len(), ask.len());
    let expect = [Some(0), Some(7), None, Some(5000), Some(300_000), Some(3 << 20)];
    for (i, want) in expect.iter().enumerate() {
        let buf = got[i].buf.as_ref().expect("buffer handed back");
        assert_eq!(got[i].result.as_ref().unwrap(), want, "key {i}");
        let n = want.unwrap_or(0);
        let source = [0, 1, 1, 2, 3, 4][i];
        if want.is_some() {
            assert_eq!(&buf[..n], &values[source][..], "key {i}: the value, in place");
        }
        let past = buf[n..].iter().position(|&b| b != fill);
        assert!(
            past.is_none(),
            "key {i}: nothing past the value (byte {past:?} of {} past it changed; {:?})",
            buf.len() - n,
            got[i].result
        );
    }
    for i in [6, 7] {
        let err = got[i].result.as_ref().unwrap_err();
        assert!(
            err.is_invalid_input() && err.to_string().contains("more than the buffer"),
            "{err}"
        );
        let buf = got[i].buf.as_ref().unwrap();
        assert!(
            buf.iter().all(|&b| b == fill),
            "key {i}: nothing written into a buffer too small"
        );
    }
    // A count mismatch hands every buffer back with the error; the client is still usable.
    let got = client.batched_get_into(&ask[..2], vec![vec![0u8; 8]]);
    assert!(got[0].result.as_ref().unwrap_err().is_invalid_input());
    assert_eq!(got[0].buf.as_deref(), Some(&[0u8; 8][..]));
    assert_eq!(client.get(&keys[1]).unwrap().as_deref(), Some(&values[1][..]));
}

pub fn prefix_calls_stop_at_the_first_miss(client: &Client) {
    let p = unique("prefix");
    let keys: Vec<String> = (0..6).map(|i| format!("{p}{i}")).collect();
    // Store 0, 1, 2 and 4: the prefix is 3, and key 4 must not count.
    let stored = [0, 1, 2, 4];
    let vals: Vec<Vec<u8>> = stored.iter().map(|&i| value(&p, i, 64)).collect();
    let stored_keys: Vec<&String> = stored.iter().map(|&i| &keys[i]).collect();
    client.batched_put(&stored_keys, vals.clone()).unwrap();
    assert_eq!(client.batched_contains(&keys).unwrap(), 3);
    assert_eq!(client.batched_contains(&keys[..3]).unwrap(), 3);
    assert_eq!(client.batched_contains(&keys[3..]).unwrap(), 0);
    assert_eq!(client.batched_contains(&[&keys[4], &keys[0]]).unwrap(), 2);

    let got = client.batched_get_non_blocking(&keys).wait().unwrap();
    let got: Vec<Vec<u8>> = got.into_iter().map(|b| b.to_vec()).collect();
    assert_eq!(got, vals[..3].to_vec());

    let mut pending = client.batched_get_non_blocking(&keys[3..]);
    let mut answer = None;
    for _ in 0..500 {
        if let Some(r) = pending.poll() {
            answer = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(answer.expect("poll resolves").unwrap(), Vec::<bytes::Bytes>::new());
    // Polling again gives the same answer.
    assert_eq!(pending.poll().unwrap().unwrap().len(), 0);

    let mut pending = client.batched_get_non_blocking(&keys[..2]);
    let r = pending
        .wait_timeout(Duration::from_secs(5))
        .expect("resolves within 5 s")
        .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(&r[1][..], &vals[1][..]);
}

pub fn empty_batches_are_answered_locally(client: &Client) {
    let none: [&[u8]; 0] = [];
    let before = client.stats();
    assert!(client.batched_get(&none).unwrap().is_empty());
    assert_eq!(client.batched_contains(&none).unwrap(), 0);
    assert!(client.batched_put(&none, Vec::<Vec<u8>>::new()).unwrap().is_empty());
    assert!(client.batched_get_non_blocking(&none).wait().unwrap().is_empty());
    let after = client.stats();
    assert_eq!(after.parts, before.parts, "an empty batch was queued");
}

pub fn large_values_round_trip(client: &Client) {
    let p = unique("large");
    let sizes = [0usize, 1, 16 << 10, (16 << 10) + 1, 1 << 20, 5 << 20, (32 << 20) + 3];
    let keys: Vec<String> = sizes.iter().map(|s| format!("{p}{s}")).collect();
    let values: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &s)| value(&p, i, s)).collect();
    let put = client.batched_put(&keys, values.clone()).unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    let got = client.batched_get(&keys).unwrap();
    for ((r, v), s) in got.into_iter().zip(&values).zip(sizes) {
        let r = r.unwrap().expect("stored");
        assert_eq!(r.len(), s);
        assert!(r[..] == v[..], "value of {s} bytes differs");
    }
    // Single gets take the same path.
    assert!(client.get(&keys[5]).unwrap().unwrap()[..] == values[5][..]);
}

/// Rejected client-side with a typed error, nothing sent, and the client keeps working.
pub fn bad_input_is_rejected(client: &Client) {
    let p = unique("bad");
    let err = client
        .batched_put(&[format!("{p}a"), format!("{p}b")], vec![b"x".to_vec()])
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput(ref m) if m.contains("2 keys but 1 values")),
        "{err}"
    );
    let err = client
        .call()
        .ttl_secs(Some(0))
        .put(format!("{p}a"), b"x".to_vec())
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(client.get(format!("{p}a")).unwrap(), None, "nothing was written");
    client.put(format!("{p}a"), b"ok".to_vec()).unwrap();
    assert_eq!(client.get(format!("{p}a")).unwrap().as_deref(), Some(&b"ok"[..]));
}

pub fn ttl_is_set_per_call(client: &Client, ttl_of: TtlProbe) {
    let p = unique("ttl");
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    client.call().ttl_secs(Some(100)).put(&a, b"x".to_vec()).unwrap();
    client.put(&b, b"y".to_vec()).unwrap();
    let t = ttl_of(a.as_bytes());
    assert!((1..=100).contains(&t), "ttl {t}");
    assert_eq!(ttl_of(b.as_bytes()), -1, "no TTL unless asked");
}

pub fn many_threads_share_one_client(client: &Client) {
    let p = unique("threads");
    std::thread::scope(|s| {
        for t in 0..16 {
            let (client, p) = (client.clone(), p.clone());
            s.spawn(move || {
                for i in 0..50 {
                    let key = format!("{p}{t}:{i}");
                    let v = value(&p, t * 1000 + i, 1 + (i * 97) % 5000);
                    client.put(&key, v.clone()).unwrap();
                    assert_eq!(client.get(&key).unwrap().as_deref(), Some(&v[..]));
                    if i % 10 == 9 {
                        let keys: Vec<String> = (i - 9..=i).map(|j| format!("{p}{t}:{j}")).collect();
                        assert_eq!(client.batched_contains(&keys).unwrap(), 10);
                    }
                }
            });
        }
    });
}
