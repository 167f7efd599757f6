//! Every program started in a session: exec events from the kernel, through one of several
//! backends ([`Backend`]), attributed to their session by a lineage table fed at fork time
//! ([`lineage::Table`]).
//!
//! The backends differ in what they see. eBPF reads argv in the kernel at exec time; the proc
//! connector carries only the PID, so argv is read from `/proc` afterwards and is gone for the
//! shortest commands ([`Argv::Unread`]). Both report forks and exits, which keep the table.

pub mod audit_netlink;
pub mod ebpf;
pub mod proc_connector;
pub mod table;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::collector::Host;
use super::ocsf;
use super::session::{self, SessionInfo};
use super::spool::{Spool, SpoolError};
use crate::procfs;
use table::{Attribution, Table};

/// The spool's source name of exec events.
pub const SOURCE: &str = "exec";

/// The most bytes of argv kept (NUL separators included); longer ones are cut and marked
/// [`Argv::Truncated`]. The eBPF program reads at most this much in the kernel.
pub const ARGV_MAX: usize = 4096;

/// One event of a backend, in the kernel's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// A new process (not a thread): `child` forked by `parent` (both thread-group ids).
    Fork {
        /// The parent.
        parent: u32,
        /// The new process.
        child: u32,
    },
    /// A program started in process `pid`.
    Exec(Exec),
    /// Process `pid` ended.
    Exit {
        /// The process.
        pid: u32,
        /// Its exit status (128 + the signal when killed), when known.
        code: Option<i32>,
    },
    /// Events the kernel could not deliver (a full ring buffer, `ENOBUFS`): the count, or 0 when
    /// only "some" is known.
    Lost(u64),
}

/// What a backend knows of an exec; the rest is read from `/proc` ([`enrich`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exec {
    /// Thread-group id.
    pub pid: u32,
    /// The parent's thread-group id, when the backend knows it.
    pub ppid: Option<u32>,
    /// Real and effective user ids.
    pub uid: Option<u32>,
    /// The effective user id (a setuid program's owner).
    pub euid: Option<u32>,
    /// The controlling terminal, as `pts/3` or `tty1`.
    pub tty: Option<String>,
    /// The program run: the path given to exec (eBPF) or `/proc/<pid>/exe`.
    pub filename: Option<String>,
    /// The arguments, and whether they are whole.
    pub argv: Vec<String>,
    /// Whether `argv` is whole.
    pub argv_state: Argv,
    /// The working directory (read from `/proc`: best effort).
    pub cwd: Option<String>,
    /// When the kernel stamped the exec (`CLOCK_MONOTONIC`, ns), when the backend says (the
    /// proc connector does).
    pub kernel_ns: Option<u64>,
}

/// Whether an event's argv is whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Argv {
    /// Read in full.
    #[default]
    Complete,
    /// Cut at the backend's bound (`audit.exec_argv_max`).
    Truncated,
    /// Could not be read: the process had exited, or was a zombie, before `/proc` was read.
    Unread,
}

/// The backends `audit.exec_backend` picks from, best first, as `auto` tries them.
pub const ORDER: [&str; 2] = ["ebpf", "proc-connector"];

/// Opens backend `name` (scope `all` makes a kernel-side filter pass everything).
pub fn open_backend(name: &str, scope_all: bool) -> Result<Box<dyn Backend>, String> {
    match name {
        "ebpf" => ebpf::Ebpf::load(scope_all)
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .map_err(|e| e.to_string()),
        "proc-connector" => proc_connector::ProcConnector::open()
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .map_err(|e| match e.raw_os_error() {
                Some(nix::libc::EPERM | nix::libc::EACCES) => format!(
                    "{e}: subscribing to the kernel's process events needs CAP_NET_ADMIN (the unit grants it)"
                ),
                Some(nix::libc::ECONNREFUSED) => format!(
                    "{e}: the proc connector exists only in the initial network namespace; run the daemon there"
                ),
                Some(nix::libc::EPROTONOSUPPORT | nix::libc::EAFNOSUPPORT) => format!(
                    "{e}: this kernel has no proc connector (CONFIG_PROC_EVENTS)"
                ),
                _ => e.to_string(),
            }),
        "audit" => audit_netlink::AuditNetlink::open()
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .map_err(|e| e.to_string()),
        other => Err(format!("`{other}` is not an exec backend")),
    }
}

