//! The pid → session table, kept at fork time.
//!
//! A query-time walk up the parents fails as soon as an ancestor exits (orphans go to PID 1),
//! and `setsid`, sudo's `use_pty`, `script` and `tmux` leave the session's sid and terminal. A
//! child forked by a process of a session belongs to that session, whatever it does later: the
//! table records that when the fork happens. Its roots are `ssm-session-worker` processes
//! (argv[1] is the session id), found when they exec, or in `/proc` at start-up
//! ([`Table::seed`]). Processes that escaped before the daemon started are matched by their
//! ancestry, else by the sid of a live session's shell, else left unattributed: never guessed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{Exec, Raw};
use crate::audit::session::valid_id;
use crate::procfs;

/// The most processes tracked: a lost exit leaves an entry behind, and a host with more live
/// session processes than this is not one to audit this way. New entries are refused past it
/// (their events are reported unattributed).
pub const MAX_ENTRIES: usize = 1 << 20;

/// The name a worker runs as.
pub const WORKER: &str = "ssm-session-worker";

/// Whether `argv` is a session worker's: its program named `ssm-session-worker`, a session id
/// as the first argument.
pub fn worker_session(argv: &[String]) -> Option<&str> {
    let program = argv.first()?;
    (program.rsplit('/').next() == Some(WORKER))
        .then(|| argv.get(1))
        .flatten()
        .map(String::as_str)
        // An option is not a session id (a shell copied under the worker's name, `-c`).
        .filter(|id| valid_id(id) && !id.starts_with('-'))
}

/// What the table says of an exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// A process of this session.
    Session(Arc<str>),
    /// A session's worker starting: the root of its tree, not a command typed in it.
    Worker(Arc<str>),
    /// No session's.
    None,
}

/// The table (see the module docs).
#[derive(Debug, Default)]
pub struct Table {
    procs: HashMap<u32, Arc<str>>,
    /// Entries refused at [`MAX_ENTRIES`].
    pub refused: u64,
}

