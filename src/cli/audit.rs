//! `ssm-companion audit status [--json]` and `audit tail [-n N] [--follow] [--json]`: what the
//! audit spool holds, read from its files (no daemon needed, no lock taken).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{Cli, Error, ExitCode, exit, load, out, outln, require_root};
use crate::audit::collector;
use crate::audit::ocsf;
use crate::audit::spool::{self, Read};
use crate::render::clean;

fn root(what: &'static str) -> Result<(), Error> {
    require_root(
        what,
        "the audit spool under the state directory is root's (mode 0700)",
        exit::FAILURE,
    )
}

fn spool_error(e: spool::SpoolError) -> Error {
    Error::Audit(e.to_string())
}

/// The spool directory, or why there is none.
fn spool_dir(settings: &crate::config::Settings) -> Result<std::path::PathBuf, Error> {
    let dir = crate::audit::spool_dir(&settings.paths.state_dir);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(Error::Audit(format!(
            "no audit spool at {}: audit has not run on this host (set audit.enabled = true and reload the service)",
            dir.display()
        )))
    }
}

/// A damaged range, as the gap event a reader reports.
fn gap_event(segment: &Path, offset: u64, bytes: u64) -> ocsf::Event {
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
        &ocsf::Device::default(),
        None,
        None,
        &format!(
            "{bytes} damaged bytes in {name} at offset {offset} (a failed CRC32C or a broken frame)"
        ),
    )
}

