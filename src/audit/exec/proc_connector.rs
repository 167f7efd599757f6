//! The proc connector backend: the kernel's process events (`NETLINK_CONNECTOR`, `CN_IDX_PROC`),
//! on every Linux since 2.6.15. A fork event names parent and child; an exec event only the
//! pid, so argv and the rest are read from `/proc` afterwards ([`super::enrich`]) — and are
//! gone for the shortest commands.
//!
//! With the default receive buffer a burst of 10,000 execs lost 1–7 % (`ENOBUFS`); the socket
//! asks for 4 MiB with `SO_RCVBUFFORCE` (`CAP_NET_ADMIN`, as the subscription itself), which
//! lost none. The connector exists only in the initial network namespace.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{NetlinkAddr, bind, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use super::{Argv, Backend, Exec, Raw};

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// The receive buffer asked for (the kernel doubles it).
pub const RCVBUF: usize = 4 << 20;

/// A subscription to the kernel's process events.
pub struct ProcConnector {
    sock: Socket,
    buf: Vec<u8>,
}

/// The bytes of a connector message to the process-events channel carrying `op`.
fn request(op: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(len);
    // nlmsghdr: length, type, flags, sequence, port.
    m.extend_from_slice(&u32::try_from(len).unwrap_or(40).to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // cn_msg: id (idx, val), seq, ack, len, flags; then the op.
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&4u16.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&op.to_ne_bytes());
    m
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The events of one datagram (netlink messages, each a `cn_msg` carrying a `proc_event`):
/// processes' forks, execs and exits; threads' and other events are left out.
pub fn parse(datagram: &[u8], out: &mut Vec<Raw>) {
    let mut at = 0;
    while let Some(len) = u32_at(datagram, at) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            return;
        }
        let msg = &datagram[at..at + len];
        // proc_event: what, cpu, timestamp (u64), then the event's data.
        let ev = NLMSG_HDRLEN + CN_MSG_LEN;
        let data = ev + 16;
        let field = |i: usize| u32_at(msg, data + 4 * i);
        match u32_at(msg, ev) {
            Some(PROC_EVENT_FORK) => {
                // parent pid, parent tgid, child pid, child tgid.
                if let (Some(parent), Some(pid), Some(tgid)) = (field(1), field(2), field(3))
                    && pid == tgid
                {
                    out.push(Raw::Fork {
                        parent,
                        child: tgid,
                    });
                }
            }
            Some(PROC_EVENT_EXEC) => {
                if let Some(tgid) = field(1) {
                    let stamp = msg.get(ev + 8..ev + 16).and_then(|b| b.try_into().ok());
                    out.push(Raw::Exec(Exec {
                        pid: tgid,
                        argv_state: Argv::Unread,
                        kernel_ns: stamp.map(u64::from_ne_bytes),
                        ..Exec::default()
                    }));
                }
            }
            Some(PROC_EVENT_EXIT) => {
                // pid, tgid, exit code (the wait status).
                if let (Some(pid), Some(tgid)) = (field(0), field(1))
                    && pid == tgid
                {
                    let code = field(2).map(|s| {
                        let s = i32::from_ne_bytes(s.to_ne_bytes());
                        if s & 0x7f == 0 {
                            (s >> 8) & 0xff
                        } else {
                            128 + (s & 0x7f)
                        }
                    });
                    out.push(Raw::Exit { pid: tgid, code });
                }
            }
            _ => {}
        }
        // Messages are 4-byte aligned.
        at += (len + 3) & !3;
    }
}

impl ProcConnector {
    /// Subscribes (needs `CAP_NET_ADMIN`, the initial network namespace).
    pub fn open() -> io::Result<Self> {
        let sock = Socket::new(
            Domain::from(nix::libc::AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(NETLINK_CONNECTOR)),
        )?;
        bind(sock.as_raw_fd(), &NetlinkAddr::new(0, CN_IDX_PROC))?;
        setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF)?;
        sock.set_nonblocking(true)?;
        (&sock).write_all(&request(PROC_CN_MCAST_LISTEN))?;
        Ok(Self {
            sock,
            buf: vec![0; 64 << 10],
        })
    }
}

impl Drop for ProcConnector {
    /// Unsubscribes: the kernel makes process events only while someone listens.
    fn drop(&mut self) {
        let _ = (&self.sock).write_all(&request(PROC_CN_MCAST_IGNORE));
    }
}

impl Backend for ProcConnector {
    fn name(&self) -> &'static str {
        "proc-connector"
    }

    fn read(&mut self, out: &mut Vec<Raw>, timeout: Duration) -> io::Result<()> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        // Drain what is queued (bounded: a steady flood must not starve the caller).
        for _ in 0..4096 {
            match (&self.sock).read(&mut self.buf) {
                Ok(n) => parse(&self.buf[..n], out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The buffer overflowed: events were dropped, how many is unknown.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => out.push(Raw::Lost(0)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, data: &[u32]) -> Vec<u8> {
        let mut m = request(0);
        m.truncate(NLMSG_HDRLEN + CN_MSG_LEN);
        m.extend_from_slice(&what.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes());
        m.extend_from_slice(&123u64.to_ne_bytes());
        for d in data {
            m.extend_from_slice(&d.to_ne_bytes());
        }
        let len = u32::try_from(m.len()).unwrap();
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn process_events_are_parsed_and_threads_left_out() {
        let mut d = message(PROC_EVENT_FORK, &[10, 10, 11, 11]);
        d.extend(message(PROC_EVENT_FORK, &[10, 10, 12, 11])); // a thread of 11
        d.extend(message(PROC_EVENT_EXEC, &[11, 11]));
        d.extend(message(PROC_EVENT_EXIT, &[12, 11, 0, 17, 10, 10])); // the thread ends
        d.extend(message(PROC_EVENT_EXIT, &[11, 11, 3 << 8, 17, 10, 10]));
        d.extend(message(PROC_EVENT_EXIT, &[13, 13, 9, 17, 10, 10])); // killed by SIGKILL
        d.extend(message(0x4, &[11, 11, 0, 0])); // uid change: not ours
        let mut out = Vec::new();
        parse(&d, &mut out);
        assert_eq!(
            out,
            vec![
                Raw::Fork {
                    parent: 10,
                    child: 11
                },
                Raw::Exec(Exec {
                    pid: 11,
                    argv_state: Argv::Unread,
                    kernel_ns: Some(123),
                    ..Exec::default()
                }),
                Raw::Exit {
                    pid: 11,
                    code: Some(3)
                },
                Raw::Exit {
                    pid: 13,
                    code: Some(137)
                },
            ]
        );
    }

    #[test]
    fn a_truncated_datagram_yields_what_is_whole() {
        let mut d = message(PROC_EVENT_EXEC, &[11, 11]);
        let whole = d.len();
        d.extend(message(PROC_EVENT_EXEC, &[12, 12]));
        for cut in [3, whole - 1, whole + 20] {
            let mut out = Vec::new();
            parse(&d[..cut], &mut out);
            assert_eq!(out.len(), usize::from(cut >= whole), "cut at {cut}");
        }
    }
}
