//! `PING`: one per primary, answers done.

use crate::resp::{Head, Outgoing};
use crate::settle::Answer;

pub(super) fn encode(out: &mut Outgoing) {
    out.push(&[b"PING"]);
}

pub(super) fn answer(head: Head) -> Option<Answer> {
    super::status(head)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn encodes() {
        assert_eq!(encoded(Command::Ping, &args(&[], None)), b"*1\r\n$4\r\nPING\r\n");
    }
}
