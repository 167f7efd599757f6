//! The kernel audit backend (`audit`): a **read-only multicast listener** on the kernel audit
//! netlink socket (`NETLINK_AUDIT`, group `AUDIT_NLGRP_READLOG`, needs `CAP_AUDIT_READ`), for
//! hosts where an auditd already has execve rules. It never changes the kernel's audit state:
//! no `AUDIT_SET`, no rules, never the unicast channel that belongs to auditd. Subscribing makes
//! the kernel log one `AUDIT_EVENT_LISTENER` record (`nl-mcgrp=1 op=connect`), as for any reader.
//!
//! An exec is one audit event: records sharing a serial number (`audit(<time>:<serial>): …`),
//! one per datagram: `SYSCALL` (pid, ppid, ids, tty, `exe`), `EXECVE` (argv, split over
//! several records when long), `CWD`, `PATH`s, `PROCTITLE`, and `EOE` to close it. They are
//! grouped by serial and turned into one [`Raw::Exec`] at `EOE` — or when the group is over a
//! second old, or too many are open (a lost `EOE` must not hold memory). Only successful
//! `execve`/`execveat` calls are reported, told by the record's own `arch` and syscall number.
//! `PROCTITLE` is not used: the kernel caches it per task, so after a failed exec attempt it
//! still shows the previous program (seen with `env` walking `PATH`).
//!
//! Values an unprivileged user controls (argv, `exe`, `cwd`, `comm`) are quoted only when they
//! hold no blank, quote or control byte, and hex-encoded otherwise, so a quoted value never
//! contains a `key=` that could be taken for a field; the first occurrence of a field wins.
//! User-space messages (`AUDIT_USER*`, any text) have other record types and are ignored.
//!
//! The audit subsystem reports no forks and no exits: only the exec's `ppid` links a process to
//! its parent, and the caller's attribution has to rely on it. The rules decide what is seen;
//! with a rule scoped by `auid` (as the reference test does), session processes that have no
//! login uid are not. Each audited syscall costs every process a little (+11 % per
//! fork+exec with a matching rule, +56 % per syscall of any new process with any rule at all).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{NetlinkAddr, bind, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use super::{ARGV_MAX, Argv, Backend, Exec, Raw, split_argv};

const NETLINK_AUDIT: i32 = 9;
/// The read-only multicast group of audit records (`AUDIT_NLGRP_READLOG`).
const AUDIT_NLGRP_READLOG: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// The status request `auditctl -s` sends; it reads, it changes nothing.
const AUDIT_GET: u16 = 1000;

const AUDIT_SYSCALL: u16 = 1300;
const AUDIT_CWD: u16 = 1307;
const AUDIT_EXECVE: u16 = 1309;
const AUDIT_EOE: u16 = 1320;

/// The receive buffer asked for (the kernel doubles it), as for the proc connector.
pub const RCVBUF: usize = 4 << 20;
/// Events open at once (waiting for their `EOE`); the oldest is closed beyond it.
pub const MAX_OPEN: usize = 256;
/// An event without its `EOE` after this long (ms) is closed with what it has.
pub const MAX_AGE_MS: u64 = 1000;
/// The longest `exe` or `cwd` kept (PATH_MAX).
const PATH_MAX: usize = 4096;

/// Why the audit backend cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The kernel's auditing is disabled: no records would come.
    #[error(
        "kernel audit is off (auditctl -s: enabled 0): the audit backend only reads beside an \
         auditd that already has execve rules; it never enables auditing or adds rules — use \
         ebpf or proc-connector"
    )]
    Off,
    /// The status cannot be read (no `CAP_AUDIT_CONTROL`) and no auditd runs.
    #[error(
        "cannot tell whether kernel audit is on (reading its status needs CAP_AUDIT_CONTROL) \
         and no auditd runs: the audit backend only reads beside an auditd that already has \
         execve rules; it never enables auditing or adds rules — use ebpf or proc-connector"
    )]
    NoAuditd,
    /// Not in the initial network namespace: the kernel multicasts records only there.
    #[error(
        "the kernel sends audit records only to the initial network namespace; run the daemon \
         there, or use ebpf"
    )]
    NetNamespace,
    /// The socket could not be made or subscribed.
    #[error("{}", socket_error(.0))]
    Socket(#[source] io::Error),
}

fn socket_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(nix::libc::EPERM | nix::libc::EACCES) => {
            format!("{e}: reading the kernel's audit records needs CAP_AUDIT_READ")
        }
        Some(nix::libc::EPROTONOSUPPORT | nix::libc::EAFNOSUPPORT) => {
            format!("{e}: this kernel has no audit support (CONFIG_AUDIT)")
        }
        _ => format!("opening the kernel audit socket: {e}"),
    }
}

/// A multicast subscription to the kernel's audit records, and the events being assembled.
pub struct AuditNetlink {
    sock: Socket,
    buf: Vec<u8>,
    events: Events,
    start: Instant,
}