/// One item as an event: the record's body, or a gap. A body that is not an event (a damaged
/// one that passed its CRC cannot be, but the spool is a file on disk) is reported as a gap.
fn event_of(item: &Read) -> (Option<u64>, ocsf::Event) {
    match item {
        Read::Record(r) => match serde_json::from_slice::<ocsf::Event>(&r.body) {
            Ok(e) => (Some(r.seq), e),
            Err(e) => (
                Some(r.seq),
                ocsf::gap(
                    0,
                    &ocsf::Origin {
                        source: "spool".into(),
                        position: format!("seq/{}", r.seq),
                    },
                    &ocsf::Device::default(),
                    None,
                    Some(1),
                    &format!("record {} is not an event: {e}", r.seq),
                ),
            ),
        },
        Read::Gap {
            segment,
            offset,
            bytes,
        } => (None, gap_event(segment, *offset, *bytes)),
    }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print(items: &[Read], json: bool) -> Result<Option<u64>, Error> {
    let mut last = None;
    for item in items {
        let (seq, e) = event_of(item);
        if seq.is_some() {
            last = seq;
        }
        if json {
            outln(serde_json::to_string(&e).unwrap_or_default())?;
        } else {
            let flag = if e.severity_id >= 4 { "!" } else { " " };
            outln(format_args!(
                "{} {flag} {:>8}  {:<28} {}",
                time(e.time),
                seq.map_or_else(|| "-".to_string(), |s| s.to_string()),
                e.type_name,
                clean(&e.message)
            ))?;
        }
    }
    Ok(last)
}

/// `audit tail`: the last `n` events, then (with `follow`) new ones as they are spooled.
pub(super) fn tail(cli: &Cli, n: usize, follow: bool, json: bool) -> Result<ExitCode, Error> {
    let settings = load(cli)?.settings;
    root("`audit tail`")?;
    let dir = spool_dir(&settings)?;
    let items = spool::read_last(&dir, n).map_err(spool_error)?;
    let mut next = print(&items, json)?.map_or(0, |s| s + 1);
    if !follow {
        return Ok(exit::OK);
    }
    loop {
        crate::clock::sleep_blocking(Duration::from_millis(500));
        let items = spool::read(&dir, next, 10_000).map_err(spool_error)?;
        // A gap already shown is in every later read of its segment: only records move on.
        let fresh: Vec<Read> = items
            .into_iter()
            .filter(|r| matches!(r, Read::Record(rec) if rec.seq >= next))
            .collect();
        if let Some(last) = print(&fresh, json)? {
            next = last + 1;
        }
    }
}

/// `audit status`.
pub(super) fn status(cli: &Cli, json: bool) -> Result<ExitCode, Error> {
    let settings = load(cli)?.settings;
    root("`audit status`")?;
    let dir = crate::audit::spool_dir(&settings.paths.state_dir);
    let exists = dir.is_dir();
    let (segments, bytes) = if exists {
        spool::usage(&dir).map_err(spool_error)?
    } else {
        (0, 0)
    };
    let mut first: Option<(u64, i64)> = None;
    let mut last: Option<(u64, i64)> = None;
    let mut events = 0u64;
    let mut gaps = 0u64;
    let mut gap_bytes = 0u64;
    let mut alerts = 0u64;
    let mut sources: BTreeMap<String, (u64, u64, String)> = BTreeMap::new();
    if exists {
        spool::visit(&dir, 0, |item| {
            match &item {
                Read::Record(r) => {
                    let (_, e) = event_of(&item);
                    events += 1;
                    if e.severity_id >= 4 {
                        alerts += 1;
                    }
                    first.get_or_insert((r.seq, e.time));
                    last = Some((r.seq, e.time));
                    let s = sources
                        .entry(r.source.clone())
                        .or_insert((0, 0, String::new()));
                    s.0 += 1;
                    s.1 = r.seq;
                    s.2.clone_from(&r.position);
                }
                Read::Gap { bytes, .. } => {
                    gaps += 1;
                    gap_bytes += bytes;
                }
            }
            true
        })
        .map_err(spool_error)?;
    }
    let open: Vec<serde_json::Value> = {
        let details: BTreeMap<String, crate::audit::session::SessionInfo> =
            crate::state::read_json(
                &crate::audit::audit_dir(&settings.paths.state_dir).join(collector::DETAILS_FILE),
            )
            .ok()
            .flatten()
            .unwrap_or_default();
        let ids: BTreeMap<String, i64> = sources
            .get(collector::SOURCE)
            .and_then(|(_, _, p)| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|v| v.get("open").cloned())
            .and_then(|o| serde_json::from_value(o).ok())
            .unwrap_or_default();
        ids.iter()
            .map(|(id, started)| {
                let d = details.get(id);
                serde_json::json!({
                    "id": id,
                    "started": time(*started),
                    "owner": d.map(|d| d.owner.clone()).unwrap_or_default(),
                    "user": d.map(|d| d.user.clone()).unwrap_or_default(),
                })
            })
            .collect()
    };
    let sealed = std::fs::metadata(dir.join("positions.json"))
        .and_then(|m| m.modified())
        .ok()
        .map(crate::clock::rfc3339);
    let doc = serde_json::json!({
        "schema": "ssm-companion/audit-status/v1",
        "enabled": settings.audit.enabled,
        "spool": {
            "dir": dir.display().to_string(),
            "exists": exists,
            "segments": segments,
            "bytes": bytes,
            "max_bytes": settings.audit.spool_max,
            "events": events,
            "first_seq": first.map(|f| f.0),
            "last_seq": last.map(|l| l.0),
            "oldest_unshipped": first.map(|f| time(f.1)),
            "newest": last.map(|l| time(l.1)),
            "gaps": gaps,
            "gap_bytes": gap_bytes,
            "alerts": alerts,
            "last_seal": sealed,
        },
        "sessions": { "open": open },
        "sources": sources.iter().map(|(name, (n, seq, _))| {
            (name.clone(), serde_json::json!({"events": n, "last_seq": seq}))
        }).collect::<serde_json::Map<_, _>>(),
    });
    if json {
        outln(doc)?;
        return Ok(exit::OK);
    }
    let mut text = format!(
        "audit: {}\nspool: {} — {} event(s) in {} segment(s), {} of {} bytes\n",
        if settings.audit.enabled {
            "on"
        } else {
            "off (audit.enabled = false)"
        },
        dir.display(),
        events,
        segments,
        bytes,
        settings.audit.spool_max
    );
    if let (Some(f), Some(l)) = (first, last) {
        text.push_str(&format!(
            "events: seq {} ({}) to {} ({}); oldest unshipped {}\n",
            f.0,
            time(f.1),
            l.0,
            time(l.1),
            time(f.1)
        ));
    }
    text.push_str(&format!(
        "gaps: {gaps} ({gap_bytes} damaged bytes); high-severity events: {alerts}; last seal: {}\n",
        sealed.unwrap_or_else(|| "none yet".into())
    ));
    for (name, (n, seq, _)) in &sources {
        text.push_str(&format!("source {name}: {n} event(s), last seq {seq}\n"));
    }
    text.push_str(&format!("open sessions: {}\n", open.len()));
    for s in &open {
        text.push_str(&format!(
            "  {}  {}  as {}  since {}\n",
            clean(s["id"].as_str().unwrap_or_default()),
            clean(s["owner"].as_str().unwrap_or_default()),
            clean(s["user"].as_str().unwrap_or_default()),
            s["started"].as_str().unwrap_or_default()
        ));
    }
    out(text)?;
    Ok(exit::OK)
}
