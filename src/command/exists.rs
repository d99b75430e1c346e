//! `EXISTS key`: answers whether the key exists.

use super::Args;
use crate::resp::{Head, Outgoing};
use crate::settle::Answer;

pub(super) fn encode(args: &Args, out: &mut Outgoing) {
    out.push(&[b"EXISTS", args.keys[0]]);
}

pub(super) fn answer(head: Head) -> Option<Answer> {
    super::flag(head)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn encodes() {
        assert_eq!(
            encoded(Command::Exists, &args(&[b"k"], None)),
            b"*2\r\n$6\r\nEXISTS\r\n$1\r\nk\r\n"
        );
    }
}