/// A backend that could not be opened: its name, and why.
pub type Tried = (String, String);

/// `/proc/self/ns/pid` of a process in the initial PID namespace: its inode number is fixed by
/// the kernel (`PROC_PID_INIT_INO`, 0xEFFFFFFC).
const INIT_PID_NS: &str = "pid:[4026531836]";

/// Why no backend can run in the PID namespace `ns` (the `/proc/self/ns/pid` link), if none can:
/// every backend reports processes by their PIDs in the initial namespace, which the `/proc` of
/// a namespace of its own cannot resolve — commands would be tied to the wrong processes.
pub fn pid_namespace_problem(ns: &str) -> Option<String> {
    (ns != INIT_PID_NS).then(|| {
        format!(
            "the daemon runs in a PID namespace of its own ({ns}, a container?): the kernel reports \
             processes by the host's PIDs, which this namespace's /proc cannot resolve; run it in \
             the host's PID namespace (the packaged unit does; a container needs --pid=host)"
        )
    })
}

/// Opens the first backend of `names` that works; the ones that did not, with why.
pub fn open_first(names: &[&str], scope_all: bool) -> (Option<Box<dyn Backend>>, Vec<Tried>) {
    let mut tried = Vec::new();
    // Unreadable (no /proc): the backends' own errors say more.
    let ns = std::fs::read_link("/proc/self/ns/pid").map(|l| l.to_string_lossy().into_owned());
    if let Some(why) = ns.ok().as_deref().and_then(pid_namespace_problem) {
        tried.extend(names.iter().map(|n| ((*n).to_string(), why.clone())));
        return (None, tried);
    }
    for name in names {
        match open_backend(name, scope_all) {
            Ok(b) => return (Some(b), tried),
            Err(why) => tried.push(((*name).to_string(), why)),
        }
    }
    (None, tried)
}

/// A source of exec, fork and exit events.
pub trait Backend: Send {
    /// Its name, as `audit.exec_backend` spells it.
    fn name(&self) -> &'static str;
    /// Waits up to `timeout` for events and appends them to `out`, in order.
    fn read(&mut self, out: &mut Vec<Raw>, timeout: Duration) -> std::io::Result<()>;
    /// Tells a backend that filters in the kernel which live processes are the sessions' (the
    /// start-up walk of `/proc`); the others see every process anyway.
    fn seed(&mut self, _pids: &mut dyn Iterator<Item = u32>) -> std::io::Result<()> {
        Ok(())
    }
}

/// An exec to record: the backend's event, completed from `/proc`, with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// When it was seen (ms since the epoch).
    pub time_ms: i64,
    /// Its session; `None` when the scope is `all` and it belongs to none.
    pub session: Option<Arc<str>>,
    /// The exec.
    pub exec: Exec,
}

/// What the capture hands to the spooling side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A command to spool.
    Command(Command),
    /// The backend lost events (0: an unknown number).
    Lost(u64),
}

/// Splits a NUL-separated argv, keeping at most [`ARGV_MAX`] bytes.
pub fn split_argv(raw: &[u8]) -> (Vec<String>, Argv) {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    let (kept, state) = if raw.len() > ARGV_MAX {
        (&raw[..ARGV_MAX], Argv::Truncated)
    } else {
        (raw, Argv::Complete)
    };
    let argv = kept
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (argv, state)
}

