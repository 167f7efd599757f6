//! The journal source: sudo and su entries, and ssm-companion's own account changes
//! ([`super::account`]), read from `journalctl -o json --follow`, parsed
//! ([`super::privilege`]), attributed to a session ([`super::lineage`]) and spooled with the
//! entry's cursor as the source's position — the checkpoint is the record itself, so a restart
//! resumes `--after-cursor` the last entry spooled: nothing lost, nothing twice.
//!
//! Why `journalctl` and not libsystemd: the binary must run on hosts with any systemd (or none),
//! and a `dlopen`ed libsystemd would put C code that parses the journal files in our process.
//! journalctl's JSON costs one process and a pipe; audit-capture.md has the figures.

use std::collections::BTreeMap;
use std::path::Path;

use super::collector::Host;
use super::ocsf;
use super::privilege::{self, Entry, Parsed};
use super::spool::{Spool, SpoolError};
use super::{account, lineage};

/// The spool source name of journal events.
pub const SOURCE: &str = "journal";
/// The longest journal line read; a longer entry is skipped with a `gap` event.
pub const MAX_LINE: usize = 1 << 20;

/// Where `journalctl` is looked for.
pub const JOURNALCTL: [&str; 2] = ["/usr/bin/journalctl", "/bin/journalctl"];

/// The arguments of `journalctl`: every sudo and su entry after `cursor`. Without a cursor (the
/// first start) the current boot is read from its start; with a cursor journalctl cannot seek
/// to (the journal was vacuumed, or the cursor is not one), `since_cursor` reads from the second
/// the cursor names — repeated entries have the same `metadata.uid`.
pub fn argv(cursor: Option<&str>, since_cursor: bool) -> Vec<String> {
    let mut a: Vec<String> = ["-o", "json", "--all", "--no-pager", "--quiet", "--follow"]
        .into_iter()
        .map(String::from)
        .collect();
    match (cursor, since_cursor) {
        (Some(c), false) => a.push(format!("--after-cursor={c}")),
        (Some(c), true) => match cursor_time(c) {
            Some(secs) => {
                a.push(format!("--since=@{secs}"));
            }
            None => a.extend(["--boot".into(), "--no-tail".into()]),
        },
        (None, _) => a.extend(["--boot".into(), "--no-tail".into()]),
    }
    // Matches on one field are or-ed, `+` ors the groups: sudo and su, or ssm-companion's own
    // account changes.
    a.extend([
        "SYSLOG_IDENTIFIER=sudo".into(),
        "SYSLOG_IDENTIFIER=su".into(),
        "+".into(),
        format!("MESSAGE_ID={}", crate::events::ACCOUNT_CHANGE),
    ]);
    a
}

/// The realtime second of a cursor (`…;t=<µs, hex>;…`).
fn cursor_time(cursor: &str) -> Option<u64> {
    let hex = cursor.split(';').find_map(|f| f.strip_prefix("t="))?;
    u64::from_str_radix(hex, 16).ok().map(|us| us / 1_000_000)
}

/// A line of journalctl's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line (without its newline).
    Text(Vec<u8>),
    /// A line longer than [`MAX_LINE`], skipped.
    TooLong,
}

/// What handling a batch of lines did.
#[derive(Debug, Default)]
pub struct Batch {
    /// The events spooled, in order.
    pub spooled: Vec<ocsf::Event>,
    /// Lines shaped like sudo's or su's from other programs: (sender's `_COMM`, `_UID`).
    pub forged: Vec<(String, Option<u32>)>,
    /// Lines that were not journal entries (journalctl's own messages, a torn line).
    pub unreadable: usize,
    /// The spool was full, or could not be written (a full disk): the lines from the first
    /// one not spooled on are dropped, and the reader restarts from the last cursor spooled.
    pub paused: bool,
    /// Why the spool could not be written (not set for a full spool).
    pub error: Option<String>,
}

