//! Per-session output queue of ready-to-send frames, bounded in frames and bytes. Each entry is
//! an inline head (WebSocket header, plus the JSON prefix or a whole small message) and an
//! optional shared tail; the engine writes `head` then `tail` with one vectored write.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::dispatch::{DISPATCH_PREFIX_BYTES_MAX, write_prefix};
use crate::limits::{
    OUT_FRAME_INLINE_BYTES, OUTPUT_QUEUE_BYTES_MAX, OUTPUT_QUEUE_BYTES_MIN,
    OUTPUT_QUEUE_FRAMES_MAX, WS_SERVER_HEADER_BYTES_MAX,
};
use crate::ws::frame::OpCode;
use crate::ws::writer::write_server_header;
use bytes::Bytes;
use std::collections::VecDeque;

const _: () =
    assert!(OUT_FRAME_INLINE_BYTES >= WS_SERVER_HEADER_BYTES_MAX + DISPATCH_PREFIX_BYTES_MAX);
const _: () = assert!(OUT_FRAME_INLINE_BYTES < 256, "head_len is a u8");
/// Highest byte limit a queue takes: far below `u32::MAX`, since `bytes` is a u32 that may
/// pass the limit by one close frame.
const OUTPUT_QUEUE_LIMIT_CEILING: usize = 1 << 30;
const _: () = assert!(
    OUTPUT_QUEUE_BYTES_MAX <= OUTPUT_QUEUE_LIMIT_CEILING,
    "bytes is a u32"
);

/// One outgoing WebSocket frame.
#[derive(Clone, PartialEq, Eq)]
pub struct OutFrame {
    head: [u8; OUT_FRAME_INLINE_BYTES],
    head_len: u8,
    tail: Bytes,
}

impl std::fmt::Debug for OutFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFrame")
            .field("head", &self.head())
            .field("tail_len", &self.tail.len())
            .finish()
    }
}

impl OutFrame {
    fn with_header(opcode: OpCode, payload_len: usize, tail: Bytes) -> Self {
        let mut head = [0u8; OUT_FRAME_INLINE_BYTES];
        let mut h = [0u8; WS_SERVER_HEADER_BYTES_MAX];
        let n = write_server_header(opcode, true, payload_len, &mut h);
        if let (Some(d), Some(s)) = (head.get_mut(..n), h.get(..n)) {
            d.copy_from_slice(s);
        }
        Self {
            head,
            head_len: n as u8,
            tail,
        }
    }

    /// A frame whose payload is `payload`, copied inline when it fits, else into a new buffer.
    pub fn message(opcode: OpCode, payload: &[u8]) -> Self {
        let mut f = Self::with_header(opcode, payload.len(), Bytes::new());
        let start = usize::from(f.head_len);
        match f.head.get_mut(start..start + payload.len()) {
            Some(d) => {
                d.copy_from_slice(payload);
                f.head_len += payload.len() as u8;
            }
            None => f.tail = Bytes::copy_from_slice(payload),
        }
        f
    }

    /// A frame whose whole payload is an owned or shared buffer.
    pub fn shared(opcode: OpCode, payload: Bytes) -> Self {
        Self::with_header(opcode, payload.len(), payload)
    }

    /// A dispatch frame: header and `{"op":0,"s":<seq>,` inline, `tail` shared.
    pub fn dispatch(seq: u64, tail: &Bytes) -> Self {
        let mut prefix = [0u8; DISPATCH_PREFIX_BYTES_MAX];
        let p = write_prefix(seq, &mut prefix);
        let mut head = [0u8; OUT_FRAME_INLINE_BYTES];
        let mut n = 0;
        if let Some(h) = head.first_chunk_mut::<WS_SERVER_HEADER_BYTES_MAX>() {
            n = write_server_header(OpCode::Text, true, p + tail.len(), h);
        }
        if let (Some(d), Some(s)) = (head.get_mut(n..n + p), prefix.get(..p)) {
            d.copy_from_slice(s);
            n += p;
        }
        Self {
            head,
            head_len: n as u8,
            tail: tail.clone(),
        }
    }

    /// Bytes to write first.
    pub fn head(&self) -> &[u8] {
        self.head.get(..usize::from(self.head_len)).unwrap_or(&[])
    }

