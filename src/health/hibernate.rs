//! Why the agent stopped reporting, remembered: `hibernate.log` (written only while the agent
//! hibernates, with its own line format) and the last failure the agent's log showed, kept in the
//! state directory so neither the end of `health.log_window` nor a restart of ssm-companion
//! forgets it. A silent agent is then reported with its cause and that cause's remedy — never
//! "restart the agent" for what is an IAM or registration problem.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::agent_log::{self, Digest, SIGNATURES};
use super::model::Status;

/// The hibernation log's name (rolled as `.1`, `.2`; at most 30,000 bytes each).
pub const LOG_FILE: &str = "hibernate.log";
/// The remembered failure, in ssm-companion's state directory.
pub const MEMORY_FILE: &str = "health-agent-failure.json";

const ENTERED: &str = "Agent is in hibernate mode";
const PING_FAILED: &str = "Health ping failed with error - ";

/// The latest hibernation `hibernate.log` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hibernation {
    /// When it began (`Agent is in hibernate mode…`).
    pub since: SystemTime,
    /// The last line since then.
    pub last: SystemTime,
    /// The last failed health ping's error, shortened.
    pub error: Option<String>,
}

/// Reads `hibernate.log` and its rolls (oldest first); `None` when the agent never hibernated
/// here, or the files cannot be read (each is read only when regular, and capped).
pub fn read(log_dir: &Path) -> Option<Hibernation> {
    let mut records = Vec::new();
    for name in [
        format!("{LOG_FILE}.2"),
        format!("{LOG_FILE}.1"),
        LOG_FILE.to_string(),
    ] {
        if let Ok(text) = crate::state::read_capped(&log_dir.join(name)) {
            records.extend(agent_log::parse(&text));
        }
    }
    let start = records.iter().rposition(|r| r.message.contains(ENTERED))?;
    let episode = &records[start..];
    Some(Hibernation {
        since: episode[0].time,
        last: episode
            .iter()
            .map(|r| r.time)
            .max()
            .unwrap_or(episode[0].time),
        error: episode
            .iter()
            .rev()
            .find_map(|r| r.message.split_once(PING_FAILED))
            .map(|(_, e)| agent_log::excerpt(e.lines().next().unwrap_or_default())),
    })
}

/// The last critical failure the agent's log showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// The signature's key (`hibernation`, `access-denied`, …).
    pub key: String,
    /// When it was logged.
    #[serde(with = "crate::clock::serde_rfc3339")]
    pub at: SystemTime,
    /// The line, shortened.
    pub line: String,
}

/// Remembers the newest critical failure of `d` (written atomically when it is newer than the
/// one remembered) and returns the newest known. Write errors only cost the memory.
pub fn remember(state_dir: &Path, d: &Digest) -> Option<Remembered> {
    let path = state_dir.join(MEMORY_FILE);
    let old: Option<Remembered> = crate::state::read_json(&path).ok().flatten();
    let newest = SIGNATURES
        .iter()
        .filter(|s| s.status == Status::Critical)
        .filter_map(|s| {
            d.failures.get(s.key).map(|(_, at, line)| Remembered {
                key: s.key.to_string(),
                // Whole seconds, as the file keeps it (RFC 3339): the same line compares equal.
                at: SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(
                        at.duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs(),
                    ),
                line: line.clone(),
            })
        })
        .max_by_key(|r| r.at);
    match (old, newest) {
        (Some(o), Some(n)) if o.at >= n.at => Some(o),
        (_, Some(n)) => {
            let json = serde_json::to_vec(&n).unwrap_or_default();
            if let Err(e) = crate::state::ensure_dir(state_dir)
                .and_then(|()| crate::state::write_atomic(&path, &json, 0o600))
            {
                tracing::debug!("health: cannot remember the agent's last failure: {e}");
            }
            Some(n)
        }
        (o, None) => o,
    }
}

/// Why a silent agent is silent, when known: what the freshness check says instead of "restart".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// What is known, with when.
    pub detail: String,
    /// What fixes it.
    pub remedy: String,
}

const HIBERNATION_REMEDY: &str = "the agent hibernates because its health pings to ssm fail: fix that — usually the role lacks ssm:UpdateInstanceInformation (AmazonSSMManagedInstanceCore), the hybrid registration is wrong, or there is no path to ssm; it resumes by itself when a ping succeeds (pings back off to one an hour)";

