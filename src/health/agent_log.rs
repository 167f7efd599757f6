//! `amazon-ssm-agent.log`: records, the periodic health line, known failure lines.
//!
//! Format (seelog): `2026-11-29 09:10:28.1234 INFO [tags] message`, host local time without a
//! zone, four fractional digits since agent 3.3.808.0 and none before (both are accepted). A line
//! that does not start with a timestamp continues the previous record (SDK errors span lines).
//! Several agent processes write and roll the same file, so it is followed by inode
//! ([`crate::follow`]): after a rollover the rest of the old inode (now
//! `amazon-ssm-agent.log.N`) is read before the new file.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::model::{CheckResult, Status};
use crate::follow;

/// The worker's periodic health line.
pub const HEALTH_LINE: &str = "HealthCheck reporting agent health.";
/// Logged after a failed API call (e.g. the health ping).
pub const API_ERROR: &str = "error when calling AWS APIs";

use crate::agent_log::parse_head;
pub use crate::agent_log::{LOG_FILE, Record, parse};

/// A known failure, matched on a message substring (never on the bracketed prefix chain, which
/// changes between versions).
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    /// Stable key.
    pub key: &'static str,
    /// Substrings, any of which matches.
    pub needles: &'static [&'static str],
    /// How bad.
    pub status: Status,
    /// What it means.
    pub meaning: &'static str,
    /// What to do.
    pub remedy: &'static str,
}

/// The failures the checker knows (reference/ssm-agent.md §8.2).
pub const SIGNATURES: &[Signature] = &[
    Signature {
        key: "hibernation",
        needles: &["Entering SSM Agent hibernate"],
        status: Status::Critical,
        meaning: "the agent is hibernating: its health pings fail, so Session Manager cannot reach the instance",
        remedy: "fix the cause in the line (usually permissions: ssm:UpdateInstanceInformation, or no network path to ssm)",
    },
    Signature {
        key: "no-role",
        needles: &[
            "no EC2 instance role found",
            "Retrieve credentials produced error",
        ],
        status: Status::Critical,
        meaning: "the agent has no credentials",
        remedy: "attach an instance profile with AmazonSSMManagedInstanceCore, or enable Default Host Management",
    },
    Signature {
        key: "access-denied",
        needles: &["AccessDeniedException", "is not authorized to perform"],
        status: Status::Critical,
        meaning: "the agent's role lacks a permission",
        remedy: "add AmazonSSMManagedInstanceCore (or the missing action named in the line) to the instance's role",
    },
    Signature {
        key: "signature-expired",
        needles: &["Signature expired", "Signature not yet current"],
        status: Status::Critical,
        meaning: "AWS rejects the agent's signed requests: the clock is off by more than 5 minutes",
        remedy: "fix time synchronisation (chronyd/systemd-timesyncd; on EC2 169.254.169.123)",
    },
    Signature {
        key: "control-channel",
        needles: &[
            "Failed to get controlchannel token",
            "Error setting up control channel",
        ],
        status: Status::Critical,
        meaning: "the agent cannot open its control channel to ssmmessages: no session can start",
        remedy: "allow HTTPS to ssmmessages (VPC endpoint or NAT) and ssmmessages:* in the role",
    },
    Signature {
        key: "fingerprint",
        needles: &["MachineFingerprintDoesNotMatch"],
        status: Status::Critical,
        meaning: "a cloned hybrid instance: the registration belongs to another machine",
        remedy: "re-register this machine with its own activation (amazon-ssm-agent -register)",
    },
    Signature {
        key: "worker-restart",
        needles: &["Worker ssm-agent-worker is not running, starting worker process"],
        status: Status::Warning,
        meaning: "the agent's worker died and was restarted",
        remedy: "look for the crash in amazon-ssm-agent.log and errors.log",
    },
    Signature {
        key: "api-error",
        needles: &[API_ERROR],
        status: Status::Warning,
        meaning: "AWS calls fail",
        remedy: "read the error in the line; check network paths and permissions",
    },
];

/// The longest excerpt kept of a failure line, in characters.
const EXCERPT_CHARS: usize = 300;

