//! `GET key`, or `MGET k1 k2 ...` for keys of one slot: a value per key, nil for a miss. A key of another type reads
//! as a miss (what `MGET` answers for it, so both forms agree). A value may be read straight into the caller's
//! buffer, and checked as a chunk frame on the way; one that fails the check is counted and read as a miss.

use super::{Answers, Args};
use crate::error::{Error, Result};
use crate::reader::{Bulk, Expect, Filled, Reply};
use crate::resp::{Outgoing, ServerReply};
use crate::settle::{Answer, Refusal};
use crate::slot_map::Redirect;
use crate::value::KeyReply;

pub(super) fn encode(args: &Args, out: &mut Outgoing) {
    if args.keys.len() == 1 {
        out.push(&[b"GET", args.keys[0]]);
    } else {
        let mut all: Vec<&[u8]> = Vec::with_capacity(args.keys.len() + 1);
        all.push(b"MGET");
        all.extend_from_slice(&args.keys);
        out.push(&all);
    }
}

pub(super) fn expect(args: &Args) -> Expect {
    match &args.dests {
        Some((dests, fill)) if dests.len() == 1 => Expect::Fill {
            dest: dests[0].clone(),
            fill: *fill,
        },
        Some((dests, fill)) => Expect::Fills {
            dests: dests.iter().map(|d| (*d).clone()).collect(),
            fill: *fill,
        },
        None if args.keys.len() == 1 => Expect::Bulk { verify: args.verify },
        None => Expect::Bulks {
            n: args.keys.len(),
            verify: args.verify,
        },
    }
}

pub(super) fn answers(keys: usize, reply: Reply, node: &str, corrupt: &mut u64) -> Result<Answers> {
    let mut value = |b: Bulk| match b {
        Bulk::Nil => KeyReply::Value(None),
        Bulk::Value(v) => KeyReply::Value(Some(v)),
        Bulk::Corrupt => {
            log::warn!("{node}: a stored chunk failed its frame check; read as a miss");
            *corrupt += 1;
            KeyReply::Value(None)
        }
    };
    let refused = |e: ServerReply| -> Answer {
        if e.code == "WRONGTYPE" {
            Ok(KeyReply::Value(None))
        } else {
            Err(Refusal::Server(e))
        }
    };
    let answers = match reply {
        Reply::Bulk(r) if keys == 1 => vec![r.map(&mut value).or_else(refused)],
        Reply::Filled(r) if keys == 1 => vec![r.map_or_else(refused, |f| filled(f, &mut value))],
        Reply::Fills(Ok(items)) if items.len() == keys => items
            .into_iter()
            .map(|r| r.map_or_else(refused, |f| filled(f, &mut value)))
            .collect(),
        Reply::Bulks(Ok(items)) if items.len() == keys => {
            items.into_iter().map(|r| r.map(&mut value).or_else(refused)).collect()
        }
        Reply::Bulks(Err(e)) | Reply::Fills(Err(e))
            if e.code == "TRYAGAIN" || Redirect::parse(&e.code, &e.detail).is_none() =>
        {
            log::debug!(
                "{node}: MGET of {keys} keys refused ({}); reading them one by one",
                e.code
            );
            return Ok(Answers::OneByOne { code: e.code });
        }
        Reply::Bulks(Err(e)) | Reply::Fills(Err(e)) => vec![Err(Refusal::Server(e)); keys],
        other => {
            return Err(Error::protocol(
                node,
                format!("unexpected reply {other:?} to a read of {keys} key(s)"),
            ));
        }
    };
    Ok(Answers::Keys(answers))
}

