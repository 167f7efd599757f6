//! The terminal stream (`audit.transcript = true`): what a session's PTY printed, read from the
//! agent's `ipcTempFile.log` while the session runs (ssm-agent.md §10.1, §10.3):
//!
//! ```text
//! <agent state>/<instance id>/session/orchestration/<session id>/<session type>/ipcTempFile.log
//! ```
//!
//! The agent writes the file only when the session logs to S3 or CloudWatch, or with
//! `SessionLogsDestination = disk` (agents ≥ 3.3.987 write nothing by default). Each open
//! session's file is read from offset 0 in pieces of at most [`PIECE`] bytes, cut after a
//! newline where there is one and never inside a UTF-8 character; terminal control sequences
//! are removed and `audit.redact` applied; each piece is one event stamped when it was read.
//! Input is not recorded by the agent (echoed keystrokes are, passwords typed with echo off are
//! not).
//!
//! The offsets of every session followed are the source's position, spooled with each piece: a
//! restart goes on after the last piece spooled, nothing twice. A full spool pauses the source
//! (the file is still there); a session that ends is read to the end of its file once more, if
//! the agent has not deleted it yet.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use super::collector::Host;
use super::ocsf;
use super::session::{self, SessionInfo};
use super::spool::{Spool, SpoolError};

/// The spool source name.
pub const SOURCE: &str = "transcript";
/// The agent's name for the file.
pub const IPC_FILE: &str = "ipcTempFile.log";
/// The most bytes of one event.
pub const PIECE: usize = 4096;
/// The most read of one session's file per pass: a flood is spread over passes.
pub const PASS_MAX: u64 = 256 << 10;

/// `<agent state>/<instance>/session/orchestration/<id>/*/ipcTempFile.log`, the first that
/// exists (the session type's directory is `Standard_Stream` for shells).
pub fn find(agent_state_dir: &Path, s: &SessionInfo) -> Option<PathBuf> {
    if !session::valid_id(&s.id) || !session::valid_id(&s.instance_id) {
        return None;
    }
    let dir = agent_state_dir
        .join(&s.instance_id)
        .join("session/orchestration")
        .join(&s.id);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| d.join(IPC_FILE))
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
}

/// Terminal output as text: control sequences (CSI, OSC, other escapes) and control characters
/// other than newline and tab removed, `\r\n` as `\n`.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (a window title): up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next();
                            break;
                        }
                    }
                }
                // A two-character escape (charset selection takes one more).
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Where to cut `bytes` (at most [`PIECE`]): after the last newline, else before an incomplete
/// UTF-8 character at the end; 0 when all of it is an incomplete character.
fn cut(bytes: &[u8]) -> usize {
    let window = &bytes[..bytes.len().min(PIECE)];
    if window.len() == PIECE
        && let Some(i) = window.iter().rposition(|&b| b == b'\n')
    {
        return i + 1;
    }
    // Back off over a character cut by the window or by the writer.
    let mut end = window.len();
    let start = end.saturating_sub(3);
    for i in (start..end).rev() {
        let b = window[i];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte
        }
        let need = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1, // not UTF-8: taken as it is
        };
        if i + need > end {
            end = i;
        }
        break;
    }
    end
}

/// What a pass found.
#[derive(Debug, Default)]
pub struct Pass {
    /// The events spooled, in order.
    pub spooled: Vec<ocsf::Event>,
    /// The spool was full: the rest is read at the next pass.
    pub paused: bool,
}

/// The source's state: the offset read in each session's file, and the sessions followed.
#[derive(Debug, Default)]
pub struct Transcripts {
    offsets: BTreeMap<String, u64>,
    followed: BTreeMap<String, SessionInfo>,
}

