//! RESP2 on bytes, with no socket in sight: encoding commands into segments that reference large payloads
//! instead of copying them, and parsing reply heads and whole frames out of a buffer.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

use crate::error::Error;

/// Largest bulk length accepted from a server: the servers' own default `proto-max-bulk-len`.
pub(crate) const MAX_BULK: usize = 512 << 20;
/// Payloads at least this large are referenced by the outgoing segments instead of being copied into them.
const ZERO_COPY_WRITE: usize = 16 << 10;

/// A server error reply, split into its code and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerReply {
    pub(crate) code: String,
    pub(crate) detail: String,
}

impl ServerReply {
    pub(crate) fn parse(line: &[u8]) -> ServerReply {
        let text = String::from_utf8_lossy(line);
        let (code, detail) = text.split_once(' ').unwrap_or((&text, ""));
        ServerReply {
            code: code.to_string(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn into_error(self, node: &str) -> Error {
        Error::Server {
            node: node.to_string(),
            code: self.code,
            detail: self.detail,
        }
    }
}

/// The head of one reply: its type and, for scalars, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    Simple(String),
    Error(ServerReply),
    Int(i64),
    /// A bulk string of this many bytes follows; `None` is the nil bulk.
    Bulk(Option<usize>),
    /// This many replies follow; `None` is the nil array.
    Array(Option<usize>),
}

/// Parses the head line at the start of `buf`: `Ok(None)` when the line is not complete yet, else the head and
/// the length of its line (CRLF included).
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err("reply line not ended by CRLF".into());
    }
    let line = &buf[..lf - 1];
    let Some((&kind, rest)) = line.split_first() else {
        return Err("empty reply line".into());
    };
    let int = || -> Result<i64, String> {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(rest)))
    };
    let len = |n: i64| -> Result<Option<usize>, String> {
        match n {
            -1 => Ok(None),
            n if (0..=MAX_BULK as i64).contains(&n) => Ok(Some(n as usize)),
            n => Err(format!("reply announces an impossible length {n}")),
        }
    };
    let head = match kind {
        b'+' => Head::Simple(String::from_utf8_lossy(rest).into_owned()),
        b'-' => Head::Error(ServerReply::parse(rest)),
        b':' => Head::Int(int()?),
        b'$' => Head::Bulk(len(int()?)?),
        b'*' => Head::Array(len(int()?)?),
        other => return Err(format!("unexpected reply type {:?}", other as char)),
    };
    Ok(Some((head, lf + 1)))
}

/// Deepest nesting of arrays accepted in a reply decoded whole (`CLUSTER SLOTS` needs 3): a hostile or broken
/// server's deeper nesting is a protocol error, not a stack overflow in the decoding.
pub(crate) const MAX_DEPTH: usize = 32;

/// Length of the first complete reply in `bytes`, `None` when more bytes are needed. Iterative, and arrays nested
/// deeper than `MAX_DEPTH` are an error.
pub(crate) fn frame_end(bytes: &[u8]) -> Result<Option<usize>, String> {
    // Elements still to come in each array open around the current position, outermost first.
    let mut open: Vec<usize> = Vec::new();
    let mut at = 0;
    loop {
        let Some((head, head_len)) = parse_head(&bytes[at..])? else {
            return Ok(None);
        };
        at += head_len;
        match head {
            Head::Bulk(Some(n)) => {
                at += n + 2;
                if bytes.len() < at {
                    return Ok(None);
                }
            }
            Head::Array(Some(n)) if n > 0 => {
                if open.len() == MAX_DEPTH {
                    return Err(format!("reply nested deeper than {MAX_DEPTH} arrays"));
                }
                open.push(n);
                continue;
            }
            _ => {}
        }
        // One element complete: it may complete the arrays around it.
        loop {
            match open.last_mut() {
                None => return Ok(Some(at)),
                Some(left) if *left > 1 => {
                    *left -= 1;
                    break;
                }
                Some(_) => {
                    open.pop();
                }
            }
        }
    }
}

/// Commands encoded for one write: small pieces copied together, large payloads referenced, in order.
#[derive(Default)]
pub(crate) struct Outgoing {
    done: Vec<Bytes>,
    buf: Vec<u8>,
}

impl Outgoing {
    /// Appends a command given as its arguments, the name first.
    pub(crate) fn push(&mut self, args: &[&[u8]]) {
        self.array_head(args.len());
        for a in args {
            self.bulk(a);
        }
    }

    /// Appends `SET key value [EX ttl]`, `value` being `head` then `body`; a large body is referenced, not copied.
    pub(crate) fn push_set(&mut self, key: &[u8], head: &[u8], body: &Bytes, ttl_secs: Option<u64>) {
        self.array_head(if ttl_secs.is_some() { 5 } else { 3 });
        self.bulk(b"SET");
        self.bulk(key);
        self.number(b'$', (head.len() + body.len()) as u64);
        self.buf.extend_from_slice(head);
        if body.len() >= ZERO_COPY_WRITE {
            self.cut();
            self.done.push(body.clone());
        } else {
            self.buf.extend_from_slice(body);
        }
        self.buf.extend_from_slice(b"\r\n");
        if let Some(t) = ttl_secs {
            self.bulk(b"EX");
            self.bulk(t.to_string().as_bytes());
        }
    }

    fn array_head(&mut self, n: usize) {
        self.number(b'*', n as u64);
    }

    fn bulk(&mut self, arg: &[u8]) {
        self.number(b'$', arg.len() as u64);
        self.buf.extend_from_slice(arg);
        self.buf.extend_from_slice(b"\r\n");
    }