/// A failure line's first [`EXCERPT_CHARS`] characters. When an `AccessDenied` line is longer,
/// its head is joined by " … " to the permission and resource it names ("is not authorized to
/// perform: ACTION on resource: ARN"), which a long role name would otherwise push out.
pub(crate) fn excerpt(line: &str) -> String {
    const DENIED: &str = "is not authorized to perform";
    if line.chars().count() <= EXCERPT_CHARS {
        return line.to_string();
    }
    let Some(at) = line.find(DENIED) else {
        return line.chars().take(EXCERPT_CHARS).collect();
    };
    let denied = &line[at..];
    let denied = denied.find(" because").map_or(denied, |end| &denied[..end]);
    if line[..at + denied.len()].chars().count() <= EXCERPT_CHARS {
        // The permission and resource already fit.
        return line.chars().take(EXCERPT_CHARS).collect();
    }
    let tail: String = denied.chars().take(EXCERPT_CHARS / 2 + 50).collect();
    let head_chars = EXCERPT_CHARS - 3 - tail.chars().count();
    let head: String = line.chars().take(head_chars).collect();
    format!("{head} … {tail}")
}

/// What the log says, condensed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    /// The last health line.
    pub last_health: Option<SystemTime>,
    /// The last ping (health line) was followed by an API error.
    pub last_ping_failed: bool,
    /// The first and last record seen.
    pub span: Option<(SystemTime, SystemTime)>,
    /// Per failure key: how many times, the last time, and the last line's excerpt ([`excerpt`]).
    pub failures: BTreeMap<&'static str, (u32, SystemTime, String)>,
    /// The last `Starting Core Agent` (the core starts its worker right after: not a crash).
    pub core_start: Option<SystemTime>,
    /// The log's very first record, when it was read ([`Recent::started`]): only then can a
    /// log without a health line be called young.
    pub started: Option<SystemTime>,
}

impl Digest {
    /// Folds records in order.
    pub fn add(&mut self, records: &[Record]) {
        for r in records {
            self.span = Some(match self.span {
                Some((a, _)) => (a, r.time),
                None => (r.time, r.time),
            });
            if r.message.contains("Starting Core Agent") {
                self.core_start = Some(r.time);
            }
            if r.message.contains(HEALTH_LINE) {
                self.last_health = Some(r.time);
                self.last_ping_failed = false;
                continue;
            }
            if r.message.contains(API_ERROR)
                && self.last_health.is_some_and(|h| {
                    r.time
                        .duration_since(h)
                        .is_ok_and(|d| d < Duration::from_secs(60))
                })
            {
                self.last_ping_failed = true;
            }
            // The start request of a session or command is logged verbatim ("Payload: {…}"): a
            // command that mentions a failure line is not that failure, and may hold secrets.
            if r.message.contains("Payload:") {
                continue;
            }
            if let Some(sig) = SIGNATURES
                .iter()
                .find(|s| s.needles.iter().any(|n| r.message.contains(n)))
            {
                let at_start = sig.key == "worker-restart"
                    && self.core_start.is_some_and(|c| {
                        r.time
                            .duration_since(c)
                            .is_ok_and(|d| d < Duration::from_secs(60))
                    });
                if at_start {
                    continue;
                }
                let excerpt = excerpt(r.message.lines().next().unwrap_or(""));
                let e = self
                    .failures
                    .entry(sig.key)
                    .or_insert((0, r.time, String::new()));
                e.0 += 1;
                e.1 = r.time;
                e.2 = excerpt;
            }
        }
    }

    /// Forgets failures older than `window` before `now`.
    pub fn prune(&mut self, now: SystemTime, window: Duration) {
        self.failures
            .retain(|_, (_, t, _)| now.duration_since(*t).is_ok_and(|d| d <= window) || *t > now);
    }
}

/// The `agent.log.health` check: the worker's periodic health line is recent.
/// `cause`: why the agent is silent, when known ([`super::hibernate::cause`]); a stale or missing
/// report then says it and its remedy instead of "restart the agent".
pub fn freshness_verdict(
    d: &Digest,
    now: SystemTime,
    frequency_minutes: u32,
    log_present: bool,
    cause: Option<&super::hibernate::Cause>,
) -> CheckResult {
    let v = freshness(d, now, frequency_minutes, log_present);
    match cause {
        Some(c) if v.status != Status::Ok && log_present => CheckResult::new(
            v.id,
            Status::Critical,
            format!("{}; {}", v.detail, c.detail),
            c.remedy.clone(),
        ),
        _ => v,
    }
}

