//! The auth-log source: sudo and su on hosts without journald, read from the syslog file that
//! gets the `auth` facility (`/var/log/auth.log` on Debian and Ubuntu, `/var/log/secure` on the
//! Red Hat family; `paths.auth_logs`).
//!
//! The file and its rolled copies (`auth.log.1`, `secure-20261206`; compressed ones are never
//! read) are followed by inode ([`crate::follow`]), so the lines a writer finishes in a renamed
//! file are read before the new file's. Each event's position is `<dev>:<inode>:<offset>` of its
//! line — its `metadata.uid`, unchanged by a rotation — and the record carries the offsets of
//! every file just past that line: a restart reads on from the last event spooled, nothing lost
//! and nothing twice.
//!
//! A syslog file is written by any local program (`logger -t sudo …`): every event from it is
//! marked unverified, unlike the journal's, whose sender the kernel names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::TimeZone as _;

use super::collector::Host;
use super::lineage;
use super::ocsf;
use super::privilege::{self, Entry, Parsed};
use super::spool::{Spool, SpoolError};
use crate::follow::{FileOffset, Follower, Offsets};

/// The spool source name.
pub const SOURCE: &str = "auth-log";
/// The most read of each file per pass (and on the first start: the recent history).
pub const LIMIT: u64 = 8 << 20;

/// A syslog line: `<time> <host> <tag>[<pid>]: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogLine<'a> {
    /// When, in ms since the epoch; `None` when the time did not parse.
    pub time_ms: Option<i64>,
    /// The tag (`sudo`, `su`, `sshd`…).
    pub ident: &'a str,
    /// The pid in brackets, when the program logged one.
    pub pid: Option<u32>,
    /// The rest.
    pub message: &'a str,
}

/// The time at the start of `line` and the rest: RFC 3339 (rsyslog's default on Debian 12,
/// `2026-12-06T01:55:23.123456+00:00`) or the traditional `Dec  6 01:55:23`, local time without
/// a year — the year that puts it at most a day ahead of `now`.
fn time_of<'a>(
    line: &'a str,
    now: &chrono::DateTime<chrono::Local>,
) -> Option<(Option<i64>, &'a str)> {
    let (first, rest) = line.split_once(' ')?;
    if first.len() >= 20 && first.as_bytes().get(4) == Some(&b'-') {
        let t = chrono::DateTime::parse_from_rfc3339(first).ok();
        return Some((t.map(|t| t.timestamp_millis()), rest));
    }
    let stamp = line.get(..15)?;
    let rest = line.get(15..)?.strip_prefix(' ')?;
    let month = stamp.get(..3)?;
    if !month.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let year = chrono::Datelike::year(now);
    let local = |y: i32| {
        chrono::NaiveDateTime::parse_from_str(&format!("{y} {stamp}"), "%Y %b %e %H:%M:%S")
            .ok()
            .and_then(|n| chrono::Local.from_local_datetime(&n).earliest())
    };
    let t = match local(year) {
        Some(t) if t > *now + chrono::Duration::days(1) => local(year - 1),
        t => t,
    };
    Some((t.map(|t| t.timestamp_millis()), rest))
}

/// Parses a syslog line; `None` when it is not one.
pub fn parse_line<'a>(
    line: &'a str,
    now: &chrono::DateTime<chrono::Local>,
) -> Option<SyslogLine<'a>> {
    let (time_ms, rest) = time_of(line, now)?;
    let (_host, rest) = rest.trim_start().split_once(' ')?;
    let (tag, message) = rest.split_once(": ")?;
    let (ident, pid) = match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((ident, pid)) => (ident, Some(pid.parse().ok()?)),
        None => (tag, None),
    };
    if ident.is_empty() || ident.contains(char::is_whitespace) {
        return None;
    }
    Some(SyslogLine {
        time_ms,
        ident,
        pid,
        message,
    })
}

