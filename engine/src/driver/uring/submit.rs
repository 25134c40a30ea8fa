//! Turning an [`Op`] into SQEs: the slot that keeps its memory alive, then the push.

use io_uring::opcode;
use io_uring::squeue;
use io_uring::types::{CancelBuilder, Fd, FsyncFlags, TimeoutFlags, Timespec};

use super::slots::Kind;
use super::{BGID, IOV_MAX, SockKind, UD_IGNORE, UringDriver, sock};
use crate::buf::SendBuf;
use crate::driver::{Completion, CompletionKind, DriverError, Errno, Op, Token};

impl UringDriver {
    pub(super) fn submit_op(&mut self, token: Token, op: Op) -> Result<(), DriverError> {
        let lazy = matches!(op, Op::SendLazy { .. });
        match op {
            Op::AcceptMulti { listener } => {
                let fd = self.sock_fd(listener)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::Accept { listener })?;
                let sqe = opcode::AcceptMulti::new(Fd(fd))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(self.slots.user_data(idx));
                // SAFETY: multishot accept passes no user memory.
                unsafe { self.push(&sqe) }
            }
            Op::RecvMulti { socket } => {
                let fd = self.sock_fd(socket)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::Recv { socket })?;
                let sqe = opcode::RecvMulti::new(Fd(fd), BGID)
                    .build()
                    .user_data(self.slots.user_data(idx));
                // SAFETY: data lands in provided buffers, which live in `self.bufs` until the
                // kernel is done (see Drop).
                unsafe { self.push(&sqe) }
            }
            Op::RecvFromMulti { socket } => {
                let fd = self.sock_fd(socket)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::RecvFrom { socket })?;
                let ud = self.slots.user_data(idx);
                let slot = self
                    .slots
                    .get_mut(idx)
                    .ok_or(DriverError::Unknown("slot"))?;
                // SAFETY: msghdr is plain old data; all-zero is valid.
                slot.msg = unsafe { std::mem::zeroed() };
                slot.msg.msg_namelen = sock::NAME_BYTES;
                let sqe = opcode::RecvMsgMulti::new(Fd(fd), &slot.msg, BGID)
                    .build()
                    .user_data(ud);
                // SAFETY: the msghdr lives in the boxed slot until the last CQE; data lands in
                // provided buffers owned by `self.bufs`.
                unsafe { self.push(&sqe) }
            }
            Op::Send { socket, buf } | Op::SendLazy { socket, buf } => {
                let fd = self.sock_fd(socket)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::Send { socket, buf, lazy })?;
                let ud = self.slots.user_data(idx);
                let slot = self
                    .slots
                    .get_mut(idx)
                    .ok_or(DriverError::Unknown("slot"))?;
                let Some(Kind::Send { buf, .. }) = &slot.kind else {
                    return Err(DriverError::Unknown("slot"));
                };
                fill_iov(&mut slot.iov, buf);
                let sqe = if let [one] = slot.iov.as_slice() {
                    // One segment (a reply, or a frame that fit the arena): a plain send, which
                    // spares the kernel copying and checking a msghdr and an iovec array.
                    // A longer segment goes out in part; the caller re-submits the rest.
                    let len = one.iov_len.min(u32::MAX as usize) as u32;
                    opcode::Send::new(Fd(fd), one.iov_base.cast_const().cast(), len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(ud)
                } else {
                    // SAFETY: msghdr is plain old data; all-zero is valid.
                    slot.msg = unsafe { std::mem::zeroed() };
                    slot.msg.msg_iov = slot.iov.as_mut_ptr();
                    slot.msg.msg_iovlen = slot.iov.len();
                    opcode::SendMsg::new(Fd(fd), &slot.msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                        .user_data(ud)
                };
                // SAFETY: msghdr, iovecs and the SendBuf they point into (arena Vec heap and
                // Bytes storage, which do not move when the SendBuf moves) live in the boxed slot
                // until the CQE; neither is modified while in flight.
                unsafe { self.push(&sqe) }
            }
            Op::SendTo { socket, addr, buf } => {
                let fd = self.sock_fd(socket)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::SendTo { socket, buf })?;
                let ud = self.slots.user_data(idx);
                let slot = self
                    .slots
                    .get_mut(idx)
                    .ok_or(DriverError::Unknown("slot"))?;
                let Some(Kind::SendTo { buf, .. }) = &slot.kind else {
                    return Err(DriverError::Unknown("slot"));
                };
                fill_iov(&mut slot.iov, buf);
                let name_len = sock::write_sockaddr(&addr, &mut slot.addr);
                // SAFETY: msghdr is plain old data; all-zero is valid.
                slot.msg = unsafe { std::mem::zeroed() };
                slot.msg.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
                slot.msg.msg_namelen = name_len;
                slot.msg.msg_iov = slot.iov.as_mut_ptr();
                slot.msg.msg_iovlen = slot.iov.len();
                let sqe = opcode::SendMsg::new(Fd(fd), &slot.msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
                    .user_data(ud);
                // SAFETY: as for Send, plus the destination address in the same boxed slot.
                unsafe { self.push(&sqe) }
            }
            Op::Timeout { deadline_ns } => {
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::Timeout)?;
                let ud = self.slots.user_data(idx);
                let slot = self
                    .slots
                    .get_mut(idx)
                    .ok_or(DriverError::Unknown("slot"))?;
                slot.ts = Timespec::new()
                    .sec(deadline_ns / 1_000_000_000)
                    .nsec((deadline_ns % 1_000_000_000) as u32);
                let sqe = opcode::Timeout::new(&slot.ts)
                    .flags(TimeoutFlags::ABS)
                    .build()
                    .user_data(ud);
                // SAFETY: the timespec lives in the boxed slot until the CQE.
                unsafe { self.push(&sqe) }
            }
            Op::Cancel { target } => {
                let mut targets = std::mem::take(&mut self.targets);
                targets.clear();
                self.slots.matching(target, &mut targets);
                let r = self.submit_cancel(token, &targets);
                self.targets = targets;
                r
            }
            Op::ShutdownWrite { socket } => {
                let fd = self.sock_fd(socket)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::ShutdownWrite { socket })?;
                let sqe = opcode::Shutdown::new(Fd(fd), libc::SHUT_WR)
                    .build()
                    .user_data(self.slots.user_data(idx));
                // SAFETY: no user memory.
                unsafe { self.push(&sqe) }
            }
            Op::Close { socket } => {
                let fd = self.sock_fd(socket)?;
                let connected = matches!(
                    self.sockets.get(socket.0).map(|e| &e.kind),
                    Some(SockKind::Tcp)
                );
                self.reserve_sq(2)?;
                let idx = self.alloc(token, Kind::Close { socket })?;
                if let Some(e) = self.sockets.get_mut(socket.0) {
                    e.closing = true;
                }
                // What ends the operations still armed on the socket before its descriptor goes.
                // A connected TCP socket gets shutdown(SHUT_RDWR): the socket itself wakes its
                // waiters, so an armed receive finishes with EOF (after any data still queued)
                // and a blocked send with EPIPE, each in O(1). An ASYNC_CANCEL by descriptor
                // instead walks every armed request of the ring, which made closing N
                // connections O(N^2) (19k connections spun in io_async_cancel at drain).
                // Listeners and UDP sockets are few, and shutdown does not end their operations
                // portably, so they keep the cancel.
                let stop = if connected {
                    opcode::Shutdown::new(Fd(fd), libc::SHUT_RDWR).build()
                } else {
                    opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all()).build()
                };
                // Hard link: the close runs even when the first request fails (ENOTCONN after a
                // reset, ENOENT with nothing to cancel).
                let stop = stop.flags(squeue::Flags::IO_HARDLINK).user_data(UD_IGNORE);
                // The close only drops the descriptor: every request still armed holds its own
                // reference to the socket, which is released at that request's last CQE, so
                // nothing the kernel may still touch goes away early.
                let close = opcode::Close::new(Fd(fd))
                    .build()
                    .user_data(self.slots.user_data(idx));
                // SAFETY: neither request refers to user memory.
                unsafe {
                    self.push(&stop)?;
                    self.push(&close)
                }
            }
            Op::WriteAt {
                file,
                offset,
                buf,
                len,
            } => {
                let fd = self.file_fd(file)?;
                self.reserve_sq(1)?;
                let len = len.min(buf.capacity()).min(u32::MAX as usize) as u32;
                let idx = self.alloc(token, Kind::WriteAt { buf })?;
                let ud = self.slots.user_data(idx);
                let slot = self
                    .slots
                    .get_mut(idx)
                    .ok_or(DriverError::Unknown("slot"))?;
                let Some(Kind::WriteAt { buf }) = &slot.kind else {
                    return Err(DriverError::Unknown("slot"));
                };
                let sqe = opcode::Write::new(Fd(fd), buf.as_ptr(), len)
                    .offset(offset)
                    .build()
                    .user_data(ud);
                // SAFETY: `len` is clamped to the buffer's capacity; the AlignedBuf's heap block
                // stays in the slot until the CQE.
                unsafe { self.push(&sqe) }
            }
            Op::ReadAt {
                file,
                offset,
                buf,
                len,
            } => {
                let fd = self.file_fd(file)?;
                self.reserve_sq(1)?;
                let len = len.min(buf.capacity()).min(u32::MAX as usize) as u32;
                let idx = self.alloc(token, Kind::ReadAt { buf })?;
                let ud = self.slots.user_data(idx);
                let slot = self
                    .slots
                    .get_mut(idx)
                    .ok_or(DriverError::Unknown("slot"))?;
                let Some(Kind::ReadAt { buf }) = &mut slot.kind else {
                    return Err(DriverError::Unknown("slot"));
                };
                let sqe = opcode::Read::new(Fd(fd), buf.as_mut_ptr(), len)
                    .offset(offset)
                    .build()
                    .user_data(ud);
                // SAFETY: as for WriteAt; nobody reads the buffer until the CQE returns it.
                unsafe { self.push(&sqe) }
            }
            Op::Fdatasync { file } => {
                let fd = self.file_fd(file)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::Fdatasync)?;
                let sqe = opcode::Fsync::new(Fd(fd))
                    .flags(FsyncFlags::DATASYNC)
                    .build()
                    .user_data(self.slots.user_data(idx));
                // SAFETY: no user memory.
                unsafe { self.push(&sqe) }
            }
            Op::CloseFile { file } => {
                let fd = self.file_fd(file)?;
                self.reserve_sq(1)?;
                let idx = self.alloc(token, Kind::CloseFile { file })?;
                if let Some(e) = self.files.get_mut(file.0) {
                    e.closing = true;
                }
                let sqe = opcode::Close::new(Fd(fd))
                    .build()
                    .user_data(self.slots.user_data(idx));
                // SAFETY: no user memory.
                unsafe { self.push(&sqe) }
            }
        }
    }

    fn submit_cancel(&mut self, token: Token, targets: &[u64]) -> Result<(), DriverError> {
        if targets.is_empty() {
            self.ready.push(Completion {
                token,
                kind: CompletionKind::Cancel {
                    result: Err(Errno::NOENT),
                },
            });
            return Ok(());
        }
        let pending = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        self.reserve_sq(targets.len().min(self.ring.params().sq_entries() as usize))?;
        let idx = self.alloc(
            token,
            Kind::Cancel {
                pending,
                cancelled: 0,
            },
        )?;
        let ud = self.slots.user_data(idx);
        let mut pushed = 0u32;
        for &t in targets {
            if pushed > 0 && self.reserve_sq(1).is_err() {
                break;
            }
            let sqe = opcode::AsyncCancel::new(t).build().user_data(ud);
            // SAFETY: no user memory.
            if unsafe { self.push(&sqe) }.is_err() {
                break;
            }
            pushed += 1;
        }
        if let Some(Kind::Cancel { pending, .. }) =
            self.slots.get_mut(idx).and_then(|s| s.kind.as_mut())
        {
            *pending = pushed;
        }
        Ok(())
    }
}

/// Build the iovec array for the unsent part of `buf` (capacity reused across sends).
fn fill_iov(iov: &mut Vec<libc::iovec>, buf: &SendBuf) {
    iov.clear();
    buf.for_each_unsent(|s| {
        if iov.len() < IOV_MAX {
            iov.push(libc::iovec {
                iov_base: s.as_ptr().cast_mut().cast(),
                iov_len: s.len(),
            });
        }
    });
}