fn freshness(
    d: &Digest,
    now: SystemTime,
    frequency_minutes: u32,
    log_present: bool,
) -> CheckResult {
    const ID: &str = "agent.log.health";
    if !log_present {
        return CheckResult::new(
            ID,
            Status::Critical,
            "the agent's log does not exist",
            "start the agent; check seelog.xml if the log was moved",
        );
    }
    let period = Duration::from_secs(u64::from(frequency_minutes.max(5)) * 60);
    let fresh = period * 2 + Duration::from_secs(60);
    let Some(last) = d.last_health else {
        return match d.started {
            Some(first) if now.duration_since(first).is_ok_and(|a| a < fresh) => CheckResult::ok(
                ID,
                "no health report yet: the log is younger than two health periods",
            ),
            _ => CheckResult::new(
                ID,
                Status::Critical,
                format!(
                    "no `{HEALTH_LINE}` line in the agent's recent log: the worker is not reporting"
                ),
                "restart the agent and read amazon-ssm-agent.log for the reason",
            ),
        };
    };
    // A core that started after the last report gets two periods to send its first one (a
    // stopped-then-started agent must not stay critical until then).
    if let Some(start) = d.core_start
        && start > last
        && now.duration_since(start).is_ok_and(|a| a < fresh)
    {
        let ago = now.duration_since(start).unwrap_or_default();
        return CheckResult::ok(
            ID,
            format!(
                "the agent started {} ago; its first health report is not due yet",
                humantime::format_duration(Duration::from_secs(ago.as_secs()))
            ),
        );
    }
    let age = now.duration_since(last).unwrap_or_default();
    let ago = humantime::format_duration(Duration::from_secs(age.as_secs()));
    if d.last_ping_failed {
        return CheckResult::new(
            ID,
            Status::Critical,
            format!("the last health ping ({ago} ago) failed with an AWS error"),
            "see agent.log.errors and the lines after the last health line in amazon-ssm-agent.log",
        );
    }
    if age <= fresh {
        CheckResult::ok(
            ID,
            format!("last health report {ago} ago (every {frequency_minutes} min)"),
        )
    } else if age <= period * 4 {
        CheckResult::new(
            ID,
            Status::Warning,
            format!("last health report {ago} ago; expected every {frequency_minutes} min"),
            "check the worker (agent.worker) and the log",
        )
    } else {
        CheckResult::new(
            ID,
            Status::Critical,
            format!(
                "last health report {ago} ago; expected every {frequency_minutes} min: the agent looks stuck or hibernating"
            ),
            "restart the agent; read amazon-ssm-agent.log and hibernate.log",
        )
    }
}

/// The `agent.log.errors` check: known failure lines within the window.
pub fn errors_verdict(d: &Digest, window: Duration) -> CheckResult {
    const ID: &str = "agent.log.errors";
    let mut worst = Status::Ok;
    let mut parts = Vec::new();
    let mut remedies = Vec::new();
    for sig in SIGNATURES {
        if let Some((n, _, line)) = d.failures.get(sig.key) {
            worst = worst.worst(sig.status);
            parts.push(format!("{} ({n}x): {}; last: {line}", sig.key, sig.meaning));
            remedies.push(sig.remedy);
        }
    }
    let mins = window.as_secs() / 60;
    if parts.is_empty() {
        CheckResult::ok(ID, format!("no known failure line in the last {mins} min"))
    } else {
        CheckResult::new(ID, worst, parts.join(" | "), remedies.join("; "))
    }
}

/// Reads from `offset` to the end (at most `limit` bytes, from the end).
/// Where a log file sits in time: seelog's rotated files (`.N`, higher is newer) come before
/// the current file.
fn file_order(name: &str) -> (bool, u64) {
    match name
        .strip_prefix(LOG_FILE)
        .and_then(|s| s.strip_prefix('.'))
    {
        Some(n) => (false, n.parse().unwrap_or(0)),
        None => (true, 0),
    }
}

/// Lines longer than this are skipped, not parsed (an unterminated line of binary garbage must
/// neither hide the records around it nor fill memory). The agent's longest real records (SDK
/// errors with an HTML body) are a few KiB.
pub const MAX_LINE: usize = 64 << 10;
/// The block size of the backward scan.
const BLOCK: u64 = 1 << 20;

