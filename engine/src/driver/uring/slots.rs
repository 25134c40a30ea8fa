//! The table of in-flight operations: what each submitted SQE refers to until its last CQE.
//!
//! Each slot is boxed once and reused, so the iovec array, `msghdr`, socket address and timespec
//! it holds never move while the kernel may read them. A slot's `user_data` is its index plus a
//! generation (bumped on free), so a stale CQE can never be attributed to the slot's next user.

use io_uring::types::Timespec;

use crate::buf::{AlignedBuf, SendBuf};
use crate::driver::{FileId, SocketId, Token};

/// user_data values with this bit set are internal to the driver (never a slot).
pub(super) const INTERNAL_BIT: u64 = 1 << 63;

/// What an in-flight slot is doing, and the buffers it keeps alive.
#[derive(Debug)]
pub(super) enum Kind {
    Accept {
        listener: SocketId,
    },
    Recv {
        socket: SocketId,
    },
    RecvFrom {
        socket: SocketId,
    },
    Send {
        socket: SocketId,
        buf: SendBuf,
        /// Submitted as `Op::SendLazy`: a complete send's completion may be held back.
        lazy: bool,
    },
    SendTo {
        socket: SocketId,
        buf: SendBuf,
    },
    Timeout,
    /// One AsyncCancel SQE per matching operation, all pointing at this slot.
    Cancel {
        pending: u32,
        cancelled: u32,
    },
    ShutdownWrite {
        socket: SocketId,
    },
    Close {
        socket: SocketId,
    },
    WriteAt {
        buf: AlignedBuf,
    },
    ReadAt {
        buf: AlignedBuf,
    },
    Fdatasync,
    CloseFile {
        file: FileId,
    },
}

impl Kind {
    /// The socket whose in-flight count this operation holds.
    pub(super) fn socket(&self) -> Option<SocketId> {
        match self {
            Kind::Accept { listener: s }
            | Kind::Recv { socket: s }
            | Kind::RecvFrom { socket: s }
            | Kind::Send { socket: s, .. }
            | Kind::SendTo { socket: s, .. }
            | Kind::ShutdownWrite { socket: s }
            | Kind::Close { socket: s } => Some(*s),
            _ => None,
        }
    }
}

/// One in-flight operation and the kernel-visible memory it owns.
pub(super) struct Slot {
    generation: u32,
    /// The caller's token.
    pub(super) token: Token,
    /// `None` when free.
    pub(super) kind: Option<Kind>,
    /// Gather list of a send (capacity kept across uses).
    pub(super) iov: Vec<libc::iovec>,
    /// Header of a sendmsg/recvmsg.
    pub(super) msg: libc::msghdr,
    /// Destination of a sendto.
    pub(super) addr: libc::sockaddr_storage,
    /// Deadline of a timeout.
    pub(super) ts: Timespec,
}

/// Bounded slab of boxed slots.
pub(super) struct Slots {
    #[expect(
        clippy::vec_box,
        reason = "slots must not move when the Vec grows: the kernel holds pointers into them"
    )]
    slots: Vec<Box<Slot>>,
    free: Vec<u32>,
    max: usize,
    in_flight: usize,
}

const GEN_MASK: u32 = 0x7fff_ffff;

impl Slots {
    /// A table of at most `max` slots (allocated lazily, then reused).
    pub(super) fn new(max: usize) -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
            max,
            in_flight: 0,
        }
    }

    /// Take a free slot for `kind`; `None` when `max` are in flight.
    pub(super) fn alloc(&mut self, token: Token, kind: Kind) -> Option<u32> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() >= self.max {
                    return None;
                }
                self.slots.push(Box::new(Slot {
                    generation: 0,
                    token: 0,
                    kind: None,
                    iov: Vec::new(),
                    // SAFETY: msghdr and sockaddr_storage are plain old data; all-zero is valid.
                    msg: unsafe { std::mem::zeroed() },
                    // SAFETY: as above.
                    addr: unsafe { std::mem::zeroed() },
                    ts: Timespec::new(),
                }));
                u32::try_from(self.slots.len() - 1).ok()?
            }
        };
        let s = self.slots.get_mut(idx as usize)?;
        s.token = token;
        s.kind = Some(kind);
        self.in_flight += 1;
        Some(idx)
    }

    /// The kernel tag of slot `idx` (index in the low half, generation in the high half).
    pub(super) fn user_data(&self, idx: u32) -> u64 {
        let generation = self.slots.get(idx as usize).map_or(0, |s| s.generation);
        (u64::from(generation) << 32) | u64::from(idx)
    }

    /// The slot a CQE's user_data names, if it is in flight with that generation.
    pub(super) fn lookup(&self, user_data: u64) -> Option<u32> {
        if user_data & INTERNAL_BIT != 0 {
            return None;
        }
        let idx = (user_data & 0xffff_ffff) as u32;
        let generation = (user_data >> 32) as u32;
        let s = self.slots.get(idx as usize)?;
        (s.generation == generation && s.kind.is_some()).then_some(idx)
    }

    /// Mutable access to a slot.
    pub(super) fn get_mut(&mut self, idx: u32) -> Option<&mut Slot> {
        self.slots.get_mut(idx as usize).map(|b| &mut **b)
    }

    /// Free slot `idx`, returning what it held (the kernel is done with its memory).
    pub(super) fn free(&mut self, idx: u32) -> Option<(Token, Kind)> {
        let s = self.slots.get_mut(idx as usize)?;
        let kind = s.kind.take()?;
        s.generation = (s.generation + 1) & GEN_MASK;
        self.free.push(idx);
        self.in_flight -= 1;
        Some((s.token, kind))
    }

    /// Operations the kernel may still reference.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The user_data of every in-flight operation tagged `token` (for `Op::Cancel`).
    pub(super) fn matching(&self, token: Token, out: &mut Vec<u64>) {
        for (i, s) in self.slots.iter().enumerate() {
            if s.token == token && s.kind.is_some() && !matches!(s.kind, Some(Kind::Cancel { .. }))
            {
                out.push((u64::from(s.generation) << 32) | i as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_user_data_is_not_found_after_reuse() {
        let mut s = Slots::new(2);
        let a = s.alloc(7, Kind::Timeout).unwrap_or_else(|| unreachable!());
        let ud = s.user_data(a);
        assert_eq!(s.lookup(ud), Some(a));
        assert!(s.free(a).is_some());
        let b = s
            .alloc(8, Kind::Fdatasync)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(a, b, "slot reused");
        assert_eq!(s.lookup(ud), None, "old generation rejected");
        assert!(s.alloc(9, Kind::Timeout).is_some());
        assert!(s.alloc(10, Kind::Timeout).is_none(), "bounded");
        assert_eq!(s.in_flight(), 2);
        assert_eq!(s.lookup(ud | INTERNAL_BIT), None);
    }
}
