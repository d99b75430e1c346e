//! The commands workers send, each defined once: how a planned step is encoded, what its reply looks like, and
//! what that reply says about each of its keys. Pure: no I/O.

use crate::batch::{Command, Parts, Step, Unit};
use crate::error::{Error, Result};
use crate::reader::{Bulk, Expect, Filled, Reply};
use crate::request::KeyReply;
use crate::resp::{Head, Outgoing};
use crate::settle::{Answer, Refusal};

/// Deletes KEYS[1] only if it still holds ARGV[1] and KEYS[2] does not exist: an orphan is removed only if it
/// is still the very orphan that was read, so a concurrent re-put (which writes KEYS[2] first) is never damaged.
const DELETE_ORPHAN: &[u8] = b"if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then \
                             return redis.call('DEL', KEYS[1]) end return 0";

/// Appends `step` (after `ASKING` when it is sent to a slot's importing node) to `out`.
pub(crate) fn encode<P: Parts + ?Sized>(step: &Step, parts: &P, out: &mut Outgoing) {
    if step.asking {
        out.push(&[b"ASKING"]);
    }
    let key = |u: &Unit| &parts.part(u.part).keys[u.key][..];
    // Not for `PING`, whose unit stands for a node, not a key.
    let one = || key(&step.units[0]);
    match step.command {
        Command::Get => out.push(&[b"GET", one()]),
        Command::Mget => {
            let mut args: Vec<&[u8]> = Vec::with_capacity(step.units.len() + 1);
            args.push(b"MGET");
            args.extend(step.units.iter().map(key));
            out.push(&args);
        }
        Command::Exists => out.push(&[b"EXISTS", one()]),
        Command::Del => out.push(&[b"DEL", one()]),
        Command::DeleteOrphan => {
            let u = &step.units[0];
            let v = &parts.part(u.part).values[u.key];
            out.push(&[b"EVAL", DELETE_ORPHAN, b"2", one(), &v.head, &v.body]);
        }
        Command::Ping => out.push(&[b"PING"]),
        Command::Set { ttl_secs } => {
            let u = &step.units[0];
            let v = &parts.part(u.part).values[u.key];
            out.push_set(one(), &v.head, &v.body, ttl_secs)
        }
    }
}

/// What the reply of `step` looks like (`ASKING`'s own reply, when sent, is a `Scalar` before it).
pub(crate) fn expect<P: Parts + ?Sized>(step: &Step, parts: &P) -> Expect {
    let part = parts.part(step.units[0].part);
    match step.command {
        Command::Get => match &part.dests {
            Some((dests, fill)) => Expect::Fill {
                dest: dests[step.units[0].key].clone(),
                fill: *fill,
            },
            None => Expect::Bulk {
                verify: part.verify_frames,
            },
        },
        Command::Mget => Expect::Bulks {
            n: step.units.len(),
            verify: part.verify_frames,
        },
        Command::Exists | Command::Del | Command::DeleteOrphan | Command::Set { .. } | Command::Ping => Expect::Scalar,
    }
}

/// What a reply says about the keys of its step.
#[derive(Debug)]
pub(crate) enum Answers {
    /// One answer per unit, in the step's order.
    Keys(Vec<Answer>),
    /// An `MGET` refused as a whole (`code`): to be read key by key, so that one bad key (e.g. NOPERM) fails
    /// alone, and in a half-migrated slot (TRYAGAIN) each `GET` is answered at once, a value or `ASK` to where the
    /// key went, where the `MGET` would only be refused again until the migration ends.
    OneByOne { code: String },
}

