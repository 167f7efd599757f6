//! The terminal stream (`audit.transcript = true`): what a session's PTY printed, read from the
//! agent's `ipcTempFile.log` while the session runs (ssm-agent.md §10.1, §10.3):
//!
//! ```text
//! <agent state>/<instance id>/session/orchestration/<session id>/<session type>/ipcTempFile.log
//! ```
//!
//! The agent writes the file only when the session logs to S3 or CloudWatch, or with
//! `SessionLogsDestination = disk` (agents ≥ 3.3.987 write nothing by default). Each open
//! session's file is read from offset 0 in pieces of at most [`PIECE`] bytes of whole lines — a
//! line still being written waits for its newline, so `audit.redact` always sees whole lines
//! (only a line longer than a piece is cut, and a secret across that cut is not masked) — never
//! cut inside a UTF-8 character; terminal control sequences are removed and `audit.redact`
//! applied; each piece is one event stamped when it was read.
//! Input is not recorded by the agent (echoed keystrokes are, passwords typed with echo off are
//! not).
//!
//! The offsets of every session followed are the source's position, spooled with each piece: a
//! restart goes on after the last piece spooled, nothing twice. A full spool pauses the source
//! (the file is still there); a session that ends is followed until its file is read to the end
//! (its last unfinished line included), if the agent has not deleted it yet. Sessions that ended
//! while the daemon was down are not read.

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
/// The longest window-title sequence removed; the rest of a longer one is kept as text.
const OSC_MAX: usize = 512;

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
                // OSC (a window title): up to BEL or ESC \, and never past a newline or
                // OSC_MAX characters (an unterminated one must not swallow the output).
                Some(']') => {
                    for _ in 0..OSC_MAX {
                        match chars.peek() {
                            None | Some('\n') => break,
                            Some('\u{7}') => {
                                chars.next();
                                break;
                            }
                            Some('\u{1b}') => {
                                chars.next();
                                chars.next();
                                break;
                            }
                            Some(_) => {
                                chars.next();
                            }
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

/// Where to cut `bytes` (at most [`PIECE`]): after the last newline in the window. Without
/// one, a line still being written waits (0) — redaction sees whole lines — unless the window
/// is full (a line longer than a piece) or `all` (the session ended): then before an incomplete
/// UTF-8 character at the end.
fn cut(bytes: &[u8], all: bool) -> usize {
    let window = &bytes[..bytes.len().min(PIECE)];
    if let Some(i) = window.iter().rposition(|&b| b == b'\n') {
        return i + 1;
    }
    if window.len() < PIECE && !all {
        return 0;
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
        // Offsets of sessions that ended while the daemon was down: their files are not read
        // again (documented), and the position must not grow with them.
        self.offsets.retain(|id, _| self.followed.contains_key(id));
        let mut pass = Pass::default();
        let ids: Vec<String> = self.followed.keys().cloned().collect();
        for id in ids {
            let Some(s) = self.followed.get(&id).cloned() else {
                continue;
            };
            let ended = !open.contains_key(&id);
            let read = match find(agent_state_dir, &s) {
                Some(path) => self.read(&path, &s, ended, spool, host, now_ms, &mut pass)?,
                None => Read::End,
            };
            match read {
                Read::Paused => return Ok(pass),
                // An ended session is followed until its file is read to the end (or gone).
                Read::End if ended => {
                    self.followed.remove(&id);
                    self.offsets.remove(&id);
                }
                Read::End | Read::More => {}
            }
        }
        Ok(pass)
    }

    /// Spools what `path` gained (with `all`, the last unfinished line too: the session
    /// ended).
    #[allow(clippy::too_many_arguments)] // the pass's parts, each used once
    fn read(
        &mut self,
        path: &Path,
        s: &SessionInfo,
        all: bool,
        spool: &mut Spool,
        host: &Host,
        now_ms: i64,
        pass: &mut Pass,
    ) -> Result<Read, SpoolError> {
        let Ok(mut f) = crate::state::open_regular(path) else {
            return Ok(Read::End);
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut from = self.offsets.get(&s.id).copied().unwrap_or(0);
        if from > len {
            from = 0; // replaced: read again
        }
        if from == len || f.seek(SeekFrom::Start(from)).is_err() {
            return Ok(Read::End);
        }
        let mut buf = Vec::new();
        if (&mut f)
            .take((len - from).min(PASS_MAX))
            .read_to_end(&mut buf)
            .is_err()
        {
            return Ok(Read::End);
        }
        let complete = from + buf.len() as u64 >= len;
        let mut at = 0;
        while at < buf.len() {
            let n = cut(&buf[at..], all && complete);
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
                    return Ok(Read::Paused);
                }
                Err(e) => return Err(e),
            }
            at += n;
        }
        Ok(if complete && at == buf.len() {
            Read::End
        } else {
            Read::More
        })
    }
}

/// How far a read got.
enum Read {
    /// To the end of the file.
    End,
    /// Not to the end: more at the next pass (an unfinished line, or [`PASS_MAX`]).
    More,
    /// The spool is full.
    Paused,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::Options;
    use std::io::Write as _;

    /// An ended session with more than a pass's worth unread is followed until the end.
    #[test]
    fn an_ended_session_is_read_to_the_end() {
        let agent = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let s = session("bob-0c20c0d902585cf86");
        let dir = agent.path().join(
            "i-0123456789abcdef0/session/orchestration/bob-0c20c0d902585cf86/Standard_Stream",
        );
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!("{}\n", "y".repeat(99));
        std::fs::write(dir.join(IPC_FILE), line.repeat(6000)).unwrap(); // 600,000 bytes
        let mut spool = Spool::open(&state.path().join("spool"), Options::default()).unwrap();
        let mut t = Transcripts::restore(&spool);
        let open: BTreeMap<_, _> = [(s.id.clone(), s.clone())].into();
        let host = Host::default();
        let mut bytes = 0;
        bytes += t
            .pass(&mut spool, &host, agent.path(), &open, 1)
            .unwrap()
            .spooled
            .iter()
            .map(|e| e.raw_data.as_ref().unwrap().len())
            .sum::<usize>();
        for _ in 0..5 {
            bytes += t
                .pass(&mut spool, &host, agent.path(), &BTreeMap::new(), 2)
                .unwrap()
                .spooled
                .iter()
                .map(|e| e.raw_data.as_ref().unwrap().len())
                .sum::<usize>();
        }
        assert_eq!(bytes, 600_000);
        assert!(t.followed.is_empty() && t.offsets.is_empty());
    }

    #[test]
    fn an_unterminated_title_does_not_swallow_the_output() {
        assert_eq!(
            plain("\u{1b}]0;title without end\nsecret=shown\n"),
            "\nsecret=shown\n"
        );
        let long = format!("\u{1b}]{}tail", "t".repeat(OSC_MAX + 10));
        assert!(plain(&long).ends_with("tail"));
    }

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
        assert_eq!(cut(long.as_bytes(), false), PIECE - 9);
        // No newline in a full window: the window, backed off over a cut character.
        let euros = "€".repeat(PIECE); // 3 bytes each
        let n = cut(euros.as_bytes(), false);
        assert_eq!(n % 3, 0);
        assert!(n > PIECE - 3 && n <= PIECE);
        // An unfinished line waits for its newline (redaction sees whole lines)...
        assert_eq!(cut(b"$ export TOKEN=ab", false), 0);
        // ... unless the session ended; a character being written still waits.
        assert_eq!(cut("ab\u{20ac}".as_bytes(), true), 5);
        assert_eq!(cut(&"ab\u{20ac}".as_bytes()[..4], true), 2);
        assert_eq!(cut(&[0xE2], true), 0);
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
        // The prompt after the last newline waits for its line.
        assert_eq!(first.raw_data.as_deref(), Some("$ export ***\n"));
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
        // A line longer than a piece is cut at the piece; its unfinished rest waits.
        assert!(
            texts == format!("$ ls\n{}", "x".repeat(PIECE)),
            "{} bytes: {:?}…",
            texts.len(),
            &texts[..20]
        );
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
        assert_eq!(p.spooled[0].raw_data.as_deref(), Some("xxxxxlate\n"));
        w.write_all(b"later\n").unwrap();
        assert!(
            t.pass(&mut spool, &host, agent.path(), &BTreeMap::new(), 9)
                .unwrap()
                .spooled
                .is_empty()
        );
    }
}
