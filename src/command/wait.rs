//! `WAIT replicas timeout`, closing a pipeline that holds puts when replica acknowledgements are asked for
//! (`Config::wait_for_replicas`). The puts' own answers are held until it replies; a put the primary stored then
//! fails with `NotReplicated` when fewer replicas confirmed it than asked.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::reader::{Expect, Reply};
use crate::resp::{Head, Outgoing, ServerReply};
use crate::settle::{Answer, Refusal};

pub(crate) const EXPECT: Expect = Expect::Scalar;

pub(crate) fn encode(replicas: usize, timeout: Duration, out: &mut Outgoing) {
    let ms = timeout.as_millis().max(1).to_string();
    out.push(&[b"WAIT", replicas.to_string().as_bytes(), ms.as_bytes()]);
}

/// How many replicas confirmed, or the server's refusal of the wait; `Err` for a reply of another type.
pub(crate) fn acked(reply: Reply, node: &str) -> Result<std::result::Result<usize, ServerReply>> {
    match reply {
        Reply::Scalar(Head::Int(n)) => Ok(Ok(n.max(0) as usize)),
        Reply::Scalar(Head::Error(e)) => Ok(Err(e)),
        other => Err(Error::protocol(node, format!("WAIT: {other:?}"))),
    }
}

/// A held put's answer once the wait has replied: stored and confirmed by at least `wanted` replicas stands; stored
/// but confirmed by fewer is `NotReplicated`; a refused wait fails the stored puts with its error; a put the
/// primary refused keeps its own answer.
pub(crate) fn verdict(
    answer: Answer,
    acked: &std::result::Result<usize, ServerReply>,
    wanted: usize,
    node: &str,
) -> Answer {
    match (answer, acked) {
        (Ok(_), Ok(n)) if *n < wanted => Err(Refusal::Local(Error::NotReplicated {
            node: node.to_string(),
            acked: *n,
            wanted,
        })),
        (Ok(_), Err(e)) => Err(Refusal::Local(e.clone().into_error(node))),
        (answer, _) => answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_support::err;
    use crate::value::KeyReply;

    #[test]
    fn encodes_replicas_and_milliseconds() {
        let mut out = Outgoing::default();
        encode(2, Duration::from_micros(10), &mut out);
        assert_eq!(
            out.into_segments().concat(),
            b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$1\r\n1\r\n"
        );
    }

    #[test]
    fn the_verdict_table() {
        let done = || -> Answer { Ok(KeyReply::Done) };
        let show = |a: Answer| match a {
            Ok(r) => format!("{r:?}"),
            Err(Refusal::Server(e)) => e.code,
            Err(Refusal::Local(e)) => format!("{e:?}"),
        };
        assert_eq!(show(verdict(done(), &Ok(1), 1, "h:1")), "Done");
        assert_eq!(show(verdict(done(), &Ok(3), 2, "h:1")), "Done");
        let short = show(verdict(done(), &Ok(0), 1, "h:1"));
        assert!(short.contains("NotReplicated") && short.contains("acked: 0"), "{short}");
        let refused = show(verdict(done(), &Err(err("NOREPLICAS", "x")), 1, "h:1"));
        assert!(refused.contains("NOREPLICAS"), "{refused}");
        let oom: Answer = Err(Refusal::Server(err("OOM", "x")));
        assert_eq!(show(verdict(oom, &Ok(0), 1, "h:1")), "OOM");
        assert!(acked(Reply::Scalar(Head::Int(2)), "h:1").unwrap() == Ok(2));
        assert!(acked(Reply::Scalar(Head::Simple("OK".into())), "h:1").is_err());
    }
}
