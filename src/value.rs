//! What values look like on their way in and out: a value to write (a small head before a large body, so a chunk
//! frame's header never forces a copy of its payload), a caller's buffer a value is read straight into, and what
//! one key got.

use bytes::Bytes;

/// What one key (or, for `Ping`, one node) got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyReply {
    Value(Option<Bytes>),
    /// Read into the key's destination buffer: this many bytes.
    Filled(usize),
    Flag(bool),
    Done,
}

/// A caller-owned buffer a value is read straight into.
pub(crate) trait Destination: Send {
    fn bytes(&mut self) -> &mut [u8];
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

impl<B: AsMut<[u8]> + Send + 'static> Destination for B {
    fn bytes(&mut self) -> &mut [u8] {
        self.as_mut()
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// A destination shared by the caller and the worker that fills it. The worker locks it only while reading into
/// it; the caller takes it back once the call is answered (or, after a timeout, once the worker lets go).
pub(crate) type DestSlot = std::sync::Arc<parking_lot::Mutex<Option<Box<dyn Destination>>>>;

/// How a value read into a destination is to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Fill {
    /// The value is exactly the buffer's size.
    Raw,
    /// The value is at most the buffer's size; it fills the buffer's first bytes.
    Fit,
    /// The value is a chunk frame whose payload is at most the buffer's size (a partial chunk fills its first
    /// bytes); the header is read apart and checked.
    Framed,
}

/// A value to write, in two pieces so that a small header (a chunk frame) can precede a large payload without
/// copying the payload.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetValue {
    pub(crate) head: Bytes,
    pub(crate) body: Bytes,
}

impl SetValue {
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

impl From<Bytes> for SetValue {
    fn from(body: Bytes) -> SetValue {
        SetValue {
            head: Bytes::new(),
            body,
        }
    }
}
