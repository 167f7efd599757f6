//! Following log files that are appended to and rolled, with offsets that survive a restart.
//!
//! A follower tracks every file of a directory whose name starts with a prefix, each by its
//! inode with its own offset: writers keep appending to an inode after it was renamed
//! (`app.log` → `app.log.1`), so the rest of the old inode is read before the new file, and a
//! file that shrank was truncated and is read again from its start. Only whole lines are
//! handed out; a line still being written waits for its newline.
//!
//! [`Follower::offsets`] are the bytes handed out, line-exact: saved after the lines were used
//! ([`Follower::save`]) and resumed after a restart ([`Follower::load`]), nothing is read twice
//! and nothing is skipped, as long as the inodes are still there.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::state::{self, StateError};

/// A file's identity: device and inode.
type FileId = (u64, u64);

/// New whole lines of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The file's name when it was read (a rename may follow).
    pub name: String,
    /// `st_dev` of the file.
    pub dev: u64,
    /// `st_ino` of the file.
    pub ino: u64,
    /// The offset in the file of the first byte of `text`.
    pub start: u64,
    /// Whole lines, each ending with `\n`; each byte of invalid UTF-8 is a `?`, so an offset
    /// in `text` is the same offset in the file.
    pub text: String,
}

/// Where a follower is in each file, as saved in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    /// One entry per file followed.
    pub files: Vec<FileOffset>,
}

/// The offset of one file: the bytes of whole lines handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOffset {
    /// `st_dev` of the file.
    pub dev: u64,
    /// `st_ino` of the file.
    pub ino: u64,
    /// Bytes handed out.
    pub offset: u64,
}

/// Follows the files `<dir>/<prefix>*`.
#[derive(Debug, Clone)]
pub struct Follower {
    prefix: String,
    /// Bytes read of each file (whole lines handed out plus the partial line).
    files: BTreeMap<FileId, u64>,
    /// The unfinished last line of each file.
    partial: BTreeMap<FileId, Vec<u8>>,
    /// Whether the files have been seen once (new files found later are read from the start).
    started: bool,
    /// Files in the middle of a line longer than [`MAX_LINE`]: skipped up to its newline.
    skipping: std::collections::BTreeSet<FileId>,
}

/// `bytes` as text, each byte of invalid UTF-8 replaced by `?` (one for one: lengths and
/// offsets stay those of the file).
fn same_length_text(mut bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len()).min(rest.len());
                text.extend(std::iter::repeat_n('?', bad));
                bytes = &rest[bad..];
            }
        }
    }
}

/// Rolled files a log rotator compressed: never read (their bytes are not the lines).
const COMPRESSED: [&str; 6] = [".gz", ".xz", ".bz2", ".zst", ".lz4", ".Z"];

/// The longest line handed out: a longer one (binary garbage, a runaway writer) is dropped whole
/// instead of growing the follower's memory until its newline comes.
pub const MAX_LINE: usize = 1 << 20;

