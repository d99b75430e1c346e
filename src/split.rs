//! Splitting a call into parts bounded in keys and bytes, so that several workers can carry a large call at once
//! and one part fits one round trip. Pure.

use bytes::Bytes;

use crate::command::Command;
use crate::value::{DestSlot, SetValue};

/// The bounds of one part.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most keys in one part.
    pub(crate) max_keys: usize,
    /// A part stops taking keys once its bytes reach this (the key that crosses it is kept).
    pub(crate) max_bytes: usize,
}

/// One part's share of a call.
#[derive(Default)]
pub(crate) struct Piece {
    pub(crate) keys: Vec<Bytes>,
    /// One per key, for commands that take values.
    pub(crate) values: Vec<SetValue>,
    /// One per key, for reads into caller buffers.
    pub(crate) dests: Vec<DestSlot>,
    /// Keys plus values for writes; keys plus expected value sizes (or the buffers' sizes) for reads.
    pub(crate) bytes: usize,
}

/// Cuts `keys` (with one value per key when `command` takes values, and one destination per key when `dests` is
/// given) into pieces in order. A read counts `expected` bytes per value, or its destination's size. A command sent
/// to every node rather than keys (`PING`) is one piece without keys; no keys otherwise means no pieces.
pub(crate) fn split(
    command: Command,
    keys: Vec<Bytes>,
    values: Vec<SetValue>,
    dests: Option<Vec<DestSlot>>,
    expected: usize,
    limits: Limits,
) -> Vec<Piece> {
    if command.per_node() {
        return vec![Piece::default()];
    }
    let mut out = Vec::with_capacity(keys.len().div_ceil(limits.max_keys.max(1)));
    let mut values = values.into_iter();
    let mut dests = dests.map(Vec::into_iter);
    let mut piece = Piece::default();
    for key in keys {
        if !piece.keys.is_empty() && (piece.keys.len() >= limits.max_keys || piece.bytes >= limits.max_bytes) {
            out.push(std::mem::take(&mut piece));
        }
        piece.bytes += key.len();
        if command.takes_values() {
            let v = values.next().expect("checked: one value per key");
            piece.bytes += v.len();
            piece.values.push(v);
        } else if let Some(d) = dests.as_mut() {
            let slot = d.next().expect("checked: one destination per key");
            piece.bytes += slot.lock().as_mut().map_or(expected, |b| b.bytes().len());
            piece.dests.push(slot);
        } else if command == Command::Get {
            piece.bytes += expected;
        }
        piece.keys.push(key);
    }
    if !piece.keys.is_empty() {
        out.push(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Destination;
    use std::sync::Arc;

    const LIMITS: Limits = Limits {
        max_keys: 4,
        max_bytes: 100,
    };

    fn keys(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("k{i}"))).collect()
    }

    fn shape(pieces: &[Piece]) -> Vec<(usize, usize)> {
        pieces.iter().map(|p| (p.keys.len(), p.bytes)).collect()
    }

    #[test]
    fn reads_are_cut_by_keys_and_expected_bytes() {
        // 2-byte keys, 10 expected bytes each: 4 keys (48 bytes) per piece, the last one short.
        assert_eq!(
            shape(&split(Command::Get, keys(10), Vec::new(), None, 10, LIMITS)),
            vec![(4, 48), (4, 48), (2, 24)]
        );
        // 60 expected bytes: the second key crosses 100 and is kept, the third starts a new piece.
        assert_eq!(
            shape(&split(Command::Get, keys(5), Vec::new(), None, 60, LIMITS)),
            vec![(2, 124), (2, 124), (1, 62)]
        );
        // A value larger than the bound still goes, alone.
        assert_eq!(
            shape(&split(Command::Get, keys(2), Vec::new(), None, 1000, LIMITS)),
            vec![(1, 1002), (1, 1002)]
        );
        // Flags count keys only.
        assert_eq!(
            shape(&split(Command::Exists, keys(5), Vec::new(), None, 1000, LIMITS)),
            vec![(4, 8), (1, 2)]
        );
    }

    #[test]
    fn writes_carry_their_values_and_count_their_bytes() {
        let values: Vec<SetValue> = [10, 80, 5, 1]
            .iter()
            .map(|n| Bytes::from(vec![0u8; *n]).into())
            .collect();
        let pieces = split(Command::Set { ttl_secs: None }, keys(4), values, None, 1, LIMITS);
        // 12, then 94 (under 100: one more), then 101: the fourth key starts a piece.
        assert_eq!(shape(&pieces), vec![(3, 101), (1, 3)]);
        assert_eq!(
            pieces[0].values.iter().map(SetValue::len).collect::<Vec<_>>(),
            vec![10, 80, 5]
        );
        assert_eq!(pieces[1].keys, vec![Bytes::from("k3")]);
    }

    #[test]
    fn destinations_count_their_own_size() {
        let dest = |len: usize| -> DestSlot {
            Arc::new(parking_lot::Mutex::new(Some(
                Box::new(vec![0u8; len]) as Box<dyn Destination>
            )))
        };
        let pieces = split(
            Command::Get,
            keys(3),
            Vec::new(),
            Some(vec![dest(98), dest(10), dest(10)]),
            1,
            LIMITS,
        );
        assert_eq!(shape(&pieces), vec![(1, 100), (2, 24)]);
        assert_eq!(pieces[1].dests.len(), 2);
    }

    #[test]
    fn pings_are_one_piece_and_no_keys_is_no_piece() {
        assert_eq!(
            shape(&split(Command::Ping, Vec::new(), Vec::new(), None, 1, LIMITS)),
            vec![(0, 0)]
        );
        assert!(split(Command::Get, Vec::new(), Vec::new(), None, 1, LIMITS).is_empty());
    }
}