/// The answer for a value read into a caller's buffer; a damaged frame reads (and is counted) as `value` says.
fn filled(f: Filled, value: &mut impl FnMut(Bulk) -> KeyReply) -> Answer {
    match f {
        Filled::Nil | Filled::Abandoned => Ok(KeyReply::Value(None)),
        Filled::Bytes(n) => Ok(KeyReply::Filled(n)),
        Filled::Corrupt => Ok(value(Bulk::Corrupt)),
        Filled::WrongSize(n) => Err(Refusal::Local(Error::InvalidInput(format!(
            "the stored value is {n} bytes, the buffer given for it is not that size"
        )))),
        Filled::TooLarge(n) => Err(Refusal::Local(Error::InvalidInput(format!(
            "the stored value is {n} bytes, more than the buffer given for it holds (nothing was written to it)"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use crate::reader::{Bulk, Filled};
    use crate::value::KeyReply;
    use bytes::Bytes;

    #[test]
    fn one_key_is_a_get_several_an_mget() {
        assert_eq!(
            encoded(Command::Get, &args(&[b"k"], None)),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
        assert_eq!(
            encoded(Command::Get, &args(&[b"a", b"b", b""], None)),
            b"*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$0\r\n\r\n"
        );
        assert!(matches!(
            expect(Command::Get, &args(&[b"a"], None)),
            (None, Expect::Bulk { verify: false })
        ));
        assert!(matches!(
            expect(Command::Get, &args(&[b"a", b"b"], None)),
            (None, Expect::Bulks { n: 2, .. })
        ));
    }

    #[test]
    fn replies_become_answers_per_key() {
        let mut corrupt = 0;
        let mut a = |n, r| super::answers(n, r, "h:1", &mut corrupt);
        let v = Bytes::from_static(b"v");
        assert_eq!(
            keys(a(1, Reply::Bulk(Ok(Bulk::Value(v.clone()))))),
            vec![format!("{:?}", KeyReply::Value(Some(v)))]
        );
        assert_eq!(keys(a(1, Reply::Bulk(Err(err("WRONGTYPE", "x"))))), vec!["Value(None)"]);
        assert_eq!(keys(a(1, Reply::Bulk(Ok(Bulk::Corrupt)))), vec!["Value(None)"]);
        assert_eq!(keys(a(1, Reply::Bulk(Err(err("MOVED", "12 h:2"))))), vec!["MOVED"]);
        assert_eq!(keys(a(1, Reply::Filled(Ok(Filled::Bytes(3))))), vec!["Filled(3)"]);
        assert_eq!(keys(a(1, Reply::Filled(Ok(Filled::Abandoned)))), vec!["Value(None)"]);
        assert!(keys(a(1, Reply::Filled(Ok(Filled::WrongSize(3)))))[0].starts_with("local"));
        assert!(keys(a(1, Reply::Filled(Ok(Filled::TooLarge(3)))))[0].starts_with("local"));
        let items = vec![Ok(Bulk::Nil), Err(err("ERR", "x")), Err(err("WRONGTYPE", "x"))];
        assert_eq!(
            keys(a(3, Reply::Bulks(Ok(items)))),
            vec!["Value(None)", "ERR", "Value(None)"]
        );
        assert_eq!(
            keys(a(2, Reply::Bulks(Err(err("MOVED", "12 h:2"))))),
            vec!["MOVED", "MOVED"]
        );
        for code in ["TRYAGAIN", "NOPERM"] {
            let r = a(3, Reply::Bulks(Err(err(code, "x")))).unwrap();
            assert!(matches!(r, Answers::OneByOne { code: c } if c == code));
        }
        assert!(a(3, Reply::Bulks(Ok(vec![Ok(Bulk::Nil)]))).is_err(), "too few values");
        let fills = vec![
            Ok(Filled::Bytes(4)),
            Ok(Filled::Nil),
            Err(err("WRONGTYPE", "x")),
            Ok(Filled::TooLarge(9)),
            Err(err("MOVED", "1 h:2")),
        ];
        let answered = keys(a(5, Reply::Fills(Ok(fills))));
        assert_eq!(answered[..3], ["Filled(4)", "Value(None)", "Value(None)"]);
        assert!(
            answered[3].starts_with("local") && answered[4] == "MOVED",
            "{answered:?}"
        );
        let r = a(2, Reply::Fills(Err(err("TRYAGAIN", "x")))).unwrap();
        assert!(matches!(r, Answers::OneByOne { .. }));
        assert!(a(2, Reply::Fills(Ok(vec![]))).is_err(), "too few values");
        assert!(a(1, Reply::Scalar(crate::resp::Head::Int(1))).is_err());
        assert_eq!(corrupt, 1);
    }
}
