//! Shipping the spool to S3, the parts without I/O to AWS: which records make the next object
//! (a batch), the object's bytes and key, and the ledger that says what is in S3.
//!
//! A batch is a contiguous range of durable records (never past the spool's `durable_seq`: a
//! power cut cannot take back what S3 has), of one UTC day of event time, at most
//! `audit.s3.max_object_size` bytes of JSON Lines. Its object is the records' bodies in
//! sequence order, one per line, with a `gap` event where the spool found damaged bytes between
//! two of them, gzip-compressed with a fixed header and level: the same range always gives the
//! same bytes. Before an upload the ledger records the range and its key (the *intent*), so a
//! retry after a crash — even with another identity or configuration — rebuilds the same object
//! under the same key, and S3's `If-None-Match: *` answers 412 if the first attempt had landed.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ocsf;
use super::spool::{self, Read, SpoolError};
use crate::state::{self, StateError};

/// The ledger, in the spool directory (it goes with the spool it describes).
pub const LEDGER: &str = "shipped.json";
/// The file `audit flush` creates in the spool directory; the shipper ships everything durable
/// while it exists and deletes it once S3 has it all.
pub const FLUSH_REQUEST: &str = "flush.request";

/// What is in S3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// This spool's id, in every object's key: made with the ledger, so a spool made again
    /// (sequence numbers from 1) never names an object of the old one.
    pub spool_id: String,
    /// Every record up to this sequence number is in S3.
    pub shipped_seq: u64,
    /// The batch being uploaded, rebuilt identically after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// Objects shipped (created, or found already there).
    #[serde(default)]
    pub objects: u64,
    /// Their bytes (compressed).
    #[serde(default)]
    pub bytes: u64,
    /// The last object shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<String>,
    /// When (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upload_ms: Option<i64>,
    /// Why the last upload failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The `metadata.uid` of the record `shipped_seq`: a spool made again (numbered from 1)
    /// has another record there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_uid: Option<String>,
}

/// The `metadata.uid` of the record `seq`, if the spool in `dir` still holds it.
pub fn uid_at(dir: &Path, seq: u64) -> Result<Option<String>, SpoolError> {
    let mut found = None;
    spool::visit(dir, seq, |item| match item {
        Read::Record(r) => {
            if r.seq == seq {
                found = serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v["metadata"]["uid"].as_str().map(String::from));
            }
            false
        }
        Read::Gap { .. } => true,
    })?;
    Ok(found)
}

/// The `metadata.uid` of a record body (the last line of a batch).
pub fn uid_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["metadata"]["uid"].as_str().map(String::from))
}

/// A batch on its way: its range and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// `shipped_seq` when the batch was made: damage after that record leads the batch.
    #[serde(default)]
    pub after: Option<u64>,
    /// The first record's sequence number.
    pub first: u64,
    /// The last record's.
    pub last: u64,
    /// The object's key.
    pub key: String,
}

impl Ledger {
    /// The ledger of the spool in `dir`; a new one (with a new spool id) when there is none.
    pub fn load(dir: &Path) -> Result<Self, state::LoadError> {
        Ok(match state::load_json::<Ledger>(dir, LEDGER)? {
            Some(l) if !l.spool_id.is_empty() => l,
            _ => Ledger {
                spool_id: format!("{:016x}", fastrand::u64(..)),
                ..Ledger::default()
            },
        })
    }

    /// Writes the ledger (atomically, synced).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        state::save_json(dir, LEDGER, self, 0o600)
    }
}

/// The records of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The first record's sequence number.
    pub first: u64,
    /// The last record's.
    pub last: u64,
    /// The UTC day of the events (`YYYY-MM-DD`).
    pub day: String,
    /// One JSON document per line.
    pub lines: Vec<Vec<u8>>,
    /// The lines' bytes.
    pub bytes: usize,
    /// A record of the batch carries an alert: ship it at once.
    pub alert: bool,
    /// The batch is closed: by size, or by the next record's day.
    pub sealed: bool,
}