/// The files of the log, newest first: the current one, then seelog's rolls (`.N`, higher is
/// newer).
fn files_newest_first(dir: &Path) -> Vec<PathBuf> {
    let mut rolled: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    match file_order(&name) {
                        (false, n) if name.starts_with(&format!("{LOG_FILE}.")) => {
                            Some((n, e.path()))
                        }
                        _ => None,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    rolled.sort_by_key(|r| std::cmp::Reverse(r.0));
    std::iter::once(dir.join(LOG_FILE))
        .chain(rolled.into_iter().map(|(_, p)| p))
        .collect()
}

/// Reads one file backwards by blocks, handing whole lines (newest first) to `line` until it
/// returns `false`; lines over [`MAX_LINE`] are skipped. Returns whether it reached the start.
fn lines_backwards(path: &Path, line: &mut dyn FnMut(&str) -> bool) -> std::io::Result<bool> {
    let mut f = crate::state::open_regular(path)?;
    let mut end = f.metadata()?.len();
    // The bytes after the last newline seen (the start of a line whose head is further back).
    let mut carry: Vec<u8> = Vec::new();
    let mut oversized = false;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let mut block = vec![0; usize::try_from(end - start).unwrap_or(0)];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block)?;
        end = start;
        block.append(&mut carry);
        let mut rest = block.as_slice();
        while let Some(i) = rest.iter().rposition(|&b| b == b'\n') {
            let l = &rest[i + 1..];
            rest = &rest[..i];
            if !oversized && l.len() <= MAX_LINE && !line(&String::from_utf8_lossy(l)) {
                return Ok(false);
            }
            oversized = false;
        }
        if rest.len() > MAX_LINE {
            // Keep nothing of a line that long; its head (further back) is skipped too.
            oversized = true;
            carry.clear();
        } else {
            carry = rest.to_vec();
        }
    }
    if !oversized && !carry.is_empty() && carry.len() <= MAX_LINE {
        return Ok(line(&String::from_utf8_lossy(&carry)));
    }
    Ok(true)
}

/// What [`read_back`] found.
#[derive(Debug, Default)]
pub struct Recent {
    /// The current log file exists.
    pub present: bool,
    /// The records, oldest first.
    pub records: Vec<Record>,
    /// The time of the log's very first record, when the scan reached it (the log is young).
    pub started: Option<SystemTime>,
}

/// Whether a record can change a verdict (health lines, API errors, core starts, failures):
/// only these are kept from a backward scan.
fn matters(r: &Record) -> bool {
    r.message.contains(HEALTH_LINE)
        || r.message.contains(API_ERROR)
        || r.message.contains("Starting Core Agent")
        || SIGNATURES
            .iter()
            .any(|s| s.needles.iter().any(|n| r.message.contains(n)))
}

/// One-shot read for `doctor` and the daemon's first run: the log read backwards, newest file
/// first and each by blocks, until both the last health line and the start of the failure
/// window (`window_start`) are behind, or `horizon` (nothing older can change a verdict) —
/// however much was written since, and whatever lies between: an oversized line or binary
/// garbage is skipped, never taken for the end of the log. Only the records that matter are
/// kept, so a busy log costs reading time, not memory.
pub fn read_back(dir: &Path, window_start: SystemTime, horizon: SystemTime) -> Recent {
    let mut out = Recent {
        present: dir.join(LOG_FILE).exists(),
        ..Recent::default()
    };
    // Lines newest first; a record's continuation lines come before its head.
    let mut pending: Vec<String> = Vec::new();
    let mut kept: Vec<Record> = Vec::new();
    let mut oldest = None;
    let mut health_seen = false;
    let mut reached_start = true;
    for path in files_newest_first(dir) {
        let mut stop = false;
        // An unreadable or vanished file (a FIFO, a roll removed meanwhile) is skipped.
        let _ = lines_backwards(&path, &mut |l| {
            match parse_head(l) {
                Some((time, level, msg)) => {
                    let mut message = msg.to_string();
                    for c in pending.drain(..).rev() {
                        message.push('\n');
                        message.push_str(&c);
                    }
                    let r = Record {
                        time,
                        level,
                        message,
                    };
                    health_seen |= r.message.contains(HEALTH_LINE);
                    oldest = Some(time);
                    if matters(&r) {
                        kept.push(r);
                    }
                    stop = time < horizon || (health_seen && time < window_start);
                }
                // Continuation lines (bounded: a flood of garbage keeps the last few).
                None if pending.len() < 64 => pending.push(l.to_string()),
                None => {}
            }
            !stop
        });
        pending.clear();
        if stop {
            reached_start = false;
            break;
        }
    }
    kept.reverse();
    if reached_start {
        out.started = oldest;
    }
    out.records = kept;
    out
}