impl Transcripts {
    /// Resumes from the spool's position (`{"<session id>": <offset>}`).
    pub fn restore(spool: &Spool) -> Self {
        let offsets = match spool.position(SOURCE).map(serde_json::from_str) {
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                tracing::warn!(
                    "audit: the transcript position in the spool is unreadable ({e}): open sessions' output is read again from the start"
                );
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        };
        Self {
            offsets,
            followed: BTreeMap::new(),
        }
    }

    /// Reads what the open sessions' files gained (and, once more, those of sessions that
    /// ended) and spools it.
    pub fn pass(
        &mut self,
        spool: &mut Spool,
        host: &Host,
        agent_state_dir: &Path,
        open: &BTreeMap<String, SessionInfo>,
        now_ms: i64,
    ) -> Result<Pass, SpoolError> {
        for (id, s) in open {
            self.followed.entry(id.clone()).or_insert_with(|| s.clone());
        }
        let mut pass = Pass::default();
        let ids: Vec<String> = self.followed.keys().cloned().collect();
        for id in ids {
            let Some(s) = self.followed.get(&id).cloned() else {
                continue;
            };
            let ended = !open.contains_key(&id);
            if let Some(path) = find(agent_state_dir, &s)
                && self.read(&path, &s, spool, host, now_ms, &mut pass)?
            {
                return Ok(pass);
            }
            if ended {
                self.followed.remove(&id);
                self.offsets.remove(&id);
            }
        }
        Ok(pass)
    }