/// Reads `reply` as the answer to a step of `command` with `units` units. An `Err` means the reply does not fit the
/// command: the connection is out of step.
pub(crate) fn answers(command: Command, units: usize, reply: Reply, node: &str, corrupt: &mut u64) -> Result<Answers> {
    let unexpected =
        |what: &dyn std::fmt::Debug| Error::protocol(node, format!("unexpected reply {what:?} to {command:?}"));
    let mut bulk = |b: Bulk| match b {
        Bulk::Nil => KeyReply::Value(None),
        Bulk::Value(v) => KeyReply::Value(Some(v)),
        Bulk::Corrupt => {
            log::warn!("{node}: a stored chunk failed its frame check; read as a miss");
            *corrupt += 1;
            KeyReply::Value(None)
        }
    };
    let keys = match (command, reply) {
        (Command::Get, Reply::Bulk(r)) => vec![match r {
            Ok(b) => Ok(bulk(b)),
            // MGET answers nil for a key of another type; GET answers the same, so both paths agree.
            Err(e) if e.code == "WRONGTYPE" => Ok(KeyReply::Value(None)),
            Err(e) => Err(Refusal::Server(e)),
        }],
        (Command::Get, Reply::Filled(r)) => vec![match r {
            Ok(Filled::Nil | Filled::Abandoned) => Ok(KeyReply::Value(None)),
            Ok(Filled::Bytes(n)) => Ok(KeyReply::Filled(n)),
            Ok(Filled::Corrupt) => Ok(bulk(Bulk::Corrupt)),
            Ok(Filled::WrongSize(n)) => Err(Refusal::Local(Error::InvalidInput(format!(
                "the stored value is {n} bytes, the buffer given for it is not that size"
            )))),
            Err(e) if e.code == "WRONGTYPE" => Ok(KeyReply::Value(None)),
            Err(e) => Err(Refusal::Server(e)),
        }],
        (Command::Mget, Reply::Bulks(Ok(items))) => items
            .into_iter()
            .map(|r| r.map(&mut bulk).map_err(Refusal::Server))
            .collect(),
        (Command::Mget, Reply::Bulks(Err(e)))
            if units > 1
                && (e.code == "TRYAGAIN" || crate::topology::Redirect::parse(&e.code, &e.detail).is_none()) =>
        {
            log::debug!(
                "{node}: MGET of {units} keys refused ({}); reading them one by one",
                e.code
            );
            return Ok(Answers::OneByOne { code: e.code });
        }
        (Command::Mget, Reply::Bulks(Err(e))) => vec![Err(Refusal::Server(e)); units],
        (Command::Exists | Command::Del | Command::DeleteOrphan, Reply::Scalar(h)) => vec![match h {
            Head::Int(n) => Ok(KeyReply::Flag(n > 0)),
            Head::Error(e) => Err(Refusal::Server(e)),
            other => return Err(unexpected(&other)),
        }],
        (Command::Set { .. } | Command::Ping, Reply::Scalar(h)) => vec![match h {
            Head::Simple(_) => Ok(KeyReply::Done),
            Head::Error(e) => Err(Refusal::Server(e)),
            other => return Err(unexpected(&other)),
        }],
        (_, other) => return Err(unexpected(&other)),
    };
    if keys.len() != units {
        return Err(unexpected(&format!("{} answers for {units} keys", keys.len())));
    }
    Ok(Answers::Keys(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Unit;
    use crate::request::{Kind, Part, Priority, SetValue};
    use crate::resp::ServerReply;
    use bytes::Bytes;
    use std::time::Instant;

    fn part(kind: Kind, keys: &[&str], values: Vec<SetValue>) -> Part {
        Part {
            kind,
            priority: Priority::Get,
            keys: keys.iter().map(|k| Bytes::copy_from_slice(k.as_bytes())).collect(),
            values,
            bytes: 0,
            expected_value: 1,
            verify_frames: false,
            dests: None,
            deadline: Instant::now(),
            reply: Default::default(),
            _ticket: None,
        }
    }

    fn step(command: Command, n: usize, asking: bool) -> Step {
        Step {
            command,
            asking,
            units: (0..n).map(|k| Unit::new(0, k)).collect(),
        }
    }

    fn encoded(step: &Step, parts: &[Part]) -> Vec<u8> {
        let mut out = Outgoing::default();
        encode(step, parts, &mut out);
        out.into_segments().concat()
    }

    #[test]
    fn steps_are_encoded_as_their_commands() {
        let gets = [part(Kind::Get, &["a", "b"], Vec::new())];
        assert_eq!(
            encoded(&step(Command::Mget, 2, false), &gets),
            b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            encoded(&step(Command::Get, 1, true), &gets),
            b"*1\r\n$6\r\nASKING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
        );
        let orphan = SetValue {
            head: Bytes::from_static(b"kv"),
            body: Bytes::from_static(b"meta-bytes"),
        };
        let del = [part(Kind::DeleteOrphan, &["m"], vec![orphan])];
        let text = encoded(&step(Command::DeleteOrphan, 1, false), &del);
        let text = String::from_utf8_lossy(&text);
        assert!(text.starts_with("*6\r\n$4\r\nEVAL\r\n"), "{text}");
        assert!(
            text.ends_with("$1\r\n2\r\n$1\r\nm\r\n$2\r\nkv\r\n$10\r\nmeta-bytes\r\n"),
            "{text}"
        );
        let set = [part(
            Kind::Set { ttl_secs: Some(9) },
            &["k"],
            vec![Bytes::from_static(b"v").into()],
        )];
        assert_eq!(
            encoded(&step(Command::Set { ttl_secs: Some(9) }, 1, false), &set),
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$1\r\n9\r\n"
        );
    }

    fn err(code: &str) -> ServerReply {
        ServerReply {
            code: code.into(),
            detail: "x".into(),
        }
    }

    fn keys(a: Result<Answers>) -> Vec<String> {
        match a.unwrap() {
            Answers::Keys(k) => k
                .into_iter()
                .map(|a| match a {
                    Ok(r) => format!("{r:?}"),
                    Err(Refusal::Server(e)) => e.code,
                    Err(Refusal::Local(e)) => format!("local {e}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_become_answers_per_key() {
        let mut corrupt = 0;
        let mut a = |c, n, r| answers(c, n, r, "h:1", &mut corrupt);
        let v = Bytes::from_static(b"v");
        assert_eq!(
            keys(a(Command::Get, 1, Reply::Bulk(Ok(Bulk::Value(v.clone()))))),
            vec![format!("{:?}", KeyReply::Value(Some(v.clone())))]
        );
        assert_eq!(
            keys(a(Command::Get, 1, Reply::Bulk(Err(err("WRONGTYPE"))))),
            vec!["Value(None)"]
        );
        assert_eq!(
            keys(a(Command::Get, 1, Reply::Bulk(Ok(Bulk::Corrupt)))),
            vec!["Value(None)"]
        );
        let moved = || ServerReply {
            code: "MOVED".into(),
            detail: "12 h:2".into(),
        };
        assert_eq!(keys(a(Command::Get, 1, Reply::Bulk(Err(moved())))), vec!["MOVED"]);
        assert_eq!(
            keys(a(Command::Get, 1, Reply::Filled(Ok(Filled::Bytes(3))))),
            vec!["Filled(3)"]
        );
        assert!(keys(a(Command::Get, 1, Reply::Filled(Ok(Filled::WrongSize(3)))))[0].starts_with("local"));
        let items = vec![Ok(Bulk::Nil), Err(err("ERR"))];
        assert_eq!(
            keys(a(Command::Mget, 2, Reply::Bulks(Ok(items)))),
            vec!["Value(None)", "ERR"]
        );
        assert_eq!(
            keys(a(Command::Mget, 2, Reply::Bulks(Err(moved())))),
            vec!["MOVED", "MOVED"]
        );
        assert_eq!(
            keys(a(Command::Mget, 1, Reply::Bulks(Err(err("TRYAGAIN"))))),
            vec!["TRYAGAIN"]
        );
        for code in ["TRYAGAIN", "NOPERM"] {
            let r = a(Command::Mget, 3, Reply::Bulks(Err(err(code)))).unwrap();
            assert!(matches!(r, Answers::OneByOne { code: c } if c == code));
        }
        assert_eq!(
            keys(a(Command::Exists, 1, Reply::Scalar(Head::Int(1))))[0],
            "Flag(true)"
        );
        assert_eq!(
            keys(a(Command::DeleteOrphan, 1, Reply::Scalar(Head::Int(0))))[0],
            "Flag(false)"
        );
        assert_eq!(
            keys(a(
                Command::Set { ttl_secs: None },
                1,
                Reply::Scalar(Head::Simple("OK".into()))
            ))[0],
            "Done"
        );
        assert_eq!(
            keys(a(
                Command::Set { ttl_secs: None },
                1,
                Reply::Scalar(Head::Error(err("OOM")))
            ))[0],
            "OOM"
        );
        assert!(a(Command::Set { ttl_secs: None }, 1, Reply::Scalar(Head::Int(1))).is_err());
        assert!(a(Command::Exists, 1, Reply::Scalar(Head::Simple("OK".into()))).is_err());
        assert!(a(Command::Mget, 3, Reply::Bulks(Ok(vec![Ok(Bulk::Nil)]))).is_err());
        assert_eq!(corrupt, 1);
    }
}
