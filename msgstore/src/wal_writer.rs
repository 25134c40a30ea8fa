//! Group commit over commit-log segments.
//!
//! Appends accumulate during a loop turn; `seal` turns them into ONE aligned write (rewriting
//! the partial tail block) followed by ONE fdatasync. Only then are they acknowledged. One group
//! is in flight at a time, so the tail block is never written twice concurrently.

use std::collections::VecDeque;

use crate::io::{FileHandle, FileOp, IoDone, IoError, IoResult, segment_name};
use crate::limits::{GROUP_BYTES_MAX, IO_ALIGN_BYTES};
use crate::message::{Body, Version};
use crate::wal::{HEADER_BYTES, SegmentHeader, encode_header, encode_record};

/// A live segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Number in the file name.
    pub number: u64,
    /// First sequence number it holds.
    pub start_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Opening,
    Preallocating,
    SyncingDir,
    Writing,
    Syncing,
}

/// Outcome of a completion.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report yet.
    Pending,
    /// The group is durable: take it with `take_acked`.
    Acked,
    /// These appends failed.
    Failed(Vec<u64>, IoError),
}

/// The commit-log writer.
#[derive(Debug)]
pub struct WalWriter {
    segment_bytes: u64,
    /// Live segments, oldest first; the last is being written.
    pub segments: Vec<Segment>,
    handle: Option<FileHandle>,
    new_handle: Option<(FileHandle, Segment)>,
    write_offset: u64,
    tail: Vec<u8>,
    next_seq: u64,
    pending: VecDeque<(u64, Body)>,
    pending_bytes: usize,
    group: Vec<(u64, Version)>,
    group_end: u64,
    state: State,
    needs_rollover: bool,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// Operations nobody waits for (closing old segments); the store submits them untracked
    /// so their completions never pose as the outstanding operation's.
    pub detached: Vec<FileOp>,
    rolled_over: bool,
}

impl WalWriter {
    /// A writer whose next record gets `next_seq`; `segments` are the old live ones. It rolls over
    /// to a fresh segment before the first group.
    pub fn new(segment_bytes: u64, segments: Vec<Segment>, next_seq: u64) -> Self {
        Self {
            segment_bytes,
            segments,
            handle: None,
            new_handle: None,
            write_offset: 0,
            tail: Vec::new(),
            next_seq,
            pending: VecDeque::new(),
            pending_bytes: 0,
            group: Vec::new(),
            group_end: 0,
            state: State::Ready,
            needs_rollover: true,
            buf: Vec::new(),
            scratch: Vec::new(),
            detached: Vec::new(),
            rolled_over: false,
        }
    }

    /// Queues an append for the next group; false if the group is full (push back).
    pub fn push(&mut self, token: u64, body: Body) -> bool {
        let n = body.approx_bytes();
        if self.pending_bytes + n > GROUP_BYTES_MAX {
            return false;
        }
        self.pending_bytes += n;
        self.pending.push_back((token, body));
        true
    }