/// What a pass found.
#[derive(Debug, Default)]
pub struct Pass {
    /// The events spooled, in order.
    pub spooled: Vec<ocsf::Event>,
    /// The spool was full or could not be written: the lines from the first one not spooled
    /// are read again at the next pass.
    pub paused: bool,
    /// Why the spool could not be written (not set for a full spool).
    pub error: Option<String>,
}

/// The source's state.
#[derive(Debug)]
pub struct AuthLog {
    /// `paths.auth_logs`: the first that exists is followed.
    candidates: Vec<PathBuf>,
    /// The file followed and its follower, once one exists.
    followed: Option<(PathBuf, Follower)>,
    /// The offsets the spool holds (a follower resumes from them once its file exists).
    saved: Option<Offsets>,
}

fn offsets_of(at: &BTreeMap<(u64, u64), u64>) -> Offsets {
    Offsets {
        files: at
            .iter()
            .map(|(&(dev, ino), &offset)| FileOffset { dev, ino, offset })
            .collect(),
    }
}

impl AuthLog {
    /// Resumes from the spool's position (the offsets past the last event spooled); without
    /// one, the recent history of the current file is read.
    pub fn restore(spool: &Spool, candidates: &[PathBuf]) -> Self {
        let saved = match spool.position(SOURCE).map(serde_json::from_str::<Offsets>) {
            Some(Ok(o)) => Some(o),
            Some(Err(e)) => {
                tracing::warn!(
                    "audit: the auth-log position in the spool is unreadable ({e}): the recent log is read again"
                );
                None
            }
            None => None,
        };
        Self {
            candidates: candidates.to_vec(),
            followed: None,
            saved,
        }
    }

    /// The file followed, once one of `paths.auth_logs` exists.
    pub fn path(&self) -> Option<&Path> {
        self.followed.as_ref().map(|(p, _)| p.as_path())
    }

    fn follower(prefix: &str, saved: Option<&Offsets>) -> Follower {
        match saved {
            Some(o) => Follower::resume(prefix, o),
            None => Follower::new(prefix),
        }
    }