/// Spools the privilege uses among `lines`. `workers`: the open sessions' worker PIDs (PID →
/// session id); `proc`: the `/proc` to attribute entries with.
pub fn handle(
    lines: &[Line],
    spool: &mut Spool,
    host: &Host,
    proc: &Path,
    workers: &BTreeMap<u32, String>,
    now_ms: i64,
) -> Result<Batch, SpoolError> {
    let mut batch = Batch::default();
    let mut finder = lineage::Finder::new(proc, workers);
    for line in lines {
        // The cursor moves with each entry spooled; a gap leaves it where it was.
        let mut position = spool.position(SOURCE).unwrap_or_default().to_string();
        let mut event = match line {
            Line::TooLong => ocsf::gap(
                now_ms,
                &ocsf::Origin {
                    source: SOURCE.into(),
                    position: format!("too-long@{}", spool.next_seq()),
                },
                &host.device,
                host.cloud.as_ref(),
                Some(1),
                &format!("a sudo/su journal entry longer than {MAX_LINE} bytes was skipped"),
            ),
            Line::Text(text) => {
                let Some(entry) = serde_json::from_slice::<serde_json::Value>(text)
                    .ok()
                    .as_ref()
                    .and_then(Entry::from_json)
                else {
                    batch.unreadable += 1;
                    continue;
                };
                if entry.fields.get("MESSAGE_ID").map(String::as_str)
                    == Some(crate::events::ACCOUNT_CHANGE)
                {
                    if !account::trusted(&entry) {
                        batch.forged.push((entry.comm.clone(), entry.uid));
                        continue;
                    }
                    position.clone_from(&entry.cursor);
                    account::event(&entry, &host.device, host.cloud.as_ref())
                } else {
                    match privilege::parse(&entry) {
                        Parsed::Use(mut u) => {
                            host.redact.privilege_use(&mut u);
                            position.clone_from(&entry.cursor);
                            let session = finder.session_of(u.pid, u.tty.as_deref());
                            privilege::event(
                                &u,
                                &entry,
                                SOURCE,
                                session.as_deref(),
                                &host.device,
                                host.cloud.as_ref(),
                            )
                        }
                        Parsed::Forged { comm, uid } => {
                            batch.forged.push((comm, uid));
                            continue;
                        }
                        Parsed::Other => continue,
                    }
                }
            }
        };
        event.metadata.sequence = Some(spool.next_seq());
        host.prepare(&mut event);
        let body = serde_json::to_vec(&event).unwrap_or_default();
        match spool.append(SOURCE, &position, &body) {
            Ok(_) => batch.spooled.push(event),
            Err(SpoolError::Full { .. }) => {
                batch.paused = true;
                return Ok(batch);
            }
            // A full disk, an I/O error: the lines are read again once the spool takes them.
            Err(e) => {
                batch.paused = true;
                batch.error = Some(e.to_string());
                return Ok(batch);
            }
        }
    }
    Ok(batch)
}

/// Reads journalctl's output line by line, at most [`MAX_LINE`] bytes each. Cancel safe: a
/// line cut by a `select!` is continued by the next call.
#[derive(Debug)]
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    skipping: bool,
}

