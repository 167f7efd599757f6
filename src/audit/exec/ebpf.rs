//! The eBPF exec backend: three `tp_btf` programs on `sched_process_{exec,fork,exit}`
//! (bpf/exec.bpf.c, compiled by build.rs and embedded here), loaded by aya with CO-RE
//! relocations against `/sys/kernel/btf/vmlinux`.
//!
//! The kernel side filters: it tracks the processes descending from an exec of
//! `ssm-session-worker` (fork-time lineage, kept in the `tracked` map) and reports only theirs,
//! unless `scope_all`. Everything arrives in one ring buffer, in the order the kernel produced
//! it, so a child's `Fork` always comes before its `Exec` and `Exit`.
//!
//! Nothing is pinned to bpffs: programs, links and maps go away with the process (or on drop).
//! Memory: 4 MiB ring buffer + ~5 MiB preallocated hash map. Kernels >= 5.11 charge it to the
//! memory cgroup; older ones (5.8–5.10) count it against `RLIMIT_MEMLOCK`, which aya raises to
//! infinity only when allowed (`CAP_SYS_RESOURCE`), so a systemd unit for those needs
//! `LimitMEMLOCK=infinity`.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData, MapError, RingBuf};
use aya::programs::{BtfTracePoint, ProgramError};
use aya::{Btf, BtfError, EbpfLoader};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{Argv, Backend, Exec, Raw};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/exec.bpf.o"));

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
/// (program in the object, kernel tracepoint), attached in this order: fork and exit first,
/// so no session child can slip between an exec being tracked and its fork being seen.
const PROGRAMS: [(&str, &str); 3] = [
    ("handle_fork", "sched_process_fork"),
    ("handle_exit", "sched_process_exit"),
    ("handle_exec", "sched_process_exec"),
];

// Record layout: see the comment at the top of bpf/exec.bpf.c.
const KIND_FORK: u32 = 1;
const KIND_EXEC: u32 = 2;
const KIND_EXIT: u32 = 3;
const ARGV_TRUNCATED: u32 = 1;
const ARGV_UNREAD: u32 = 2;
const EXEC_TTY: usize = 32;
const EXEC_FILENAME: usize = 96;
const EXEC_ARGV: usize = 352;