    /// Appends waiting or in flight.
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.group.len()
    }

    /// Sequence number the next durable record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Starts the next group if none is in flight. `next_file` allocates segment numbers.
    pub fn seal(&mut self, next_file: &mut u64, handles: &mut u32, submit: &mut dyn FnMut(FileOp)) {
        if self.state != State::Ready || self.pending.is_empty() {
            return;
        }
        if self.needs_rollover {
            let number = *next_file;
            *next_file += 1;
            *handles += 1;
            let handle = FileHandle(*handles);
            self.new_handle = Some((
                handle,
                Segment {
                    number,
                    start_seq: self.next_seq,
                },
            ));
            self.state = State::Opening;
            submit(FileOp::Open {
                handle,
                name: segment_name(number),
                create: true,
            });
            return;
        }
        let Some(handle) = self.handle else { return };
        let aligned_start = self.write_offset - self.tail.len() as u64;
        self.buf.clear();
        self.buf.extend_from_slice(&self.tail);
        let mut seq = self.next_seq;
        while let Some((token, body)) = self.pending.pop_front() {
            let before = self.buf.len();
            let n = body.approx_bytes();
            let v = Version { seq, body };
            encode_record(&v, &mut self.scratch, &mut self.buf);
            if aligned_start + self.buf.len() as u64 > self.segment_bytes {
                self.buf.truncate(before);
                self.pending.push_front((token, v.body));
                break;
            }
            self.pending_bytes = self.pending_bytes.saturating_sub(n);
            self.group.push((token, v));
            seq += 1;
        }
        if self.group.is_empty() {
            self.needs_rollover = true;
            self.seal(next_file, handles, submit);
            return;
        }
        self.group_end = aligned_start + self.buf.len() as u64;
        let padded = self.buf.len().next_multiple_of(IO_ALIGN_BYTES);
        self.buf.resize(padded, 0);
        self.state = State::Writing;
        submit(FileOp::Write {
            handle,
            offset: aligned_start,
            data: std::mem::take(&mut self.buf),
        });
    }

    /// Takes the completion of the one outstanding operation.
    pub fn complete(&mut self, result: IoResult, submit: &mut dyn FnMut(FileOp)) -> Outcome {
        match (self.state, result) {
            (State::Opening, Ok(_)) => {
                if let Some((handle, _)) = self.new_handle {
                    self.state = State::Preallocating;
                    submit(FileOp::Preallocate {
                        handle,
                        len: self.segment_bytes,
                    });
                }
                Outcome::Pending
            }
            (State::Preallocating, Ok(_)) => {
                self.state = State::SyncingDir;
                submit(FileOp::SyncDir);
                Outcome::Pending
            }
            (State::SyncingDir, Ok(_)) => {
                if let Some((handle, seg)) = self.new_handle.take() {
                    if let Some(old) = self.handle.replace(handle) {
                        self.detached.push(FileOp::Close { handle: old });
                    }
                    self.segments.push(seg);
                    self.tail.clear();
                    encode_header(
                        &SegmentHeader {
                            number: seg.number,
                            start_seq: seg.start_seq,
                        },
                        &mut self.tail,
                    );
                    self.write_offset = HEADER_BYTES as u64;
                    self.needs_rollover = false;
                    self.rolled_over = true;
                }
                self.state = State::Ready;
                Outcome::Pending
            }
            (State::Writing, Ok(done)) => {
                if let IoDone::Written(b) = done {
                    self.buf = b;
                }
                match self.handle {
                    Some(handle) => {
                        self.state = State::Syncing;
                        submit(FileOp::Fdatasync { handle });
                        Outcome::Pending
                    }
                    None => self.fail_group(IoError::Os(0)),
                }
            }
            (State::Syncing, Ok(_)) => {
                let aligned_start = self.write_offset - self.tail.len() as u64;
                let new_tail_start = self.group_end - self.group_end % IO_ALIGN_BYTES as u64;
                let cut = (new_tail_start - aligned_start) as usize;
                let end = (self.group_end - aligned_start) as usize;
                match self.buf.get(cut..end) {
                    // The executor handed the group's buffer back: the new tail is in it.
                    Some(t) => {
                        self.tail.clear();
                        self.tail.extend_from_slice(t);
                    }
                    None => {
                        let mut buf = std::mem::take(&mut self.tail);
                        for (_, v) in &self.group {
                            encode_record(v, &mut self.scratch, &mut buf);
                        }
                        self.tail = buf.get(cut..).map(<[u8]>::to_vec).unwrap_or_default();
                    }
                }
                self.write_offset = self.group_end;
                self.next_seq += self.group.len() as u64;
                self.state = State::Ready;
                Outcome::Acked
            }
            (State::Opening | State::Preallocating | State::SyncingDir, Err(e)) => {
                // Leave the half-made segment: recovery skips an all-zero one.
                if let Some((handle, _)) = self.new_handle.take() {
                    self.detached.push(FileOp::Close { handle });
                }
                self.state = State::Ready;
                self.pending_bytes = 0;
                Outcome::Failed(self.pending.drain(..).map(|(t, _)| t).collect(), e)
            }
            (State::Writing | State::Syncing, Err(e)) => self.fail_group(e),
            (State::Ready, _) => Outcome::Pending,
        }
    }

    fn fail_group(&mut self, e: IoError) -> Outcome {
        // After a failed write or fdatasync the page cache state is unknown: move on to a fresh
        // segment whose header restarts at the same sequence number.
        self.needs_rollover = true;
        self.state = State::Ready;
        Outcome::Failed(self.group.drain(..).map(|(t, _)| t).collect(), e)
    }

    /// True once after a new segment became ready: the waiting group should go out now rather
    /// than a turn later.
    pub fn take_rolled_over(&mut self) -> bool {
        std::mem::take(&mut self.rolled_over)
    }

    /// Swaps the acknowledged group into `out` (empty on entry), keeping both allocations.
    pub fn take_acked(&mut self, out: &mut Vec<(u64, Version)>) {
        std::mem::swap(&mut self.group, out);
    }

    /// Removes segments whose records are all at or below `flushed_seq`; returns their numbers.
    pub fn retire_upto(&mut self, flushed_seq: u64) -> Vec<u64> {
        let mut gone = Vec::new();
        while self.segments.len() >= 2
            && self
                .segments
                .get(1)
                .is_some_and(|s| s.start_seq <= flushed_seq + 1)
        {
            gone.push(self.segments.remove(0).number);
        }
        gone
    }
}