impl Table {
    /// The table of the sessions live under `proc`: every worker's descendants, and the
    /// processes sharing the sid of a session's process (reparented to PID 1 after their
    /// parent exited, before the daemon started). Also returns the pids, for a backend that
    /// filters in the kernel.
    pub fn seed(proc: &Path) -> Self {
        let mut parent = HashMap::new();
        let mut sid = HashMap::new();
        let mut table = Table::default();
        let mut workers = std::collections::HashSet::new();
        for pid in procfs::pids(proc) {
            let Some(stat) = procfs::stat(proc, pid) else {
                continue;
            };
            parent.insert(pid, stat.ppid);
            sid.insert(pid, stat.sid);
            let argv = procfs::cmdline(proc, pid);
            if let Some(id) = worker_session(&argv) {
                table.procs.insert(pid, Arc::from(id));
                workers.insert(pid);
            }
        }
        // Descendants: repeat until nothing changes (a tree is at most as deep as it is wide).
        loop {
            let mut added = false;
            for (pid, ppid) in &parent {
                if table.procs.contains_key(pid) {
                    continue;
                }
                if let Some(s) = table.procs.get(ppid).cloned() {
                    table.procs.insert(*pid, s);
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
        // The sids of the sessions' processes (their shells lead one). Not the workers': they
        // keep the agent's. Sid 0 is the kernel's, 1 init's.
        let sids: HashMap<u32, Arc<str>> = table
            .procs
            .iter()
            .filter(|(pid, _)| !workers.contains(*pid))
            .filter_map(|(pid, s)| Some((*sid.get(pid)?, s.clone())))
            .filter(|(sid, _)| *sid > 1)
            .collect();
        for (pid, s) in &sid {
            if let Some(session) = sids.get(s)
                && !table.procs.contains_key(pid)
            {
                table.procs.insert(*pid, session.clone());
            }
        }
        table
    }

    /// The pids tracked.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.procs.keys().copied()
    }

    /// How many processes are tracked.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The session of process `pid`.
    pub fn session_of(&self, pid: u32) -> Option<&Arc<str>> {
        self.procs.get(&pid)
    }

    /// Applies a fork or an exit; attributes an exec (and makes a worker's exec a root).
    pub fn apply(&mut self, raw: &Raw) -> Option<Attribution> {
        match raw {
            Raw::Fork { parent, child } => {
                match self.procs.get(parent).cloned() {
                    Some(s) => self.insert(*child, s),
                    // A reused pid: whatever it was, it is not that process any more.
                    None => {
                        self.procs.remove(child);
                    }
                }
                None
            }
            Raw::Exit { pid, .. } => {
                self.procs.remove(pid);
                None
            }
            Raw::Exec(e) => Some(self.exec(e)),
            Raw::Lost(_) => None,
        }
    }

    fn exec(&mut self, e: &Exec) -> Attribution {
        if let Some(id) = worker_session(&e.argv) {
            let id: Arc<str> = Arc::from(id);
            self.insert(e.pid, id.clone());
            return Attribution::Worker(id);
        }
        if let Some(s) = self.procs.get(&e.pid) {
            return Attribution::Session(s.clone());
        }
        // A backend without fork events (the kernel audit): the exec's parent stands for the
        // fork. Only the parent it has now, so a child reparented before its first exec is lost.
        match e.ppid.and_then(|p| self.procs.get(&p)).cloned() {
            Some(s) => {
                self.insert(e.pid, s.clone());
                Attribution::Session(s)
            }
            None => Attribution::None,
        }
    }

    fn insert(&mut self, pid: u32, session: Arc<str>) {
        if self.procs.len() >= MAX_ENTRIES && !self.procs.contains_key(&pid) {
            self.refused += 1;
            return;
        }
        self.procs.insert(pid, session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "alice-0a1b2c3d4e5f60718";
    const S2: &str = "bob-0f1e2d3c4b5a69788";

    fn exec(pid: u32, argv: &[&str]) -> Raw {
        Raw::Exec(Exec {
            pid,
            argv: argv.iter().map(|a| a.to_string()).collect(),
            ..Exec::default()
        })
    }

    fn fork(parent: u32, child: u32) -> Raw {
        Raw::Fork { parent, child }
    }

    fn session(s: &str) -> Option<Attribution> {
        Some(Attribution::Session(Arc::from(s)))
    }

    #[test]
    fn a_worker_is_a_root_and_its_descendants_belong_to_its_session() {
        let mut t = Table::default();
        assert_eq!(t.apply(&fork(50, 100)), None);
        assert_eq!(
            t.apply(&exec(100, &["/usr/bin/ssm-session-worker", S1, "i-0123"])),
            Some(Attribution::Worker(Arc::from(S1)))
        );
        t.apply(&fork(100, 101));
        assert_eq!(t.apply(&exec(101, &["sh"])), session(S1));
        // The shell's child outlives it, and leaves its sid (setsid): still the session's.
        t.apply(&fork(101, 102));
        t.apply(&Raw::Exit {
            pid: 101,
            code: Some(0),
        });
        t.apply(&fork(102, 103));
        t.apply(&Raw::Exit {
            pid: 102,
            code: None,
        });
        assert_eq!(t.apply(&exec(103, &["setsid", "sleep", "9"])), session(S1));
        // Another session, and a process of none.
        t.apply(&fork(60, 200));
        t.apply(&exec(200, &["ssm-session-worker", S2, "i-0123"]));
        t.apply(&fork(200, 201));
        assert_eq!(t.apply(&exec(201, &["id"])), session(S2));
        assert_eq!(t.apply(&exec(300, &["cron"])), Some(Attribution::None));
        // The two workers, the orphan of the first session, the command of the second.
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_reused_pid_forked_outside_a_session_is_not_the_sessions() {
        let mut t = Table::default();
        t.apply(&exec(100, &["ssm-session-worker", S1]));
        t.apply(&fork(100, 101));
        // Its exit was lost; the pid comes back forked by cron.
        t.apply(&fork(7, 101));
        assert_eq!(t.apply(&exec(101, &["backup"])), Some(Attribution::None));
    }

    #[test]
    fn without_fork_events_the_exec_parent_stands_for_the_fork() {
        let mut t = Table::default();
        t.apply(&exec(100, &["ssm-session-worker", S1]));
        let child = |pid, ppid| {
            Raw::Exec(Exec {
                pid,
                ppid: Some(ppid),
                argv: vec!["sh".into()],
                ..Exec::default()
            })
        };
        assert_eq!(t.apply(&child(101, 100)), session(S1));
        // A grandchild whose parent execed (and so is known) is the session's too.
        assert_eq!(t.apply(&child(102, 101)), session(S1));
        assert_eq!(t.apply(&child(300, 7)), Some(Attribution::None));
    }

    #[test]
    fn a_worker_needs_a_session_id() {
        let mut t = Table::default();
        for argv in [
            &["ssm-session-worker"][..],
            &["ssm-session-worker", "../../etc"],
            &["ssm-session-worker", "-c", "true"],
            &["/tmp/not-ssm-session-worker", S1],
        ] {
            assert_eq!(t.apply(&exec(5, argv)), Some(Attribution::None), "{argv:?}");
        }
        assert!(t.is_empty());
    }

    /// A made-up /proc: (pid, ppid, sid, argv).
    fn proc_tree(procs: &[(u32, u32, u32, &[&str])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, ppid, sid, argv) in procs {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir(&p).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{pid} (x y) S {ppid} {sid} {sid} 34816 0 0\n"),
            )
            .unwrap();
            let mut cmdline = argv.join("\0");
            cmdline.push('\0');
            std::fs::write(p.join("cmdline"), cmdline).unwrap();
        }
        dir
    }

    #[test]
    fn seeding_finds_descendants_and_processes_that_kept_the_sid() {
        let proc = proc_tree(&[
            (1, 0, 1, &["/sbin/init"]),
            (10, 1, 10, &["amazon-ssm-agent"]),
            (100, 10, 10, &["/usr/bin/ssm-session-worker", S1, "i-0"]),
            (101, 100, 101, &["sh"]),
            (102, 101, 101, &["sleep", "1"]),
            // Reparented to PID 1 before the daemon started, still in the shell's sid.
            (103, 1, 101, &["sleep", "2"]),
            // Reparented and left the sid: unattributed.
            (104, 1, 104, &["sleep", "3"]),
            // Not a session's.
            (200, 1, 200, &["cron"]),
        ]);
        let t = Table::seed(proc.path());
        for pid in [100, 101, 102, 103] {
            assert_eq!(t.session_of(pid).map(|s| &**s), Some(S1), "{pid}");
        }
        for pid in [1, 10, 104, 200] {
            assert_eq!(t.session_of(pid), None, "{pid}");
        }
    }
}
