//! Scanning `/proc`: the processes of the host, their UIDs, state and executable. Shared by
//! the accounts capability (the processes of a user being retired) and the health capability
//! (the agent's processes). The directory is a parameter, so tests scan a made-up tree.

use std::path::{Path, PathBuf};

/// What a `/proc/<pid>/status` file says about a process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// Real, effective, saved and filesystem UIDs (the `Uid:` line); empty when absent.
    pub uids: Vec<u32>,
    /// The parent PID (`PPid:`).
    pub ppid: Option<u32>,
    /// The state letter (`State:`): `R`, `S`, `Z`…
    pub state: Option<char>,
    /// The process group (the first value of `NSpgid:`, as this procfs sees it).
    pub pgid: Option<u32>,
}

impl Status {
    /// Parses the text of a `/proc/<pid>/status` file; missing or malformed lines stay empty.
    pub fn parse(text: &str) -> Self {
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name));
        Self {
            uids: field("Uid:")
                .map(|ids| {
                    ids.split_whitespace()
                        .filter_map(|id| id.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
            ppid: field("PPid:").and_then(|v| v.split_whitespace().next()?.parse().ok()),
            state: field("State:").and_then(|s| s.trim_start().chars().next()),
            pgid: field("NSpgid:").and_then(|v| v.split_whitespace().next()?.parse().ok()),
        }
    }

    /// The real UID (the first of the `Uid:` line).
    pub fn uid(&self) -> Option<u32> {
        self.uids.first().copied()
    }

    /// Whether any of the four UIDs is `uid` (a setuid program keeps its user as real UID).
    pub fn owned_by(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// A zombie or a dead process: it runs nothing and cannot be signalled.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, Some('Z' | 'X'))
    }
}

/// The PIDs under `proc` (its numeric entries), in no particular order; none when `proc`
/// cannot be read.
pub fn pids(proc: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// The status of process `pid` under `proc`; an empty status when it has gone away.
pub fn status(proc: &Path, pid: u32) -> Status {
    let text = std::fs::read_to_string(proc.join(pid.to_string()).join("status"));
    Status::parse(&text.unwrap_or_default())
}

/// The executable of process `pid` (`/proc/<pid>/exe`, without a ` (deleted)` suffix), or
/// `None` when the link cannot be read (the process is gone, or has more capabilities than we
/// do).
pub fn exe(proc: &Path, pid: u32) -> Option<PathBuf> {
    let exe = std::fs::read_link(proc.join(pid.to_string()).join("exe")).ok()?;
    Some(PathBuf::from(
        exe.to_string_lossy().trim_end_matches(" (deleted)"),
    ))
}

/// The first word of `/proc/<pid>/cmdline` when it is an absolute path.
pub fn program_path(proc: &Path, pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(proc.join(pid.to_string()).join("cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next()?;
    let s = std::str::from_utf8(argv0).ok()?;
    s.starts_with('/').then(|| PathBuf::from(s))
}

/// What `/proc/<pid>/stat` says of a process's place: its parent, session and terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The parent PID.
    pub ppid: u32,
    /// The session id (the PID of its leader).
    pub sid: u32,
    /// The controlling terminal's device number, 0 for none.
    pub tty_nr: u32,
}

/// The stat of process `pid`, its fields read after the command name's closing parenthesis
/// (the name may hold spaces and `)`); `None` when the process is gone.
pub fn stat(proc: &Path, pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the name: state, ppid, pgrp, session, tty_nr.
    let mut f = rest.split_whitespace().skip(1);
    let ppid = f.next()?.parse().ok()?;
    let sid = f.nth(1)?.parse().ok()?;
    let tty: i64 = f.next()?.parse().ok()?;
    Some(Stat {
        ppid,
        sid,
        tty_nr: u32::try_from(tty).unwrap_or(0),
    })
}

/// The controlling terminal of process `pid` (`tty_nr`); `None` when the process has none or is
/// gone.
pub fn tty_nr(proc: &Path, pid: u32) -> Option<u32> {
    stat(proc, pid).map(|s| s.tty_nr).filter(|t| *t != 0)
}

/// The name of terminal `tty_nr` as `ps` shows it: `pts/3` for the Unix98 ptys (majors
/// 136–143), `ttyN` for the virtual consoles (major 4, minors below 64), else `None`.
pub fn tty_name(tty_nr: u32) -> Option<String> {
    let (major, minor) = (
        (tty_nr >> 8) & 0xfff,
        (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00),
    );
    match major {
        136..=143 => Some(format!("pts/{}", (major - 136) * 256 + minor)),
        4 if minor < 64 => Some(format!("tty{minor}")),
        _ => None,
    }
}

/// The arguments of process `pid` (`/proc/<pid>/cmdline`, lossily decoded); empty when it is
/// gone or a kernel thread.
pub fn cmdline(proc: &Path, pid: u32) -> Vec<String> {
    let Ok(raw) = std::fs::read(proc.join(pid.to_string()).join("cmdline")) else {
        return Vec::new();
    };
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, uids: &str) -> Status {
        Status::parse(&format!(
            "Name:\tsh\nState:\t{state}\nTgid:\t42\nPPid:\t7\nUid:\t{uids}\nGid:\t0\t0\t0\t0\nNSpgid:\t40\n"
        ))
    }

    #[test]
    fn processes_are_matched_by_any_uid_and_zombies_told_apart() {
        let all = "20001\t20001\t20001\t20001";
        let s = status("S (sleeping)", all);
        assert!(s.owned_by(20001) && !s.is_dead());
        assert_eq!((s.uid(), s.ppid, s.pgid), (Some(20001), Some(7), Some(40)));
        // A setuid program keeps the user as its real UID.
        let s = status("R (running)", "20001\t0\t0\t0");
        assert!(s.owned_by(20001) && s.owned_by(0));
        assert!(!status("S (sleeping)", "1000\t1000\t1000\t1000").owned_by(20001));
        assert!(status("Z (zombie)", all).is_dead());
        assert!(status("X (dead)", all).is_dead());
        let empty = Status::parse("");
        assert!(!empty.owned_by(20001) && empty.uid().is_none() && !empty.is_dead());
    }

    #[test]
    fn a_made_up_tree_is_scanned() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("42")).unwrap();
        std::fs::create_dir_all(d.path().join("self")).unwrap();
        std::fs::write(d.path().join("42/status"), "Uid:\t5\t5\t5\t5\nPPid:\t1\n").unwrap();
        std::fs::write(d.path().join("42/cmdline"), b"/usr/bin/agent\0-v\0").unwrap();
        std::os::unix::fs::symlink("/usr/bin/x (deleted)", d.path().join("42/exe")).unwrap();
        assert_eq!(pids(d.path()), vec![42]);
        assert_eq!(super::status(d.path(), 42).uid(), Some(5));
        assert_eq!(exe(d.path(), 42), Some(PathBuf::from("/usr/bin/x")));
        assert_eq!(
            program_path(d.path(), 42),
            Some(PathBuf::from("/usr/bin/agent"))
        );
        assert_eq!(super::status(d.path(), 43), Status::default());
        assert!(pids(&d.path().join("missing")).is_empty());
    }
}