/// Why the eBPF backend cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// No BTF: an old kernel, or one built without it.
    #[error("no BTF at {BTF_PATH} (kernel < 5.8 or built without CONFIG_DEBUG_INFO_BTF)")]
    NoBtf,
    /// The BTF could not be parsed.
    #[error("reading the kernel's BTF at {BTF_PATH} failed: {0}")]
    Btf(#[source] BtfError),
    /// The maps could not be made (privileges, or no ring buffers).
    #[error(
        "creating the BPF maps failed: {0} (needs CAP_BPF and CAP_PERFMON, or root, and a kernel \
         with BPF ring buffers, >= 5.8)"
    )]
    Object(#[source] aya::EbpfError),
    /// The embedded object lacks a part (a build defect).
    #[error("the embedded BPF object has no {0}")]
    Missing(&'static str),
    /// The verifier or the kernel refused a program.
    #[error(
        "loading the BPF program failed: {name}: {source} (needs CAP_BPF and CAP_PERFMON, or root)"
    )]
    Load {
        /// The program.
        name: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// A program could not be attached to its tracepoint.
    #[error("attaching the BPF program {name} failed: {source}")]
    Attach {
        /// The program.
        name: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// A map operation failed.
    #[error("BPF map {name}: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> EbpfError {
    move |source| EbpfError::Map { name, source }
}

/// The loaded and attached programs and their maps. Dropping it detaches everything.
pub struct Ebpf {
    events: RingBuf<MapData>,
    tracked: HashMap<MapData, u32, u8>,
    drops: Array<MapData, u64>,
    drops_seen: u64,
    /// Owns the programs and their links: keep it alive while reading.
    _bpf: aya::Ebpf,
}

impl Ebpf {
    /// Loads and attaches the programs. `scope_all` reports every process on the host instead
    /// of only Session Manager process trees.
    pub fn load(scope_all: bool) -> Result<Ebpf, EbpfError> {
        if !std::path::Path::new(BTF_PATH).exists() {
            return Err(EbpfError::NoBtf);
        }
        let btf = Btf::from_sys_fs().map_err(EbpfError::Btf)?;
        let mut bpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(EbpfError::Object)?;

        let mut config: Array<_, u32> = Array::try_from(
            bpf.map_mut("config")
                .ok_or(EbpfError::Missing("map config"))?,
        )
        .map_err(map_err("config"))?;
        config
            .set(0, u32::from(scope_all), 0)
            .map_err(map_err("config"))?;

        let events = take(&mut bpf, "events", RingBuf::try_from)?;
        let tracked = take(&mut bpf, "tracked", HashMap::try_from)?;
        let drops = take(&mut bpf, "drops", Array::try_from)?;

        for (name, tracepoint) in PROGRAMS {
            let program: &mut BtfTracePoint = bpf
                .program_mut(name)
                .ok_or(EbpfError::Missing("program"))?
                .try_into()
                .map_err(|source| EbpfError::Load { name, source })?;
            program
                .load(tracepoint, &btf)
                .map_err(|source| EbpfError::Load { name, source })?;
            program
                .attach()
                .map_err(|source| EbpfError::Attach { name, source })?;
        }
        Ok(Ebpf {
            events,
            tracked,
            drops,
            drops_seen: 0,
            _bpf: bpf,
        })
    }

    /// Adds a live process to the session trees, so its forks and execs are reported (the
    /// start-up walk of /proc seeds the workers' existing descendants with it).
    pub fn track(&mut self, pid: u32) -> Result<(), EbpfError> {
        self.tracked.insert(pid, 1, 0).map_err(map_err("tracked"))
    }

    /// Removes a process from the session trees (e.g. a seeded PID found gone when the /proc
    /// walk re-checks it: a stale entry would adopt whatever process reuses the PID).
    pub fn untrack(&mut self, pid: u32) -> Result<(), EbpfError> {
        match self.tracked.remove(&pid) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {
                Ok(())
            }
            Err(source) => Err(EbpfError::Map {
                name: "tracked",
                source,
            }),
        }
    }

    /// Appends every record in the ring buffer to `out`.
    fn drain(&mut self, out: &mut Vec<Raw>) {
        while let Some(item) = self.events.next() {
            if let Some(raw) = parse(&item) {
                out.push(raw);
            }
        }
    }
}

fn take<T>(
    bpf: &mut aya::Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, MapError>,
) -> Result<T, EbpfError> {
    let map = bpf.take_map(name).ok_or(EbpfError::Missing("map"))?;
    convert(map).map_err(map_err(name))
}

