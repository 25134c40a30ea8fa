//! Group commit over commit-log segments.
//!
//! Appends accumulate during a loop turn; `seal` turns them into ONE aligned durable write
//! (`FileOp::WriteDurable`: the write and its data sync as one operation, rewriting the partial
//! tail block). Only once it completes are they acknowledged. One group is in flight at a time,
//! so the tail block is never written twice concurrently.
//!
//! The next segment (the *spare*) is made ahead of time, once the active one is half full:
//! created, preallocated, filled with written zeros, fdatasync'd and entered durably in the
//! directory. Rolling over is then only a switch of handles, with no file-system call on a
//! group's path; and because the spare's blocks are already written, a group's fdatasync has
//! no extent conversion (unwritten -> written) to persist, only the data to flush. The very
//! first segment after opening is made on demand while the first group waits, without the zero
//! fill (preallocated only), so the group goes out as soon as possible.

use std::collections::VecDeque;

use crate::io::{FileHandle, FileOp, IoDone, IoError, IoResult, segment_name};
use crate::limits::{
    GROUP_BYTES_MAX, IO_ALIGN_BYTES, SEGMENT_ZERO_CHUNK_BYTES, SPARE_RETRY_GROUPS,
};
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
    /// The group's durable write is in flight.
    Writing,
}

/// Where the making of the spare segment stands; one operation is outstanding in every step
/// but `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpareStep {
    Opening,
    Preallocating,
    /// Writing zeros; `Spare::zeroed` bytes are written so far.
    Zeroing,
    Syncing,
    SyncingDir,
    Ready,
}