    /// Bytes to write after `head` (possibly shared with other sessions; may be empty).
    pub fn tail(&self) -> &Bytes {
        &self.tail
    }

    /// Moves the tail out (leaving it empty), so a sender can keep the shared reference
    /// instead of cloning it and dropping this one: two fewer atomic operations per delivery.
    pub fn take_tail(&mut self) -> Bytes {
        std::mem::take(&mut self.tail)
    }

    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.tail.len()
    }

    /// Never true: every frame has a header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the whole frame to `out` (for engines without vectored writes, and tests).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head());
        out.extend_from_slice(&self.tail);
    }
}

/// The queue exceeded its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("output queue full")]
pub struct QueueFull;

/// Bounded FIFO of frames for one session.
///
/// The oldest frame lives inline and only frames behind it go to a heap deque: an idle session,
/// or one that gets each event written out before the next (the usual fan-out), never allocates
/// for its output. The deque's storage is kept while frames come in bursts (no allocation per
/// message) and released by [`OutputQueue::trim`] once the session is idle.
#[derive(Debug)]
pub struct OutputQueue {
    /// The oldest frame; `None` only when the queue is empty.
    first: Option<OutFrame>,
    /// Frames behind `first`, oldest first.
    rest: VecDeque<OutFrame>,
    /// Bytes queued (bounded by `limit` plus one close frame, far below 4 GiB).
    bytes: u32,
    /// Most bytes queued before `push` refuses (shares a word with `bytes`).
    limit: u32,
}

impl Default for OutputQueue {
    fn default() -> Self {
        Self::with_limit(OUTPUT_QUEUE_BYTES_MAX)
    }
}

impl OutputQueue {
    /// An empty queue refusing frames past `limit_bytes` (kept between
    /// `OUTPUT_QUEUE_BYTES_MIN` and 1 GiB, so a resume replay always fits and `bytes` never
    /// nears `u32::MAX`).
    pub fn with_limit(limit_bytes: usize) -> Self {
        OutputQueue {
            first: None,
            rest: VecDeque::new(),
            bytes: 0,
            limit: limit_bytes.clamp(OUTPUT_QUEUE_BYTES_MIN, OUTPUT_QUEUE_LIMIT_CEILING) as u32,
        }
    }

    /// Appends a frame unless that would pass `OUTPUT_QUEUE_FRAMES_MAX` or the queue's byte
    /// limit.
    pub fn push(&mut self, frame: OutFrame) -> Result<(), QueueFull> {
        if self.len() >= OUTPUT_QUEUE_FRAMES_MAX || self.bytes() + frame.len() > self.limit as usize
        {
            return Err(QueueFull);
        }
        self.push_unbounded(frame);
        Ok(())
    }

