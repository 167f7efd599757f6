//! The CloudWatch Logs sink, the parts without I/O: which records of a batch go (alerts, or
//! all), as log events within `PutLogEvents`' limits, and the cursor that says how far the
//! sink has sent.
//!
//! The sink reads the same spool as the S3 shipper, with its own cursor; the spool keeps a
//! segment until every configured sink is past it. CloudWatch stores a batch sent twice twice,
//! so a crash between a call and the cursor's write repeats that batch: at least once (each
//! event's `metadata.uid` tells the repeats apart).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aws::logs::LogEvent;
use crate::config::CloudWatchEvents;
use crate::state::{self, StateError};

/// The cursor, in the spool directory (it goes with the spool it describes).
pub const CURSOR: &str = "cloudwatch.json";
/// At most this many events per call.
pub const MAX_EVENTS: usize = 10_000;
/// At most this many bytes per call: the messages' UTF-8 bytes plus [`EVENT_OVERHEAD`] each.
pub const MAX_BYTES: usize = 1_048_576;
/// What CloudWatch counts for each event beside its message.
pub const EVENT_OVERHEAD: usize = 26;
/// The longest message (256 KiB with the overhead); longer events are cut (S3 has them whole).
pub const MAX_MESSAGE: usize = 256 * 1024 - EVENT_OVERHEAD;
/// A call's events span at most 24 hours.
const MAX_SPAN_MS: i64 = 24 * 3600 * 1000 - 1;
/// CloudWatch refuses events older than 14 days (kept an hour inside) …
const TOO_OLD_MS: i64 = (14 * 24 - 1) * 3600 * 1000;
/// … and more than 2 hours ahead (kept 5 minutes inside).
const TOO_NEW_MS: i64 = 2 * 3600 * 1000 - 5 * 60 * 1000;

/// How far the sink has sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The log group it is about: another group starts at the spool's end.
    pub log_group: String,
    /// Every record up to this sequence number was sent (or was not to be sent).
    pub sent_seq: u64,
    /// Events sent.
    #[serde(default)]
    pub events: u64,
    /// `PutLogEvents` calls that succeeded.
    #[serde(default)]
    pub calls: u64,
    /// Message bytes sent.
    #[serde(default)]
    pub bytes: u64,
    /// The last successful call (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_put_ms: Option<i64>,
    /// `audit.cloudwatch.region` (empty: the host's): another region is another group.
    #[serde(default)]
    pub region: String,
    /// The `metadata.uid` of the record `sent_seq`: a spool made again (numbered from 1) has
    /// another record there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_uid: Option<String>,
}

impl Cursor {
    /// The cursor of the spool in `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Self>, state::LoadError> {
        state::load_json::<Cursor>(dir, CURSOR)
    }

    /// The cursor for `group` in `region`: the one on disk when it is about that group, else a
    /// new one starting after `start` (the spool's durable end before this run appended: the
    /// records spooled before the sink was configured for this group are not sent), written
    /// before it is returned. A cursor past `start`, or whose last record is now another one
    /// (the spool was made again, numbered from 1), starts over at the spool's beginning. A
    /// damaged cursor is replaced like a missing one; `Err` when the disk fails (try again:
    /// nothing was replaced). The second value says why a cursor was made or moved.
    pub fn begin(
        dir: &Path,
        group: &str,
        region: &str,
        start: u64,
    ) -> Result<(Self, Option<String>), String> {
        let fresh = |sent_seq| Cursor {
            log_group: group.to_string(),
            region: region.to_string(),
            sent_seq,
            ..Cursor::default()
        };
        let (c, why) = match Self::load(dir) {
            Ok(Some(c)) if c.log_group == group && c.region == region => {
                let renumbered = c.sent_seq > start
                    || (c.sent_seq > 0
                        && c.last_uid.as_ref().is_some_and(|want| {
                            crate::audit::ship::uid_at(dir, c.sent_seq)
                                .ok()
                                .flatten()
                                .is_some_and(|u| &u != want)
                        }));
                if !renumbered {
                    return Ok((c, None));
                }
                (
                    Cursor {
                        sent_seq: 0,
                        last_uid: None,
                        ..c
                    },
                    format!(
                        "the spool was made again: it holds other records than the seq {} the cursor names; sending it from its start",
                        c.sent_seq
                    ),
                )
            }
            Ok(Some(_)) => (
                fresh(start),
                "the log group or its region changed".to_string(),
            ),
            Ok(None) => (fresh(start), "first start".to_string()),
            Err(e @ state::LoadError::Invalid { .. }) => {
                (fresh(start), format!("the cursor was damaged: {e}"))
            }
            Err(e) => return Err(e.to_string()),
        };
        c.save(dir).map_err(|e| e.to_string())?;
        Ok((c, Some(why)))
    }

    /// Writes the cursor (atomically, synced).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        state::save_json(dir, CURSOR, self, 0o600)
    }
}

