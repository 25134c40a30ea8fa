//! Turning CQEs into [`Completion`]s: multishot bookkeeping, lent buffers, accepted sockets.

use std::net::SocketAddr;

use io_uring::cqueue;

use super::slots::Kind;
use super::{SockEntry, SockKind, UD_WAKER, UringDriver, sock};
use crate::driver::{BufId, Completion, CompletionKind, Errno, RecvChunk, SocketId};

fn errno(res: i32) -> Errno {
    Errno(-res)
}

impl UringDriver {
    pub(super) fn on_cqe(&mut self, ud: u64, res: i32, flags: u32, out: &mut Vec<Completion>) {
        let more = cqueue::more(flags);
        let picked = cqueue::buffer_select(flags);
        if ud == UD_WAKER {
            // A remote wake-up carries no completion but must end a blocking `run`.
            self.woken = true;
            self.waker.drain();
            if !more {
                self.waker_armed = false;
            }
            return;
        }
        let Some(idx) = self.slots.lookup(ud) else {
            // Internal request (or a CQE we cannot attribute): nothing for the shard, but a
            // selected buffer must go back to the ring.
            if let Some(bid) = picked {
                self.bufs.recycle(bid);
            }
            return;
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let token = slot.token;
        let kind = match &mut slot.kind {
            Some(Kind::Accept { listener }) => {
                let listener = *listener;
                let result = if res >= 0 {
                    self.accepted(listener, res)
                } else {
                    Err(errno(res))
                };
                CompletionKind::Accept { result, more }
            }
            Some(Kind::Recv { socket }) => {
                let socket = *socket;
                let result = if res > 0 {
                    match picked {
                        Some(bid) if self.bufs.lend(bid, 0) => {
                            self.stats.bytes_in += res as u64;
                            Ok(RecvChunk {
                                buf: Some(BufId(bid)),
                                len: res as usize,
                            })
                        }
                        _ => Err(Errno::IO),
                    }
                } else {
                    if let Some(bid) = picked {
                        self.bufs.recycle(bid);
                    }
                    if res == 0 {
                        Ok(RecvChunk { buf: None, len: 0 })
                    } else {
                        if res == -libc::ENOBUFS {
                            self.stats.buffer_exhaustions += 1;
                        }
                        Err(errno(res))
                    }
                };
                CompletionKind::Recv {
                    socket,
                    result: self.ended_by_close(socket, result, more),
                    more,
                }
            }
            Some(Kind::RecvFrom { socket }) => {
                let socket = *socket;
                let msg = slot.msg;
                let result = match (res, picked) {
                    (r, Some(bid)) if r >= 0 => self.datagram(bid, r as usize, &msg),
                    (r, picked) => {
                        if let Some(bid) = picked {
                            self.bufs.recycle(bid);
                        }
                        if r == -libc::ENOBUFS {
                            self.stats.buffer_exhaustions += 1;
                        }
                        Err(if r < 0 { errno(r) } else { Errno::IO })
                    }
                };
                CompletionKind::RecvFrom {
                    socket,
                    result,
                    more,
                }
            }
            Some(Kind::Cancel { pending, cancelled }) => {
                *pending = pending.saturating_sub(1);
                if res == 0 {
                    *cancelled += 1;
                }
                if *pending > 0 {
                    return;
                }
                let n = *cancelled;
                CompletionKind::Cancel {
                    result: if n == 0 { Err(Errno::NOENT) } else { Ok(n) },
                }
            }
            Some(k) => {
                // Single-shot operations: the slot is done, take its buffers back. Whether its
                // socket is closing is read first: freeing the last operation removes the entry.
                let closing = k.socket().is_some_and(|s| self.is_closing(s));
                let Some((token, kind)) = self.free(idx) else {
                    return;
                };
                // A lazy send that went out whole, seen while `run` blocks: only its buffer
                // comes back, so it waits for the next completion that needs the shard.
                let hold = self.hold_lazy
                    && !closing
                    && matches!(&kind, Kind::Send { buf, lazy: true, .. }
                        if res >= 0 && res as usize == buf.remaining());
                let kind = self.single_shot(kind, res, closing);
                self.stats.completions += 1;
                if hold {
                    self.held.push(Completion { token, kind });
                } else {
                    out.push(Completion { token, kind });
                }
                return;
            }
            None => return,
        };
        let multishot_done = !more;
        if multishot_done {
            self.free(idx);
        }
        self.stats.completions += 1;
        out.push(Completion { token, kind });
    }

    fn single_shot(&mut self, kind: Kind, res: i32, closing: bool) -> CompletionKind {
        let n = |res: i32| {
            if res >= 0 {
                Ok(res as usize)
            } else {
                Err(errno(res))
            }
        };
        let unit = |res: i32| if res >= 0 { Ok(()) } else { Err(errno(res)) };
        match kind {
            Kind::Send { socket, buf, .. } => {
                if res > 0 {
                    self.stats.bytes_out += res as u64;
                }
                let result = match n(res) {
                    // The close's shutdown failed it (EPIPE): to the caller it was cancelled.
                    Err(_) if closing => Err(Errno::CANCELED),
                    r => r,
                };
                CompletionKind::Send {
                    socket,
                    result,
                    buf,
                }
            }
            Kind::SendTo { socket, buf } => {
                if res > 0 {
                    self.stats.bytes_out += res as u64;
                }
                CompletionKind::SendTo {
                    socket,
                    result: n(res),
                    buf,
                }
            }
            Kind::Timeout => CompletionKind::Timeout {
                result: if res == -libc::ETIME || res >= 0 {
                    Ok(())
                } else {
                    Err(errno(res))
                },
            },
            Kind::ShutdownWrite { socket } => CompletionKind::ShutdownWrite {
                socket,
                result: unit(res),
            },
            Kind::Close { .. } => CompletionKind::Close { result: unit(res) },
            Kind::WriteAt { buf } => CompletionKind::WriteAt {
                result: n(res),
                buf,
            },
            Kind::ReadAt { buf } => CompletionKind::ReadAt {
                result: n(res),
                buf,
            },
            Kind::Fdatasync => CompletionKind::Fdatasync { result: unit(res) },
            Kind::CloseFile { file } => {
                // The kernel consumed the descriptor whatever the result: never close it again.
                self.files.remove(file.0);
                CompletionKind::CloseFile { result: unit(res) }
            }
            // Multishot kinds never reach here; report them as cancelled rather than panic.
            Kind::Accept { .. } => CompletionKind::Accept {
                result: Err(Errno::CANCELED),
                more: false,
            },
            Kind::Recv { socket } => CompletionKind::Recv {
                socket,
                result: Err(Errno::CANCELED),
                more: false,
            },
            Kind::RecvFrom { socket } => CompletionKind::RecvFrom {
                socket,
                result: Err(Errno::CANCELED),
                more: false,
            },
            Kind::Cancel { cancelled, .. } => CompletionKind::Cancel {
                result: Ok(cancelled),
            },
        }
    }

    /// Whether `Op::Close` was submitted for `socket` (its entry lives until its last operation).
    fn is_closing(&self, socket: SocketId) -> bool {
        self.sockets.get(socket.0).is_some_and(|e| e.closing)
    }

    /// The last result of a receive on a socket being closed is reported as CANCELED, as the
    /// `Op::Close` contract says, whatever ended it: the close's shutdown makes it end with EOF
    /// (or an error if the peer reset meanwhile). Data chunks pass unchanged, so their buffers
    /// still reach the caller and go back to the pool.
    fn ended_by_close(
        &self,
        socket: SocketId,
        result: Result<RecvChunk, Errno>,
        more: bool,
    ) -> Result<RecvChunk, Errno> {
        match result {
            Ok(RecvChunk { buf: None, .. }) | Err(_) if !more && self.is_closing(socket) => {
                Err(Errno::CANCELED)
            }
            r => r,
        }
    }

    /// Register a freshly accepted descriptor.
    fn accepted(&mut self, listener: SocketId, fd: i32) -> Result<(SocketId, SocketAddr), Errno> {
        let configured = match self.sockets.get(listener.0) {
            Some(SockEntry {
                kind: SockKind::Listener(opts),
                ..
            }) => sock::configure_accepted(fd, opts).is_ok(),
            _ => true,
        };
        let peer = sock::peer_addr(fd);
        let (true, Some(peer)) = (configured, peer) else {
            // The connection died before we could set it up (or options failed): drop it.
            sock::close_fd(fd);
            return Err(Errno::CONNRESET);
        };
        match self.sockets.insert(SockEntry {
            fd,
            kind: SockKind::Tcp,
            closing: false,
            fd_closed: false,
            inflight: 0,
        }) {
            Some(id) => Ok((SocketId(id), peer)),
            None => {
                sock::close_fd(fd);
                Err(Errno(libc::EMFILE))
            }
        }
    }

    /// Parse a multishot recvmsg buffer and lend it with its payload offset.
    fn datagram(
        &mut self,
        bid: u16,
        used: usize,
        msg: &libc::msghdr,
    ) -> Result<(BufId, usize, SocketAddr), Errno> {
        let parsed = {
            let raw = self.bufs.raw(bid, used);
            io_uring::types::RecvMsgOut::parse(raw, msg).ok().map(|m| {
                let payload = m.payload_data();
                let off = payload.as_ptr() as usize - raw.as_ptr() as usize;
                (off, payload.len(), sock::read_sockaddr(m.name_data()))
            })
        };
        match parsed {
            Some((off, len, Some(addr))) if self.bufs.lend(bid, off as u32) => {
                self.stats.bytes_in += len as u64;
                Ok((BufId(bid), len, addr))
            }
            _ => {
                self.bufs.recycle(bid);
                Err(Errno::IO)
            }
        }
    }
}
