//! Which Session Manager session a process or a terminal belongs to, read from `/proc`.
//!
//! A session's processes descend from its `ssm-session-worker` (argv[1] is the session id, and
//! its PID is the document-state file's `ProcInfo.Pid`). A journal entry names the sudo or su
//! process (`_PID`) and the terminal it was typed on (`TTY=pts/3`): the process is looked up
//! first — it may have exited by the time the entry is read — then any process still holding the
//! terminal (the session's shell does, until the session ends). Only an ancestor that is a
//! worker counts: the same `pts/N` of another devpts instance (a container) names nothing.
//! A terminal reused by a new session after the first one ended is attributed to the new one;
//! entries are read within milliseconds, so this needs an end and a start in between.

use std::collections::BTreeMap;
use std::path::Path;

use crate::procfs;

use super::session::valid_id;

/// The longest ancestry walked (a loop in a made-up tree ends here).
const MAX_DEPTH: usize = 64;

/// The `tty_nr` of `pts/N`: the Unix98 pty majors are 136–143, 256 minors each.
pub fn pts_tty_nr(tty: &str) -> Option<u32> {
    let n: u32 = tty.strip_prefix("pts/")?.parse().ok()?;
    let major = 136 + n / 256;
    (major <= 143).then_some((major << 8) | (n % 256))
}

/// The session whose worker is `pid` or one of its ancestors: by the workers the open sessions
/// name (`workers`: PID → session id), else by a process whose argv[0] is `ssm-session-worker`
/// with a session id as argv[1].
pub fn session_of_pid(proc: &Path, pid: u32, workers: &BTreeMap<u32, String>) -> Option<String> {
    let mut pid = pid;
    for _ in 0..MAX_DEPTH {
        if let Some(id) = workers.get(&pid) {
            return Some(id.clone());
        }
        let argv = procfs::cmdline(proc, pid);
        let is_worker = argv
            .first()
            .is_some_and(|a| a.rsplit('/').next() == Some("ssm-session-worker"));
        if is_worker && let Some(id) = argv.get(1).filter(|id| valid_id(id)) {
            return Some(id.clone());
        }
        match procfs::status(proc, pid).ppid {
            Some(parent) if parent > 1 && parent != pid => pid = parent,
            _ => return None,
        }
    }
    None
}

/// The session of a journal entry: its process (`pid`), else any process on its terminal
/// (`tty`, `pts/N`) that descends from a worker.
pub fn session_of(
    proc: &Path,
    pid: Option<u32>,
    tty: Option<&str>,
    workers: &BTreeMap<u32, String>,
) -> Option<String> {
    Finder::new(proc, workers).session_of(pid, tty)
}

/// [`session_of`] for many entries of one pass: each terminal's `/proc` scan is done once (a
/// backlog of lines from one terminal would otherwise scan `/proc` once per line).
pub struct Finder<'a> {
    proc: &'a Path,
    workers: &'a BTreeMap<u32, String>,
    by_tty: std::collections::HashMap<u32, Option<String>>,
}

impl<'a> Finder<'a> {
    /// A finder over `proc` and the open sessions' workers.
    pub fn new(proc: &'a Path, workers: &'a BTreeMap<u32, String>) -> Self {
        Self {
            proc,
            workers,
            by_tty: std::collections::HashMap::new(),
        }
    }

