//! `ssm-companion audit status [--json]` and `audit tail [-n N] [--follow] [--json]`: what the
//! audit spool holds, read from its files (no daemon needed, no lock taken).

use std::collections::BTreeMap;
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
        } => (
            None,
            crate::audit::ship::damaged(segment, *offset, *bytes, &ocsf::Device::default()),
        ),
    }
}

/// Whether a process holds a `flock` on `path` (from /proc/locks: device and inode).
fn locked(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(m) = std::fs::metadata(path) else {
        return false;
    };
    let dev = m.dev();
    let want = format!(
        "{:02x}:{:02x}:{} ",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        m.ino()
    );
    std::fs::read_to_string("/proc/locks")
        .is_ok_and(|t| t.lines().any(|l| l.contains("FLOCK") && l.contains(&want)))
}

fn now_ms() -> i64 {
    crate::clock::epoch_ms(crate::clock::Clock::now(&crate::clock::SystemClock))
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
    let ledger: Option<crate::audit::ship::Ledger> = if exists {
        crate::state::load_json(&dir, crate::audit::ship::LEDGER)
            .ok()
            .flatten()
    } else {
        None
    };
    let shipped_seq = ledger.as_ref().map_or(0, |l| l.shipped_seq);
    let cw = &settings.audit.cloudwatch;
    let cursor = crate::audit::cloudwatch::Cursor::load(&dir)
        .ok()
        .flatten()
        .filter(|c| c.log_group == cw.log_group);
    let cw_status = crate::state::shipping_status::load_from(
        &settings.paths.state_dir,
        crate::state::shipping_status::CLOUDWATCH_FILE,
    )
    .ok()
    .flatten()
    .filter(|_| !cw.log_group.is_empty());
    let exec_st = crate::state::exec_status::load(&settings.paths.state_dir)
        .ok()
        .flatten();
    let mut unshipped = 0u64;
    let mut oldest_unshipped: Option<i64> = None;
    if exists {
        spool::visit(&dir, shipped_seq + 1, |item| {
            if let (Some(_), e) = event_of(&item) {
                unshipped += 1;
                oldest_unshipped = Some(oldest_unshipped.map_or(e.time, |o| o.min(e.time)));
            }
            true
        })
        .map_err(spool_error)?;
    }
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
            "unshipped": unshipped,
            "oldest_unshipped": oldest_unshipped.map(time),
            "newest": last.map(|l| time(l.1)),
            "gaps": gaps,
            "gap_bytes": gap_bytes,
            "alerts": alerts,
            "last_seal": sealed,
        },
        "sessions": { "open": open },
        "shipping": {
            "bucket": settings.audit.s3.bucket,
            "enabled": !settings.audit.s3.bucket.is_empty(),
            "shipped_seq": shipped_seq,
            "objects": ledger.as_ref().map_or(0, |l| l.objects),
            "bytes": ledger.as_ref().map_or(0, |l| l.bytes),
            "last_key": ledger.as_ref().and_then(|l| l.last_key.clone()),
            "last_upload": ledger.as_ref().and_then(|l| l.last_upload_ms).map(time),
            "oldest_unshipped_age_s": oldest_unshipped
                .map(|t| (now_ms() - t).max(0) / 1000),
            "last_error": ledger.as_ref().and_then(|l| l.last_error.clone()),
        },
        "cloudwatch": {
            "log_group": cw.log_group,
            "enabled": !cw.log_group.is_empty(),
            "events": serde_json::to_value(cw.events).unwrap_or_default(),
            "sent_seq": cursor.as_ref().map(|c| c.sent_seq),
            "sent_events": cursor.as_ref().map_or(0, |c| c.events),
            "calls": cursor.as_ref().map_or(0, |c| c.calls),
            "last_put": cursor.as_ref().and_then(|c| c.last_put_ms).map(time),
            "last_error": cw_status.as_ref().and_then(|s| s.error.clone()),
        },
        "exec": {
            "setting": serde_json::to_value(settings.audit.exec_backend).unwrap_or_default(),
            "scope": serde_json::to_value(settings.audit.exec_scope).unwrap_or_default(),
            "backend": exec_st.as_ref().and_then(|s| s.backend.clone()),
            "tried": exec_st.as_ref().map(|s| s.tried.clone()).unwrap_or_default(),
            "error": exec_st.as_ref().and_then(|s| s.error.clone()),
            "tracked": exec_st.as_ref().map_or(0, |s| s.tracked),
            "commands": exec_st.as_ref().map_or(0, |s| s.commands),
            "lost": exec_st.as_ref().map_or(0, |s| s.lost),
            "reported_at": exec_st.as_ref().map(|s| crate::clock::rfc3339(s.at)),
        },
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
            "events: seq {} ({}) to {} ({}); {unshipped} unshipped, the oldest {}\n",
            f.0,
            time(f.1),
            l.0,
            time(l.1),
            oldest_unshipped.map_or_else(|| "-".into(), time)
        ));
    }
    if settings.audit.s3.bucket.is_empty() {
        text.push_str("shipping: off (audit.s3.bucket is not set)\n");
    } else {
        text.push_str(&format!(
            "shipping: s3://{}/{} — through seq {shipped_seq}, {} object(s), {} bytes, last upload {}\n",
            clean(&settings.audit.s3.bucket),
            clean(&settings.audit.s3.prefix),
            ledger.as_ref().map_or(0, |l| l.objects),
            ledger.as_ref().map_or(0, |l| l.bytes),
            ledger
                .as_ref()
                .and_then(|l| l.last_upload_ms)
                .map_or_else(|| "none yet".into(), time)
        ));
        if let Some(e) = ledger.as_ref().and_then(|l| l.last_error.as_ref()) {
            text.push_str(&format!("shipping error: {}\n", clean(e)));
        }
    }
    if cw.log_group.is_empty() {
        text.push_str("cloudwatch: off (audit.cloudwatch.log_group is not set)\n");
    } else {
        text.push_str(&format!(
            "cloudwatch: {} ({}) — {}, {} event(s) in {} call(s), last put {}\n",
            clean(&cw.log_group),
            serde_json::to_value(cw.events)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            cursor.as_ref().map_or_else(
                || "not started".into(),
                |c| format!("through seq {}", c.sent_seq)
            ),
            cursor.as_ref().map_or(0, |c| c.events),
            cursor.as_ref().map_or(0, |c| c.calls),
            cursor
                .as_ref()
                .and_then(|c| c.last_put_ms)
                .map_or_else(|| "none yet".into(), time)
        ));
        if let Some(e) = cw_status.as_ref().and_then(|s| s.error.as_ref()) {
            text.push_str(&format!("cloudwatch error: {}\n", clean(e)));
        }
    }
    match &exec_st {
        _ if settings.audit.exec_backend == crate::config::ExecBackend::Off => {
            text.push_str("exec capture: off (audit.exec_backend = \"off\")\n");
        }
        None => text.push_str("exec capture: not started (the daemon has not run with audit on)\n"),
        Some(st) => {
            match &st.backend {
                Some(b) => text.push_str(&format!(
                    "exec capture: {} (scope {}), {} command(s), {} lost, {} process(es) tracked\n",
                    clean(b),
                    clean(&st.scope),
                    st.commands,
                    st.lost,
                    st.tracked
                )),
                None => text.push_str(&format!(
                    "exec capture: none running: {}\n",
                    clean(st.error.as_deref().unwrap_or("no backend works here"))
                )),
            }
            for t in &st.tried {
                text.push_str(&format!(
                    "  {} not used: {}\n",
                    clean(&t.backend),
                    clean(&t.why)
                ));
            }
        }
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

/// `audit flush`: asks the daemon to ship everything spooled before the call, and waits until
/// the ledger says S3 has it.
pub(super) fn flush(cli: &Cli, timeout: Duration, json: bool) -> Result<ExitCode, Error> {
    use crate::audit::ship::Ledger;
    let settings = load(cli)?.settings;
    root("`audit flush`")?;
    if settings.audit.s3.bucket.is_empty() {
        return Err(Error::Audit(
            "shipping is off: audit.s3.bucket is not set (name the bucket in [audit.s3] and reload the service)".into(),
        ));
    }
    let dir = spool_dir(&settings)?;
    let target = spool::read_last(&dir, 1)
        .map_err(spool_error)?
        .iter()
        .find_map(|r| match r {
            Read::Record(r) => Some(r.seq),
            Read::Gap { .. } => None,
        })
        .unwrap_or(0);
    let shipped = || {
        crate::state::load_json::<Ledger>(&dir, crate::audit::ship::LEDGER)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let started = std::time::Instant::now();
    let request = dir.join(crate::audit::ship::FLUSH_REQUEST);
    if shipped().shipped_seq < target {
        // The daemon holds the spool's lock while it runs; nobody holding it means nobody
        // would answer. Looked up in /proc/locks: taking the lock here, even for a moment,
        // could make a starting daemon find its spool busy.
        if !locked(&dir.join("lock")) {
            return Err(Error::Audit(format!(
                "the daemon is not running, so nothing ships (seq {} to {target} wait in {}): start it with `systemctl start ssm-companion`",
                shipped().shipped_seq + 1,
                dir.display()
            )));
        }
        // Another flush may ask for less or more: the request is the highest target.
        let asked = std::fs::read_to_string(&request)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        crate::state::write_atomic(&request, target.max(asked).to_string().as_bytes(), 0o600)
            .map_err(|e| Error::Audit(e.to_string()))?;
    }
    loop {
        let l = shipped();
        let done = l.shipped_seq >= target;
        if done || started.elapsed() >= timeout {
            let why = if done {
                None
            } else {
                Some(l.last_error.clone().unwrap_or_else(|| {
                    format!(
                        "S3 has records up to seq {} of {target} after {}",
                        l.shipped_seq,
                        humantime::format_duration(timeout)
                    )
                }))
            };
            if json {
                outln(serde_json::json!({
                    "schema": "ssm-companion/audit-flush/v1",
                    "shipped": done,
                    "target_seq": target,
                    "shipped_seq": l.shipped_seq,
                    "last_key": l.last_key,
                    "error": why,
                }))?;
            } else if done {
                outln(format_args!(
                    "audit: S3 has every event up to seq {target} (last object: {})",
                    l.last_key.as_deref().map_or_else(|| "-".into(), clean)
                ))?;
            }
            return match why {
                None => Ok(exit::OK),
                Some(_) if json => Ok(exit::FAILURE),
                Some(w) => Err(Error::Audit(format!("not everything is in S3: {w}"))),
            };
        }
        crate::clock::sleep_blocking(Duration::from_millis(200));
    }
}