    fn number(&mut self, kind: u8, n: u64) {
        self.buf.push(kind);
        self.buf.extend_from_slice(n.to_string().as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Closes the piece being copied into.
    fn cut(&mut self) {
        if !self.buf.is_empty() {
            self.done.push(Bytes::from(std::mem::take(&mut self.buf)));
        }
    }

    /// The pieces to write, in order.
    pub(crate) fn into_segments(mut self) -> Vec<Bytes> {
        self.cut();
        self.done
    }
}

/// Bytes waiting to be written, consumed from the front as writes succeed.
#[derive(Default)]
pub(crate) struct WriteQueue {
    segments: VecDeque<Bytes>,
}

impl WriteQueue {
    pub(crate) fn push(&mut self, out: Outgoing) {
        self.segments
            .extend(out.into_segments().into_iter().filter(|s| !s.is_empty()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The next pieces to write (at most 64 of them).
    pub(crate) fn slices(&self) -> Vec<IoSlice<'_>> {
        self.segments.iter().take(64).map(|s| IoSlice::new(s)).collect()
    }

    /// Drops the first `n` bytes, written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let front = self.segments.front_mut().expect("advanced past the end");
            let k = n.min(front.len());
            front.advance(k);
            n -= k;
            if front.is_empty() {
                self.segments.pop_front();
            }
        }
    }

    /// Total bytes waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.segments.iter().map(Bytes::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(out: Outgoing) -> Vec<u8> {
        out.into_segments().concat()
    }

    #[test]
    fn heads_parse_or_ask_for_more() {
        assert_eq!(parse_head(b"+OK\r\n"), Ok(Some((Head::Simple("OK".into()), 5))));
        assert_eq!(parse_head(b":-3\r\nrest"), Ok(Some((Head::Int(-3), 5))));
        assert_eq!(parse_head(b"$5\r\nhello\r\n"), Ok(Some((Head::Bulk(Some(5)), 4))));
        assert_eq!(parse_head(b"$-1\r\n"), Ok(Some((Head::Bulk(None), 5))));
        assert_eq!(parse_head(b"*-1\r\n"), Ok(Some((Head::Array(None), 5))));
        assert_eq!(parse_head(b"*2\r"), Ok(None));
        assert_eq!(parse_head(b""), Ok(None));
        let moved = parse_head(b"-MOVED 12 h:1\r\n").unwrap().unwrap().0;
        assert_eq!(
            moved,
            Head::Error(ServerReply {
                code: "MOVED".into(),
                detail: "12 h:1".into()
            })
        );
        assert!(parse_head(b"$99999999999\r\n").is_err());
        assert!(parse_head(b"$-2\r\n").is_err());
        assert!(parse_head(b"?x\r\n").is_err());
        assert!(parse_head(b"\r\n").is_err());
        assert!(parse_head(b"+OK\n").is_err());
        assert!(parse_head(b":12a\r\n").is_err());
    }

    #[test]
    fn frame_end_finds_whole_replies_only() {
        assert_eq!(frame_end(b"+OK\r\n+PONG\r\n"), Ok(Some(5)));
        assert_eq!(frame_end(b"$3\r\nabc\r\n"), Ok(Some(9)));
        assert_eq!(frame_end(b"$3\r\nab"), Ok(None));
        assert_eq!(frame_end(b"$-1\r\n"), Ok(Some(5)));
        assert_eq!(frame_end(b"*2\r\n:1\r\n$1\r\nx\r\n"), Ok(Some(15)));
        assert_eq!(frame_end(b"*2\r\n:1\r\n"), Ok(None));
        assert_eq!(frame_end(b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n:9"), Ok(Some(18)));
        assert!(frame_end(b"$99999999999\r\n").is_err());
        assert!(frame_end(b"?x\r\n").is_err());
    }

    #[test]
    fn commands_are_encoded_as_resp() {
        let mut out = Outgoing::default();
        out.push(&[b"GET", b"k"]);
        out.push(&[b"MGET", b"a", b""]);
        assert_eq!(
            flat(out),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn set_is_encoded_with_large_payloads_referenced() {
        let mut out = Outgoing::default();
        out.push_set(b"k", b"", &Bytes::from_static(b"v"), None);
        assert_eq!(flat(out), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        let mut out = Outgoing::default();
        out.push_set(b"k", b"", &Bytes::new(), Some(60));
        assert_eq!(
            flat(out),
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nEX\r\n$2\r\n60\r\n"
        );
        let mut out = Outgoing::default();
        out.push_set(b"k", b"HEAD", &Bytes::from_static(b"body"), None);
        assert_eq!(flat(out), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\nHEADbody\r\n");
        let big = Bytes::from(vec![7u8; ZERO_COPY_WRITE]);
        let mut out = Outgoing::default();
        out.push_set(b"k", b"H", &big, None);
        let segments = out.into_segments();
        assert_eq!(segments.len(), 3);
        assert!(segments[1].as_ptr() == big.as_ptr(), "payload must not be copied");
        assert_eq!(&segments[0][..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16385\r\nH");
        assert_eq!(&segments[2][..], b"\r\n");
    }

    #[test]
    fn the_write_queue_advances_across_segments() {
        let mut q = WriteQueue::default();
        let mut out = Outgoing::default();
        out.push_set(b"k", b"", &Bytes::from(vec![1u8; ZERO_COPY_WRITE]), None);
        q.push(out);
        let total = q.len();
        q.advance(10);
        assert_eq!(q.len(), total - 10);
        let first: usize = q.slices().iter().map(|s| s.len()).sum();
        assert_eq!(first, total - 10);
        q.advance(total - 12);
        let rest: Vec<u8> = q.slices().iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(rest, b"\r\n");
        q.advance(2);
        assert!(q.is_empty());
    }
}