    /// See [`session_of`].
    pub fn session_of(&mut self, pid: Option<u32>, tty: Option<&str>) -> Option<String> {
        if let Some(id) = pid.and_then(|p| session_of_pid(self.proc, p, self.workers)) {
            return Some(id);
        }
        let tty_nr = pts_tty_nr(tty?)?;
        let (proc, workers) = (self.proc, self.workers);
        self.by_tty
            .entry(tty_nr)
            .or_insert_with(|| {
                procfs::pids(proc)
                    .into_iter()
                    .filter(|p| procfs::tty_nr(proc, *p) == Some(tty_nr))
                    .find_map(|p| session_of_pid(proc, p, workers))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up `/proc` entry.
    fn process(proc: &Path, pid: u32, ppid: u32, argv: &[&str], tty_nr: u32) {
        let d = proc.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("status"), format!("Name:\tx\nPPid:\t{ppid}\n")).unwrap();
        std::fs::write(d.join("cmdline"), argv.join("\0") + "\0").unwrap();
        // A name with a space and a parenthesis, as a hostile program can choose.
        std::fs::write(
            d.join("stat"),
            format!("{pid} (a) b) S {ppid} {pid} {pid} {tty_nr} -1 4194560 0 0"),
        )
        .unwrap();
    }

    #[test]
    fn a_finder_scans_proc_once_per_terminal_in_a_pass() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        process(
            p,
            100,
            1,
            &["/usr/bin/ssm-session-worker", "bob-77aa", "i-1"],
            0,
        );
        process(p, 101, 100, &["sh"], (136 << 8) | 4);
        let none = BTreeMap::new();
        let mut f = Finder::new(p, &none);
        assert_eq!(
            f.session_of(None, Some("pts/4")).as_deref(),
            Some("bob-77aa")
        );
        // The shell is gone: the pass's answer for pts/4 stands, a new finder sees the change.
        std::fs::remove_dir_all(p.join("101")).unwrap();
        assert_eq!(
            f.session_of(None, Some("pts/4")).as_deref(),
            Some("bob-77aa")
        );
        assert_eq!(Finder::new(p, &none).session_of(None, Some("pts/4")), None);
        assert_eq!(f.session_of(None, Some("pts/5")), None);
    }

    #[test]
    fn pts_numbers_map_to_their_device() {
        assert_eq!(pts_tty_nr("pts/0"), Some(136 << 8));
        assert_eq!(pts_tty_nr("pts/3"), Some((136 << 8) | 3));
        assert_eq!(pts_tty_nr("pts/300"), Some((137 << 8) | 44));
        assert_eq!(pts_tty_nr("pts/2048"), None);
        assert_eq!(pts_tty_nr("tty1"), None);
        assert_eq!(pts_tty_nr("pts/x"), None);
    }

    #[test]
    fn a_process_is_attributed_through_its_ancestors() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        process(
            p,
            100,
            1,
            &["/usr/bin/ssm-session-worker", "alice-0a1b", "i-1"],
            0,
        );
        process(p, 101, 100, &["sh"], (136 << 8) | 2);
        process(p, 102, 101, &["sudo", "id"], (136 << 8) | 2);
        process(p, 200, 1, &["bash"], (136 << 8) | 2); // pts/2 of another devpts
        let none = BTreeMap::new();
        assert_eq!(session_of_pid(p, 102, &none).as_deref(), Some("alice-0a1b"));
        assert_eq!(session_of_pid(p, 200, &none), None);
        // The open sessions' worker PIDs count first (a worker whose argv was changed).
        let workers = BTreeMap::from([(101, "bob-09".to_string())]);
        assert_eq!(session_of_pid(p, 102, &workers).as_deref(), Some("bob-09"));
        // sudo gone: its terminal still has the session's shell.
        assert_eq!(
            session_of(p, Some(999), Some("pts/2"), &none).as_deref(),
            Some("alice-0a1b")
        );
        assert_eq!(session_of(p, Some(999), Some("pts/7"), &none), None);
        assert_eq!(session_of(p, None, None, &none), None);
    }

    #[test]
    fn hostile_process_trees_end() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        // A loop, and a worker with a session id that is not one.
        process(p, 10, 11, &["x"], 0);
        process(p, 11, 10, &["x"], 0);
        process(p, 12, 1, &["ssm-session-worker", "../../etc"], 0);
        process(p, 13, 12, &["sh"], 0);
        let none = BTreeMap::new();
        assert_eq!(session_of_pid(p, 10, &none), None);
        assert_eq!(session_of_pid(p, 13, &none), None);
    }
}