impl Backend for Ebpf {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn seed(&mut self, pids: &mut dyn Iterator<Item = u32>) -> io::Result<()> {
        for pid in pids {
            self.track(pid)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    fn read(&mut self, out: &mut Vec<Raw>, timeout: Duration) -> io::Result<()> {
        let before = out.len();
        self.drain(out);
        if out.len() == before && !timeout.is_zero() {
            // Round up, so a sub-millisecond timeout doesn't turn into a busy loop.
            let ms = timeout.as_micros().div_ceil(1000);
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.events.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
            self.drain(out);
        }
        // The counter only grows; read it after draining so a gap follows the records before it.
        let drops = self
            .drops
            .get(&0, 0)
            .map_err(|e| io::Error::other(format!("reading the BPF drops counter: {e}")))?;
        if drops > self.drops_seen {
            out.push(Raw::Lost(drops - self.drops_seen));
            self.drops_seen = drops;
        }
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The bytes before the first NUL (all of them without one), as lossy UTF-8; None when empty.
fn c_string(b: &[u8]) -> Option<String> {
    let b = b.split(|&c| c == 0).next().unwrap_or_default();
    (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned())
}

/// The kernel names a pty slave "pts3" (tty->name); /dev and ps spell it "pts/3".
fn tty_name(name: String) -> String {
    match name.strip_prefix("pts") {
        Some(n) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => format!("pts/{n}"),
        _ => name,
    }
}

/// The wait status as a shell shows it: the exit status, or 128 + the signal.
fn exit_code(status: u32) -> i32 {
    let status = i32::from_ne_bytes(status.to_ne_bytes());
    if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    }
}

fn parse(b: &[u8]) -> Option<Raw> {
    match u32_at(b, 0)? {
        KIND_FORK => Some(Raw::Fork {
            parent: u32_at(b, 4)?,
            child: u32_at(b, 8)?,
        }),
        KIND_EXIT => Some(Raw::Exit {
            pid: u32_at(b, 4)?,
            code: Some(exit_code(u32_at(b, 8)?)),
        }),
        KIND_EXEC => {
            let flags = u32_at(b, 20)?;
            let argv_len = usize::try_from(u32_at(b, 24)?).ok()?;
            let argv = b.get(EXEC_ARGV..EXEC_ARGV.checked_add(argv_len)?)?;
            // NUL-separated and NUL-terminated; a truncated buffer ends inside an argument.
            let argv = argv.strip_suffix(&[0]).unwrap_or(argv);
            let argv = if argv.is_empty() {
                Vec::new()
            } else {
                argv.split(|&c| c == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            };
            let argv_state = if flags & ARGV_UNREAD != 0 {
                Argv::Unread
            } else if flags & ARGV_TRUNCATED != 0 {
                Argv::Truncated
            } else {
                Argv::Complete
            };
            Some(Raw::Exec(Exec {
                pid: u32_at(b, 4)?,
                ppid: Some(u32_at(b, 8)?),
                uid: Some(u32_at(b, 12)?),
                euid: Some(u32_at(b, 16)?),
                tty: c_string(b.get(EXEC_TTY..EXEC_FILENAME)?).map(tty_name),
                filename: c_string(b.get(EXEC_FILENAME..EXEC_ARGV)?),
                argv,
                argv_state,
                cwd: None,
                kernel_ns: None,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_record(tty: &str, argv: &[u8], flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; EXEC_ARGV];
        for (i, v) in [KIND_EXEC, 42, 41, 1000, 0, flags].into_iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b[24..28].copy_from_slice(&u32::try_from(argv.len()).unwrap_or(0).to_ne_bytes());
        b[EXEC_TTY..EXEC_TTY + tty.len()].copy_from_slice(tty.as_bytes());
        b[EXEC_FILENAME..EXEC_FILENAME + 9].copy_from_slice(b"/bin/true");
        b.extend_from_slice(argv);
        b
    }

    #[test]
    fn parses_exec() {
        let raw = parse(&exec_record("pts3", b"/bin/true\0a b\0\0", 0));
        assert_eq!(
            raw,
            Some(Raw::Exec(Exec {
                pid: 42,
                ppid: Some(41),
                uid: Some(1000),
                euid: Some(0),
                tty: Some("pts/3".into()),
                filename: Some("/bin/true".into()),
                argv: vec!["/bin/true".into(), "a b".into(), String::new()],
                argv_state: Argv::Complete,
                cwd: None,
                kernel_ns: None,
            }))
        );
        let exec = |b: Vec<u8>| match parse(&b) {
            Some(Raw::Exec(e)) => (e.tty, e.argv, e.argv_state),
            _ => (None, Vec::new(), Argv::Complete),
        };
        assert_eq!(
            exec(exec_record("", b"/bin/tr", ARGV_TRUNCATED)),
            (None, vec!["/bin/tr".to_owned()], Argv::Truncated)
        );
        assert_eq!(
            exec(exec_record("tty1", b"", ARGV_UNREAD)),
            (Some("tty1".to_owned()), Vec::new(), Argv::Unread)
        );
        // A record cut short is dropped, not misread.
        assert_eq!(parse(&exec_record("", b"abc", 0)[..EXEC_ARGV + 1]), None);
    }

    #[test]
    fn parses_fork_and_exit() {
        let rec = |v: [u32; 3]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
        assert_eq!(
            parse(&rec([KIND_FORK, 1, 2])),
            Some(Raw::Fork {
                parent: 1,
                child: 2
            })
        );
        assert_eq!(
            parse(&rec([KIND_EXIT, 7, 3 << 8])),
            Some(Raw::Exit {
                pid: 7,
                code: Some(3)
            })
        );
        assert_eq!(
            parse(&rec([KIND_EXIT, 7, 9])),
            Some(Raw::Exit {
                pid: 7,
                code: Some(137)
            })
        );
        assert_eq!(parse(&rec([9, 7, 9])), None);
    }
}