/// A batch's records as calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    /// The calls, each in time order and within the limits.
    pub calls: Vec<Vec<LogEvent>>,
    /// Events left out for their time (CloudWatch would refuse them; S3 has them).
    pub out_of_range: usize,
    /// Events cut to [`MAX_MESSAGE`] bytes.
    pub cut: usize,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The log events of a batch's lines (`which` of them), at `now_ms`, in calls.
pub fn calls(lines: &[Vec<u8>], which: CloudWatchEvents, now_ms: i64) -> Calls {
    let mut out = Calls::default();
    let mut events = Vec::new();
    for line in lines {
        let (time, alert) = crate::audit::ship::facts(line);
        if which == CloudWatchEvents::Alerts && !alert {
            continue;
        }
        // An event without a time (a gap the spool found) is stamped now.
        let timestamp = if time > 0 { time } else { now_ms };
        if timestamp < now_ms - TOO_OLD_MS || timestamp > now_ms + TOO_NEW_MS {
            out.out_of_range += 1;
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let message = cut(&text, MAX_MESSAGE);
        if message.len() < text.len() {
            out.cut += 1;
        }
        events.push(LogEvent {
            timestamp,
            message: message.to_string(),
        });
    }
    // In time order (a stable sort: records of one millisecond keep their spool order).
    events.sort_by_key(|e| e.timestamp);
    let mut call: Vec<LogEvent> = Vec::new();
    let mut bytes = 0;
    for e in events {
        let size = e.message.len() + EVENT_OVERHEAD;
        let full = call.len() >= MAX_EVENTS
            || bytes + size > MAX_BYTES
            || call
                .first()
                .is_some_and(|f| e.timestamp - f.timestamp > MAX_SPAN_MS);
        if full && !call.is_empty() {
            out.calls.push(std::mem::take(&mut call));
            bytes = 0;
        }
        bytes += size;
        call.push(e);
    }
    if !call.is_empty() {
        out.calls.push(call);
    }
    out
}

/// The stream's name: the instance id (else the host name), without the two characters
/// CloudWatch refuses (`:` and `*`), at most 512 bytes.
pub fn stream_name(instance: &str) -> String {
    let s: String = instance
        .chars()
        .map(|c| {
            if c == ':' || c == '*' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let s = cut(&s, 512).to_string();
    if s.is_empty() { "unknown".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn line(time: i64, alert: bool, pad: usize) -> Vec<u8> {
        let labels = if alert { r#"["alert:sudo"]"# } else { "[]" };
        format!(
            r#"{{"time":{time},"metadata":{{"uid":"u{time}","labels":{labels}}},"pad":"{}"}}"#,
            "x".repeat(pad)
        )
        .into_bytes()
    }

    #[test]
    fn alerts_only_unless_all_and_in_time_order() {
        let lines = vec![
            line(NOW - 10, false, 0),
            line(NOW - 5, true, 0),
            line(NOW - 20, true, 0),
        ];
        let c = calls(&lines, CloudWatchEvents::Alerts, NOW);
        assert_eq!(c.calls.len(), 1);
        let times: Vec<i64> = c.calls[0].iter().map(|e| e.timestamp).collect();
        assert_eq!(times, vec![NOW - 20, NOW - 5]);
        let all = calls(&lines, CloudWatchEvents::All, NOW);
        assert_eq!(all.calls[0].len(), 3);
        assert!(
            calls(&lines[..1], CloudWatchEvents::Alerts, NOW)
                .calls
                .is_empty()
        );
    }

    #[test]
    fn calls_stay_within_the_limits() {
        // 12,000 small events: two calls by count.
        let lines: Vec<Vec<u8>> = (0..12_000)
            .map(|i| format!(r#"{{"time":{}}}"#, NOW - 12_000 + i).into_bytes())
            .collect();
        let c = calls(&lines, CloudWatchEvents::All, NOW);
        assert_eq!(
            c.calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10_000, 2_000]
        );
        // 100 events of 20 KiB: by bytes.
        let lines: Vec<Vec<u8>> = (0..100)
            .map(|i| line(NOW - 100 + i, true, 20 << 10))
            .collect();
        let c = calls(&lines, CloudWatchEvents::All, NOW);
        assert!(c.calls.len() >= 2);
        for call in &c.calls {
            let bytes: usize = call.iter().map(|e| e.message.len() + EVENT_OVERHEAD).sum();
            assert!(bytes <= MAX_BYTES, "{bytes}");
        }
        assert_eq!(c.calls.iter().map(Vec::len).sum::<usize>(), 100);
        // Over a day apart: two calls.
        let lines = vec![line(NOW - 25 * 3600 * 1000, true, 0), line(NOW, true, 0)];
        assert_eq!(calls(&lines, CloudWatchEvents::All, NOW).calls.len(), 2);
    }

    #[test]
    fn events_cloudwatch_would_refuse_are_left_out_or_cut() {
        let lines = vec![
            line(NOW - 15 * 24 * 3600 * 1000, true, 0),
            line(NOW + 3 * 3600 * 1000, true, 0),
            line(NOW, true, 300 << 10),
            line(0, true, 0),
        ];
        let c = calls(&lines, CloudWatchEvents::Alerts, NOW);
        assert_eq!(c.out_of_range, 2);
        assert_eq!(c.cut, 1);
        let events: Vec<&LogEvent> = c.calls.iter().flatten().collect();
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.timestamp == NOW));
        assert!(events.iter().all(|e| e.message.len() <= MAX_MESSAGE));
        // Cut on a character, never inside one.
        assert_eq!(cut("aé", 2), "a");
    }

    #[test]
    fn stream_names_are_what_cloudwatch_takes() {
        assert_eq!(stream_name("i-0abc"), "i-0abc");
        assert_eq!(stream_name("host:1*\n"), "host_1__");
        assert_eq!(stream_name(""), "unknown");
        assert_eq!(stream_name(&"é".repeat(400)).len(), 512);
    }

    #[test]
    fn a_cursor_begins_at_the_start_for_a_new_group_and_is_kept_for_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (c, why) = Cursor::begin(dir.path(), "/a", "", 7).unwrap();
        assert_eq!((c.sent_seq, why.as_deref()), (7, Some("first start")));
        let mut c = c;
        c.sent_seq = 9;
        c.save(dir.path()).unwrap();
        let (c, why) = Cursor::begin(dir.path(), "/a", "", 12).unwrap();
        assert_eq!((c.sent_seq, why), (9, None));
        let (c, why) = Cursor::begin(dir.path(), "/b", "", 12).unwrap();
        assert_eq!(
            (c.sent_seq, why.as_deref()),
            (12, Some("the log group or its region changed"))
        );
        let (c, _) = Cursor::begin(dir.path(), "/b", "eu-west-1", 13).unwrap();
        assert_eq!(c.sent_seq, 13, "another region is another group");
        // Past the spool's end: the spool was made again.
        let (c, why) = Cursor::begin(dir.path(), "/b", "eu-west-1", 5).unwrap();
        assert_eq!(c.sent_seq, 0);
        assert!(why.unwrap().starts_with("the spool was made again"));
        std::fs::write(dir.path().join(CURSOR), "{oops").unwrap();
        let (c, why) = Cursor::begin(dir.path(), "/b", "", 13).unwrap();
        assert_eq!(c.sent_seq, 13);
        assert!(why.unwrap().starts_with("the cursor was damaged"));
        // An unreadable cursor is not replaced.
        std::fs::remove_file(dir.path().join(CURSOR)).unwrap();
        std::fs::create_dir(dir.path().join(CURSOR)).unwrap();
        assert!(Cursor::begin(dir.path(), "/b", "", 14).is_err());
        assert!(dir.path().join(CURSOR).is_dir());
    }

    #[test]
    fn a_spool_made_again_is_found_by_the_uid_of_the_last_record_sent() {
        use crate::audit::spool::{Options, Spool};
        let dir = tempfile::tempdir().unwrap();
        let body = |uid: &str| format!(r#"{{"time":1,"metadata":{{"uid":"{uid}"}}}}"#).into_bytes();
        let mut spool = Spool::open(dir.path(), Options::default()).unwrap();
        for i in 1..=5 {
            spool
                .append("test", "", &body(&format!("new-{i}")))
                .unwrap();
        }
        spool.sync().unwrap();
        drop(spool);
        // The cursor names seq 3 as `old-3`: the spool now holds `new-3` there.
        let c = Cursor {
            log_group: "/a".into(),
            sent_seq: 3,
            last_uid: Some("old-3".into()),
            ..Cursor::default()
        };
        c.save(dir.path()).unwrap();
        let (c, why) = Cursor::begin(dir.path(), "/a", "", 5).unwrap();
        assert_eq!(c.sent_seq, 0, "{why:?}");
        // The same record there: kept.
        let c = Cursor {
            log_group: "/a".into(),
            sent_seq: 3,
            last_uid: Some("new-3".into()),
            ..Cursor::default()
        };
        c.save(dir.path()).unwrap();
        assert_eq!(Cursor::begin(dir.path(), "/a", "", 5).unwrap(), (c, None));
    }
}