/// Follows the log (the daemon) with a [`follow::Follower`]: every `amazon-ssm-agent.log*`
/// file by inode with its own offset, since several agent processes write and roll the file
/// independently and lines keep arriving in an inode after it was renamed. Records from all
/// files are merged in time order.
#[derive(Debug, Clone)]
pub struct Follower(follow::Follower);

impl Default for Follower {
    fn default() -> Self {
        Self(follow::Follower::new(LOG_FILE))
    }
}

impl Follower {
    /// New records since the last call. The first call reads at most `limit` bytes of the
    /// current file (the recent history) and only notes where the rotated files end.
    pub fn poll(&mut self, dir: &Path, limit: u64) -> std::io::Result<Vec<Record>> {
        let mut chunks = self.0.poll(dir, limit)?;
        // Oldest file first, so the stable sort keeps file order between equal timestamps.
        chunks.sort_by_key(|c| file_order(&c.name));
        let mut records: Vec<Record> = chunks.iter().flat_map(|c| parse(&c.text)).collect();
        records.sort_by_key(|r| r.time);
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-log")
    }

    fn digest(name: &str) -> Digest {
        let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
        let mut d = Digest::default();
        d.add(&parse(&text));
        d
    }

    fn local(s: &str) -> SystemTime {
        let n = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        chrono::Local
            .from_local_datetime(&n)
            .earliest()
            .unwrap()
            .into()
    }

