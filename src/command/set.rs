//! `SET key value [EX ttl]`: the value's head (a chunk frame header, possibly empty) then its body, the body
//! referenced rather than copied when it is large. Answers done.

use super::Args;
use crate::resp::{Head, Outgoing};
use crate::settle::Answer;

pub(super) fn encode(args: &Args, ttl_secs: Option<u64>, out: &mut Outgoing) {
    let v = args.value.expect("a put carries its value");
    out.push_set(args.keys[0], &v.head, &v.body, ttl_secs);
}

pub(super) fn answer(head: Head) -> Option<Answer> {
    super::status(head)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use crate::resp::Head;
    use bytes::Bytes;

    #[test]
    fn encodes_with_and_without_ttl() {
        let v: SetValue = Bytes::from_static(b"v").into();
        assert_eq!(
            encoded(Command::Set { ttl_secs: Some(9) }, &args(&[b"k"], Some(&v))),
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$1\r\n9\r\n"
        );
        assert_eq!(
            encoded(Command::Set { ttl_secs: None }, &args(&[b"k"], Some(&v))),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        );
    }

    #[test]
    fn answers_done_or_the_servers_refusal() {
        let mut corrupt = 0;
        let set = Command::Set { ttl_secs: None };
        let ok = answers(set, 1, Reply::Scalar(Head::Simple("OK".into())), "h:1", &mut corrupt);
        assert_eq!(keys(ok), vec!["Done"]);
        let oom = answers(set, 1, Reply::Scalar(Head::Error(err("OOM", "x"))), "h:1", &mut corrupt);
        assert_eq!(keys(oom), vec!["OOM"]);
    }
}
