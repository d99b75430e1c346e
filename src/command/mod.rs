//! The commands workers send, each defined once, in a file of its own: how it is encoded, what its reply looks
//! like, and what that reply says about each of its keys (which `settle` then turns into a result or a resend).
//! Pure: bytes in, bytes out. Adding a command is a variant here, its file, and its test; planning, the worker
//! and the client handle reach it only through the functions below.

mod asking;
mod del;
mod delete_orphan;
mod exists;
mod get;
mod ping;
mod set;
pub(crate) mod wait;

use crate::error::Result;
use crate::reader::{Expect, Reply};
use crate::resp::Outgoing;
use crate::settle::Answer;
use crate::value::{DestSlot, Fill, SetValue};

/// What a part asks for each of its keys (for `Ping`, of each primary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// `GET`, or `MGET` for several keys of one slot; answers a value or a miss.
    Get,
    /// `EXISTS`; answers a flag.
    Exists,
    /// `SET [EX ttl]`; answers done.
    Set { ttl_secs: Option<u64> },
    /// `DEL`; answers whether the key existed.
    Del,
    /// Deletes a split-layout metadata key only if it still holds the value given and its kv_bytes key does not
    /// exist, atomically on the server; answers whether it was deleted.
    DeleteOrphan,
    /// `PING` to every primary; no keys.
    Ping,
}

impl Command {
    /// The operation's name in metrics: `get`, `exists`, `put`, `remove`, `delete_orphan`, `ping`.
    pub(crate) fn op(self) -> &'static str {
        match self {
            Command::Get => "get",
            Command::Exists => "exists",
            Command::Set { .. } => "put",
            Command::Del => "remove",
            Command::DeleteOrphan => "delete_orphan",
            Command::Ping => "ping",
        }
    }

    /// Whether the keys of one slot may share one command (`MGET`).
    pub(crate) fn merges(self) -> bool {
        self == Command::Get
    }

    /// Whether it only reads (and may be answered by a replica).
    pub(crate) fn reads(self) -> bool {
        matches!(self, Command::Get | Command::Exists)
    }

    /// Whether each key comes with a value (the one to write, or the one to compare).
    pub(crate) fn takes_values(self) -> bool {
        matches!(self, Command::Set { .. } | Command::DeleteOrphan)
    }

    /// Whether a pipeline holding it ends with the replica wait, when one is configured (puts).
    pub(crate) fn awaits_replicas(self) -> bool {
        matches!(self, Command::Set { .. })
    }

    /// Whether it addresses every primary rather than keys.
    pub(crate) fn per_node(self) -> bool {
        self == Command::Ping
    }
}

/// The keys of one planned command (in reply order), and what goes with them.
pub(crate) struct Args<'a> {
    pub(crate) keys: Vec<&'a [u8]>,
    /// The value of a one-key write or comparison.
    pub(crate) value: Option<&'a SetValue>,
    /// Where each key's value goes, when the caller gave buffers (one per key).
    pub(crate) dests: Option<(Vec<&'a DestSlot>, Fill)>,
    /// Reads: check each value as a chunk frame.
    pub(crate) verify: bool,
    /// Sent to a slot's importing node: `ASKING` first.
    pub(crate) asking: bool,
}