    #[test]
    fn records_with_both_timestamp_formats_and_continuations() {
        let r = parse(
            "2026-11-29 09:10:28.1234 INFO [amazon-ssm-agent] amazon-ssm-agent - v3.3.987.0\n2024-06-10 09:10:28 ERROR old format\n\tstatus code: 400, request id: x\ncaused by: y\nnot a record\n",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].level, "INFO");
        assert_eq!(
            r[1].message,
            "old format\n\tstatus code: 400, request id: x\ncaused by: y\nnot a record"
        );
        assert_eq!(r[1].time, local("2024-06-10 09:10:28"));
    }

    #[test]
    fn healthy_fixture() {
        let d = digest("healthy.log");
        let last = d.last_health.unwrap();
        let v = freshness_verdict(&d, last + Duration::from_secs(120), 5, true, None);
        assert_eq!(v.status, Status::Ok, "{v:?}");
        assert_eq!(
            errors_verdict(&d, Duration::from_secs(1800)).status,
            Status::Ok,
            "{:?}",
            d.failures
        );
        // Thirty minutes of silence: critical.
        let v = freshness_verdict(&d, last + Duration::from_secs(1800), 5, true, None);
        assert_eq!(v.status, Status::Critical);
        let v = freshness_verdict(&d, last + Duration::from_secs(15 * 60), 5, true, None);
        assert_eq!(v.status, Status::Warning);
    }

    #[test]
    fn failure_fixtures() {
        for (file, key) in [
            ("hibernating.log", "hibernation"),
            ("no-role.log", "no-role"),
            ("clock-skew.log", "signature-expired"),
            ("control-channel.log", "control-channel"),
        ] {
            let d = digest(file);
            assert!(
                d.failures.contains_key(key),
                "{file}: {:?}",
                d.failures.keys().collect::<Vec<_>>()
            );
            let v = errors_verdict(&d, Duration::from_secs(1800));
            assert_eq!(v.status, Status::Critical, "{file}: {v:?}");
            assert!(v.detail.contains(key), "{file}: {v:?}");
        }
    }

    #[test]
    fn an_access_denied_excerpt_keeps_the_action_and_resource() {
        // The core's 2-line WARN in the agent's format, with a 64-character role name: the
        // permission and the resource come after the first 300 characters of the line.
        let role = "ssm-managed-production-web-tier-instance-role-eu-west-1-abcdefgh";
        assert_eq!(role.len(), 64);
        let line = format!(
            "2026-04-08 06:40:11 WARN [EC2RoleProvider] Failed to connect to Systems Manager with instance profile role credentials. Err: retrieved credentials failed to report to ssm. RequestId: 0d6c2e8a-1b7f-4e0a-9c53-3f1e2d4b5a6c Error: AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/{role}/i-0123456789abcdef0 is not authorized to perform: ssm:UpdateInstanceInformation on resource: arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0 because no identity-based policy allows the ssm:UpdateInstanceInformation action\n\tstatus code: 400, request id: 0d6c2e8a-1b7f-4e0a-9c53-3f1e2d4b5a6c\n"
        );
        let mut d = Digest::default();
        d.add(&parse(&line));
        let (_, _, excerpt) = &d.failures["access-denied"];
        assert!(excerpt.chars().count() <= 300, "{excerpt}");
        assert!(
            excerpt.starts_with("[EC2RoleProvider] Failed to connect"),
            "{excerpt}"
        );
        assert!(
            excerpt.contains("is not authorized to perform: ssm:UpdateInstanceInformation on resource: arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"),
            "{excerpt}"
        );
    }

    fn stamp(t: SystemTime) -> String {
        chrono::DateTime::<chrono::Local>::from(t)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// Reads a log dir as `doctor` does and judges freshness (every 5 min, 30 min window).
    fn judge(dir: &Path, now: SystemTime) -> CheckResult {
        let (window_start, horizon) = crate::health::log_horizon(now, Duration::from_secs(1800), 5);
        let recent = read_back(dir, window_start, horizon);
        let mut d = Digest::default();
        d.add(&recent.records);
        d.started = recent.started;
        d.prune(now, Duration::from_secs(1800));
        freshness_verdict(&d, now, 5, recent.present, None)
    }

    /// 13 MB of DEBUG lines after a hibernation line and a 15-minute silence of the health
    /// line: the 8 MiB tail held no health line and its first record looked like a young log.
    #[test]
    fn a_busy_log_is_judged_on_its_last_health_line_not_its_tail() {
        let d = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ago = |s: u64| stamp(now - Duration::from_secs(s));
        let mut text = format!(
            "{} INFO [amazon-ssm-agent] Starting Core Agent\n{} INFO [ssm-agent-worker] [HealthCheck] {HEALTH_LINE}\n{} INFO [ssm-agent-worker] Entering SSM Agent hibernate - AccessDeniedException: denied\n",
            ago(3000),
            ago(1500),
            ago(1490)
        );
        let debug = " DEBUG [ssm-agent-worker] [MessageService] polling for messages, nothing to do here yet\n";
        let lines = 13_000_000 / (debug.len() + 19);
        for i in 0..lines {
            text.push_str(&ago(900 - (900 * i as u64) / lines as u64));
            text.push_str(debug);
        }
        std::fs::write(d.path().join(LOG_FILE), &text).unwrap();
        assert!(text.len() > 13_000_000);
        let v = judge(d.path(), now);
        assert_eq!(v.status, Status::Critical, "{v:?}");
        assert!(v.detail.contains("last health report 25m"), "{v:?}");
    }

    /// A recent health line followed by an unterminated 10 MiB line, or by binary garbage:
    /// the oversized line is skipped, the health line found.
    #[test]
    fn an_oversized_line_or_garbage_after_the_last_report_is_skipped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let head = format!(
            "{} INFO [ssm-agent-worker] [HealthCheck] {HEALTH_LINE}\n",
            stamp(now - Duration::from_secs(60))
        );
        let mut garbage: Vec<u8> = (0..9u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect();
        // A few newlines: mostly lines far over MAX_LINE, some short garbage lines.
        for i in (0..garbage.len()).step_by(3 << 20) {
            garbage[i] = b'\n';
        }
        for tail in [vec![b'x'; 10 << 20], garbage] {
            let d = tempfile::tempdir().unwrap();
            let mut bytes = head.clone().into_bytes();
            bytes.extend_from_slice(&tail);
            std::fs::write(d.path().join(LOG_FILE), &bytes).unwrap();
            let v = judge(d.path(), now);
            assert_eq!(v.status, Status::Ok, "{v:?}");
        }
    }

    #[test]
    fn old_failures_age_out() {
        let mut d = digest("hibernating.log");
        let (_, last, _) = d.failures["hibernation"].clone();
        d.prune(last + Duration::from_secs(3600), Duration::from_secs(1800));
        assert!(d.failures.is_empty());
    }

    #[test]
    fn old_format_is_read() {
        let d = digest("old-format.log");
        assert!(d.last_health.is_some());
    }

    #[test]
    fn doctor_reads_across_a_rollover() {
        let Recent {
            present, records, ..
        } = read_back(
            &fixtures().join("rollover"),
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH,
        );
        assert!(present);
        let mut d = Digest::default();
        d.add(&records);
        assert!(d.last_health.is_some());
        let first = records.first().unwrap().time;
        let last = records.last().unwrap().time;
        assert!(first < last);
    }

    #[test]
    fn a_restarted_agent_gets_time_for_its_first_report() {
        let at = |s: &str| local(&format!("2026-11-29 {s}"));
        let line = |t: &str, m: &str| format!("2026-11-29 {t}.0000 INFO {m}\n");
        let text = line(
            "08:00:00",
            &format!("[ssm-agent-worker] [HealthCheck] {HEALTH_LINE}"),
        ) + &line("10:00:00", "[amazon-ssm-agent] Starting Core Agent");
        let mut d = Digest::default();
        d.add(&parse(&text));
        let v = freshness_verdict(&d, at("10:02:00"), 5, true, None);
        assert_eq!(v.status, Status::Ok, "{v:?}");
        assert!(v.detail.contains("started"), "{v:?}");
        // Past the grace, the old report is what counts.
        let v = freshness_verdict(&d, at("10:30:00"), 5, true, None);
        assert_eq!(v.status, Status::Critical, "{v:?}");
    }

    #[test]
    fn equal_timestamps_keep_file_order() {
        let d = tempfile::tempdir().unwrap();
        let line = |m: &str| format!("2026-11-29 10:00:00.0000 INFO {m}\n");
        let mut f = Follower::default();
        assert!(f.poll(d.path(), 1 << 20).unwrap().is_empty());
        std::fs::write(d.path().join(LOG_FILE), line("current")).unwrap();
        std::fs::write(d.path().join(format!("{LOG_FILE}.10")), line("newer roll")).unwrap();
        std::fs::write(d.path().join(format!("{LOG_FILE}.9")), line("older roll")).unwrap();
        let r = f.poll(d.path(), 1 << 20).unwrap();
        assert_eq!(
            r.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
            ["older roll", "newer roll", "current"]
        );
    }

    #[test]
    fn follower_finishes_the_old_inode_after_a_rollover() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join(LOG_FILE);
        let line = |m: &str| format!("2026-11-29 10:00:00.0000 INFO {m}\n");
        std::fs::write(&log, line("one")).unwrap();
        let mut f = Follower::default();
        assert_eq!(f.poll(d.path(), 1 << 20).unwrap().len(), 1);
        // Two more lines, the second only half written.
        let mut text = line("two");
        text.push_str("2026-11-29 10:00:01.0000 INFO thr");
        std::fs::write(&log, line("one") + &text).unwrap();
        let r = f.poll(d.path(), 1 << 20).unwrap();
        assert_eq!(
            r.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
            ["two"]
        );
        // The writer finishes the line, then the file rolls over and a new one starts.
        std::fs::write(&log, line("one") + &text + "ee\n").unwrap();
        let rotated = d.path().join(format!("{LOG_FILE}.6"));
        std::fs::rename(&log, &rotated).unwrap();
        std::fs::write(&log, line("four").replace("10:00:00", "10:00:01")).unwrap();
        let r = f.poll(d.path(), 1 << 20).unwrap();
        assert_eq!(
            r.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
            ["three", "four"]
        );
        assert!(f.poll(d.path(), 1 << 20).unwrap().is_empty());
        // Another process still writes into the renamed inode: those lines are read too.
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&rotated)
            .unwrap();
        std::io::Write::write_all(&mut old, line("five, from the core").as_bytes()).unwrap();
        let r = f.poll(d.path(), 1 << 20).unwrap();
        assert_eq!(
            r.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
            ["five, from the core"]
        );
    }
}