/// Fills what the backend did not give from `/proc/<pid>`: argv ([`Argv::Unread`] when the
/// process has already gone or is a zombie), the ids, the parent, the terminal, the program and
/// the working directory. Reading another user's `exe` and `cwd` needs `CAP_SYS_PTRACE`.
pub fn enrich(proc: &Path, e: &mut Exec) {
    let dir = proc.join(e.pid.to_string());
    if e.argv_state == Argv::Unread {
        match std::fs::read(dir.join("cmdline")) {
            Ok(raw) if !raw.is_empty() => (e.argv, e.argv_state) = split_argv(&raw),
            _ => {}
        }
    }
    if e.uid.is_none() || e.ppid.is_none() {
        let st = procfs::status(proc, e.pid);
        e.uid = e.uid.or(st.uids.first().copied());
        e.euid = e.euid.or(st.uids.get(1).copied());
        e.ppid = e.ppid.or(st.ppid);
    }
    if e.tty.is_none() {
        e.tty = procfs::tty_nr(proc, e.pid).and_then(procfs::tty_name);
    }
    if e.filename.is_none() {
        e.filename = procfs::exe(proc, e.pid).map(|p| p.to_string_lossy().into_owned());
    }
    if e.cwd.is_none() {
        e.cwd = std::fs::read_link(dir.join("cwd"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
    }
}

/// How long after the kernel made a new program's argv readable it may stamp the exec's event
/// (a task preempted in between on a loaded host): an argv read from `/proc` is not trusted if
/// the process exec'd again before the read, or up to this long after it.
pub const STAMP_SLACK_NS: u64 = 100_000_000;

/// The capture: a backend's events through the lineage table, the commands of sessions (or all
/// of them) completed from `/proc`.
pub struct Capture {
    table: Table,
    scope_all: bool,
    proc: PathBuf,
    /// What is not handed over yet, in order, each with when its argv was read from `/proc`
    /// (`CLOCK_MONOTONIC`), if it was: such a command, and all after it, wait until no later
    /// exec of its process can have come before that read ([`STAMP_SLACK_NS`]).
    held: VecDeque<(Item, Option<u64>)>,
}

impl Capture {
    /// A capture over the sessions live under `proc`.
    pub fn new(table: Table, scope_all: bool, proc: PathBuf) -> Self {
        Self {
            table,
            scope_all,
            proc,
            held: VecDeque::new(),
        }
    }

    /// The table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The commands among `raws`, in order; `time_ms` stamps them. `drained_ns` is when the
    /// read that gave `raws` began (`CLOCK_MONOTONIC`): every exec the kernel stamped before it
    /// is in `raws` or an earlier batch. Call it after every read, with no events too: commands
    /// whose argv came from `/proc` are handed over only once a later exec of their process
    /// could no longer be on its way.
    pub fn step(&mut self, raws: Vec<Raw>, time_ms: i64, drained_ns: u64, out: &mut Vec<Item>) {
        self.distrust(&raws);
        // An exec followed in the same batch by another exec of the same process (`nohup`,
        // `setsid`, a shell's last command): `/proc` shows only the last program, so the
        // earlier ones are left unread rather than given the later one's argv.
        let mut last_exec = HashMap::new();
        for (i, raw) in raws.iter().enumerate() {
            if let Raw::Exec(e) = raw {
                last_exec.insert(e.pid, i);
            }
        }
        for (i, raw) in raws.into_iter().enumerate() {
            let mut raw = raw;
            let superseded = matches!(&raw, Raw::Exec(e)
                if e.argv_state == Argv::Unread && last_exec.get(&e.pid) != Some(&i));
            let from_proc = matches!(&raw, Raw::Exec(e) if e.argv_state == Argv::Unread);
            let mut enriched = false;
            if let Raw::Exec(e) = &mut raw
                && e.argv_state == Argv::Unread
                && !superseded
                && self.table.session_of(e.pid).is_none()
            {
                // Without argv (the proc connector), a worker is told by its name: `comm` (the
                // first 15 bytes of the program's name) first, its argv only then.
                let comm = std::fs::read(self.proc.join(e.pid.to_string()).join("comm"));
                let worker = comm.is_ok_and(|c| {
                    c.trim_ascii_end() == &table::WORKER.as_bytes()[..table::WORKER.len().min(15)]
                });
                if worker || self.scope_all {
                    enrich(&self.proc, e);
                    enriched = true;
                }
            }
            if let Raw::Lost(n) = raw {
                self.held.push_back((Item::Lost(n), None));
                continue;
            }
            let (Some(attribution), Raw::Exec(mut e)) = (self.table.apply(&raw), raw) else {
                continue;
            };
            let session = match attribution {
                Attribution::Session(s) => Some(s),
                Attribution::None if self.scope_all => None,
                Attribution::None | Attribution::Worker(_) => continue,
            };
            if !superseded && !enriched {
                enrich(&self.proc, &mut e);
            }
            // Taken after the read: later than it, never earlier.
            let read_ns =
                (from_proc && e.argv_state != Argv::Unread).then(crate::clock::monotonic_ns);
            let command = Command {
                time_ms,
                session,
                exec: e,
            };
            self.held.push_back((Item::Command(command), read_ns));
        }
        while let Some((_, read_ns)) = self.held.front()
            && read_ns.is_none_or(|r| r.saturating_add(STAMP_SLACK_NS) < drained_ns)
        {
            if let Some((item, _)) = self.held.pop_front() {
                out.push(item);
            }
        }
    }

    /// Forgets what `/proc` gave for the held commands whose process exec'd again (an exec in
    /// `raws`) before their read, or so soon after it that the new program may have been in
    /// place already: it may have been the new program's. Also covers a pid reused meanwhile.
    fn distrust(&mut self, raws: &[Raw]) {
        if self.held.is_empty() {
            return;
        }
        let mut first: HashMap<u32, u64> = HashMap::new();
        for raw in raws {
            if let Raw::Exec(Exec {
                pid,
                kernel_ns: Some(at),
                ..
            }) = raw
            {
                let t = first.entry(*pid).or_insert(*at);
                *t = (*t).min(*at);
            }
        }
        for (item, read_ns) in &mut self.held {
            if let (Item::Command(c), Some(read)) = (item, *read_ns)
                && first
                    .get(&c.exec.pid)
                    .is_some_and(|at| *at <= read.saturating_add(STAMP_SLACK_NS))
            {
                // The real uid, the parent, the terminal and the directory survive an exec.
                c.exec.argv.clear();
                c.exec.argv_state = Argv::Unread;
                c.exec.filename = None;
                c.exec.euid = None;
                *read_ns = None;
            }
        }
    }
}

/// A command line as one string: arguments with blanks or quotes in single quotes.
pub fn cmd_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// User names by uid, looked up once each.
#[derive(Debug, Default)]
pub struct Names(HashMap<u32, Option<String>>);

impl Names {
    /// Records `uid`'s name without looking it up (fixed examples).
    pub fn insert(&mut self, uid: u32, name: &str) {
        self.0.insert(uid, Some(name.to_string()));
    }

    /// The name of `uid`, when the user database has one.
    pub fn get(&mut self, uid: u32) -> Option<String> {
        self.0
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
}

/// The event of a command: Process Activity: Launch, its process in `process` (pid, parent,
/// program, command line, user, working directory, session), the session's IAM principal as
/// `actor.user`. `position` makes its id.
pub fn event(
    c: &Command,
    info: Option<&SessionInfo>,
    names: &mut Names,
    position: String,
    host: &Host,
) -> ocsf::Event {
    let e = &c.exec;
    let origin = ocsf::Origin {
        source: SOURCE.into(),
        position,
    };
    let mut ev = ocsf::event(
        ocsf::Class::ProcessActivity,
        (1, "Launch"),
        c.time_ms,
        &origin,
        &host.device,
        host.cloud.as_ref(),
    );
    let user = e.uid.map(|uid| {
        let name = names.get(uid);
        ocsf::User {
            type_id: Some(if uid == 0 { 2 } else { 1 }),
            name,
            uid: Some(uid.to_string()),
            account: Some(ocsf::Account {
                type_id: 9,
                uid: None,
                name: None,
            }),
        }
    });
    let program = e.filename.clone().or_else(|| e.argv.first().cloned());
    let name = program
        .as_deref()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string());
    let session = c.session.as_ref().map(|id| ocsf::Session {
        uid: id.to_string(),
        created_time: info.map(|s| s.started_ms),
        terminal: e.tty.clone(),
        is_remote: Some(true),
    });
    let cmd = cmd_line(&e.argv);
    ev.process = Some(ocsf::Process {
        pid: Some(e.pid),
        name: name.clone(),
        cmd_line: Some(cmd.clone()).filter(|c| !c.is_empty()),
        user: user.clone(),
        working_directory: e.cwd.clone(),
        session: session.clone(),
        file: name.map(|n| ocsf::File {
            name: n,
            path: program.filter(|p| p.starts_with('/')),
            type_id: 1,
        }),
        parent_process: e.ppid.map(|pid| {
            Box::new(ocsf::Process {
                pid: Some(pid),
                ..ocsf::Process::default()
            })
        }),
    });
    // Process Activity has no `session` of its own: it is the process's.
    ev.actor = info.map(|s| ocsf::Actor {
        user: Some(session::owner_user(s)),
        process: None,
    });
    let who = user
        .as_ref()
        .and_then(|u| u.name.clone().or(u.uid.clone()))
        .unwrap_or_else(|| "?".into());
    let shown = match e.argv_state {
        Argv::Unread => format!(
            "{} [argv unread: the process had exited]",
            e.filename.as_deref().unwrap_or("?")
        ),
        Argv::Truncated => format!("{cmd} [argv truncated]"),
        Argv::Complete => cmd,
    };
    ev.message = match (&c.session, info) {
        (Some(id), Some(s)) => format!(
            "exec in session {id} ({}): {who} ran `{shown}`",
            if s.owner.is_empty() {
                "unknown principal"
            } else {
                &s.owner
            }
        ),
        (Some(id), None) => format!("exec in session {id}: {who} ran `{shown}`"),
        (None, _) => format!("exec outside any session: {who} ran `{shown}`"),
    };
    let mut unmapped = serde_json::Map::new();
    unmapped.insert(
        "exec".into(),
        serde_json::json!({
            "argv_complete": e.argv_state == Argv::Complete,
            "argv_truncated": e.argv_state == Argv::Truncated,
            "euid": e.euid,
            "attributed": c.session.is_some(),
        }),
    );
    ev.unmapped = Some(unmapped);
    if c.session.is_none() {
        ev.metadata.labels.push("exec:unattributed".into());
    }
    ev.with_status(true, None)
}

/// The exec side of the audit loop: the commands handed over, spooled; what a full spool
/// dropped (kernel events cannot be read again) recorded as a gap once it has room.
#[derive(Debug)]
pub struct Execs {
    /// This run's start (ms): with the counter, the events' positions.
    run: i64,
    next: u64,
    names: Names,
    /// Commands dropped since the last gap event, and events the backend lost.
    dropped: u64,
    lost: u64,
    lost_unknown: bool,
    /// Totals of this run: commands spooled, and events lost or dropped.
    spooled_total: u64,
    lost_total: u64,
    /// The sessions seen open, kept after they end (a background job's command after its
    /// session ended still names the principal), the oldest dropped past [`KEPT_SESSIONS`].
    known: HashMap<String, SessionInfo>,
    known_order: std::collections::VecDeque<String>,
}

/// How many ended sessions' details are kept for their late commands.
pub const KEPT_SESSIONS: usize = 1000;

/// What spooling a batch did.
#[derive(Debug, Default)]
pub struct Pass {
    /// The events spooled.
    pub spooled: Vec<ocsf::Event>,
    /// The spool refused (full, or an error): the commands were dropped and counted.
    pub dropped: u64,
    /// The spool's error, when it was not just full.
    pub error: Option<String>,
}

impl Execs {
    /// The exec side of a run started at `run_ms`.
    pub fn new(run_ms: i64) -> Self {
        Self {
            run: run_ms,
            next: 0,
            names: Names::default(),
            dropped: 0,
            lost: 0,
            lost_unknown: false,
            spooled_total: 0,
            lost_total: 0,
            known: HashMap::new(),
            known_order: std::collections::VecDeque::new(),
        }
    }

    /// Session `id`'s details: open now, or seen open by this run.
    fn session(&mut self, id: &str, open: &BTreeMap<String, SessionInfo>) -> Option<SessionInfo> {
        if let Some(s) = open.get(id) {
            if !self.known.contains_key(id) {
                self.known_order.push_back(id.to_string());
                if self.known_order.len() > KEPT_SESSIONS
                    && let Some(old) = self.known_order.pop_front()
                {
                    self.known.remove(&old);
                }
            }
            self.known.insert(id.to_string(), s.clone());
            return Some(s.clone());
        }
        self.known.get(id).cloned()
    }

    /// Commands spooled by this run.
    pub fn commands(&self) -> u64 {
        self.spooled_total
    }

    /// Exec events lost by the kernel or dropped for a full spool in this run.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }

    /// Spools `items`.
    pub fn spool(
        &mut self,
        items: Vec<Item>,
        spool: &mut Spool,
        host: &Host,
        sessions: &BTreeMap<String, SessionInfo>,
        now_ms: i64,
    ) -> Pass {
        let mut pass = Pass::default();
        let mut commands = Vec::new();
        for item in items {
            match item {
                Item::Lost(0) => self.lost_unknown = true,
                Item::Lost(n) => {
                    self.lost += n;
                    self.lost_total += n;
                }
                Item::Command(c) => commands.push(c),
            }
        }
        if self.dropped > 0 || self.lost > 0 || self.lost_unknown {
            let why = match (self.dropped, self.lost, self.lost_unknown) {
                (0, 0, _) => "the kernel dropped exec events (its buffer was full)".to_string(),
                (0, n, _) => format!("the kernel dropped {n} exec event(s) (its buffer was full)"),
                (d, 0, false) => format!("{d} command(s) dropped: the spool was full"),
                (d, n, _) => format!(
                    "{d} command(s) dropped (the spool was full), and the kernel dropped {} exec event(s)",
                    if n == 0 {
                        "some".to_string()
                    } else {
                        n.to_string()
                    }
                ),
            };
            let count = (!self.lost_unknown).then_some(self.dropped + self.lost);
            let position = format!("{}:gap{}", self.run, self.next);
            let mut gap = ocsf::gap(
                now_ms,
                &ocsf::Origin {
                    source: SOURCE.into(),
                    position: position.clone(),
                },
                &host.device,
                host.cloud.as_ref(),
                count,
                &why,
            );
            gap.metadata.sequence = Some(spool.next_seq());
            let body = serde_json::to_vec(&gap).unwrap_or_default();
            match spool.append(SOURCE, &position, &body) {
                Ok(_) => {
                    self.next += 1;
                    (self.dropped, self.lost, self.lost_unknown) = (0, 0, false);
                    pass.spooled.push(gap);
                }
                Err(e) => {
                    pass.dropped = u64::try_from(commands.len()).unwrap_or(u64::MAX);
                    self.dropped += pass.dropped;
                    self.lost_total += pass.dropped;
                    if !matches!(e, SpoolError::Full { .. }) {
                        pass.error = Some(e.to_string());
                    }
                    return pass;
                }
            }
        }
        let mut commands = commands.into_iter();
        for c in commands.by_ref() {
            let info = c.session.as_ref().and_then(|id| self.session(id, sessions));
            let position = format!("{}:{}", self.run, self.next);
            let mut ev = event(&c, info.as_ref(), &mut self.names, position.clone(), host);
            ev.metadata.sequence = Some(spool.next_seq());
            host.prepare(&mut ev);
            let body = serde_json::to_vec(&ev).unwrap_or_default();
            match spool.append(SOURCE, &position, &body) {
                Ok(_) => {
                    self.next += 1;
                    self.spooled_total += 1;
                    pass.spooled.push(ev);
                }
                Err(e) => {
                    if !matches!(e, SpoolError::Full { .. }) {
                        pass.error = Some(e.to_string());
                    }
                    pass.dropped = 1;
                    break;
                }
            }
        }
        pass.dropped += u64::try_from(commands.len()).unwrap_or(u64::MAX);
        self.dropped += pass.dropped;
        self.lost_total += pass.dropped;
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::Options;

    fn exec_at(pid: u32, kernel_ns: u64) -> Raw {
        Raw::Exec(Exec {
            pid,
            argv_state: Argv::Unread,
            kernel_ns: Some(kernel_ns),
            ..Exec::default()
        })
    }

    fn argvs(out: &[Item]) -> Vec<(Vec<String>, Argv)> {
        out.iter()
            .filter_map(|i| match i {
                Item::Command(c) => Some((c.exec.argv.clone(), c.exec.argv_state)),
                Item::Lost(_) => None,
            })
            .collect()
    }

    /// The proc connector's defect this guards against: an exec read from `/proc` after the
    /// same process had exec'd again, the later exec's event in the next batch, was recorded
    /// with the later program's argv (complete-looking and wrong).
    #[test]
    fn an_argv_read_after_the_next_exec_of_its_process_is_not_trusted() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("42")).unwrap();
        std::fs::write(proc.path().join("42/cmdline"), b"later\0program\0").unwrap();
        let s = STAMP_SLACK_NS;
        // The process's first exec, then (next batch) its second, stamped before the first's
        // argv was read: what /proc showed was the second program's.
        let mut c = Capture::new(Table::default(), true, proc.path().into());
        let mut out = Vec::new();
        let t = crate::clock::monotonic_ns();
        c.step(vec![exec_at(42, t)], 1, t, &mut out);
        assert!(
            argvs(&out).is_empty(),
            "handed over before it can be trusted"
        );
        c.step(vec![], 2, t, &mut out);
        assert!(
            argvs(&out).is_empty(),
            "handed over before it can be trusted"
        );
        let read = crate::clock::monotonic_ns();
        c.step(vec![exec_at(42, read)], 3, read + 3 * s, &mut out);
        let later = vec!["later".to_string(), "program".to_string()];
        assert_eq!(
            argvs(&out),
            vec![(vec![], Argv::Unread), (later.clone(), Argv::Complete)]
        );
        // A second exec well after the read: the first argv stands.
        let mut c = Capture::new(Table::default(), true, proc.path().into());
        let mut out = Vec::new();
        let t = crate::clock::monotonic_ns();
        c.step(vec![exec_at(42, t)], 1, t, &mut out);
        let after = crate::clock::monotonic_ns() + 2 * s;
        c.step(vec![exec_at(42, after)], 2, after + 2 * s, &mut out);
        assert_eq!(
            argvs(&out),
            vec![
                (later.clone(), Argv::Complete),
                (later.clone(), Argv::Complete)
            ]
        );
        // No further exec: handed over once no event could still arrive.
        let mut c = Capture::new(Table::default(), true, proc.path().into());
        let mut out = Vec::new();
        let t = crate::clock::monotonic_ns();
        c.step(vec![exec_at(42, t), Raw::Lost(3)], 1, t, &mut out);
        c.step(vec![], 2, crate::clock::monotonic_ns() + 2 * s, &mut out);
        assert_eq!(argvs(&out), vec![(later, Argv::Complete)]);
        assert_eq!(out.last(), Some(&Item::Lost(3)), "order kept");
    }

    #[test]
    fn only_the_initial_pid_namespace_can_capture() {
        assert_eq!(pid_namespace_problem("pid:[4026531836]"), None);
        let why = pid_namespace_problem("pid:[4026532511]").unwrap();
        assert!(why.contains("pid:[4026532511]"), "{why}");
        assert!(why.contains("--pid=host"), "{why}");
    }

    fn command(session: Option<&str>, argv: &[&str]) -> Item {
        Item::Command(Command {
            time_ms: 1_796_464_800_000,
            session: session.map(Arc::from),
            exec: Exec {
                pid: 42,
                ppid: Some(41),
                uid: Some(0),
                euid: Some(0),
                argv: argv.iter().map(|a| a.to_string()).collect(),
                ..Exec::default()
            },
        })
    }

    fn info(id: &str) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            owner: "arn:aws:iam::123456789012:user/alice".into(),
            user: "alice".into(),
            ..SessionInfo::default()
        }
    }

    #[test]
    fn a_command_after_its_session_ended_still_names_the_principal() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("spool"), Options::default()).unwrap();
        let mut execs = Execs::new(7);
        let id = "alice-0a1b2c3d4e5f60718";
        let open = BTreeMap::from([(id.to_string(), info(id))]);
        let host = Host::default();
        let p = execs.spool(
            vec![command(Some(id), &["id"])],
            &mut spool,
            &host,
            &open,
            1,
        );
        let q = execs.spool(
            vec![
                command(Some(id), &["uname", "-r"]),
                command(None, &["cron"]),
            ],
            &mut spool,
            &host,
            &BTreeMap::new(),
            2,
        );
        let all: Vec<_> = p.spooled.iter().chain(&q.spooled).collect();
        assert_eq!(all.len(), 3);
        for e in &all[..2] {
            let who = e.actor.as_ref().and_then(|a| a.user.as_ref()).unwrap();
            assert_eq!(
                who.uid.as_deref(),
                Some("arn:aws:iam::123456789012:user/alice")
            );
            let p = e.process.as_ref().unwrap();
            assert_eq!(p.session.as_ref().unwrap().uid, id);
        }
        assert_eq!(
            all[1].process.as_ref().unwrap().cmd_line.as_deref(),
            Some("uname -r")
        );
        assert!(all[2].actor.is_none() && all[2].process.as_ref().unwrap().session.is_none());
        assert!(
            all[2]
                .metadata
                .labels
                .contains(&"exec:unattributed".to_string())
        );
        // Distinct ids within a run, and between runs.
        assert_ne!(all[0].metadata.uid, all[1].metadata.uid);
        let other = Execs::new(8).spool(
            vec![command(Some(id), &["id"])],
            &mut spool,
            &host,
            &open,
            3,
        );
        assert_ne!(other.spooled[0].metadata.uid, all[0].metadata.uid);
        assert_eq!(execs.commands(), 3);
    }

    #[test]
    fn a_full_spool_drops_and_counts_then_records_one_gap() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            max_bytes: 4096,
            segment_bytes: 4096,
            ..Options::default()
        };
        let mut spool = Spool::open(&dir.path().join("spool"), opts).unwrap();
        let mut execs = Execs::new(7);
        let host = Host::default();
        let none = BTreeMap::new();
        let mut spooled = 0;
        let mut dropped = 0;
        for _ in 0..20 {
            let p = execs.spool(
                vec![command(None, &["true"]), Item::Lost(2)],
                &mut spool,
                &host,
                &none,
                1,
            );
            spooled += p.spooled.len();
            dropped += p.dropped;
        }
        assert!(
            dropped > 0 && spooled > 0,
            "{spooled} spooled, {dropped} dropped"
        );
        // Room again: the next batch starts with one gap counting what was dropped and lost.
        let mut roomy = Spool::open(&dir.path().join("roomy"), Options::default()).unwrap();
        let p = execs.spool(vec![command(None, &["id"])], &mut roomy, &host, &none, 9);
        let gap = &p.spooled[0];
        assert_eq!(gap.class_uid, 1008, "{gap:?}");
        assert!(gap.count.unwrap() >= dropped, "{:?} < {dropped}", gap.count);
        assert_eq!(p.spooled.len(), 2);
        assert!(execs.lost_total() >= dropped + 2);
    }
}
