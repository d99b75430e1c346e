//! Cluster slots: CRC16-XMODEM of a key or of its hash tag, modulo 16384. Pure.

/// Number of hash slots in a Redis / Valkey Cluster.
pub const SLOTS: u16 = 16384;

/// A cluster hash slot. Invariant: the value is below [`SLOTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u16);

impl Slot {
    /// The slot a key hashes to, honouring hash tags as the servers do.
    pub fn of(key: &[u8]) -> Slot {
        Slot(crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) % SLOTS)
    }

    /// The slot with this number, if it is below [`SLOTS`].
    pub fn new(n: u16) -> Option<Slot> {
        (n < SLOTS).then_some(Slot(n))
    }

    /// The slot number, below [`SLOTS`].
    pub fn get(self) -> u16 {
        self.0
    }
}

/// The part of `key` that is hashed: the bytes between the first `{` and the first `}` after it, when that is
/// non-empty; otherwise the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}')
            && close > 0
        {
            return &rest[..close];
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tag_edge_cases_match_the_server() {
        // Values checked against CLUSTER KEYSLOT (see the server notes); the tests/ suite re-checks them live.
        let cases: &[(&[u8], u16)] = &[
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"foo{bar}{zap}", 5061),
            (b"{}", 15257),
            (b"{", 4092),
            (b"}{", 12793),
            (b"", 0),
        ];
        for (key, slot) in cases {
            assert_eq!(Slot::of(key).get(), *slot, "key {:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn tagged_keys_share_a_slot() {
        assert_eq!(Slot::of(b"{user1000}.following"), Slot::of(b"{user1000}.followers"));
        assert_eq!(hash_tag(b"a{b}c"), b"b");
        assert_eq!(hash_tag(b"a{}c"), b"a{}c");
        assert_eq!(hash_tag(b"abc"), b"abc");
    }

    #[test]
    fn slot_new_enforces_range() {
        assert_eq!(Slot::new(16383).map(Slot::get), Some(16383));
        assert_eq!(Slot::new(16384), None);
    }
}