impl AuditNetlink {
    /// Subscribes, after checking that auditing is on: by an `AUDIT_GET` status request when
    /// allowed (`CAP_AUDIT_CONTROL`; it only reads), else by an auditd running.
    pub fn open() -> Result<Self, AuditError> {
        if in_other_netns() {
            return Err(AuditError::NetNamespace);
        }
        match status_enabled() {
            Ok(0) => return Err(AuditError::Off),
            Ok(_) => {}
            Err(_) if auditd_runs(Path::new("/proc")) => {}
            Err(_) => return Err(AuditError::NoAuditd),
        }
        let sock = Socket::new(
            Domain::from(nix::libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_AUDIT)),
        )
        .map_err(AuditError::Socket)?;
        bind(sock.as_raw_fd(), &NetlinkAddr::new(0, AUDIT_NLGRP_READLOG))
            .map_err(|e| AuditError::Socket(e.into()))?;
        // Without CAP_NET_ADMIN, the ordinary option (capped by net.core.rmem_max).
        if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
            setsockopt(&sock, sockopt::RcvBuf, &RCVBUF)
                .map_err(|e| AuditError::Socket(e.into()))?;
        }
        sock.set_nonblocking(true).map_err(AuditError::Socket)?;
        Ok(Self {
            sock,
            buf: vec![0; 64 << 10],
            events: Events::default(),
            start: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Whether this process is visibly outside the initial network namespace (best effort: equal
/// when `/proc/1` is unreadable or is itself in a container).
fn in_other_netns() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) {
        (Ok(own), Ok(init)) => own != init,
        _ => false,
    }
}

/// The kernel's `enabled` (0 off, 1 on, 2 locked), asked with `AUDIT_GET` on a socket of its
/// own: the same read-only request as `auditctl -s`. Needs `CAP_AUDIT_CONTROL` and the
/// initial pid namespace (EPERM otherwise).
fn status_enabled() -> io::Result<u32> {
    let sock = Socket::new(
        Domain::from(nix::libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_AUDIT)),
    )?;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN);
    req.extend_from_slice(&u32::try_from(NLMSG_HDRLEN).unwrap_or(16).to_ne_bytes());
    req.extend_from_slice(&AUDIT_GET.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    (&sock).write_all(&req)?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = vec![0; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let n = (&sock).read(&mut buf)?;
        let msg = &buf[..n];
        match u16_at(msg, 4) {
            // nlmsgerr: a negative errno (0 is an acknowledgement).
            Some(NLMSG_ERROR) => match u32_at(msg, NLMSG_HDRLEN) {
                Some(0) => {}
                Some(e) => {
                    let errno = i32::from_ne_bytes(e.to_ne_bytes());
                    return Err(io::Error::from_raw_os_error(errno.saturating_neg()));
                }
                None => return Err(io::Error::from(io::ErrorKind::InvalidData)),
            },
            // audit_status: mask, enabled, …
            Some(AUDIT_GET) => {
                return u32_at(msg, NLMSG_HDRLEN + 4)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData));
            }
            _ => {}
        }
    }
}

/// Whether a process named `auditd` runs (it turns auditing on when it starts).
fn auditd_runs(proc: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(proc) else {
        return false;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|e| {
            std::fs::read(e.path().join("comm")).is_ok_and(|c| c.trim_ascii_end() == b"auditd")
        })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Backend for AuditNetlink {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn read(&mut self, out: &mut Vec<Raw>, timeout: Duration) -> io::Result<()> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        // Drain what is queued (bounded: a steady flood must not starve the caller).
        for _ in 0..4096 {
            match (&self.sock).read(&mut self.buf) {
                Ok(n) => {
                    let now = self.now_ms();
                    self.events.push(&self.buf[..n], now, out);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The buffer overflowed: records were dropped, how many is unknown.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => out.push(Raw::Lost(0)),
                Err(e) => return Err(e),
            }
        }
        let now = self.now_ms();
        self.events.expire(now, out);
        Ok(())
    }
}

/// The record type and text of one datagram (one netlink message, as the multicast group
/// sends them), or `None` when it is too short.
pub fn record(datagram: &[u8]) -> Option<(u16, &[u8])> {
    let len = usize::try_from(u32_at(datagram, 0)?).ok()?;
    let kind = u16_at(datagram, 4)?;
    // Multicast copies carry the right length; tolerate one that does not fit.
    let end = if (NLMSG_HDRLEN..=datagram.len()).contains(&len) {
        len
    } else {
        datagram.len()
    };
    let body = datagram.get(NLMSG_HDRLEN..end)?;
    let body = match body.iter().position(|&b| b == 0) {
        Some(nul) => &body[..nul],
        None => body,
    };
    Some((kind, body))
}

/// Splits `audit(1733480000.123:4567): fields` into the serial and the fields.
pub fn header(text: &[u8]) -> Option<(u64, &[u8])> {
    let rest = text.strip_prefix(b"audit(")?;
    let close = rest.iter().position(|&b| b == b')')?;
    let (stamp, rest) = rest.split_at(close);
    let colon = stamp.iter().position(|&b| b == b':')?;
    let serial = std::str::from_utf8(&stamp[colon + 1..])
        .ok()?
        .parse()
        .ok()?;
    let fields = rest.strip_prefix(b"):")?;
    Some((serial, fields))
}

/// One `key=value` of a record. A quoted value's quotes are removed (`quoted` says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name.
    pub key: &'a [u8],
    /// The value, without quotes.
    pub value: &'a [u8],
    /// Whether it was quoted.
    pub quoted: bool,
}