impl<R: tokio::io::AsyncBufRead + Unpin> LineReader<R> {
    /// Reads from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: Vec::new(),
            skipping: false,
        }
    }

    /// The next line; `None` at the end of the output.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        use tokio::io::AsyncBufReadExt as _;
        loop {
            // No await between filling and consuming: cancel safe.
            let avail = self.reader.fill_buf().await?;
            if avail.is_empty() {
                return Ok(None);
            }
            match avail.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let line = if self.skipping || self.buf.len() + i > MAX_LINE {
                        self.buf = Vec::new();
                        Line::TooLong
                    } else {
                        self.buf.extend_from_slice(&avail[..i]);
                        Line::Text(std::mem::take(&mut self.buf))
                    };
                    self.skipping = false;
                    self.reader.consume(i + 1);
                    return Ok(Some(line));
                }
                None => {
                    let n = avail.len();
                    if !self.skipping {
                        self.buf.extend_from_slice(avail);
                        if self.buf.len() > MAX_LINE {
                            self.buf = Vec::new();
                            self.skipping = true;
                        }
                    }
                    self.reader.consume(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::{self, Options, Read};

    #[test]
    fn a_secret_in_a_command_is_masked_in_every_field_and_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("spool"), Options::default()).unwrap();
        let host = Host {
            redact: std::sync::Arc::new(crate::audit::redact::Redactor::new(
                &[r"token=\S+".into()],
            )),
            ..Host::default()
        };
        let line = Line::Text(
            serde_json::json!({
                "__CURSOR": "s=1;i=1", "__REALTIME_TIMESTAMP": "1",
                "SYSLOG_IDENTIFIER": "sudo",
                "MESSAGE": "alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/usr/bin/curl token=s3cret",
                "_PID": "1", "_UID": "1000", "_COMM": "sudo", "_EXE": "/usr/bin/sudo",
                "_CMDLINE": "sudo curl token=s3cret",
            })
            .to_string()
            .into_bytes(),
        );
        let b = handle(&[line], &mut spool, &host, dir.path(), &BTreeMap::new(), 1).unwrap();
        let json = serde_json::to_string(&b.spooled[0]).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(
            b.spooled[0].message.contains("`/usr/bin/curl ***`"),
            "{json}"
        );
    }

    fn sudo_line(cursor: &str, comm: &str, uid: u32) -> Line {
        Line::Text(
            serde_json::json!({
                "__CURSOR": cursor,
                "__REALTIME_TIMESTAMP": "1796464830000000",
                "SYSLOG_IDENTIFIER": "sudo",
                "MESSAGE": "    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
                "_PID": "4301", "_UID": uid.to_string(), "_COMM": comm,
                "_EXE": format!("/usr/bin/{comm}"),
                "_CMDLINE": "sudo id",
            })
            .to_string()
            .into_bytes(),
        )
    }

    #[test]
    fn the_arguments_resume_after_the_cursor_or_read_the_boot() {
        let c = "s=ab;i=2a1;b=77;m=1f;t=6620e5f400000;x=9f";
        let a = argv(Some(c), false);
        assert!(a.contains(&format!("--after-cursor={c}")));
        assert!(!a.contains(&"--boot".to_string()));
        assert_eq!(
            &a[a.len() - 4..],
            [
                "SYSLOG_IDENTIFIER=sudo",
                "SYSLOG_IDENTIFIER=su",
                "+",
                "MESSAGE_ID=a6f2c4d1b8e94c0e9d57c1f3e2b8a901"
            ]
        );
        let since = argv(Some(c), true);
        assert!(since.contains(&format!("--since=@{}", 0x6620e5f400000_u64 / 1_000_000)));
        for a in [argv(None, false), argv(Some("garbage"), true)] {
            assert!(a.contains(&"--boot".to_string()) && a.contains(&"--no-tail".to_string()));
        }
    }

    #[test]
    fn uses_are_spooled_with_their_cursor_and_forgeries_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("spool"), Options::default()).unwrap();
        let lines = [
            sudo_line("s=1;i=1", "sudo", 0),
            sudo_line("s=1;i=2", "logger", 1000),
            Line::Text(b"-- No entries --".to_vec()),
            Line::Text(br#"{"__CURSOR":"s=1;i=3","SYSLOG_IDENTIFIER":"sudo","MESSAGE":"pam_unix(sudo:session): session opened for user root"}"#.to_vec()),
            Line::TooLong,
        ];
        let b = handle(
            &lines,
            &mut spool,
            &Host::default(),
            proc.path(),
            &BTreeMap::new(),
            5,
        )
        .unwrap();
        assert_eq!(b.spooled.len(), 2, "the use and the gap");
        assert_eq!(b.forged, [("/usr/bin/logger".to_string(), Some(1000))]);
        assert_eq!(b.unreadable, 1);
        assert_eq!(
            spool.position(SOURCE),
            Some("s=1;i=1"),
            "a gap keeps the cursor"
        );
        let read = spool::read(&dir.path().join("spool"), 0, 10).unwrap();
        let Read::Record(r) = &read[0] else { panic!() };
        let e: ocsf::Event = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(e.class_uid, 1007);
        assert!(e.session.is_none() && e.process.unwrap().session.is_none());
    }

    #[tokio::test]
    async fn lines_are_bounded_and_survive_cancellation() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut input = b"one\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\ntwo\nthree-without-newline");
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(7, &input[..]));
        assert_eq!(r.next().await.unwrap(), Some(Line::Text(b"one".to_vec())));
        assert_eq!(r.next().await.unwrap(), Some(Line::TooLong));
        assert_eq!(r.next().await.unwrap(), Some(Line::Text(b"two".to_vec())));
        // A last line without its newline is not handed out (journalctl died mid-line).
        assert_eq!(r.next().await.unwrap(), None);
    }
}