/// The cause of silence since `last_health` (or ever, when there was none): a hibernation that
/// began after it, else a remembered critical failure logged after it.
pub fn cause(
    hibernation: Option<&Hibernation>,
    remembered: Option<&Remembered>,
    last_health: Option<SystemTime>,
) -> Option<Cause> {
    let after = |t: SystemTime| last_health.is_none_or(|h| t > h);
    let at = |t: SystemTime| crate::clock::rfc3339(t);
    if let Some(h) = hibernation.filter(|h| after(h.last)) {
        return Some(Cause {
            detail: format!(
                "the agent has been hibernating since {} (hibernate.log, last line {}){}",
                at(h.since),
                at(h.last),
                h.error
                    .as_ref()
                    .map(|e| format!("; health ping failed: {e}"))
                    .unwrap_or_default()
            ),
            remedy: HIBERNATION_REMEDY.into(),
        });
    }
    let r = remembered.filter(|r| after(r.at))?;
    let sig = SIGNATURES.iter().find(|s| s.key == r.key)?;
    Some(Cause {
        detail: format!("last known failure ({}, {}): {}", r.key, at(r.at), r.line),
        remedy: if r.key == "hibernation" {
            HIBERNATION_REMEDY.into()
        } else {
            sig.remedy.into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-log")
    }

    #[test]
    fn hibernate_log_in_both_formats() {
        let h = read(&fixtures()).unwrap();
        assert!(h.last > h.since);
        let e = h.error.unwrap();
        assert!(e.starts_with("AccessDeniedException"), "{e}");
        assert!(e.contains("ssm:UpdateInstanceInformation"), "{e}");
        // Current agents write UTC with a `T` and a `Z` (%UTCDateT%UTCTimeZ).
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(LOG_FILE),
            "2026-12-05T10:00:00Z INFO Agent is in hibernate mode. Reducing logging. Logging will be reduced to one log per backoff period\n2026-12-05T10:10:00Z ERROR Health ping failed with error - RequestError: send request failed\n",
        )
        .unwrap();
        let h = read(d.path()).unwrap();
        assert_eq!(crate::clock::rfc3339(h.since), "2026-12-05T10:00:00Z");
        assert_eq!(crate::clock::rfc3339(h.last), "2026-12-05T10:10:00Z");
        assert_eq!(
            h.error.as_deref(),
            Some("RequestError: send request failed")
        );
        assert!(read(tempfile::tempdir().unwrap().path()).is_none());
    }

    #[test]
    fn the_last_failure_survives_the_window_and_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(fixtures().join("hibernating.log")).unwrap();
        let mut digest = Digest::default();
        digest.add(&agent_log::parse(&text));
        let first = remember(d.path(), &digest).unwrap();
        // The newest critical line: the core's AccessDenied at 07:10, after the hibernation.
        assert_eq!(first.key, "access-denied");
        assert!(
            first.line.contains("ssm:UpdateInstanceInformation"),
            "{first:?}"
        );
        // Hours later the window has forgotten it; a new process reads it back.
        let mut later = digest.clone();
        later.prune(
            first.at + Duration::from_secs(7200),
            Duration::from_secs(1800),
        );
        assert!(later.failures.is_empty());
        assert_eq!(remember(d.path(), &later), Some(first.clone()));
        // An older failure never replaces a newer one.
        let mut older = Digest::default();
        older.failures.insert(
            "no-role",
            (1, first.at - Duration::from_secs(60), "old".into()),
        );
        assert_eq!(remember(d.path(), &older), Some(first));
    }

    /// The fixture hibernates at 06:40 and logs nothing more in the main log: two hours later
    /// the window has dropped the hibernation line, and the verdict used to say "restart".
    #[test]
    fn a_hibernating_agent_is_reported_as_hibernating_after_the_window() {
        let text = std::fs::read_to_string(fixtures().join("hibernating.log")).unwrap();
        let mut d = Digest::default();
        d.add(&agent_log::parse(&text));
        let (_, last) = d.span.unwrap();
        let now = last + Duration::from_secs(7200);
        d.prune(now, Duration::from_secs(1800));
        assert!(d.failures.is_empty(), "the window forgot it");
        let state = tempfile::tempdir().unwrap();
        let c = cause(
            read(&fixtures()).as_ref(),
            remember(state.path(), &d).as_ref(),
            d.last_health,
        );
        let v = agent_log::freshness_verdict(&d, now, 5, true, c.as_ref());
        assert_eq!(v.status, Status::Critical);
        assert!(v.detail.contains("hibernating since"), "{v:?}");
        assert!(v.remedy.contains("ssm:UpdateInstanceInformation"), "{v:?}");
        assert!(!v.remedy.contains("restart the agent"), "{v:?}");
    }

    #[test]
    fn a_cause_after_the_last_report_replaces_restart() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = Hibernation {
            since: t,
            last: t + Duration::from_secs(3600),
            error: Some("AccessDeniedException: …".into()),
        };
        let c = cause(Some(&h), None, Some(t - Duration::from_secs(60))).unwrap();
        assert!(c.detail.contains("hibernating since"), "{c:?}");
        assert!(c.remedy.contains("ssm:UpdateInstanceInformation"), "{c:?}");
        assert!(!c.remedy.starts_with("restart"), "{c:?}");
        // A hibernation that ended before the last report is history.
        assert!(cause(Some(&h), None, Some(t + Duration::from_secs(7200))).is_none());
        let r = Remembered {
            key: "no-role".into(),
            at: t,
            line: "no EC2 instance role found".into(),
        };
        let c = cause(None, Some(&r), None).unwrap();
        assert!(c.remedy.contains("instance profile"), "{c:?}");
    }
}