    /// Pushes past the bound; used only for the final close frame so a full queue can still end
    /// with a proper close.
    pub(crate) fn push_unbounded(&mut self, frame: OutFrame) {
        self.bytes = self.bytes.saturating_add(frame.len() as u32);
        if self.first.is_none() {
            // Invariant: `rest` is empty whenever `first` is (pop refills `first` from `rest`).
            self.first = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    /// Takes the oldest frame.
    pub fn pop(&mut self) -> Option<OutFrame> {
        let f = self.first.take()?;
        self.first = self.rest.pop_front();
        self.bytes = self.bytes.saturating_sub(f.len() as u32);
        Some(f)
    }

    /// The oldest frame.
    pub fn front(&self) -> Option<&OutFrame> {
        self.first.as_ref()
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Heap bytes held for frames behind the first (0 once trimmed).
    pub fn spill_capacity_bytes(&self) -> usize {
        self.rest.capacity() * std::mem::size_of::<OutFrame>()
    }

    /// Releases the storage of an empty queue (called when the session is idle, so bursts do
    /// not allocate per message but an idle session holds no heap for output).
    pub fn trim(&mut self) {
        if self.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }

    /// Drops everything (the transport is gone) and releases the memory.
    pub fn clear(&mut self) {
        self.first = None;
        self.rest = VecDeque::new();
        self.bytes = 0;
    }

    /// Moves every frame into `out`, oldest first.
    pub fn drain_into(&mut self, out: &mut Vec<u8>) {
        while let Some(f) = self.pop() {
            f.write_to(out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ws::frame::{Parsed, parse_frame};

    fn payload_of(f: &OutFrame) -> Vec<u8> {
        let mut wire = Vec::new();
        f.write_to(&mut wire);
        match parse_frame(&mut wire, false, 1 << 20) {
            Parsed::Frame(fr) => fr.payload.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_parse_back() {
        let small = OutFrame::message(OpCode::Text, b"{\"op\":11}");
        assert!(small.tail().is_empty());
        assert_eq!(payload_of(&small), b"{\"op\":11}");
        let big = OutFrame::message(OpCode::Text, &[b'a'; 200]);
        assert_eq!(big.tail().len(), 200);
        assert_eq!(payload_of(&big), vec![b'a'; 200]);
        let tail = Bytes::from_static(b"\"t\":\"X\",\"d\":{}}");
        let d = OutFrame::dispatch(42, &tail);
        assert_eq!(payload_of(&d), b"{\"op\":0,\"s\":42,\"t\":\"X\",\"d\":{}}");
        assert_eq!(
            d.tail().as_ptr(),
            tail.as_ptr(),
            "the tail is shared, not copied"
        );
    }

    #[test]
    fn fifo_order_across_inline_and_spill() {
        let mut q = OutputQueue::default();
        let mut next = 0u8;
        let mut expect = 0u8;
        // Interleave pushes and pops so frames cross between the inline slot and the deque.
        for round in 0..20u8 {
            for _ in 0..(round % 4) + 1 {
                q.push(OutFrame::message(OpCode::Text, &[next])).unwrap();
                next += 1;
            }
            for _ in 0..(round % 3) + 1 {
                if let Some(f) = q.pop() {
                    assert_eq!(payload_of(&f), [expect]);
                    expect += 1;
                }
            }
        }
        while let Some(f) = q.pop() {
            assert_eq!(payload_of(&f), [expect]);
            expect += 1;
        }
        assert_eq!(expect, next);
        assert!(q.is_empty() && q.bytes() == 0);
    }

    #[test]
    fn a_configured_byte_limit_bounds_the_queue_and_is_never_below_the_minimum() {
        let limit = OUTPUT_QUEUE_BYTES_MIN + 100_000;
        let mut q = OutputQueue::with_limit(limit);
        let big = Bytes::from(vec![b'x'; 200_000]);
        let mut queued = 0;
        while q.push(OutFrame::shared(OpCode::Text, big.clone())).is_ok() {
            queued += 1;
        }
        assert!(q.bytes() <= limit && q.bytes() + 200_004 > limit);
        assert_eq!(queued, q.len());
        let low = OutputQueue::with_limit(10);
        assert_eq!(low.limit as usize, OUTPUT_QUEUE_BYTES_MIN);
        assert_eq!(
            OutputQueue::default().limit as usize,
            OUTPUT_QUEUE_BYTES_MAX
        );
    }

    #[test]
    fn queue_bounds() {
        let mut q = OutputQueue::default();
        for _ in 0..OUTPUT_QUEUE_FRAMES_MAX {
            q.push(OutFrame::message(OpCode::Text, b"x")).unwrap();
        }
        assert_eq!(
            q.push(OutFrame::message(OpCode::Text, b"x")),
            Err(QueueFull)
        );
        assert_eq!(q.bytes(), OUTPUT_QUEUE_FRAMES_MAX * 3);
        q.pop();
        assert_eq!(q.bytes(), (OUTPUT_QUEUE_FRAMES_MAX - 1) * 3);
        q.trim();
        assert!(
            q.spill_capacity_bytes() > 0,
            "a non-empty queue keeps its storage"
        );
        while q.pop().is_some() {}
        assert_eq!(q.bytes(), 0);
        q.trim();
        assert_eq!(q.spill_capacity_bytes(), 0);
        let mut q = OutputQueue::default();
        let huge = Bytes::from(vec![0u8; OUTPUT_QUEUE_BYTES_MAX]);
        assert_eq!(
            q.push(OutFrame::shared(OpCode::Binary, huge)),
            Err(QueueFull)
        );
    }
}
