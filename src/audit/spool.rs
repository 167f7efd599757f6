//! The durable spool: an append-only write-ahead log of audit records in the state directory.
//!
//! Records go into segment files `seg-<first seq, 20 digits>.seg`; each record is framed as
//!
//! ```text
//! magic "SSMC" | len u32 | crc32c u32 | seq u64 | source len u8 | source | position len u16 | position | body
//! ```
//!
//! (little-endian; `len` counts what follows the CRC, the CRC covers the same bytes). A record
//! carries the position in its source (a journal cursor, a file offset) that it came from, so the
//! spool is the checkpoint of record: a restart resumes every source from the last position the
//! spool holds, and neither loses nor repeats what it covers.
//!
//! Durability: [`Spool::append`] writes at once (a kill -9 loses nothing appended: the page cache
//! survives the process); `fdatasync` runs at most [`Options::sync_every`] after the first
//! unsynced append (group commit: the owner calls [`Spool::sync_if_due`] on a timer) and at every
//! seal, and [`Spool::durable_seq`] says what is on disk. A power cut loses at most the unsynced
//! window — records and the positions they carry together, so no checkpoint ever covers a lost
//! record.
//!
//! Recovery on open: the last segment is scanned; a torn tail (a short or garbled last record
//! with no valid record after it) is truncated and counted; a damaged record with valid records
//! after it is kept and reported by readers as a [`Read::Gap`] — never a refusal to start. Sealed
//! segments are never rewritten. The positions of sources that did not write in the last segment
//! come from `positions.json`, written atomically after each seal.
//!
//! Capacity: [`Options::max_bytes`] bounds the segment files; an append that does not fit is
//! refused with [`SpoolError::Full`] and nothing is written — replayable sources then pause, and
//! the others count what they drop and record a gap when space returns.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::{self, StateDir, StateError, StateLock};

const MAGIC: &[u8; 4] = b"SSMC";
/// magic + len + crc.
const HEAD: usize = 12;
/// seq + source len + position len.
const FIXED: usize = 8 + 1 + 2;
/// The largest record body accepted (an event is a few KiB; a transcript chunk at most 64 KiB).
pub const MAX_BODY: usize = 1 << 20;
const POSITIONS: &str = "positions.json";

/// Spool settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most the segment files may hold together.
    pub max_bytes: u64,
    /// A segment is sealed (synced, closed, a new one started) past this size.
    pub segment_bytes: u64,
    /// Group commit: the longest an appended record waits for `fdatasync`.
    pub sync_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            segment_bytes: 32 << 20,
            sync_every: Duration::from_secs(1),
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number: contiguous and increasing across restarts.
    pub seq: u64,
    /// The source it came from (`journal`, `sessions`, …; at most 255 bytes).
    pub source: String,
    /// Where in the source it came from (empty for sources that cannot be replayed).
    pub position: String,
    /// The event.
    pub body: Vec<u8>,
}

/// What a reader finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A whole, checked record.
    Record(Record),
    /// Damaged bytes skipped (a failed CRC, a bad frame) before the next valid record.
    Gap {
        /// The segment file.
        segment: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// How many bytes were skipped.
        bytes: u64,
    },
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The state directory or a segment could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// Another process holds the spool.
    #[error("the spool in {0} is in use by another process (is ssm-companion already running?)")]
    Busy(PathBuf),
    /// The record does not fit in `max_bytes`; nothing was written.
    #[error(
        "the spool is full ({used} of {max} bytes): the record of {need} bytes was not written; replayable sources pause until the shipper frees space (audit.spool_max)"
    )]
    Full {
        /// Bytes in use.
        used: u64,
        /// The limit.
        max: u64,
        /// The record's size.
        need: u64,
    },
    /// A record too large or with a source name too long.
    #[error("a record cannot be spooled: {0}")]
    Invalid(String),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError + use<> {
    let path = path.to_path_buf();
    move |source| SpoolError::State(StateError::Io { what, path, source })
}

/// The positions of every source as of a seal, and the last seq they cover.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Positions {
    through_seq: u64,
    positions: BTreeMap<String, String>,
}