/// The UTC day of an event time (ms since the epoch).
pub fn day_of(time_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(time_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The event time and whether an alert rule marked it, from a record's body.
pub(crate) fn facts(body: &[u8]) -> (i64, bool) {
    #[derive(Deserialize)]
    struct Facts {
        #[serde(default)]
        time: i64,
        #[serde(default)]
        metadata: Option<Meta>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        labels: Vec<String>,
    }
    match serde_json::from_slice::<Facts>(body) {
        Ok(f) => (
            f.time,
            f.metadata
                .is_some_and(|m| m.labels.iter().any(|l| l.starts_with("alert:"))),
        ),
        Err(_) => (0, false),
    }
}

/// A damaged range of the spool, as the `gap` event a reader reports (its id is the segment
/// and offset: the same damage is the same event).
pub fn damaged(segment: &Path, offset: u64, bytes: u64, device: &ocsf::Device) -> ocsf::Event {
    let name = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ocsf::gap(
        0,
        &ocsf::Origin {
            source: "spool".into(),
            position: format!("{name}@{offset}"),
        },
        device,
        None,
        None,
        &format!(
            "{bytes} damaged bytes in {name} at offset {offset} (a failed CRC32C or a broken frame)"
        ),
    )
}

/// The batch of records after `shipped` and at most `durable`: at most `max_bytes` of lines
/// (one record at least), of one UTC day. `None` when no durable record follows `shipped`.
/// Damaged ranges after the record `shipped` and before the batch's last record become gap
/// events in it; damage after its last record goes with the next batch.
pub fn next_batch(
    dir: &Path,
    shipped: u64,
    durable: u64,
    max_bytes: usize,
    device: &ocsf::Device,
) -> Result<Option<Batch>, SpoolError> {
    collect(dir, shipped + 1, durable, Some(max_bytes), device)
}

/// The batch of the records after `after` through `last` (an intent's range, rebuilt to the
/// same lines: the same damage included).
pub fn batch_of(
    dir: &Path,
    after: u64,
    last: u64,
    device: &ocsf::Device,
) -> Result<Option<Batch>, SpoolError> {
    collect(dir, after + 1, last, None, device)
}

/// The first sequence number of a segment, from its name (`seg-<first>.seg`).
fn segment_first(p: &Path) -> Option<u64> {
    p.file_name()?
        .to_str()?
        .strip_prefix("seg-")?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

fn collect(
    dir: &Path,
    from: u64,
    through: u64,
    max_bytes: Option<usize>,
    device: &ocsf::Device,
) -> Result<Option<Batch>, SpoolError> {
    // The record before the batch: damage after it (and before the batch's first record)
    // belongs to this batch; damage before it was the previous batch's.
    let anchor = from.saturating_sub(1);
    let mut past_anchor = anchor == 0;
    let mut batch: Option<Batch> = None;
    let mut pending_gaps: Vec<Vec<u8>> = Vec::new();
    spool::visit(dir, anchor.max(1), |item| match item {
        Read::Gap {
            segment,
            offset,
            bytes,
        } => {
            if past_anchor || segment_first(&segment).is_some_and(|f| f > anchor) {
                let e = damaged(&segment, offset, bytes, device);
                pending_gaps.push(serde_json::to_vec(&e).unwrap_or_default());
            }
            true
        }
        Read::Record(r) => {
            if r.seq <= anchor {
                past_anchor = true;
                return true;
            }
            past_anchor = true;
            if r.seq > through {
                return false;
            }
            let (time, alert) = facts(&r.body);
            let day = day_of(time);
            match batch.as_mut() {
                None => {
                    let mut lines = std::mem::take(&mut pending_gaps);
                    let bytes = lines.iter().map(|l| l.len() + 1).sum::<usize>() + r.body.len() + 1;
                    lines.push(r.body);
                    batch = Some(Batch {
                        first: r.seq,
                        last: r.seq,
                        bytes,
                        lines,
                        day,
                        alert,
                        sealed: false,
                    });
                    true
                }
                Some(b) => {
                    let gap_bytes: usize = pending_gaps.iter().map(|g| g.len() + 1).sum();
                    let grown = b.bytes + gap_bytes + r.body.len() + 1;
                    if let Some(max) = max_bytes
                        && (day != b.day || grown > max)
                    {
                        b.sealed = true;
                        return false;
                    }
                    b.lines.append(&mut pending_gaps);
                    b.lines.push(r.body);
                    b.bytes = grown;
                    b.last = r.seq;
                    b.alert |= alert;
                    true
                }
            }
        }
    })?;
    Ok(batch)
}

/// The object of a batch: its lines, gzip-compressed with header time 0 and level 6.
pub fn object(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    for l in lines {
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(l);
        let _ = gz.write_all(b"\n");
    }
    gz.finish().unwrap_or_default()
}

/// Where a host's objects go: the key's parts that name the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// `audit.s3.prefix`, without slashes at its ends.
    pub prefix: String,
    /// The AWS account (`unknown` off EC2 without one).
    pub account: String,
    /// The region.
    pub region: String,
    /// The instance (or managed instance) id, else the host name.
    pub instance: String,
}

/// A key component safe in a Hive partition value: what S3 keys and Athena take without
/// escaping; anything else (a hostile host name) becomes `_`.
fn component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if c.is_empty() || c.chars().all(|c| c == '.') {
        "unknown".into()
    } else {
        c
    }
}

/// `<prefix>/account_id=<id>/region=<r>/dt=<YYYY-MM-DD>/instance_id=<id>/<first>-<last>-<spool
/// id>.json.gz`, sequence numbers zero-padded to 20 digits so keys sort in spool order.
pub fn key(place: &Place, day: &str, first: u64, last: u64, spool_id: &str) -> String {
    let mut k = String::new();
    let prefix = place.prefix.trim_matches('/');
    if !prefix.is_empty() {
        k.push_str(prefix);
        k.push('/');
    }
    k.push_str(&format!(
        "account_id={}/region={}/dt={}/instance_id={}/{first:020}-{last:020}-{}.json.gz",
        component(&place.account),
        component(&place.region),
        component(day),
        component(&place.instance),
        component(spool_id)
    ));
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::{Options, Spool};

    fn body(seq: u64, time_ms: i64, alert: bool) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "time": time_ms,
            "message": format!("event {seq}"),
            "metadata": {"labels": if alert { vec!["alert:sudo"] } else { vec![] }},
        }))
        .unwrap()
    }

    const DAY1: i64 = 1_796_515_200_000; // 2026-12-06T00:00:00Z

    #[test]
    fn batches_stop_at_the_size_the_day_and_the_durable_end() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("spool");
        let mut s = Spool::open(&dir, Options::default()).unwrap();
        for i in 1..=10 {
            let t = if i <= 6 {
                DAY1 - 1000 + i as i64
            } else {
                DAY1 + i as i64
            };
            s.append("t", "", &body(i, t, i == 3)).unwrap();
        }
        let dev = ocsf::Device::default();
        let three: usize = (1..=3)
            .map(|i| body(i, DAY1 - 1000 + i as i64, i == 3).len() + 1)
            .sum();
        // Size: three records fit, a fourth does not.
        let b = next_batch(&dir, 0, 10, three + 2, &dev).unwrap().unwrap();
        assert_eq!((b.first, b.last, b.sealed, b.alert), (1, 3, true, true));
        // Day: 4..6 are the 5th, 7.. the 6th.
        let b = next_batch(&dir, 3, 10, 1 << 20, &dev).unwrap().unwrap();
        assert_eq!(
            (b.first, b.last, b.sealed, b.day.as_str()),
            (4, 6, true, "2026-12-05")
        );
        // The durable end: not sealed, waits for age.
        let b = next_batch(&dir, 6, 8, 1 << 20, &dev).unwrap().unwrap();
        assert_eq!(
            (b.first, b.last, b.sealed, b.day.as_str()),
            (7, 8, false, "2026-12-06")
        );
        assert!(next_batch(&dir, 10, 10, 1 << 20, &dev).unwrap().is_none());
        // An intent's range is rebuilt to the same bytes.
        let again = batch_of(&dir, 6, 8, &dev).unwrap().unwrap();
        assert_eq!(object(&again.lines), object(&b.lines));
        assert_eq!(b.lines.len(), 2);
    }

    /// Damage between batches is shipped once, with the batch after it.
    #[test]
    fn damage_at_a_batch_boundary_goes_with_the_next_batch() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("spool");
        let mut s = Spool::open(&dir, Options::default()).unwrap();
        for i in 1..=4 {
            s.append("t", "", &body(i, DAY1, false)).unwrap();
        }
        drop(s);
        // Flip a byte in record 3's body.
        let seg = dir.join("seg-00000000000000000001.seg");
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes.windows(7).position(|w| w == b"event 3").unwrap();
        bytes[at + 6] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        let dev = ocsf::Device::default();
        let gaps = |b: &Batch| {
            b.lines
                .iter()
                .filter(|l| String::from_utf8_lossy(l).contains("damaged bytes"))
                .count()
        };
        // Shipped through 2, then the rest: the gap (record 3) leads the next batch.
        let first = next_batch(&dir, 0, 2, 1 << 20, &dev).unwrap().unwrap();
        assert_eq!((first.first, first.last, gaps(&first)), (1, 2, 0));
        let next = next_batch(&dir, 2, 4, 1 << 20, &dev).unwrap().unwrap();
        assert_eq!((next.first, next.last, gaps(&next)), (4, 4, 1));
        assert_eq!(
            batch_of(&dir, 2, 4, &dev).unwrap().unwrap().lines,
            next.lines
        );
        // From the start in one batch: the gap once, between 2 and 4.
        let all = next_batch(&dir, 0, 4, 1 << 20, &dev).unwrap().unwrap();
        assert_eq!(
            (all.first, all.last, gaps(&all), all.lines.len()),
            (1, 4, 1, 4)
        );
    }

    #[test]
    fn objects_are_deterministic_gzip_json_lines() {
        let lines = vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()];
        let o = object(&lines);
        assert_eq!(o, object(&lines));
        assert_eq!(&o[4..8], &[0, 0, 0, 0], "header mtime 0");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&o[..]), &mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn keys_are_hive_partitions_and_hostile_parts_are_neutralised() {
        let place = Place {
            prefix: "/audit/".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            instance: "i-0123456789abcdef0".into(),
        };
        assert_eq!(
            key(&place, "2026-12-06", 1, 42, "00ff"),
            "audit/account_id=123456789012/region=us-east-1/dt=2026-12-06/instance_id=i-0123456789abcdef0/00000000000000000001-00000000000000000042-00ff.json.gz"
        );
        let hostile = Place {
            prefix: String::new(),
            account: String::new(),
            region: "../..".into(),
            instance: "a/b=c d".into(),
        };
        assert_eq!(
            key(&hostile, "2026-12-06", 1, 1, "x"),
            "account_id=unknown/region=.._../dt=2026-12-06/instance_id=a_b_c_d/00000000000000000001-00000000000000000001-x.json.gz"
        );
    }

    #[test]
    fn the_record_at_a_seq_is_found_by_its_uid() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("spool");
        let mut s = Spool::open(&dir, Options::default()).unwrap();
        for i in 1..=3 {
            let b = serde_json::json!({"time": DAY1, "metadata": {"uid": format!("u{i}")}});
            s.append("t", "", &serde_json::to_vec(&b).unwrap()).unwrap();
        }
        assert_eq!(uid_at(&dir, 2).unwrap().as_deref(), Some("u2"));
        assert_eq!(uid_at(&dir, 9).unwrap(), None);
        assert_eq!(uid_of(br#"{"metadata":{"uid":"x"}}"#).as_deref(), Some("x"));
    }

    #[test]
    fn the_ledger_keeps_its_spool_id() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::load(d.path()).unwrap();
        assert_eq!(l.spool_id.len(), 16);
        let mut l2 = l.clone();
        l2.shipped_seq = 5;
        l2.save(d.path()).unwrap();
        assert_eq!(Ledger::load(d.path()).unwrap(), l2);
    }
}