/// The fields of a record's text, in order. A quoted value runs to the next quote, so nothing
/// inside it is read as a field; words without `=` are skipped.
pub fn fields(text: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            while text.get(at) == Some(&b' ') {
                at += 1;
            }
            if at >= text.len() {
                return None;
            }
            let word = &text[at..];
            let key_end = word.iter().position(|&b| b == b'=' || b == b' ');
            match key_end {
                Some(k) if word[k] == b'=' => {
                    let key = &word[..k];
                    let rest = &word[k + 1..];
                    if let Some(inner) = rest.strip_prefix(b"\"") {
                        if let Some(close) = inner.iter().position(|&b| b == b'"') {
                            at += k + 2 + close + 1;
                            return Some(Field {
                                key,
                                value: &inner[..close],
                                quoted: true,
                            });
                        }
                        // An unterminated quote (a cut record): the rest, quote included, as an
                        // unquoted value, which no string decodes.
                        at = text.len();
                        return Some(Field {
                            key,
                            value: rest,
                            quoted: false,
                        });
                    }
                    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
                    at += k + 1 + end;
                    return Some(Field {
                        key,
                        value: &rest[..end],
                        quoted: false,
                    });
                }
                // A word without `=` (part of an unquoted value with blanks, e.g. an
                // AppArmor label): skipped.
                Some(k) => at += k,
                None => return None,
            }
        }
    })
}

/// A string value: quoted as is, unquoted hex-decoded; `None` for `(null)`, `(none)` and
/// anything else unquoted that is not hex.
pub fn string_value(f: &Field<'_>) -> Option<Vec<u8>> {
    if f.quoted {
        Some(f.value.to_vec())
    } else {
        unhex(f.value)
    }
}

