//! The orphan compare-and-delete: `EVAL` of a script that deletes a split-layout metadata key (KEYS[1]) only if it
//! still holds the value read (ARGV[1]) and its kv_bytes key (KEYS[2]) does not exist, so a concurrent re-put
//! (which writes kv_bytes first) is never damaged. The value's `head` carries the kv_bytes key, its `body` the
//! metadata read. Answers whether it deleted.

use super::Args;
use crate::resp::{Head, Outgoing};
use crate::settle::Answer;

const SCRIPT: &[u8] = b"if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then \
                        return redis.call('DEL', KEYS[1]) end return 0";

pub(super) fn encode(args: &Args, out: &mut Outgoing) {
    let v = args
        .value
        .expect("the orphan delete carries its kv_bytes key and expected value");
    out.push(&[b"EVAL", SCRIPT, b"2", args.keys[0], &v.head, &v.body]);
}

pub(super) fn answer(head: Head) -> Option<Answer> {
    super::flag(head)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use bytes::Bytes;

    #[test]
    fn encodes_both_keys_and_the_expected_value() {
        let orphan = SetValue {
            head: Bytes::from_static(b"kv"),
            body: Bytes::from_static(b"meta-bytes"),
        };
        let text = encoded(Command::DeleteOrphan, &args(&[b"m"], Some(&orphan)));
        let text = String::from_utf8_lossy(&text);
        assert!(text.starts_with("*6\r\n$4\r\nEVAL\r\n"), "{text}");
        assert!(
            text.ends_with("$1\r\n2\r\n$1\r\nm\r\n$2\r\nkv\r\n$10\r\nmeta-bytes\r\n"),
            "{text}"
        );
    }
}