    /// Reads what the file gained and spools an event for each sudo and su line. `workers`:
    /// the open sessions' worker PIDs (PID → session id); `proc`: the `/proc` to attribute
    /// lines with.
    pub fn pass(
        &mut self,
        spool: &mut Spool,
        host: &Host,
        proc: &Path,
        workers: &BTreeMap<u32, String>,
        now_ms: i64,
    ) -> Pass {
        if self.followed.is_none() {
            let Some(path) = self.candidates.iter().find(|p| p.is_file()) else {
                return Pass::default();
            };
            let prefix = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let follower = Self::follower(&prefix, self.saved.as_ref());
            self.followed = Some((path.clone(), follower));
        }
        let Some((path, follower)) = self.followed.as_mut() else {
            return Pass::default();
        };
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let prefix = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let before = follower.clone();
        let mut chunks = match follower.poll(&dir, LIMIT) {
            Ok(c) => c,
            Err(e) => {
                return Pass {
                    error: Some(format!("cannot read {}: {e}", dir.display())),
                    ..Pass::default()
                };
            }
        };
        // The rest of a rolled file before the current one's new lines.
        chunks.sort_by(|a, b| b.name.cmp(&a.name));
        // Every file's offset past the lines used: the chunks' files start where their text does.
        let mut at: BTreeMap<(u64, u64), u64> = follower
            .offsets()
            .files
            .iter()
            .map(|f| ((f.dev, f.ino), f.offset))
            .collect();
        for c in &chunks {
            at.insert((c.dev, c.ino), c.start);
        }
        let now = chrono::Local::now();
        // Where each file was before this poll: a chunk starting later skipped bytes (more
        // than LIMIT arrived since the last pass). Not on a first start, which reads only the
        // recent history on purpose.
        let known: BTreeMap<(u64, u64), u64> = before
            .offsets()
            .files
            .iter()
            .map(|f| ((f.dev, f.ino), f.offset))
            .collect();
        // The events of the pass, each with the offsets just past its line.
        let mut todo: Vec<(ocsf::Event, Offsets)> = Vec::new();
        let mut finder = lineage::Finder::new(proc, workers);
        for c in &chunks {
            let key = (c.dev, c.ino);
            let was = known.get(&key).copied().unwrap_or(0);
            if before.is_started() && c.start > was {
                let skipped = c.start - was;
                let gap = ocsf::gap(
                    now_ms,
                    &ocsf::Origin {
                        source: SOURCE.into(),
                        position: format!("{}:{}:{was}-{}", c.dev, c.ino, c.start),
                    },
                    &host.device,
                    host.cloud.as_ref(),
                    None,
                    &format!(
                        "{skipped} bytes of {} were not read (more than {} MiB arrived between two passes): sudo and su lines in them are not recorded",
                        c.name,
                        LIMIT >> 20
                    ),
                );
                todo.push((gap, offsets_of(&at)));
            }
            let mut offset = c.start;
            for line in c.text.split_inclusive('\n') {
                let start = offset;
                offset += line.len() as u64;
                at.insert(key, offset);
                let Some(l) = parse_line(line.trim_end_matches('\n'), &now) else {
                    continue;
                };
                if l.ident != "sudo" && l.ident != "su" {
                    continue;
                }
                let entry = Entry {
                    cursor: format!("{}:{}:{start}", c.dev, c.ino),
                    realtime_us: l.time_ms.unwrap_or(now_ms).saturating_mul(1000),
                    identifier: l.ident.to_string(),
                    message: l.message.to_string(),
                    pid: l.pid,
                    ..Entry::default()
                };
                let Parsed::Use(mut u) = privilege::parse(&entry) else {
                    continue;
                };
                // No sender's word here: whoever can write to syslog can write this line.
                u.unverified = true;
                host.redact.privilege_use(&mut u);
                let session = finder.session_of(u.pid, u.tty.as_deref());
                let event = privilege::event(
                    &u,
                    &entry,
                    SOURCE,
                    session.as_deref(),
                    &host.device,
                    host.cloud.as_ref(),
                );
                todo.push((event, offsets_of(&at)));
            }
        }
        let mut pass = Pass::default();
        let mut last_spooled: Option<Offsets> = None;
        for (mut event, offsets) in todo {
            event.metadata.sequence = Some(spool.next_seq());
            host.prepare(&mut event);
            let position = serde_json::to_string(&offsets).unwrap_or_default();
            let body = serde_json::to_vec(&event).unwrap_or_default();
            match spool.append(SOURCE, &position, &body) {
                Ok(_) => {
                    pass.spooled.push(event);
                    last_spooled = Some(offsets);
                }
                Err(e) => {
                    // Read again from just past the last line spooled.
                    *follower = match &last_spooled {
                        Some(o) => Follower::resume(&prefix, o),
                        None => before,
                    };
                    pass.paused = true;
                    if !matches!(e, SpoolError::Full { .. }) {
                        pass.error = Some(e.to_string());
                    }
                    return pass;
                }
            }
        }
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::{self, Options, Read};
    use std::io::Write as _;

    fn now() -> chrono::DateTime<chrono::Local> {
        chrono::Local
            .with_ymd_and_hms(2026, 12, 6, 2, 0, 0)
            .earliest()
            .unwrap()
    }

    #[test]
    fn both_timestamp_formats_the_tag_and_the_pid() {
        let l = parse_line(
            "2026-12-06T01:55:23.123456+00:00 ip-10-0-1-23 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
            &now(),
        )
        .unwrap();
        assert_eq!(l.time_ms, Some(1_796_522_123_123));
        assert_eq!((l.ident, l.pid), ("sudo", None));
        assert!(l.message.starts_with("   alice : TTY=pts/0"));
        let l = parse_line(
            "Dec  6 01:55:23 ip-10-0-1-23 su[4301]: (to root) alice on pts/0",
            &now(),
        )
        .unwrap();
        assert_eq!(
            (l.ident, l.pid, l.message),
            ("su", Some(4301), "(to root) alice on pts/0")
        );
        let want = chrono::Local
            .with_ymd_and_hms(2026, 12, 6, 1, 55, 23)
            .earliest()
            .unwrap();
        assert_eq!(l.time_ms, Some(want.timestamp_millis()));
        // Late December read on the 1st of January is last year's.
        let jan = chrono::Local
            .with_ymd_and_hms(2027, 1, 1, 0, 5, 0)
            .earliest()
            .unwrap();
        let l = parse_line("Dec 31 23:59:59 h sudo: x", &jan).unwrap();
        let want = chrono::Local
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .earliest()
            .unwrap();
        assert_eq!(l.time_ms, Some(want.timestamp_millis()));
        for bad in [
            "",
            "garbage",
            "Dec  6 01:55:23 host",
            "Dec  6 01:55:23 host no colon here",
            "Dec  6 01:55:23 host su[abc]: (to root) alice on pts/0",
            "2026-12-06T01:55:23+00:00 host : empty tag",
        ] {
            assert_eq!(parse_line(bad, &now()), None, "{bad:?}");
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    const SUDO: &str = "2026-12-06T01:55:23.123456+00:00 h sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id\n";
    const OTHER: &str = "2026-12-06T01:55:24.000000+00:00 h sshd[77]: Accepted publickey for bob\n";

    fn events(dir: &Path) -> Vec<ocsf::Event> {
        spool::read(dir, 0, 1000)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Read::Record(r) => Some(serde_json::from_slice(&r.body).unwrap()),
                _ => None,
            })
            .collect()
    }

    /// Lines spooled once across a restart, a rotation with the writer finishing its line in
    /// the renamed file, and a compressed rolled copy; every event is unverified.
    #[test]
    fn sudo_lines_are_spooled_once_across_restarts_and_rotation() {
        let log = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let spool_dir = state.path().join("spool");
        let file = log.path().join("auth.log");
        append(&file, &format!("{OTHER}{SUDO}"));
        let host = Host::default();
        let none = BTreeMap::new();
        let candidates = [log.path().join("secure"), file.clone()];
        let first = {
            let mut spool = Spool::open(&spool_dir, Options::default()).unwrap();
            let mut src = AuthLog::restore(&spool, &candidates);
            let p = src.pass(&mut spool, &host, state.path(), &none, 1);
            assert_eq!(src.path(), Some(file.as_path()));
            assert_eq!(p.spooled.len(), 1);
            assert!(
                src.pass(&mut spool, &host, state.path(), &none, 1)
                    .spooled
                    .is_empty()
            );
            append(&file, &SUDO.replace("/usr/bin/id", "/usr/bin/whoami"));
            // A crash: the follower is gone, the spool remains.
            p.spooled[0].clone()
        };
        assert!(
            first
                .message
                .contains("[unverified: read from the auth log"),
            "{}",
            first.message
        );
        assert_eq!(first.class_uid, 1007);
        // Rotated: the half-written line is finished in auth.log.1, a new auth.log starts.
        append(&file, &SUDO[..40]);
        std::fs::rename(&file, log.path().join("auth.log.1")).unwrap();
        append(
            &log.path().join("auth.log.1"),
            &SUDO[40..].replace("/usr/bin/id", "/usr/bin/uptime"),
        );
        std::fs::write(log.path().join("auth.log.2.gz"), b"\x1f\x8b garbage\n").unwrap();
        append(&file, &SUDO.replace("/usr/bin/id", "/usr/bin/date"));
        let mut spool = Spool::open(&spool_dir, Options::default()).unwrap();
        let mut src = AuthLog::restore(&spool, &candidates);
        let p = src.pass(&mut spool, &host, state.path(), &none, 1);
        assert!(!p.paused && p.error.is_none());
        let all = events(&spool_dir);
        let commands: Vec<_> = all
            .iter()
            .map(|e| {
                e.process
                    .as_ref()
                    .and_then(|p| p.cmd_line.clone())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            commands,
            [
                "/usr/bin/id",
                "/usr/bin/whoami",
                "/usr/bin/uptime",
                "/usr/bin/date"
            ]
        );
        let mut uids: Vec<_> = all.iter().map(|e| e.metadata.uid.clone()).collect();
        uids.dedup();
        assert_eq!(uids.len(), 4);
        assert_eq!(all[0].metadata.uid, first.metadata.uid);
    }

    /// More than LIMIT bytes between two passes: the skipped bytes are a gap event, and the
    /// sudo line after them is recorded.
    #[test]
    fn skipped_bytes_are_a_gap_event() {
        let log = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = log.path().join("auth.log");
        append(&file, SUDO);
        let host = Host::default();
        let none = BTreeMap::new();
        let mut spool = Spool::open(&state.path().join("spool"), Options::default()).unwrap();
        let mut src = AuthLog::restore(&spool, std::slice::from_ref(&file));
        assert_eq!(
            src.pass(&mut spool, &host, state.path(), &none, 1)
                .spooled
                .len(),
            1
        );
        let flood = OTHER.repeat((usize::try_from(LIMIT).unwrap() / OTHER.len()) + 1000);
        append(&file, &flood);
        append(&file, &SUDO.replace("/usr/bin/id", "/usr/bin/after"));
        let p = src.pass(&mut spool, &host, state.path(), &none, 2);
        assert_eq!(
            p.spooled.len(),
            2,
            "{:?}",
            p.spooled.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
        assert!(
            p.spooled[0].message.contains("were not read"),
            "{}",
            p.spooled[0].message
        );
        assert_eq!(
            p.spooled[1].process.as_ref().unwrap().cmd_line.as_deref(),
            Some("/usr/bin/after")
        );
    }

    /// A full spool pauses the source just past the last line spooled: nothing lost, nothing
    /// spooled twice once there is room.
    #[test]
    fn a_full_spool_pauses_and_resumes_without_repeats() {
        let log = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let spool_dir = state.path().join("spool");
        let file = log.path().join("secure");
        let host = Host::default();
        let none = BTreeMap::new();
        let mut spool = Spool::open(&spool_dir, Options::default()).unwrap();
        let mut src = AuthLog::restore(&spool, std::slice::from_ref(&file));
        assert!(
            src.pass(&mut spool, &host, state.path(), &none, 1)
                .spooled
                .is_empty()
        );
        assert_eq!(src.path(), None, "no file yet");
        for i in 0..30 {
            append(&file, &SUDO.replace("/usr/bin/id", &format!("/bin/n{i}")));
        }
        drop(spool);
        // Room for about ten of them at a time.
        let opts = Options {
            max_bytes: 10 * 1100,
            segment_bytes: 2000,
            ..Options::default()
        };
        let mut small = Spool::open(&spool_dir, opts).unwrap();
        let mut commands = Vec::new();
        let mut rounds = 0;
        loop {
            let p = src.pass(&mut small, &host, state.path(), &none, 1);
            commands.extend(
                p.spooled
                    .iter()
                    .map(|e| e.process.as_ref().unwrap().cmd_line.clone().unwrap()),
            );
            if !p.paused {
                break;
            }
            assert!(p.error.is_none());
            rounds += 1;
            assert!(rounds < 20, "never resumed");
            // Shipped: room again.
            small.seal().unwrap();
            small.release_through(small.next_seq() - 1).unwrap();
        }
        assert!(rounds >= 1, "the spool never filled");
        let want: Vec<String> = (0..30).map(|i| format!("/bin/n{i}")).collect();
        assert_eq!(commands, want);
    }
}