/// Decodes upper- or lower-case hex; `None` if odd-length or not hex.
pub fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|p| {
            let hi = char::from(p[0]).to_digit(16)?;
            let lo = char::from(p[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// Whether (`arch`, `syscall`) of a SYSCALL record is `execve` or `execveat`. The record says
/// which ABI made the call, so 32-bit processes on a 64-bit kernel are told apart.
pub fn is_exec_syscall(arch: u32, nr: u64) -> bool {
    const X32: u64 = 0x4000_0000;
    match arch {
        // x86_64 (and its x32 ABI, numbers with bit 30 set)
        0xc000_003e => matches!(nr, 59 | 322) || nr == X32 + 520 || nr == X32 + 545,
        // i386
        0x4000_0003 => matches!(nr, 11 | 358),
        // aarch64, riscv64 (the generic table)
        0xc000_00b7 | 0xc000_00f3 => matches!(nr, 221 | 281),
        // arm (EABI)
        0x4000_0028 => matches!(nr, 11 | 387),
        _ => false,
    }
}

/// The kernel names a pty slave `pts3` (`tty->name`); /dev and ps spell it `pts/3`.
fn tty_name(name: &[u8]) -> Option<String> {
    if name == b"(none)" || name.is_empty() {
        return None;
    }
    let name = String::from_utf8_lossy(name);
    Some(match name.strip_prefix("pts") {
        Some(n) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => format!("pts/{n}"),
        _ => name.into_owned(),
    })
}

fn number<T: std::str::FromStr>(f: &Field<'_>) -> Option<T> {
    if f.quoted {
        return None;
    }
    std::str::from_utf8(f.value).ok()?.parse().ok()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What the SYSCALL record says of an exec.
#[derive(Debug, Clone, Default)]
struct Syscall {
    exec_ok: bool,
    pid: Option<u32>,
    ppid: Option<u32>,
    uid: Option<u32>,
    euid: Option<u32>,
    tty: Option<String>,
    exe: Option<String>,
}

fn parse_syscall(text: &[u8]) -> Syscall {
    let mut s = Syscall::default();
    let (mut arch, mut nr, mut success) = (None, None, None);
    let mut seen: Vec<&[u8]> = Vec::new();
    for f in fields(text) {
        // The first occurrence of a field is the kernel's.
        if seen.contains(&f.key) {
            continue;
        }
        seen.push(f.key);
        match f.key {
            b"arch" => {
                arch = std::str::from_utf8(f.value)
                    .ok()
                    .and_then(|a| u32::from_str_radix(a, 16).ok());
            }
            b"syscall" => nr = number::<u64>(&f),
            b"success" => success = Some(!f.quoted && f.value == b"yes"),
            b"pid" => s.pid = number(&f),
            b"ppid" => s.ppid = number(&f),
            b"uid" => s.uid = number(&f),
            b"euid" => s.euid = number(&f),
            b"tty" if !f.quoted => s.tty = tty_name(f.value),
            b"exe" => {
                s.exe = string_value(&f)
                    .filter(|e| !e.is_empty() && e.len() <= PATH_MAX)
                    .map(|e| lossy(&e));
            }
            _ => {}
        }
    }
    s.exec_ok = success == Some(true)
        && matches!((arch, nr), (Some(a), Some(n)) if is_exec_syscall(a, n))
        && s.pid.is_some();
    s
}

/// argv as the EXECVE records give it, in order: `a0="…"`, `a1=HEX`, or a long argument in
/// chunks (`a1_len=N a1[0]=… a1[1]=…`), possibly over several records. Kept as
/// `/proc/<pid>/cmdline` would be (each argument NUL-terminated), at most [`ARGV_MAX`] + 1
/// bytes; anything out of order or undecodable marks it broken.
#[derive(Debug, Clone, Default)]
struct ArgvBuf {
    raw: Vec<u8>,
    argc: Option<u64>,
    /// Arguments started.
    next: u64,
    /// The chunked argument in progress, and its next chunk.
    chunk: Option<(u64, u64)>,
    seen: bool,
    broken: bool,
}

impl ArgvBuf {
    fn append(&mut self, bytes: &[u8]) {
        let room = (ARGV_MAX + 1).saturating_sub(self.raw.len());
        self.raw.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Starts argument `n`: the previous one ends.
    fn start(&mut self, n: u64) -> bool {
        if n != self.next {
            return false;
        }
        if n > 0 {
            self.append(&[0]);
        }
        self.next += 1;
        self.chunk = None;
        true
    }

    fn record(&mut self, text: &[u8]) {
        self.seen = true;
        for f in fields(text) {
            if self.broken {
                return;
            }
            if f.key == b"argc" {
                if self.argc.is_some() || self.next > 0 {
                    self.broken = true;
                }
                self.argc = number(&f);
                continue;
            }
            let Some(name) = f.key.strip_prefix(b"a") else {
                continue;
            };
            if name.ends_with(b"_len") {
                continue;
            }
            let (n, part) = match name.iter().position(|&b| b == b'[') {
                Some(open) => (
                    &name[..open],
                    name[open + 1..].strip_suffix(b"]").and_then(parse_u64),
                ),
                None => (name, None),
            };
            let Some(n) = parse_u64(n) else {
                continue;
            };
            let Some(value) = string_value(&f) else {
                self.broken = true;
                return;
            };
            let ok = match (name.contains(&b'['), part) {
                (false, _) => self.start(n),
                (true, Some(0)) => {
                    self.start(n) && {
                        self.chunk = Some((n, 1));
                        true
                    }
                }
                (true, Some(i)) if self.chunk == Some((n, i)) => {
                    self.chunk = Some((n, i.saturating_add(1)));
                    true
                }
                _ => false,
            };
            if !ok {
                self.broken = true;
                return;
            }
            self.append(&value);
        }
    }

    fn argv(&self) -> (Vec<String>, Argv) {
        if !self.seen {
            return (Vec::new(), Argv::Unread);
        }
        if self.next == 0 {
            let state = if self.broken || self.argc.is_some_and(|c| c > 0) {
                Argv::Truncated
            } else {
                Argv::Complete
            };
            return (Vec::new(), state);
        }
        let mut raw = self.raw.clone();
        if raw.len() <= ARGV_MAX {
            raw.push(0);
        }
        let (argv, state) = split_argv(&raw);
        let whole = !self.broken && self.argc == Some(self.next);
        (argv, if whole { state } else { Argv::Truncated })
    }
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// One audit event being assembled.
#[derive(Debug, Clone)]
struct Group {
    serial: u64,
    /// When its first record arrived (ms, the caller's clock).
    since_ms: u64,
    syscall: Option<Syscall>,
    argv: ArgvBuf,
    cwd: Option<String>,
}

impl Group {
    /// Whether it is known not to be a successful exec (its records are then skipped).
    fn ignored(&self) -> bool {
        self.syscall.as_ref().is_some_and(|s| !s.exec_ok)
    }

    fn exec(self) -> Option<Exec> {
        let s = self.syscall?;
        let pid = s.pid.filter(|_| s.exec_ok)?;
        let (argv, argv_state) = self.argv.argv();
        Some(Exec {
            pid,
            ppid: s.ppid,
            uid: s.uid,
            euid: s.euid,
            tty: s.tty,
            filename: s.exe,
            argv,
            argv_state,
            cwd: self.cwd,
            kernel_ns: None,
        })
    }
}

/// Audit records grouped into exec events, with bounded memory.
#[derive(Debug, Default)]
pub struct Events {
    open: VecDeque<Group>,
}

impl Events {
    /// Takes one datagram received at `now_ms` (any monotonic clock); appends the execs it
    /// completes, and those of events it pushes out, to `out`.
    pub fn push(&mut self, datagram: &[u8], now_ms: u64, out: &mut Vec<Raw>) {
        if let Some((kind, text)) = record(datagram) {
            self.record(kind, text, now_ms, out);
        }
        self.expire(now_ms, out);
    }

    /// Takes one record's type and text.
    pub fn record(&mut self, kind: u16, text: &[u8], now_ms: u64, out: &mut Vec<Raw>) {
        if !matches!(kind, AUDIT_SYSCALL | AUDIT_EXECVE | AUDIT_CWD | AUDIT_EOE) {
            return;
        }
        let Some((serial, body)) = header(text) else {
            return;
        };
        let at = self.open.iter().position(|g| g.serial == serial);
        if kind == AUDIT_EOE {
            if let Some(g) = at.and_then(|i| self.open.remove(i)) {
                emit(g, out);
            }
            return;
        }
        let i = match at {
            Some(i) => i,
            None => {
                if self.open.len() >= MAX_OPEN
                    && let Some(oldest) = self.open.pop_front()
                {
                    emit(oldest, out);
                }
                self.open.push_back(Group {
                    serial,
                    since_ms: now_ms,
                    syscall: None,
                    argv: ArgvBuf::default(),
                    cwd: None,
                });
                self.open.len() - 1
            }
        };
        let Some(g) = self.open.get_mut(i) else {
            return;
        };
        if g.ignored() {
            return;
        }
        match kind {
            AUDIT_SYSCALL if g.syscall.is_none() => {
                let s = parse_syscall(body);
                if !s.exec_ok {
                    // Not ours: forget what came before it; skip what follows.
                    g.argv = ArgvBuf::default();
                    g.cwd = None;
                }
                g.syscall = Some(s);
            }
            AUDIT_EXECVE => g.argv.record(body),
            AUDIT_CWD if g.cwd.is_none() => {
                g.cwd = fields(body)
                    .find(|f| f.key == b"cwd")
                    .and_then(|f| string_value(&f))
                    .filter(|c| !c.is_empty() && c.len() <= PATH_MAX)
                    .map(|c| lossy(&c));
            }
            _ => {}
        }
    }

    /// Closes the events older than [`MAX_AGE_MS`] at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Raw>) {
        while let Some(g) = self.open.front() {
            if now_ms.saturating_sub(g.since_ms) < MAX_AGE_MS {
                // Groups open in arrival order, so the rest are younger.
                break;
            }
            if let Some(g) = self.open.pop_front() {
                emit(g, out);
            }
        }
    }

    /// Events open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

fn emit(g: Group, out: &mut Vec<Raw>) {
    if let Some(e) = g.exec() {
        out.push(Raw::Exec(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One multicast datagram: a netlink header and the record's text.
    fn datagram(kind: u16, text: &str) -> Vec<u8> {
        let len = u32::try_from(NLMSG_HDRLEN + text.len()).unwrap();
        let mut d = Vec::new();
        d.extend_from_slice(&len.to_ne_bytes());
        d.extend_from_slice(&kind.to_ne_bytes());
        d.extend_from_slice(&0u16.to_ne_bytes());
        d.extend_from_slice(&0u32.to_ne_bytes());
        d.extend_from_slice(&0u32.to_ne_bytes());
        d.extend_from_slice(text.as_bytes());
        d
    }

    fn run(records: &[(u16, &str)]) -> (Vec<Raw>, Events) {
        let mut ev = Events::default();
        let mut out = Vec::new();
        for (kind, text) in records {
            ev.push(&datagram(*kind, text), 0, &mut out);
        }
        (out, ev)
    }

    fn execs(out: &[Raw]) -> Vec<&Exec> {
        out.iter()
            .filter_map(|r| match r {
                Raw::Exec(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    // Captured on Debian 12, kernel 6.18 (records of one exec; PATH and BPRM_FCAPS records
    // trimmed where they add nothing).
    const TRUE: &[(u16, &str)] = &[
        (
            1300,
            "audit(1796553173.645:6): arch=c000003e syscall=59 success=yes exit=0 a0=559f66e57838 a1=559f66e57860 a2=559f66e57870 a3=8 items=2 ppid=4862 pid=4865 auid=4242 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"true\" exe=\"/usr/bin/true\" key=\"ssmc-test\"",
        ),
        (
            1321,
            "audit(1796553173.645:6): fver=0 fp=0 fi=0 fe=0 old_pp=000001fffeffffff old_pi=0 old_pe=000001fffeffffff old_pa=0 pp=000001fffeffffff pi=0 pe=000001fffeffffff pa=0 frootid=0",
        ),
        (1309, "audit(1796553173.645:6): argc=1 a0=\"/bin/true\""),
        (1307, "audit(1796553173.645:6): cwd=\"/work/main\""),
        (
            1302,
            "audit(1796553173.645:6): item=0 name=\"/bin/true\" inode=247857 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
        ),
        (1327, "audit(1796553173.645:6): proctitle=\"/bin/true\""),
        (1320, "audit(1796553173.645:6): "),
    ];

    // `/bin/echo "hello world" 'quote"d' 'a=b c=d' plain "" last`
    const ECHO: &[(u16, &str)] = &[
        (
            1300,
            "audit(1796553173.649:7): arch=c000003e syscall=59 success=yes exit=0 a0=559f66e57998 a1=559fa1efca28 a2=559fa1efccf8 a3=8 items=2 ppid=4862 pid=4866 auid=4242 uid=1000 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"echo\" exe=\"/usr/bin/echo\" key=\"ssmc-test\"",
        ),
        (
            1309,
            "audit(1796553173.649:7): argc=7 a0=\"/bin/echo\" a1=68656C6C6F20776F726C64 a2=71756F74652264 a3=613D6220633D64 a4=\"plain\" a5=\"\" a6=\"last\"",
        ),
        (1307, "audit(1796553173.649:7): cwd=\"/work/main\""),
        (
            1327,
            "audit(1796553173.649:7): proctitle=2F62696E2F6563686F0068656C6C6F20776F726C640071756F7465226400613D6220633D6400706C61696E00006C617374",
        ),
        (1320, "audit(1796553173.649:7): "),
    ];

    // `cd "/tmp/acap/dir with space" && "./tr ue" x 'key=val exe="/evil"'`: a program and a
    // directory with blanks (hex-encoded), an argument that looks like fields.
    const HOSTILE: &[(u16, &str)] = &[
        (
            1300,
            "audit(1796553173.649:8): arch=c000003e syscall=59 success=yes exit=0 a0=559f66e579c8 a1=559fa1efc9f8 a2=559fa1efca18 a3=8 items=2 ppid=4862 pid=4867 auid=4242 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=7472207565 exe=2F746D702F616361702F64697220776974682073706163652F7472207565 key=\"ssmc-test\"",
        ),
        (
            1309,
            "audit(1796553173.649:8): argc=3 a0=2E2F7472207565 a1=\"x\" a2=6B65793D76616C206578653D222F6576696C22",
        ),
        (
            1307,
            "audit(1796553173.649:8): cwd=2F746D702F616361702F6469722077697468207370616365",
        ),
        (
            1327,
            "audit(1796553173.649:8): proctitle=2E2F74722075650078006B65793D76616C206578653D222F6576696C22",
        ),
        (1320, "audit(1796553173.649:8): "),
    ];

    // A failed exec (ENOENT): no EXECVE record.
    const FAILED: &[(u16, &str)] = &[
        (
            1300,
            "audit(1796553173.721:14): arch=c000003e syscall=59 success=no exit=-2 a0=559f66e57898 a1=559f66e578c8 a2=559fa1f03998 a3=8 items=1 ppid=4862 pid=4876 auid=4242 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"workload.sh\" exe=\"/usr/bin/dash\" key=\"ssmc-test\"",
        ),
        (1307, "audit(1796553173.721:14): cwd=\"/tmp\""),
        (
            1327,
            "audit(1796553173.721:14): proctitle=2F62696E2F7368002F746D702F616361702F776F726B6C6F61642E7368",
        ),
        (1320, "audit(1796553173.721:14): "),
    ];

    // fexecve() from Python: execveat(fd, "", …, AT_EMPTY_PATH). Its PROCTITLE is the old
    // program's (cached by the kernel after the failed attempts before it).
    const EXECVEAT: &[(u16, &str)] = &[
        (
            1300,
            "audit(1796553174.021:252): arch=c000003e syscall=322 success=yes exit=0 a0=3 a1=7f242d9b4dd5 a2=7f242d73b890 a3=7f242d7a4700 items=2 ppid=4862 pid=4877 auid=4242 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"echo\" exe=\"/usr/bin/echo\" key=\"ssmc-test\"",
        ),
        (
            1309,
            "audit(1796553174.021:252): argc=2 a0=\"echo\" a1=\"via-execveat\"",
        ),
        (1307, "audit(1796553174.021:252): cwd=\"/tmp\""),
        (
            1327,
            "audit(1796553174.021:252): proctitle=2F7573722F62696E2F656E760062617368002F726F6F742F2E7079656E762F7368696D732F707974686F6E33",
        ),
        (1320, "audit(1796553174.021:252): "),
    ];

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_exec_from_real_records() {
        let (out, ev) = run(TRUE);
        assert!(ev.is_empty());
        assert_eq!(
            out,
            vec![Raw::Exec(Exec {
                pid: 4865,
                ppid: Some(4862),
                uid: Some(0),
                euid: Some(0),
                tty: None,
                filename: Some("/usr/bin/true".into()),
                argv: strings(&["/bin/true"]),
                argv_state: Argv::Complete,
                cwd: Some("/work/main".into()),
                kernel_ns: None,
            })]
        );
    }

    #[test]
    fn hex_and_quoted_arguments_and_the_tty() {
        let (out, _) = run(ECHO);
        let e = execs(&out);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].argv,
            strings(&[
                "/bin/echo",
                "hello world",
                "quote\"d",
                "a=b c=d",
                "plain",
                "",
                "last"
            ])
        );
        assert_eq!(e[0].argv_state, Argv::Complete);
        assert_eq!(e[0].tty.as_deref(), Some("pts/0"));
        assert_eq!((e[0].uid, e[0].euid), (Some(1000), Some(0)));
    }

    #[test]
    fn hostile_names_are_decoded_not_parsed() {
        let (out, _) = run(HOSTILE);
        let e = execs(&out);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].filename.as_deref(),
            Some("/tmp/acap/dir with space/tr ue")
        );
        assert_eq!(e[0].cwd.as_deref(), Some("/tmp/acap/dir with space"));
        assert_eq!(
            e[0].argv,
            strings(&["./tr ue", "x", "key=val exe=\"/evil\""])
        );
    }

    #[test]
    fn a_key_inside_a_quoted_value_is_not_a_field() {
        // Not what the kernel writes (it hex-encodes blanks), but a tokenizer must not care.
        let f: Vec<_> = fields(b"comm=\"a pid=1 exe=/evil\" pid=7 exe=\"/bin/x\"").collect();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].value, b"a pid=1 exe=/evil");
        assert_eq!((f[1].key, f[1].value), (&b"pid"[..], &b"7"[..]));
        // And a repeated field after an unquoted value with a blank is not taken.
        let s = parse_syscall(
            b"arch=c000003e syscall=59 success=yes ppid=1 pid=10 uid=5 euid=5 tty=pts1 exe=\"/bin/ok\" subj=label (enforce) pid=99 exe=\"/evil\"",
        );
        assert!(s.exec_ok);
        assert_eq!((s.pid, s.exe.as_deref()), (Some(10), Some("/bin/ok")));
    }

    #[test]
    fn control_bytes_and_invalid_utf8_survive() {
        let (out, _) = run(&[
            (
                1300,
                "audit(1796553173.717:13): arch=c000003e syscall=59 success=yes exit=0 items=2 ppid=4862 pid=4875 auid=4242 uid=0 gid=0 euid=0 tty=(none) ses=1 comm=\"echo\" exe=\"/usr/bin/echo\" key=\"ssmc-test\"",
            ),
            (
                1309,
                "audit(1796553173.717:13): argc=2 a0=\"/bin/echo\" a1=74616209686572650A6E6C0163746CFF6869",
            ),
            (1320, "audit(1796553173.717:13): "),
        ]);
        let e = execs(&out);
        assert_eq!(e[0].argv[1], "tab\there\nnl\u{1}ctl\u{FFFD}hi");
        assert_eq!(e[0].argv_state, Argv::Complete);
    }

    #[test]
    fn failures_and_other_syscalls_are_left_out_and_execveat_is_in() {
        let (out, ev) = run(FAILED);
        assert!(out.is_empty());
        assert!(ev.is_empty());
        let (out, _) = run(EXECVEAT);
        let e = execs(&out);
        assert_eq!(e[0].argv, strings(&["echo", "via-execveat"]));
        assert_eq!(e[0].filename.as_deref(), Some("/usr/bin/echo"));
        // A write(2) audited because it set the login uid.
        let (out, _) = run(&[
            (
                1300,
                "audit(1796553173.633:2): arch=c000003e syscall=1 success=yes exit=5 a0=1 a1=56537a5b8ca0 a2=5 a3=0 items=0 ppid=4802 pid=4862 auid=4242 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"sh\" exe=\"/usr/bin/dash\" key=(null)",
            ),
            (1320, "audit(1796553173.633:2): "),
        ]);
        assert!(out.is_empty());
        // execve numbers of other ABIs.
        assert!(is_exec_syscall(0x4000_0003, 11));
        assert!(is_exec_syscall(0xc000_00b7, 221) && is_exec_syscall(0xc000_00b7, 281));
        assert!(!is_exec_syscall(0xc000_00b7, 59));
        assert!(!is_exec_syscall(0xc000_003e, 11));
    }

    #[test]
    fn interleaved_events_are_kept_apart() {
        // Two events' records alternating (two CPUs), the second closing first.
        let mut mixed = Vec::new();
        for (a, b) in TRUE.iter().zip(ECHO.iter()) {
            mixed.push(*a);
            mixed.push(*b);
        }
        let tail_a: Vec<_> = TRUE[ECHO.len()..].to_vec();
        mixed.extend(tail_a);
        let (out, ev) = run(&mixed);
        assert!(ev.is_empty());
        let e = execs(&out);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].pid, e[0].argv.len()), (4866, 7));
        assert_eq!(e[0].cwd.as_deref(), Some("/work/main"));
        assert_eq!((e[1].pid, e[1].argv.len()), (4865, 1));
    }

    #[test]
    fn a_long_argument_in_chunks_over_records() {
        // As captured for a 10,000-byte argument: a1_len counts hex digits.
        let x = "78".repeat(3700);
        let r1 =
            format!("audit(1796553173.677:10): argc=3 a0=\"/bin/echo\" a1_len=20000 a1[0]={x}");
        let r2 = format!("audit(1796553173.677:10):  a1[1]={x}");
        let r3 = format!(
            "audit(1796553173.677:10):  a1[2]={} a2=\"end\"",
            "78".repeat(2600)
        );
        let sys = "audit(1796553173.677:10): arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=2 uid=0 euid=0 tty=(none) exe=\"/usr/bin/echo\"";
        let (out, _) = run(&[
            (1300, sys),
            (1309, &r1),
            (1309, &r2),
            (1309, &r3),
            (1320, "audit(1796553173.677:10): "),
        ]);
        let e = execs(&out);
        assert_eq!(e[0].argv_state, Argv::Truncated);
        assert_eq!(e[0].argv[0], "/bin/echo");
        // Cut at ARGV_MAX bytes, separators included.
        let kept: usize = e[0].argv.iter().map(|a| a.len() + 1).sum::<usize>() - 1;
        assert_eq!(kept, ARGV_MAX);
        assert!(e[0].argv[1].bytes().all(|b| b == b'x'));

        // A short one in chunks is whole.
        let (out, _) = run(&[
            (1300, sys),
            (
                1309,
                "audit(1796553173.677:10): argc=2 a0=\"/bin/echo\" a1_len=6 a1[0]=6162",
            ),
            (1309, "audit(1796553173.677:10):  a1[1]=\"cd\" a1[2]=6566"),
            (1320, "audit(1796553173.677:10): "),
        ]);
        let e = execs(&out);
        assert_eq!(e[0].argv, strings(&["/bin/echo", "abcdef"]));
        assert_eq!(e[0].argv_state, Argv::Complete);
    }

    #[test]
    fn many_arguments_over_records() {
        let sys = "audit(5.0:12): arch=c000003e syscall=59 success=yes ppid=1 pid=2 exe=\"/usr/bin/echo\"";
        let mut recs = Vec::new();
        let mut first = "audit(5.0:12): argc=1201 a0=\"/bin/echo\"".to_string();
        for i in 1..=500 {
            first.push_str(&format!(" a{i}=\"arg{i:04}\""));
        }
        recs.push(first);
        for range in [501..995, 995..1201] {
            let mut r = "audit(5.0:12): ".to_string();
            for i in range {
                r.push_str(&format!(" a{i}=\"arg{i:04}\""));
            }
            recs.push(r);
        }
        let mut all = vec![(1300, sys)];
        all.extend(recs.iter().map(|r| (1309, r.as_str())));
        all.push((1320, "audit(5.0:12): "));
        let (out, _) = run(&all);
        let e = execs(&out);
        // 4096 bytes: "/bin/echo" then 511 × 8 bytes … cut inside an argument.
        assert_eq!(e[0].argv_state, Argv::Truncated);
        assert_eq!(e[0].argv[1], "arg0001");
        assert_eq!(e[0].argv[500], "arg0500");

        // Fewer than 100 of them is whole; a lost middle record shows as truncated.
        let mut r = "audit(5.0:12): argc=3 a0=\"/bin/echo\"".to_string();
        r.push_str(" a1=\"x\"");
        let (out, _) = run(&[
            (1300, sys),
            (1309, &r),
            (1309, "audit(5.0:12):  a2=\"y\""),
            (1320, "audit(5.0:12): "),
        ]);
        assert_eq!(execs(&out)[0].argv, strings(&["/bin/echo", "x", "y"]));
        assert_eq!(execs(&out)[0].argv_state, Argv::Complete);
        let (out, _) = run(&[
            (1300, sys),
            (1309, &r),
            (1309, "audit(5.0:12):  a3=\"z\""),
            (1320, "audit(5.0:12): "),
        ]);
        assert_eq!(execs(&out)[0].argv, strings(&["/bin/echo", "x"]));
        assert_eq!(execs(&out)[0].argv_state, Argv::Truncated);
    }

    #[test]
    fn missing_records_and_garbage() {
        let sys = TRUE[0];
        // No EXECVE: argv unread (the caller reads /proc), not PROCTITLE's.
        let (out, _) = run(&[sys, TRUE[5], TRUE[6]]);
        assert_eq!(execs(&out)[0].argv_state, Argv::Unread);
        assert!(execs(&out)[0].argv.is_empty());
        // EXECVE with an undecodable value, or argc short of what came.
        for bad in [
            "audit(1796553173.645:6): argc=2 a0=\"/bin/true\" a1=XYZ",
            "audit(1796553173.645:6): argc=2 a0=\"/bin/true\" a1=ABC",
            "audit(1796553173.645:6): argc=3 a0=\"/bin/true\" a1=\"x\"",
            "audit(1796553173.645:6): argc=1 a1=\"skip0\"",
            "audit(1796553173.645:6): argc=1 a0[1]=41",
            "audit(1796553173.645:6): argc=1 a0=\"/bin/tr",
        ] {
            let (out, _) = run(&[sys, (1309, bad), TRUE[6]]);
            assert_eq!(execs(&out)[0].argv_state, Argv::Truncated, "{bad}");
        }
        // Garbled datagrams: nothing, and no panic.
        let mut ev = Events::default();
        let mut out = Vec::new();
        let whole = datagram(1300, TRUE[0].1);
        for cut in 0..whole.len() {
            ev.push(&whole[..cut], 0, &mut out);
        }
        for text in [
            "audit(",
            "audit(1.2:",
            "audit(1.2:x): a",
            "audit(1.2:3)",
            "audit(1.2:3): =",
            "audit(1.2:3): ==\"",
            "audit(1.2:3): a=\"",
            "audit(1.2:3): argc=1 a0",
            "audit(1.2:3): a18446744073709551616=\"x\" a0[18446744073709551616]=41",
            "garbage",
            "",
        ] {
            for kind in [1300, 1309, 1307, 1320] {
                ev.push(&datagram(kind, text), 0, &mut out);
            }
        }
        // A cut SYSCALL record still opened event 6; close it by age.
        ev.expire(MAX_AGE_MS, &mut out);
        assert!(ev.is_empty());
        for e in execs(&out) {
            assert!(e.pid > 0);
        }
        // A datagram whose netlink length is wrong: the bytes received are used.
        let mut d = datagram(1320, "audit(1.2:3): ");
        d[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(record(&d), Some((1320, &b"audit(1.2:3): "[..])));
    }

    #[test]
    fn memory_is_bounded_by_age_and_count() {
        let mut ev = Events::default();
        let mut out = Vec::new();
        // Events without EOE (lost): each one an exec with its argv.
        for serial in 0..(u64::try_from(MAX_OPEN).unwrap() + 10) {
            let sys = format!(
                "audit(1.0:{serial}): arch=c000003e syscall=59 success=yes ppid=1 pid={} exe=\"/bin/x\"",
                serial + 100
            );
            let argv = format!("audit(1.0:{serial}): argc=1 a0=\"x{serial}\"");
            ev.push(&datagram(1300, &sys), 0, &mut out);
            ev.push(&datagram(1309, &argv), 0, &mut out);
        }
        assert_eq!(ev.len(), MAX_OPEN);
        assert_eq!(execs(&out).len(), 10);
        assert_eq!(execs(&out)[0].argv, strings(&["x0"]));
        ev.expire(MAX_AGE_MS - 1, &mut out);
        assert_eq!(ev.len(), MAX_OPEN);
        ev.expire(MAX_AGE_MS, &mut out);
        assert!(ev.is_empty());
        assert_eq!(execs(&out).len(), MAX_OPEN + 10);
        // A late EOE for an expired event is ignored.
        ev.push(&datagram(1320, "audit(1.0:0): "), 2000, &mut out);
        assert_eq!(execs(&out).len(), MAX_OPEN + 10);
    }

    #[test]
    fn tty_names() {
        assert_eq!(tty_name(b"pts0").as_deref(), Some("pts/0"));
        assert_eq!(tty_name(b"pts12").as_deref(), Some("pts/12"));
        assert_eq!(tty_name(b"tty1").as_deref(), Some("tty1"));
        assert_eq!(tty_name(b"ptsx").as_deref(), Some("ptsx"));
        assert_eq!(tty_name(b"(none)"), None);
    }

    /// The hand check: `SSMC_AUDIT_LIVE=<seconds>` prints the execs seen (needs root and
    /// rules set up beforehand; this test never changes the kernel's audit state).
    #[test]
    fn live_reader_when_asked() {
        let Ok(secs) = std::env::var("SSMC_AUDIT_LIVE") else {
            return;
        };
        let secs: u64 = secs.parse().unwrap();
        let mut b = AuditNetlink::open().unwrap();
        let end = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while Instant::now() < end {
            b.read(&mut out, Duration::from_millis(200)).unwrap();
        }
        for r in &out {
            println!("LIVE {r:?}");
        }
    }
}