/// The writer. One per spool directory (an exclusive lock).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    opts: Options,
    _lock: StateLock,
    file: File,
    path: PathBuf,
    size: u64,
    /// Bytes of every segment, sealed and open.
    used: u64,
    next_seq: u64,
    durable_seq: u64,
    unsynced_since: Option<Instant>,
    positions: BTreeMap<String, String>,
    /// Bytes cut from a torn tail at open.
    truncated: u64,
}

fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.seg")
}

/// The segment files of `dir`, by first seq.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        let e = e.map_err(io_err("cannot list", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Encodes a record.
fn frame(r: &Record) -> Result<Vec<u8>, SpoolError> {
    let source = r.source.as_bytes();
    let position = r.position.as_bytes();
    let (Ok(sl @ 1..), Ok(pl)) = (u8::try_from(source.len()), u16::try_from(position.len())) else {
        return Err(SpoolError::Invalid(format!(
            "a record needs a source name of 1 to 255 bytes (not {}) and a position of at most 65535 bytes (not {})",
            source.len(),
            position.len()
        )));
    };
    if r.body.len() > MAX_BODY {
        return Err(SpoolError::Invalid(format!(
            "the body of a record from {} is {} bytes, more than {MAX_BODY}",
            r.source,
            r.body.len()
        )));
    }
    let mut inner = Vec::with_capacity(FIXED + source.len() + position.len() + r.body.len());
    inner.extend_from_slice(&r.seq.to_le_bytes());
    inner.push(sl);
    inner.extend_from_slice(source);
    inner.extend_from_slice(&pl.to_le_bytes());
    inner.extend_from_slice(position);
    inner.extend_from_slice(&r.body);
    // At most FIXED + 255 + 65535 + MAX_BODY bytes: fits.
    let len = u32::try_from(inner.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEAD + inner.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&inner).to_le_bytes());
    out.extend_from_slice(&inner);
    Ok(out)
}

/// A record in place: its fields as slices of the segment.
struct Framed<'a> {
    seq: u64,
    source: &'a [u8],
    position: &'a [u8],
    body: &'a [u8],
}

impl Framed<'_> {
    /// The record's length in the segment, its frame included.
    fn frame_len(&self) -> usize {
        HEAD + FIXED + self.source.len() + self.position.len() + self.body.len()
    }

    fn record(&self) -> Record {
        Record {
            seq: self.seq,
            source: String::from_utf8_lossy(self.source).into_owned(),
            position: String::from_utf8_lossy(self.position).into_owned(),
            body: self.body.to_vec(),
        }
    }
}

/// Checks the record at the start of `buf`: `Some((record, its length))` when whole and
/// checked, without copying it.
fn frame_at(buf: &[u8]) -> Option<(Framed<'_>, usize)> {
    let head = buf.get(..HEAD)?;
    if &head[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[8..12].try_into().ok()?);
    if !(FIXED..=FIXED + 255 + 65535 + MAX_BODY).contains(&len) {
        return None;
    }
    let inner = buf.get(HEAD..HEAD + len)?;
    if crc32c::crc32c(inner) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(inner[..8].try_into().ok()?);
    let sl = usize::from(inner[8]);
    let source = inner.get(9..9 + sl)?;
    let pl_at = 9 + sl;
    let pl = usize::from(u16::from_le_bytes(
        inner.get(pl_at..pl_at + 2)?.try_into().ok()?,
    ));
    let position = inner.get(pl_at + 2..pl_at + 2 + pl)?;
    let body = inner.get(pl_at + 2 + pl..)?;
    Some((
        Framed {
            seq,
            source,
            position,
            body,
        },
        HEAD + len,
    ))
}

/// One thing [`walk`] finds in a segment.
enum Found1<'a> {
    Record(Framed<'a>),
    /// A damaged range: its length.
    Damaged(u64),
}