    /// Spools what `path` gained; true when the spool is full.
    fn read(
        &mut self,
        path: &Path,
        s: &SessionInfo,
        spool: &mut Spool,
        host: &Host,
        now_ms: i64,
        pass: &mut Pass,
    ) -> Result<bool, SpoolError> {
        let Ok(mut f) = crate::state::open_regular(path) else {
            return Ok(false);
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut from = self.offsets.get(&s.id).copied().unwrap_or(0);
        if from > len {
            from = 0; // replaced: read again
        }
        if from == len || f.seek(SeekFrom::Start(from)).is_err() {
            return Ok(false);
        }
        let mut buf = Vec::new();
        if (&mut f)
            .take((len - from).min(PASS_MAX))
            .read_to_end(&mut buf)
            .is_err()
        {
            return Ok(false);
        }
        let mut at = 0;
        while at < buf.len() {
            let n = cut(&buf[at..]);
            if n == 0 {
                break; // the rest of a character the agent is still writing
            }
            let piece = &buf[at..at + n];
            let offset = from + at as u64;
            let text = host.redact.text(&plain(&String::from_utf8_lossy(piece)));
            let mut event = session::output_event(
                s,
                now_ms,
                offset,
                n as u64,
                text,
                &host.device,
                host.cloud.as_ref(),
            );
            event.metadata.sequence = Some(spool.next_seq());
            host.prepare(&mut event);
            let mut offsets = self.offsets.clone();
            offsets.insert(s.id.clone(), offset + n as u64);
            let position = serde_json::to_string(&offsets).unwrap_or_default();
            let body = serde_json::to_vec(&event).unwrap_or_default();
            match spool.append(SOURCE, &position, &body) {
                Ok(_) => {
                    self.offsets = offsets;
                    pass.spooled.push(event);
                }
                Err(SpoolError::Full { .. }) => {
                    pass.paused = true;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
            at += n;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::Options;
    use std::io::Write as _;

    #[test]
    fn control_sequences_are_removed() {
        let raw = "\u{1b}]0;alice@ip-10-0-1-23: ~\u{7}\u{1b}[?2004h\u{1b}[01;32malice@host\u{1b}[00m:~$ id\r\nuid=1001(alice)\r\n\u{1b}(B\u{1b}[m\tdone\u{8}\u{7}";
        assert_eq!(plain(raw), "alice@host:~$ id\nuid=1001(alice)\n\tdone");
    }

    #[test]
    fn pieces_end_after_a_newline_and_never_inside_a_character() {
        let mut long = "a".repeat(PIECE - 10);
        long.push('\n');
        long.push_str(&"b".repeat(100));
        assert_eq!(cut(long.as_bytes()), PIECE - 9);
        // No newline: the window, backed off over a cut character.
        let euros = "€".repeat(PIECE); // 3 bytes each
        let n = cut(euros.as_bytes());
        assert_eq!(n % 3, 0);
        assert!(n > PIECE - 3 && n <= PIECE);
        // Short input ending inside a character: the character waits.
        assert_eq!(cut("ab\u{20ac}".as_bytes()), 5);
        assert_eq!(cut(&"ab\u{20ac}".as_bytes()[..4]), 2);
        assert_eq!(cut(&[0xE2]), 0);
    }

    fn session(id: &str) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            owner: "arn:aws:iam::123456789012:user/alice".into(),
            user: "alice".into(),
            instance_id: "i-0123456789abcdef0".into(),
            started_ms: 1,
            ..SessionInfo::default()
        }
    }

    /// Output is spooled in pieces once, across a restart, redacted; an ended session's file is
    /// read to its end once more.
    #[test]
    fn output_is_spooled_once_across_restarts() {
        let agent = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let spool_dir = state.path().join("spool");
        let s = session("alice-0c20c0d902585cf86");
        let dir = agent.path().join(
            "i-0123456789abcdef0/session/orchestration/alice-0c20c0d902585cf86/Standard_Stream",
        );
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(IPC_FILE);
        let mut w = std::fs::File::create(&file).unwrap();
        w.write_all(b"$ export TOKEN=s3cret\r\n$ ").unwrap();
        let host = Host {
            redact: std::sync::Arc::new(crate::audit::redact::Redactor::new(
                &[r"TOKEN=\S+".into()],
            )),
            ..Host::default()
        };
        let open: BTreeMap<_, _> = [(s.id.clone(), s.clone())].into();
        let first = {
            let mut spool = Spool::open(&spool_dir, Options::default()).unwrap();
            let mut t = Transcripts::restore(&spool);
            let p = t.pass(&mut spool, &host, agent.path(), &open, 5).unwrap();
            assert_eq!(p.spooled.len(), 1);
            assert!(
                t.pass(&mut spool, &host, agent.path(), &open, 6)
                    .unwrap()
                    .spooled
                    .is_empty()
            );
            p.spooled[0].clone()
        };
        assert_eq!(first.raw_data.as_deref(), Some("$ export ***\n$ "));
        assert_eq!(first.session.as_ref().unwrap().uid, s.id);
        assert_eq!(first.activity_id, 99);
        // More output, a restart: the rest once.
        w.write_all("ls\r\n".as_bytes()).unwrap();
        w.write_all("x".repeat(PIECE + 5).as_bytes()).unwrap();
        let mut spool = Spool::open(&spool_dir, Options::default()).unwrap();
        let mut t = Transcripts::restore(&spool);
        let p = t.pass(&mut spool, &host, agent.path(), &open, 7).unwrap();
        let texts: String = p
            .spooled
            .iter()
            .filter_map(|e| e.raw_data.clone())
            .collect();
        assert_eq!(texts, format!("ls\n{}", "x".repeat(PIECE + 5)));
        assert!(
            p.spooled
                .iter()
                .all(|e| e.raw_data.as_ref().unwrap().len() <= PIECE)
        );
        // The session ends: its file is read to the end once more, then no longer.
        w.write_all(b"late\n").unwrap();
        let p = t
            .pass(&mut spool, &host, agent.path(), &BTreeMap::new(), 8)
            .unwrap();
        assert_eq!(p.spooled.len(), 1);
        assert_eq!(p.spooled[0].raw_data.as_deref(), Some("late\n"));
        w.write_all(b"later\n").unwrap();
        assert!(
            t.pass(&mut spool, &host, agent.path(), &BTreeMap::new(), 9)
                .unwrap()
                .spooled
                .is_empty()
        );
    }
}