/// The next segment, made before it is needed.
#[derive(Debug, Clone, Copy)]
struct Spare {
    handle: FileHandle,
    number: u64,
    step: SpareStep,
    /// Fill with written zeros (made ahead) or only preallocate (made while a group waits).
    zero_fill: bool,
    zeroed: u64,
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
    spare: Option<Spare>,
    /// Groups to wait before making a spare again after making one failed.
    spare_backoff: u32,
    /// Operations of the spare's making; the store submits them as the spare's.
    pub spare_ops: Vec<FileOp>,
    /// Zeros for the spare's fill, handed back by each write's completion.
    zeros: Vec<u8>,
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
            spare: None,
            spare_backoff: 0,
            spare_ops: Vec::new(),
            zeros: Vec::new(),
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
            match self.spare {
                Some(s) if s.step == SpareStep::Ready => self.activate_spare(s),
                // Being made: the group goes out once it is ready (`take_rolled_over`).
                Some(_) => return,
                None => {
                    self.start_spare(next_file, handles, false);
                    return;
                }
            }
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
        submit(FileOp::WriteDurable {
            handle,
            offset: aligned_start,
            data: std::mem::take(&mut self.buf),
        });
        // Past half the segment, make the next one in the background.
        self.spare_backoff = self.spare_backoff.saturating_sub(1);
        if self.spare.is_none()
            && self.spare_backoff == 0
            && self.group_end >= self.segment_bytes / 2
        {
            self.start_spare(next_file, handles, true);
        }
    }

    /// Starts making the next segment: open(create); its next steps follow its completions.
    fn start_spare(&mut self, next_file: &mut u64, handles: &mut u32, zero_fill: bool) {
        let number = *next_file;
        *next_file += 1;
        *handles += 1;
        let handle = FileHandle(*handles);
        self.spare = Some(Spare {
            handle,
            number,
            step: SpareStep::Opening,
            zero_fill,
            zeroed: 0,
        });
        self.spare_ops.push(FileOp::Open {
            handle,
            name: segment_name(number),
            create: true,
        });
    }

    /// Makes the ready spare the active segment: its first group carries the header.
    fn activate_spare(&mut self, s: Spare) {
        self.spare = None;
        if let Some(old) = self.handle.replace(s.handle) {
            self.detached.push(FileOp::Close { handle: old });
        }
        let seg = Segment {
            number: s.number,
            start_seq: self.next_seq,
        };
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
    }

    /// True while appends wait for a segment being made.
    fn waiting_for_spare(&self) -> bool {
        self.needs_rollover && self.state == State::Ready && !self.pending.is_empty()
    }

    /// Takes the completion of the spare's outstanding operation.
    pub fn spare_complete(&mut self, result: IoResult) -> Outcome {
        let Some(mut s) = self.spare else {
            return Outcome::Pending;
        };
        let next = match result {
            Err(e) => {
                // Leave the half-made segment: recovery removes one whose header is empty.
                self.spare = None;
                self.detached.push(FileOp::Close { handle: s.handle });
                if self.waiting_for_spare() {
                    self.pending_bytes = 0;
                    return Outcome::Failed(self.pending.drain(..).map(|(t, _)| t).collect(), e);
                }
                self.spare_backoff = SPARE_RETRY_GROUPS;
                return Outcome::Pending;
            }
            Ok(done) => {
                if let IoDone::Written(b) = done
                    && b.len() == SEGMENT_ZERO_CHUNK_BYTES
                {
                    self.zeros = b;
                }
                match s.step {
                    SpareStep::Opening => SpareStep::Preallocating,
                    SpareStep::Preallocating | SpareStep::Zeroing
                        if s.zero_fill && s.zeroed < self.segment_bytes =>
                    {
                        SpareStep::Zeroing
                    }
                    SpareStep::Preallocating | SpareStep::Zeroing if s.zero_fill => {
                        SpareStep::Syncing
                    }
                    // Made on demand: the first group's fdatasync persists the allocation.
                    SpareStep::Preallocating | SpareStep::Zeroing => SpareStep::SyncingDir,
                    SpareStep::Syncing => SpareStep::SyncingDir,
                    SpareStep::SyncingDir | SpareStep::Ready => SpareStep::Ready,
                }
            }
        };
        s.step = next;
        let handle = s.handle;
        match next {
            SpareStep::Opening | SpareStep::Ready => {}
            SpareStep::Preallocating => self.spare_ops.push(FileOp::Preallocate {
                handle,
                len: self.segment_bytes,
            }),
            SpareStep::Zeroing => {
                let len = (SEGMENT_ZERO_CHUNK_BYTES as u64).min(self.segment_bytes - s.zeroed);
                let mut data = std::mem::take(&mut self.zeros);
                data.clear();
                data.resize(len as usize, 0);
                self.spare_ops.push(FileOp::Write {
                    handle,
                    offset: s.zeroed,
                    data,
                });
                s.zeroed += len;
            }
            SpareStep::Syncing => self.spare_ops.push(FileOp::Fdatasync { handle }),
            SpareStep::SyncingDir => self.spare_ops.push(FileOp::SyncDir),
        }
        self.spare = Some(s);
        if next == SpareStep::Ready && self.waiting_for_spare() {
            self.rolled_over = true;
        }
        Outcome::Pending
    }

    /// Takes the completion of the group's durable write.
    pub fn complete(&mut self, result: IoResult) -> Outcome {
        match (self.state, result) {
            (State::Writing, Ok(done)) => {
                if let IoDone::Written(b) = done {
                    self.buf = b;
                }
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
            (State::Writing, Err(e)) => self.fail_group(e),
            (State::Ready, _) => Outcome::Pending,
        }
    }

    fn fail_group(&mut self, e: IoError) -> Outcome {
        // After a failed durable write the page cache state is unknown: move on to a fresh
        // segment whose header restarts at the same sequence number.
        self.needs_rollover = true;
        self.state = State::Ready;
        Outcome::Failed(self.group.drain(..).map(|(t, _)| t).collect(), e)
    }

    /// True once after the segment waiting appends need became ready: the waiting group should
    /// go out now rather than a turn later.
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