/// Walks a segment held in memory in offset order: each valid record (in place) and each
/// damaged range between them, with its offset, until `f` returns false.
fn walk<'a>(buf: &'a [u8], mut f: impl FnMut(u64, Found1<'a>) -> bool) {
    let mut at = 0;
    while at < buf.len() {
        let (item, next) = match frame_at(&buf[at..]) {
            Some((r, n)) => (Found1::Record(r), at + n),
            None => {
                // Resynchronise on the next magic that starts a valid record.
                let end = (at + 1..buf.len())
                    .find(|&i| buf[i..].starts_with(MAGIC) && frame_at(&buf[i..]).is_some())
                    .unwrap_or(buf.len());
                (Found1::Damaged((end - at) as u64), end)
            }
        };
        if !f(at as u64, item) {
            return;
        }
        at = next;
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`, recovering from a crash: a torn tail is truncated.
    pub fn open(dir: &Path, opts: Options) -> Result<Self, SpoolError> {
        // The segment being written is never deleted: were it most of `max_bytes`, a spool
        // full of shipped records would stay full. At most an eighth of the bound keeps the
        // room that shipping frees at seven eighths or more.
        let opts = Options {
            segment_bytes: opts.segment_bytes.min(opts.max_bytes / 8).max(4096),
            ..opts
        };
        let sd = StateDir::open(dir)?;
        let lock = sd.try_lock("lock").map_err(|e| match e {
            StateError::Busy { .. } => SpoolError::Busy(dir.to_path_buf()),
            e => e.into(),
        })?;
        let mut saved: Positions = state::read_json(&dir.join(POSITIONS))
            .map_err(|e| SpoolError::Invalid(e.to_string()))?
            .unwrap_or_default();
        let segs = segments(dir)?;
        let mut used = 0;
        for (_, p) in &segs {
            used += fs::metadata(p).map_err(io_err("cannot stat", p))?.len();
        }
        let (path, next_seq, size, truncated) = match segs.last() {
            None => (dir.join(segment_name(1)), 1, 0, 0),
            Some((first, p)) => {
                let buf = fs::read(p).map_err(io_err("cannot read", p))?;
                // One walk, nothing copied but the sources' positions: a full last segment
                // (32 MiB) is not held twice in memory.
                let mut valid_end = 0u64;
                let mut last_seq = None;
                let mut last_gap = None;
                walk(&buf, |at, item| {
                    match item {
                        Found1::Record(r) => {
                            valid_end = at + r.frame_len() as u64;
                            last_seq = Some(r.seq);
                            if r.seq > saved.through_seq && !r.position.is_empty() {
                                saved.positions.insert(
                                    String::from_utf8_lossy(r.source).into_owned(),
                                    String::from_utf8_lossy(r.position).into_owned(),
                                );
                            }
                        }
                        Found1::Damaged(n) => last_gap = Some((at, n)),
                    }
                    true
                });
                // Damage with no valid record after it is a torn tail: cut it.
                let torn = last_gap
                    .filter(|(off, _)| *off >= valid_end)
                    .map_or(0, |(_, n)| n);
                if torn > 0 {
                    tracing::warn!(
                        "spool: cut a torn tail of {torn} bytes from {} (a write interrupted by a crash)",
                        p.display()
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(p)
                        .map_err(io_err("cannot open", p))?;
                    f.set_len(valid_end).map_err(io_err("cannot truncate", p))?;
                    f.sync_all().map_err(io_err("cannot sync", p))?;
                    used -= torn;
                }
                let next = last_seq.map_or(*first, |s| s + 1);
                (p.clone(), next, valid_end, torn)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("cannot open", &path))?;
        if size == 0 {
            state::sync_dir(dir)?;
        } else {
            // What a kill -9 left in the page cache is on the disk before it counts as durable
            // (the shipper sends only durable records to S3).
            file.sync_data().map_err(io_err("cannot sync", &path))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            opts,
            _lock: lock,
            file,
            path,
            size,
            used,
            durable_seq: next_seq - 1,
            next_seq,
            unsynced_since: None,
            positions: saved.positions,
            truncated,
        })
    }

    /// Appends a record and returns its seq. Written at once (safe from kill -9); durable after
    /// the next sync. [`SpoolError::Full`] writes nothing.
    pub fn append(&mut self, source: &str, position: &str, body: &[u8]) -> Result<u64, SpoolError> {
        let r = Record {
            seq: self.next_seq,
            source: source.to_string(),
            position: position.to_string(),
            body: body.to_vec(),
        };
        let bytes = frame(&r)?;
        let need = bytes.len() as u64;
        if self.used + need > self.opts.max_bytes {
            return Err(SpoolError::Full {
                used: self.used,
                max: self.opts.max_bytes,
                need,
            });
        }
        if self.size > 0 && self.size + need > self.opts.segment_bytes {
            self.seal()?;
        }
        if let Err(e) = self.file.write_all(&bytes) {
            // A partial write is a torn tail: cut it so the next record follows a whole one.
            let _ = self.file.set_len(self.size);
            return Err(io_err("cannot append to", &self.path)(e));
        }
        self.size += need;
        self.used += need;
        self.next_seq += 1;
        if !position.is_empty() {
            self.positions.insert(r.source, r.position);
        }
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(r.seq)
    }

    /// Syncs when the oldest unsynced record has waited [`Options::sync_every`].
    pub fn sync_if_due(&mut self) -> Result<u64, SpoolError> {
        match self.unsynced_since {
            Some(t) if t.elapsed() >= self.opts.sync_every => self.sync(),
            _ => Ok(self.durable_seq),
        }
    }

    /// `fdatasync`s the open segment; returns the durable seq.
    pub fn sync(&mut self) -> Result<u64, SpoolError> {
        if self.unsynced_since.is_some() {
            self.file
                .sync_data()
                .map_err(io_err("cannot sync", &self.path))?;
            self.unsynced_since = None;
        }
        self.durable_seq = self.next_seq - 1;
        Ok(self.durable_seq)
    }

    /// Seals the open segment (synced, then the positions it covers saved) and starts the next.
    pub fn seal(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        if self.size == 0 {
            return Ok(());
        }
        let saved = Positions {
            through_seq: self.durable_seq,
            positions: self.positions.clone(),
        };
        let json = serde_json::to_vec(&saved).map_err(|e| SpoolError::Invalid(e.to_string()))?;
        state::write_atomic(&self.dir.join(POSITIONS), &json, 0o600)?;
        self.path = self.dir.join(segment_name(self.next_seq));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io_err("cannot open", &self.path))?;
        state::sync_dir(&self.dir)?;
        self.size = 0;
        Ok(())
    }

    /// Deletes the sealed segments whose records all have seq ≤ `seq` (shipped). Returns the
    /// bytes freed.
    pub fn release_through(&mut self, seq: u64) -> Result<u64, SpoolError> {
        let segs = segments(&self.dir)?;
        let mut freed = 0;
        for w in segs.windows(2) {
            let ((_, p), (next_first, _)) = (&w[0], &w[1]);
            if *next_first <= seq + 1 && *p != self.path {
                let n = fs::metadata(p).map_err(io_err("cannot stat", p))?.len();
                state::remove_file(p)?;
                freed += n;
            }
        }
        self.used -= freed.min(self.used);
        Ok(freed)
    }

    /// The last position the spool holds for `source`.
    pub fn position(&self, source: &str) -> Option<&str> {
        self.positions.get(source).map(String::as_str)
    }

    /// The seq the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last seq known to be on disk.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Bytes held by the segment files.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Bytes of a torn tail cut at open (0 after a clean stop).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Reads up to `max` items from seq `from` on (see [`read`]).
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<Read>, SpoolError> {
        read(&self.dir, from, max)
    }
}

/// The items of one segment in file order: its records with seq ≥ `from`, and its damaged
/// ranges. `None` when the segment was released meanwhile.
fn segment_items(p: &Path, from: u64) -> Result<Option<Vec<Read>>, SpoolError> {
    let mut items = Vec::new();
    let found = visit_segment(p, from, |r| {
        items.push(r);
        true
    })?;
    Ok(found.map(|_| items))
}

/// Calls `f` with the items of one segment (see [`visit`]), copying only the records at or
/// after `from`. `Ok(None)`: the segment is gone (released meanwhile); `Ok(Some(false))`: `f`
/// asked to stop.
fn visit_segment(
    p: &Path,
    from: u64,
    mut f: impl FnMut(Read) -> bool,
) -> Result<Option<bool>, SpoolError> {
    let buf = match fs::read(p) {
        Ok(b) => b,
        // Released by the shipper meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", p)(e)),
    };
    let mut go_on = true;
    walk(&buf, |offset, item| {
        go_on = match item {
            Found1::Record(r) if r.seq < from => true,
            Found1::Record(r) => f(Read::Record(r.record())),
            Found1::Damaged(bytes) => f(Read::Gap {
                segment: p.to_path_buf(),
                offset,
                bytes,
            }),
        };
        go_on
    });
    Ok(Some(go_on))
}

/// Calls `f` with every item (records with seq ≥ `from`, and the damaged ranges among them) of
/// the spool in `dir`, in order, one segment in memory at a time (the records copied one at a
/// time), until `f` returns false. No lock is needed: segments are only appended to, and a
/// reader stops at the end it sees.
pub fn visit(dir: &Path, from: u64, mut f: impl FnMut(Read) -> bool) -> Result<(), SpoolError> {
    let segs = segments(dir)?;
    for (i, (_, p)) in segs.iter().enumerate() {
        // Skip segments that end before `from`.
        if segs.get(i + 1).is_some_and(|(next, _)| *next <= from) {
            continue;
        }
        if visit_segment(p, from, &mut f)? == Some(false) {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads up to `max` items from seq `from` on (see [`visit`]).
pub fn read(dir: &Path, from: u64, max: usize) -> Result<Vec<Read>, SpoolError> {
    let mut out = Vec::new();
    if max > 0 {
        visit(dir, from, |r| {
            out.push(r);
            out.len() < max
        })?;
    }
    Ok(out)
}

/// The last `n` records (with the damaged ranges among them), oldest first: read from the last
/// segment backwards, so a large spool costs only its tail.
pub fn read_last(dir: &Path, n: usize) -> Result<Vec<Read>, SpoolError> {
    let mut out: Vec<Read> = Vec::new();
    let count = |v: &[Read]| v.iter().filter(|r| matches!(r, Read::Record(_))).count();
    for (_, p) in segments(dir)?.iter().rev() {
        if count(&out) >= n {
            break;
        }
        let mut items = segment_items(p, 0)?.unwrap_or_default();
        items.append(&mut out);
        out = items;
    }
    // Keep the last n records and what lies between them.
    let mut seen = 0;
    let cut = out
        .iter()
        .rposition(|r| {
            if matches!(r, Read::Record(_)) {
                seen += 1;
            }
            seen > n
        })
        .map_or(0, |i| i + 1);
    Ok(out.split_off(cut))
}

/// The segment files: how many, and their bytes together.
pub fn usage(dir: &Path) -> Result<(usize, u64), SpoolError> {
    let segs = segments(dir)?;
    let bytes = segs
        .iter()
        .filter_map(|(_, p)| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok((segs.len(), bytes))
}

/// A record's length in a segment (the tests' yardstick; readers use [`Framed::frame_len`]).
#[cfg(test)]
fn frame_len(r: &Record) -> usize {
    HEAD + FIXED + r.source.len() + r.position.len() + r.body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spool_has_room_again_once_its_records_are_shipped() {
        let d = tempfile::tempdir().unwrap();
        // A bound below the default segment size (32 MiB): the smallest the config allows is
        // 8 MiB; scaled down here.
        let small = Options {
            max_bytes: 64 << 10,
            ..Options::default()
        };
        let mut s = Spool::open(d.path(), small).unwrap();
        let body = vec![b'x'; 1000];
        let last = loop {
            match s.append("t", "", &body) {
                Ok(_) => {}
                Err(SpoolError::Full { .. }) => break s.next_seq() - 1,
                Err(e) => panic!("{e}"),
            }
        };
        assert!(last > 50, "{last}");
        s.sync().unwrap();
        // Everything shipped: most of the space comes back, and appending goes on.
        let freed = s.release_through(last).unwrap();
        assert!(freed >= 7 * (64 << 10) / 8 - 2048, "freed only {freed}");
        s.append("t", "", &body).unwrap();
    }

    fn opts() -> Options {
        Options {
            max_bytes: 1 << 20,
            segment_bytes: 4096,
            sync_every: Duration::from_secs(1),
        }
    }

    fn records(dir: &Path) -> Vec<Record> {
        read(dir, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Read::Record(r) => Some(r),
                Read::Gap { .. } => None,
            })
            .collect()
    }

    #[test]
    fn the_last_records_come_from_the_tail_across_segments() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), opts()).unwrap();
        for i in 0..200u32 {
            s.append("t", &i.to_string(), &[7; 100]).unwrap();
        }
        let seqs = |v: Vec<Read>| {
            v.into_iter()
                .filter_map(|r| match r {
                    Read::Record(r) => Some(r.seq),
                    Read::Gap { .. } => None,
                })
                .collect::<Vec<_>>()
        };
        let (segments, bytes) = usage(d.path()).unwrap();
        assert!(segments > 3, "{segments} segments");
        assert_eq!(bytes, s.used());
        assert_eq!(
            seqs(read_last(d.path(), 5).unwrap()),
            (196..=200).collect::<Vec<_>>()
        );
        assert_eq!(seqs(read_last(d.path(), 150).unwrap()).len(), 150);
        assert_eq!(seqs(read_last(d.path(), 1000).unwrap()).len(), 200);
        assert!(read_last(d.path(), 0).unwrap().is_empty());
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), opts()).unwrap();
            for i in 0..200 {
                let seq = s
                    .append(
                        "journal",
                        &format!("cursor-{i}"),
                        format!("event {i}").as_bytes(),
                    )
                    .unwrap();
                assert_eq!(seq, i + 1);
            }
            s.sync().unwrap();
            assert_eq!(s.durable_seq(), 200);
        }
        assert!(
            segments(d.path()).unwrap().len() >= 3,
            "small segments were sealed"
        );
        let s = Spool::open(d.path(), opts()).unwrap();
        assert_eq!(s.next_seq(), 201, "seq continues after a restart");
        assert_eq!(s.position("journal"), Some("cursor-199"));
        let rs = records(d.path());
        assert_eq!(rs.len(), 200);
        assert!(rs.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert_eq!(rs[41].body, b"event 41");
        // Reading from the middle skips whole segments before it.
        let tail = read(d.path(), 150, usize::MAX).unwrap();
        assert_eq!(read(d.path(), 150, 10).unwrap().len(), 10);
        assert_eq!(tail.len(), 51);
    }

    /// A write cut at any byte of the last record (a crash mid-write): the spool opens, every
    /// earlier record survives, the torn one is gone and its seq is used again.
    #[test]
    fn a_torn_tail_at_every_byte_is_cut_and_earlier_records_survive() {
        let d = tempfile::tempdir().unwrap();
        let whole = {
            let mut s = Spool::open(d.path(), opts()).unwrap();
            s.append("files", "a.log:10", b"first").unwrap();
            s.append("files", "a.log:20", b"second").unwrap();
            s.sync().unwrap();
            fs::read(&s.path).unwrap()
        };
        let seg = d.path().join(segment_name(1));
        let second_at = whole.len()
            - frame_len(&Record {
                seq: 2,
                source: "files".into(),
                position: "a.log:20".into(),
                body: b"second".to_vec(),
            });
        for cut in second_at..whole.len() {
            fs::write(&seg, &whole[..cut]).unwrap();
            let mut s = Spool::open(d.path(), opts()).unwrap();
            assert_eq!(s.truncated(), (cut - second_at) as u64, "cut at {cut}");
            assert_eq!(s.next_seq(), 2, "cut at {cut}");
            assert_eq!(s.position("files"), Some("a.log:10"), "cut at {cut}");
            assert_eq!(s.append("files", "a.log:20", b"again").unwrap(), 2);
            drop(s);
            let rs = records(d.path());
            assert_eq!(
                rs.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>(),
                [b"first".as_slice(), b"again".as_slice()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_a_gap_and_the_records_after_it_survive() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), opts()).unwrap();
            for i in 0..3 {
                s.append("sessions", "", format!("event {i}").as_bytes())
                    .unwrap();
            }
        }
        let seg = d.path().join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        let first = frame_len(&records(d.path())[0]);
        bytes[first + HEAD + 12] ^= 0x40; // inside the second record
        fs::write(&seg, &bytes).unwrap();
        let all = read(d.path(), 0, usize::MAX).unwrap();
        assert!(
            matches!(&all[1], Read::Gap { offset, .. } if *offset == first as u64),
            "{all:?}"
        );
        let bodies: Vec<Vec<u8>> = records(d.path()).into_iter().map(|r| r.body).collect();
        assert_eq!(bodies, [b"event 0".to_vec(), b"event 2".to_vec()]);
        // Damage followed by a valid record is not a torn tail: nothing is cut at open.
        let s = Spool::open(d.path(), opts()).unwrap();
        assert_eq!(s.truncated(), 0);
        assert_eq!(s.next_seq(), 4);
    }

    #[test]
    fn a_full_spool_writes_nothing_until_segments_are_released() {
        let d = tempfile::tempdir().unwrap();
        let small = Options {
            max_bytes: 8192,
            segment_bytes: 2048,
            ..opts()
        };
        let mut s = Spool::open(d.path(), small).unwrap();
        let body = [b'x'; 200];
        let mut last = 0;
        let err = loop {
            match s.append("journal", "c", &body) {
                Ok(seq) => last = seq,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, SpoolError::Full { .. }), "{err}");
        assert!(err.to_string().contains("audit.spool_max"), "{err}");
        let used = s.used();
        assert!(used <= 8192);
        assert_eq!(s.next_seq(), last + 1, "a refused record takes no seq");
        // The shipper acknowledges everything written so far: sealed segments go.
        let freed = s.release_through(last).unwrap();
        assert!(freed > 0);
        assert_eq!(s.used(), used - freed);
        assert_eq!(s.append("journal", "c", &body).unwrap(), last + 1);
        let rs = records(d.path());
        assert_eq!(rs.last().unwrap().seq, last + 1);
    }

    /// A source that wrote nothing since its segments were shipped and deleted keeps its
    /// position (saved at each seal), so a restart neither re-reads nor skips it.
    #[test]
    fn positions_outlive_released_segments() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), opts()).unwrap();
            s.append("journal", "cursor-7", b"sudo").unwrap();
            for i in 0..300 {
                s.append("files", &format!("a.log:{i}"), &[b'x'; 20])
                    .unwrap();
            }
            let last = s.sync().unwrap();
            assert!(s.release_through(last).unwrap() > 0);
            assert!(
                read(d.path(), 0, usize::MAX)
                    .unwrap()
                    .iter()
                    .all(|r| !matches!(r, Read::Record(r) if r.source == "journal"))
            );
        }
        let s = Spool::open(d.path(), opts()).unwrap();
        assert_eq!(s.position("journal"), Some("cursor-7"));
        assert_eq!(s.position("files"), Some("a.log:299"));
        assert_eq!(s.next_seq(), 302);
    }

    #[test]
    fn one_writer_per_spool() {
        let d = tempfile::tempdir().unwrap();
        let _s = Spool::open(d.path(), opts()).unwrap();
        let e = Spool::open(d.path(), opts()).unwrap_err();
        assert!(matches!(e, SpoolError::Busy(_)), "{e}");
    }

    #[test]
    fn group_commit_syncs_when_due() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(
            d.path(),
            Options {
                sync_every: Duration::ZERO,
                ..opts()
            },
        )
        .unwrap();
        s.append("journal", "c1", b"e").unwrap();
        assert_eq!(s.durable_seq(), 0);
        assert_eq!(s.sync_if_due().unwrap(), 1);
        let mut lazy = Spool::open(tempfile::tempdir().unwrap().path(), opts()).unwrap();
        lazy.append("journal", "c1", b"e").unwrap();
        assert_eq!(lazy.sync_if_due().unwrap(), 0, "not due yet");
    }

    #[test]
    fn hostile_records_are_refused_whole() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), opts()).unwrap();
        assert!(s.append("", "", b"x").is_err());
        assert!(s.append(&"s".repeat(256), "", b"x").is_err());
        assert!(s.append("journal", "", &vec![0; MAX_BODY + 1]).is_err());
        assert_eq!(s.next_seq(), 1);
        // Bytes that look like a frame inside a body do not confuse the reader.
        let tricky = frame(&Record {
            seq: 99,
            source: "fake".into(),
            position: String::new(),
            body: b"inner".to_vec(),
        })
        .unwrap();
        s.append("journal", "", &tricky).unwrap();
        let rs = records(d.path());
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].body, tricky);
    }
}