impl<'a> Args<'a> {
    /// Plain keys: no value, no destinations, no checks.
    pub(crate) fn keys(keys: Vec<&'a [u8]>) -> Args<'a> {
        Args {
            keys,
            value: None,
            dests: None,
            verify: false,
            asking: false,
        }
    }
}

/// Appends the command (after `ASKING` when asked) to `out`.
pub(crate) fn encode(command: Command, args: &Args, out: &mut Outgoing) {
    if args.asking {
        asking::encode(out);
    }
    match command {
        Command::Get => get::encode(args, out),
        Command::Exists => exists::encode(args, out),
        Command::Set { ttl_secs } => set::encode(args, ttl_secs, out),
        Command::Del => del::encode(args, out),
        Command::DeleteOrphan => delete_orphan::encode(args, out),
        Command::Ping => ping::encode(out),
    }
}

/// What the replies look like: `ASKING`'s when it is sent, then the command's own.
pub(crate) fn expect(command: Command, args: &Args) -> (Option<Expect>, Expect) {
    let own = match command {
        Command::Get => get::expect(args),
        Command::Exists | Command::Del | Command::DeleteOrphan | Command::Set { .. } | Command::Ping => Expect::Scalar,
    };
    (args.asking.then_some(asking::EXPECT), own)
}

/// What a reply says about the keys of its command.
#[derive(Debug)]
pub(crate) enum Answers {
    /// One answer per key, in order.
    Keys(Vec<Answer>),
    /// Refused as a whole (`code`): to be sent key by key. For an `MGET`: one bad key (e.g. NOPERM) then fails
    /// alone, and in a half-migrated slot (TRYAGAIN) each `GET` is answered at once, a value or `ASK` to where the
    /// key went, where the `MGET` would only be refused again until the migration ends.
    OneByOne { code: String },
}

/// Reads `reply` as the answer to `command` on `keys` keys. An `Err` means the reply does not fit the command: the
/// connection is out of step. Values that fail their frame check are counted in `corrupt` (and read as misses).
pub(crate) fn answers(command: Command, keys: usize, reply: Reply, node: &str, corrupt: &mut u64) -> Result<Answers> {
    let unexpected = |what: &dyn std::fmt::Debug| {
        crate::error::Error::protocol(node, format!("unexpected reply {what:?} to {command:?}"))
    };
    let answers = match (command, reply) {
        (Command::Get, reply) => return get::answers(keys, reply, node, corrupt),
        (Command::Exists, Reply::Scalar(h)) => exists::answer(h),
        (Command::Del, Reply::Scalar(h)) => del::answer(h),
        (Command::DeleteOrphan, Reply::Scalar(h)) => delete_orphan::answer(h),
        (Command::Set { .. }, Reply::Scalar(h)) => set::answer(h),
        (Command::Ping, Reply::Scalar(h)) => ping::answer(h),
        (_, other) => return Err(unexpected(&other)),
    };
    match answers {
        Some(a) if keys == 1 => Ok(Answers::Keys(vec![a])),
        Some(_) => Err(unexpected(&format!("one answer for {keys} keys"))),
        None => Err(unexpected(&"a reply of another type")),
    }
}

/// The answer of a command that replies with a count or flag (`EXISTS`, `DEL`, the orphan delete): `None` for a
/// reply of another type.
fn flag(head: crate::resp::Head) -> Option<Answer> {
    use crate::resp::Head;
    use crate::settle::Refusal;
    use crate::value::KeyReply;
    match head {
        Head::Int(n) => Some(Ok(KeyReply::Flag(n > 0))),
        Head::Error(e) => Some(Err(Refusal::Server(e))),
        _ => None,
    }
}

/// The answer of a command that replies with a status (`SET`, `PING`): `None` for a reply of another type.
fn status(head: crate::resp::Head) -> Option<Answer> {
    use crate::resp::Head;
    use crate::settle::Refusal;
    use crate::value::KeyReply;
    match head {
        Head::Simple(_) => Some(Ok(KeyReply::Done)),
        Head::Error(e) => Some(Err(Refusal::Server(e))),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builds `Args` and reads encodings, for the commands' own tests.
    use super::*;

    pub(crate) fn args<'a>(keys: &[&'a [u8]], value: Option<&'a SetValue>) -> Args<'a> {
        Args {
            value,
            ..Args::keys(keys.to_vec())
        }
    }

    pub(crate) fn encoded(command: Command, args: &Args) -> Vec<u8> {
        let mut out = Outgoing::default();
        encode(command, args, &mut out);
        out.into_segments().concat()
    }

    /// The answers as short strings: the reply's `Debug`, the server error's code, or "local ..." for a verdict.
    pub(crate) fn keys(a: Result<Answers>) -> Vec<String> {
        use crate::settle::Refusal;
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

    pub(crate) fn err(code: &str, detail: &str) -> crate::resp::ServerReply {
        crate::resp::ServerReply {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::resp::Head;

    #[test]
    fn asking_precedes_the_command_and_its_reply() {
        let mut a = args(&[b"k"], None);
        a.asking = true;
        assert_eq!(
            encoded(Command::Get, &a),
            b"*1\r\n$6\r\nASKING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
        assert!(matches!(
            expect(Command::Get, &a),
            (Some(Expect::Scalar), Expect::Bulk { .. })
        ));
        assert!(matches!(
            expect(Command::Exists, &args(&[b"k"], None)),
            (None, Expect::Scalar)
        ));
    }

    #[test]
    fn scalar_commands_answer_one_key_and_refuse_other_shapes() {
        let mut corrupt = 0;
        let mut a = |c, n, r| answers(c, n, r, "h:1", &mut corrupt);
        assert_eq!(
            keys(a(Command::Exists, 1, Reply::Scalar(Head::Int(1))))[0],
            "Flag(true)"
        );
        assert_eq!(keys(a(Command::Del, 1, Reply::Scalar(Head::Int(0))))[0], "Flag(false)");
        assert_eq!(
            keys(a(Command::Ping, 1, Reply::Scalar(Head::Simple("PONG".into()))))[0],
            "Done"
        );
        assert!(a(Command::Exists, 1, Reply::Scalar(Head::Simple("OK".into()))).is_err());
        assert!(a(Command::Exists, 2, Reply::Scalar(Head::Int(1))).is_err());
        assert!(a(Command::Set { ttl_secs: None }, 1, Reply::Scalar(Head::Int(1))).is_err());
        assert!(a(Command::Del, 1, Reply::Bulk(Ok(crate::reader::Bulk::Nil))).is_err());
        assert_eq!(corrupt, 0);
    }

    #[test]
    fn properties_drive_planning_and_the_handle() {
        assert!(Command::Get.merges() && !Command::Exists.merges());
        assert!(Command::Set { ttl_secs: None }.takes_values() && Command::DeleteOrphan.takes_values());
        assert!(!Command::Del.takes_values());
        assert!(Command::Set { ttl_secs: Some(1) }.awaits_replicas() && !Command::Del.awaits_replicas());
        assert!(Command::Ping.per_node() && !Command::Get.per_node());
    }
}