impl Follower {
    /// A follower that starts now: the first [`Follower::poll`] reads the recent history of the
    /// file named exactly `prefix` and only notes where the others end.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            files: BTreeMap::new(),
            partial: BTreeMap::new(),
            started: false,
            skipping: Default::default(),
        }
    }

    /// A follower that goes on from saved offsets: files it knew continue where they were,
    /// every other file is read from its start.
    pub fn resume(prefix: &str, offsets: &Offsets) -> Self {
        Self {
            prefix: prefix.to_string(),
            files: offsets
                .files
                .iter()
                .map(|f| ((f.dev, f.ino), f.offset))
                .collect(),
            partial: BTreeMap::new(),
            started: true,
            skipping: Default::default(),
        }
    }

    /// Whether the files were looked at once (a new follower's first poll reads only the
    /// recent history of the current file, on purpose).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The offsets of the whole lines handed out so far.
    pub fn offsets(&self) -> Offsets {
        Offsets {
            files: self
                .files
                .iter()
                .map(|(&(dev, ino), &read)| FileOffset {
                    dev,
                    ino,
                    offset: read - self.partial.get(&(dev, ino)).map_or(0, |p| p.len() as u64),
                })
                .collect(),
        }
    }

    /// Saves [`Follower::offsets`] to `<state_dir>/<name>` (atomically, mode 0600).
    pub fn save(&self, state_dir: &Path, name: &str) -> Result<(), StateError> {
        state::save_json(state_dir, name, &self.offsets(), 0o600)
    }

    /// A follower resumed from `<state_dir>/<name>`, or a new one when the file does not exist.
    /// A file that cannot be read or parsed is an error naming it: the caller decides whether
    /// to start over (and possibly read lines again).
    pub fn load(prefix: &str, state_dir: &Path, name: &str) -> Result<Self, state::LoadError> {
        Ok(match state::load_json::<Offsets>(state_dir, name)? {
            Some(offsets) => Self::resume(prefix, &offsets),
            None => Self::new(prefix),
        })
    }

    /// The whole lines written since the last call, one chunk per file that has some, in no
    /// particular order. At most the last `limit` bytes of each file are read: a longer gap
    /// (a first start on a big file, a long stop) skips the older lines.
    pub fn poll(&mut self, dir: &Path, limit: u64) -> std::io::Result<Vec<Chunk>> {
        let mut seen = BTreeMap::new();
        let mut chunks = Vec::new();
        for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&self.prefix) || COMPRESSED.iter().any(|c| name.ends_with(c)) {
                continue;
            }
            // Never blocks on a FIFO in the log's place; only regular files are followed.
            let Ok(mut f) = state::open_regular(&e.path()) else {
                continue;
            };
            // fstat the open file: a rename between listing and opening cannot mix two files.
            let Ok(m) = f.metadata() else { continue };
            if !m.is_file() {
                continue;
            }
            let id = (m.dev(), m.ino());
            let len = m.len();
            let known = self.files.get(&id).copied();
            let from = match known {
                Some(off) if off <= len => off,
                Some(_) => 0, // truncated
                None if !self.started && name != self.prefix => len,
                None if !self.started => len.saturating_sub(limit),
                None => 0, // a new file: the current log after a rollover
            };
            let floor = len.saturating_sub(limit);
            let mut partial = match known {
                Some(off) if off <= len && from >= floor => {
                    self.partial.remove(&id).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            let from = from.max(floor);
            // Where the bytes of `partial` begin in the file.
            let begin = from - partial.len() as u64;
            if len > from {
                f.seek(SeekFrom::Start(from))?;
                (&mut f).take(len - from).read_to_end(&mut partial)?;
            }
            seen.insert(id, len);
            let mut begin = begin;
            if self.skipping.contains(&id) {
                // The rest of an oversized line: dropped up to its end.
                match partial.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        partial.drain(..=i);
                        begin += i as u64 + 1;
                        self.skipping.remove(&id);
                    }
                    None => partial.clear(),
                }
            }
            match partial.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    let mut rest = partial.split_off(i + 1);
                    chunks.push(Chunk {
                        name,
                        dev: id.0,
                        ino: id.1,
                        start: begin,
                        text: same_length_text(&partial),
                    });
                    if rest.len() > MAX_LINE {
                        rest.clear();
                        self.skipping.insert(id);
                    }
                    self.partial.insert(id, rest);
                }
                None if partial.len() > MAX_LINE => {
                    self.skipping.insert(id);
                    self.partial.insert(id, Vec::new());
                }
                None => {
                    self.partial.insert(id, partial);
                }
            }
        }
        self.partial.retain(|id, _| seen.contains_key(id));
        self.skipping.retain(|id| seen.contains_key(id));
        self.files = seen;
        self.started = true;
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, s: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(s.as_bytes()).unwrap();
    }

    /// An unterminated line longer than MAX_LINE is dropped whole, in whatever pieces it
    /// arrives; the lines around it are handed out and memory stays bounded.
    #[test]
    fn an_oversized_line_is_skipped_not_kept() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        append(&log, "before\n");
        let mut f = Follower::new("app.log");
        assert_eq!(texts(&f.poll(d.path(), 1 << 30).unwrap()), "before\n");
        let junk = "x".repeat(MAX_LINE / 2 + 1);
        for _ in 0..3 {
            append(&log, &junk);
            assert_eq!(texts(&f.poll(d.path(), 1 << 30).unwrap()), "");
            assert!(f.partial.values().all(|p| p.len() <= MAX_LINE));
        }
        append(&log, "still junk\nafter\n");
        assert_eq!(texts(&f.poll(d.path(), 1 << 30).unwrap()), "after\n");
    }

    fn texts(chunks: &[Chunk]) -> String {
        let mut c = chunks.to_vec();
        c.sort_by(|a, b| a.name.cmp(&b.name));
        c.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn whole_lines_only_and_rollover_by_inode() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        append(&log, "old\n");
        let mut f = Follower::new("app.log");
        assert_eq!(texts(&f.poll(d.path(), 1 << 20).unwrap()), "old\n");
        append(&log, "a\nhalf");
        assert_eq!(texts(&f.poll(d.path(), 1 << 20).unwrap()), "a\n");
        // The writer finishes its line in the renamed inode; a new file starts.
        std::fs::rename(&log, d.path().join("app.log.1")).unwrap();
        append(&d.path().join("app.log.1"), "-line\n");
        append(&log, "new\n");
        assert_eq!(
            texts(&f.poll(d.path(), 1 << 20).unwrap()),
            "new\nhalf-line\n"
        );
        // Truncated: read again from the start.
        std::fs::write(&log, "t\n").unwrap();
        assert_eq!(texts(&f.poll(d.path(), 1 << 20).unwrap()), "t\n");
        // Other names are not followed.
        append(&d.path().join("other.log"), "x\n");
        assert!(f.poll(d.path(), 1 << 20).unwrap().is_empty());
    }

    #[test]
    fn invalid_utf8_keeps_the_offsets() {
        let t = same_length_text(b"ok \xff\xfe mid \xe2\x82 end \xe2\x82\xac");
        assert_eq!(t, "ok ?? mid ?? end \u{20ac}");
        assert_eq!(t.len(), 20);
    }

    /// Each chunk says where its text starts in its file, across partial lines, skipped
    /// oversized lines and a rename; compressed rolled files are not read.
    #[test]
    fn chunks_name_their_file_and_offset_and_compressed_files_are_skipped() {
        use std::os::unix::fs::MetadataExt as _;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("auth.log");
        append(&log, "one\n");
        let mut f = Follower::resume("auth.log", &Offsets::default());
        let ino = std::fs::metadata(&log).unwrap().ino();
        let c = f.poll(d.path(), 1 << 30).unwrap();
        assert_eq!(
            (c[0].ino, c[0].start, c[0].text.as_str()),
            (ino, 0, "one\n")
        );
        append(&log, "tw");
        assert!(f.poll(d.path(), 1 << 30).unwrap().is_empty());
        append(&log, "o\nthree\n");
        let c = f.poll(d.path(), 1 << 30).unwrap();
        assert_eq!((c[0].start, c[0].text.as_str()), (4, "two\nthree\n"));
        // An oversized line: the chunk after it starts past its newline.
        append(&log, &"x".repeat(MAX_LINE + 1));
        assert!(f.poll(d.path(), 1 << 30).unwrap().is_empty());
        append(&log, "x\nfour\n");
        let c = f.poll(d.path(), 1 << 30).unwrap();
        let four = std::fs::read(&log).unwrap().len() as u64 - 5;
        assert_eq!((c[0].start, c[0].text.as_str()), (four, "four\n"));
        // Rotated and compressed: the .gz is not read, the renamed inode keeps its offsets.
        std::fs::rename(&log, d.path().join("auth.log.1")).unwrap();
        std::fs::write(d.path().join("auth.log.2.gz"), b"\x1f\x8b\x08garbage\n").unwrap();
        append(&d.path().join("auth.log.1"), "five\n");
        let c = f.poll(d.path(), 1 << 30).unwrap();
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            (c[0].ino, c[0].start, c[0].name.as_str()),
            (ino, four + 5, "auth.log.1")
        );
    }

    #[test]
    fn the_first_poll_reads_only_the_recent_history_of_the_current_file() {
        let d = tempfile::tempdir().unwrap();
        append(&d.path().join("app.log.1"), "rotated\n");
        append(&d.path().join("app.log"), "0123456789\nlast\n");
        let mut f = Follower::new("app.log");
        assert_eq!(texts(&f.poll(d.path(), 5).unwrap()), "last\n");
    }

    /// Saved after each poll and resumed, nothing is read twice and nothing is lost: not a
    /// line written while stopped, not the half line pending at the save, not a rollover.
    #[test]
    fn offsets_survive_a_restart_line_exactly() {
        let d = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        append(&log, "one\ntw");
        let mut f = Follower::new("app.log");
        assert_eq!(texts(&f.poll(d.path(), 1 << 20).unwrap()), "one\n");
        f.save(state.path(), "follow.json").unwrap();
        drop(f);
        append(&log, "o\nthree\n");
        std::fs::rename(&log, d.path().join("app.log.1")).unwrap();
        append(&log, "four\n");
        let mut f = Follower::load("app.log", state.path(), "follow.json").unwrap();
        assert_eq!(
            texts(&f.poll(d.path(), 1 << 20).unwrap()),
            "four\ntwo\nthree\n"
        );
        f.save(state.path(), "follow.json").unwrap();
        let mut f = Follower::load("app.log", state.path(), "follow.json").unwrap();
        assert!(f.poll(d.path(), 1 << 20).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_offsets_file_is_an_error_that_names_it() {
        let state = tempfile::tempdir().unwrap();
        std::fs::write(state.path().join("follow.json"), "{").unwrap();
        let e = Follower::load("app.log", state.path(), "follow.json").unwrap_err();
        assert!(e.to_string().contains("follow.json"), "{e}");
        assert_eq!(e.reason(), "invalid");
        // Absent: a new follower.
        assert!(Follower::load("app.log", state.path(), "none.json").is_ok());
    }

    #[test]
    fn a_fifo_in_place_of_a_log_is_skipped_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        append(&d.path().join("app.log"), "a\n");
        let fifo = d.path().join("app.log.1");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let dir = d.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut f = Follower::new("app.log");
            let _ = tx.send(f.poll(&dir, 1 << 20).map(|c| texts(&c)).ok());
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the follower hung on a FIFO");
        assert_eq!(got.as_deref(), Some("a\n"));
    }

    #[test]
    fn invalid_utf8_keeps_offsets_byte_exact() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        std::fs::write(&log, b"\xff\xfe ok\n\xffpart").unwrap();
        let mut f = Follower::new("app.log");
        let c = f.poll(d.path(), 1 << 20).unwrap();
        assert_eq!(texts(&c), "?? ok\n");
        assert_eq!(f.offsets().files[0].offset, 6);
    }
}
