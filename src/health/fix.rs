//! Safe remediation (`doctor --fix`, `health.fix` in the daemon): start a stopped agent service,
//! or restart one whose worker is missing. Nothing else, nothing destructive, at most once per
//! `health.fix_min_interval` (remembered in the state directory, so restarts of ssm-companion do
//! not reset it), and every attempt is logged and recorded as a journal event.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::model::Status;
use super::report::Report;
use super::systemd;
use crate::clock::Clock;
use crate::config::Settings;
use crate::events::{self, Outcome};

/// File in the state directory remembering the last attempt.
pub const STATE_FILE: &str = "health-fix.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct FixState {
    last_attempt: Option<String>,
}

/// What the report asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The service is not running.
    Start,
    /// The core runs without its worker.
    Restart,
}

impl Action {
    /// The `systemctl` verb.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Restart => "restart",
        }
    }
}

/// What a fix attempt did.
#[derive(Debug, thiserror::Error)]
pub enum FixOutcome {
    /// `systemctl <verb> <unit>` succeeded.
    #[error("ran `systemctl {verb} {unit}`")]
    Ran {
        /// `start` or `restart`.
        verb: &'static str,
        /// The agent's unit.
        unit: String,
    },
    /// `systemctl <verb> <unit>` failed.
    #[error("`systemctl {verb} {unit}` failed: {source}")]
    Failed {
        /// `start` or `restart`.
        verb: &'static str,
        /// The agent's unit.
        unit: String,
        /// What went wrong.
        source: crate::exec::ExecError,
    },
    /// Nothing was run.
    #[error("not fixing: {0}")]
    NotFixing(Refusal),
}

impl FixOutcome {
    /// Whether `systemctl` was run successfully (the agent then needs a while to come up).
    pub fn ran(&self) -> bool {
        matches!(self, FixOutcome::Ran { .. })
    }

    /// A stable slug for scripts and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            FixOutcome::Ran { .. } => "ran",
            FixOutcome::Failed { .. } => "failed",
            FixOutcome::NotFixing(r) => r.reason(),
        }
    }
}

/// Why a fix was not attempted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No systemd on this host.
    #[error("no systemd on this host; start the agent with its init system")]
    NoSystemd,
    /// Another ssm-companion holds the fix lock.
    #[error("another ssm-companion is fixing right now")]
    Busy,
    /// The state directory or its lock is unusable.
    #[error("{0}")]
    State(crate::state::StateError),
    /// The rate limit.
    #[error(
        "the last attempt was at {} (at most one per health.fix_min_interval = {})",
        crate::clock::rfc3339(*at),
        humantime::format_duration(*interval)
    )]
    RateLimited {
        /// The last attempt.
        at: SystemTime,
        /// `health.fix_min_interval`.
        interval: Duration,
    },
    /// No amazon-ssm-agent unit is loaded.
    #[error("no loaded amazon-ssm-agent unit to start")]
    NoUnit,
    /// The unit's state says not to touch it ([`refusal`]).
    #[error("{0}")]
    UnitState(String),
    /// The attempt could not be recorded (so the rate limit could not hold).
    #[error("cannot record the attempt ({0})")]
    CannotRecord(crate::state::StateError),
    /// The blocking fix task did not finish.
    #[error("the fix task failed: {0}")]
    Task(String),
}

impl Refusal {
    /// A stable slug for scripts and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoSystemd => "no-systemd",
            Refusal::Busy => "busy",
            Refusal::State(_) => "state-dir",
            Refusal::RateLimited { .. } => "rate-limited",
            Refusal::NoUnit => "no-unit",
            Refusal::UnitState(_) => "unit-state",
            Refusal::CannotRecord(_) => "cannot-record",
            Refusal::Task(_) => "task-failed",
        }
    }
}

/// Decides from a report (pure).
pub fn decide(report: &Report) -> Option<Action> {
    let status = |id: &str| report.checks.iter().find(|c| c.id == id).map(|c| c.status);
    if status("agent.installed") != Some(Status::Ok) {
        return None;
    }
    if status("agent.service") == Some(Status::Critical) {
        return Some(Action::Start);
    }
    if status("agent.worker") == Some(Status::Critical) {
        return Some(Action::Restart);
    }
    None
}

/// Remediates if the report calls for it and the rate limit allows; returns what it did, or
/// `None` when there was nothing to do.
pub async fn remediate(
    settings: &Settings,
    report: &Report,
    clock: &dyn Clock,
) -> Option<FixOutcome> {
    let action = decide(report)?;
    let paths = settings.paths.health();
    if !paths.systemd_run_dir.exists() {
        return Some(FixOutcome::NotFixing(Refusal::NoSystemd));
    }
    let now = clock.now();
    let s = settings.clone();
    Some(
        tokio::task::spawn_blocking(move || run(&s, action, now))
            .await
            .unwrap_or_else(|e| FixOutcome::NotFixing(Refusal::Task(e.to_string()))),
    )
}

/// An update lock younger than this means the agent's updater is at work.
pub const UPDATE_LOCK_FRESH: Duration = Duration::from_secs(3600);

/// Why not to touch the unit now (pure), or `None`.
pub fn refusal(
    action: Action,
    unit: &systemd::UnitState,
    update_lock_age: Option<Duration>,
) -> Option<String> {
    if !unit.job.is_empty() {
        return Some(format!(
            "systemd job {} for {} is already pending; systemd is on it",
            unit.job, unit.id
        ));
    }
    // A crash loop: systemd restarts the unit by itself after RestartSec, and a `start` would
    // only wait for that restart (and fail with it); the cause is in the agent's own start.
    if unit.active_state == "activating" && unit.sub_state == "auto-restart" {
        return Some(format!(
            "{} is crash-looping: it exited ({}, status {}) and systemd restarts it by itself (restarted {} time(s)); starting it again would not help: the cause is in the agent's start (journalctl -u {} and /var/log/amazon/ssm/errors.log)",
            unit.id, unit.result, unit.exec_main_status, unit.n_restarts, unit.id
        ));
    }
    if unit.gave_up() {
        return Some(format!(
            "{} crashed {} time(s) in a row and systemd stopped restarting it (its start limit); starting it again would crash again: find the cause first (journalctl -u {}), then `systemctl reset-failed {}` and start it",
            unit.id, unit.n_restarts, unit.id, unit.id
        ));
    }
    if action == Action::Start
        && matches!(
            unit.unit_file_state.as_str(),
            "disabled" | "masked" | "masked-runtime"
        )
    {
        return Some(format!(
            "{} is {}: someone turned it off on purpose; `systemctl enable --now {}` if it should run",
            unit.id, unit.unit_file_state, unit.id
        ));
    }
    if let Some(age) = update_lock_age
        && age < UPDATE_LOCK_FRESH
    {
        return Some(format!(
            "an agent update is in progress (update.lock changed {}s ago); the updater restarts the agent itself",
            age.as_secs()
        ));
    }
    None
}

/// The last attempt from the state file; one in the future (the clock went back) does not
/// count, so a clock correction cannot block fixing for as long as it jumped.
fn last_attempt(path: &std::path::Path, now: SystemTime) -> Option<(SystemTime, Duration)> {
    let t = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<FixState>(&t).ok())?
        .last_attempt?;
    let at = crate::clock::parse_rfc3339(&t)?;
    now.duration_since(at).ok().map(|ago| (at, ago))
}

fn run(settings: &Settings, action: Action, now: SystemTime) -> FixOutcome {
    let refuse = FixOutcome::NotFixing;
    let paths = settings.paths.health();
    // One fixer at a time (the daemon and `doctor --fix`), and the rate limit read under it.
    let _lock = match crate::state::StateDir::open(&paths.own_state_dir)
        .and_then(|d| d.try_lock("health-fix.lock"))
    {
        Ok(l) => l,
        Err(crate::state::StateError::Busy { .. }) => return refuse(Refusal::Busy),
        Err(e) => return refuse(Refusal::State(e)),
    };
    if let Some((at, ago)) = last_attempt(&paths.own_state_dir.join(STATE_FILE), now)
        && ago < settings.health.fix_min_interval
    {
        return refuse(Refusal::RateLimited {
            at,
            interval: settings.health.fix_min_interval,
        });
    }
    let show = |unit: &str| {
        crate::exec::run_ok(
            &paths.systemctl,
            &[
                OsStr::new("show"),
                OsStr::new("-p"),
                OsStr::new(systemd::PROPERTIES),
                OsStr::new(unit),
            ],
            None,
            settings.health.timeout,
        )
        .ok()
        .map(|o| systemd::parse_show(&o.stdout))
    };
    let Some(unit) = systemd::UNITS
        .iter()
        .filter_map(|u| show(u))
        .find(|u| u.load_state == "loaded")
    else {
        return refuse(Refusal::NoUnit);
    };
    let update_lock_age = std::fs::metadata(paths.state_dir.join("update.lock"))
        .and_then(|m| m.modified())
        .ok()
        .map(|m| now.duration_since(m).unwrap_or(Duration::ZERO));
    if let Some(why) = refusal(action, &unit, update_lock_age) {
        return refuse(Refusal::UnitState(why));
    }
    // Remember the attempt first: a crash or a hang still counts against the rate limit.
    let state = FixState {
        last_attempt: Some(crate::clock::rfc3339(now)),
    };
    if let Err(e) = crate::state::ensure_dir(&paths.own_state_dir).and_then(|()| {
        crate::state::write_atomic(
            &paths.own_state_dir.join(STATE_FILE),
            serde_json::to_string(&state).unwrap_or_default().as_bytes(),
            0o600,
        )
    }) {
        return refuse(Refusal::CannotRecord(e));
    }
    let verb = action.verb();
    let r = crate::exec::run_ok(
        &paths.systemctl,
        &[OsStr::new(verb), OsStr::new("--"), OsStr::new(&unit.id)],
        None,
        Duration::from_secs(60).max(settings.health.timeout),
    );
    match r {
        Ok(_) => {
            events::health_fix(verb, &unit.id, Outcome::Done, "requested from systemd");
            FixOutcome::Ran {
                verb,
                unit: unit.id,
            }
        }
        Err(source) => {
            events::health_fix(verb, &unit.id, Outcome::Failed, &source.to_string());
            FixOutcome::Failed {
                verb,
                unit: unit.id,
                source,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::model::CheckResult;

    fn report(installed: Status, service: Status, worker: Status) -> Report {
        Report {
            schema: String::new(),
            generated_at: String::new(),
            instance_id: None,
            region: None,
            agent_version: None,
            overall: Status::Ok,
            partial: false,
            checks: vec![
                CheckResult::new("agent.installed", installed, "", ""),
                CheckResult::new("agent.service", service, "", ""),
                CheckResult::new("agent.worker", worker, "", ""),
            ],
        }
    }

    #[test]
    fn outcomes_read_as_before_and_have_stable_reasons() {
        let ran = FixOutcome::Ran {
            verb: "start",
            unit: "amazon-ssm-agent.service".into(),
        };
        assert_eq!(
            ran.to_string(),
            "ran `systemctl start amazon-ssm-agent.service`"
        );
        assert!(ran.ran());
        assert_eq!(ran.reason(), "ran");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let limited = FixOutcome::NotFixing(Refusal::RateLimited {
            at,
            interval: Duration::from_secs(600),
        });
        assert_eq!(
            limited.to_string(),
            "not fixing: the last attempt was at 2027-01-15T08:00:00Z (at most one per health.fix_min_interval = 10m)"
        );
        assert!(!limited.ran());
        assert_eq!(limited.reason(), "rate-limited");
        assert_eq!(
            FixOutcome::NotFixing(Refusal::NoSystemd).to_string(),
            "not fixing: no systemd on this host; start the agent with its init system"
        );
    }

    #[test]
    fn refusals() {
        let unit = |file_state: &str, job: &str| systemd::UnitState {
            id: "amazon-ssm-agent.service".into(),
            unit_file_state: file_state.into(),
            job: job.into(),
            ..Default::default()
        };
        assert_eq!(refusal(Action::Start, &unit("enabled", ""), None), None);
        let r = refusal(Action::Start, &unit("disabled", ""), None).unwrap();
        assert!(r.contains("on purpose"), "{r}");
        assert!(refusal(Action::Start, &unit("masked", ""), None).is_some());
        // A running core without its worker is restarted even when the unit is disabled.
        assert_eq!(refusal(Action::Restart, &unit("disabled", ""), None), None);
        let r = refusal(Action::Start, &unit("enabled", "55"), None).unwrap();
        assert!(r.contains("job 55"), "{r}");
        let fresh = Some(Duration::from_secs(120));
        let r = refusal(Action::Restart, &unit("enabled", ""), fresh).unwrap();
        assert!(r.contains("update"), "{r}");
        let stale = Some(UPDATE_LOCK_FRESH * 2);
        assert_eq!(refusal(Action::Start, &unit("enabled", ""), stale), None);
    }

    /// A unit waiting out RestartSec after a crash (captured from real systemd), and one that
    /// hit its start limit. Starting either would block or fail, and say nothing new.
    #[test]
    fn a_crash_looping_unit_is_left_to_systemd() {
        let fixture = |name: &str| {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/systemctl")
                .join(name);
            systemd::parse_show(&std::fs::read_to_string(p).unwrap())
        };
        let r = refusal(Action::Start, &fixture("activating-auto-restart.txt"), None).unwrap();
        assert!(
            r.contains("crash-looping") && r.contains("journalctl -u"),
            "{r}"
        );
        // As systemd 252 leaves a unit whose automatic restarts hit the limit (seen in the
        // e2e test): failed, Result=exit-code, NRestarts at StartLimitBurst or one less.
        let mut limited = fixture("failed.txt");
        (limited.n_restarts, limited.start_limit_burst) = (2, 3);
        let r = refusal(Action::Start, &limited, None).unwrap();
        assert!(
            r.contains("stopped restarting") && r.contains("reset-failed"),
            "{r}"
        );
        let v = systemd::service_verdict(&[limited.clone()]);
        assert_eq!(v.status, Status::Critical);
        assert!(!v.remedy.starts_with("systemctl start"), "{v:?}");
        // After a manual start systemd says so itself.
        limited.n_restarts = 0;
        limited.result = "start-limit-hit".into();
        assert!(refusal(Action::Start, &limited, None).is_some());
        // A plain failure is started again.
        assert_eq!(refusal(Action::Start, &fixture("failed.txt"), None), None);
    }

    #[test]
    fn a_last_attempt_in_the_future_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(STATE_FILE);
        let now = crate::clock::parse_rfc3339("2026-11-29T12:00:00Z").unwrap();
        std::fs::write(&p, r#"{"last_attempt":"2026-11-29T11:59:00Z"}"#).unwrap();
        assert_eq!(last_attempt(&p, now).unwrap().1, Duration::from_secs(60));
        std::fs::write(&p, r#"{"last_attempt":"2027-01-01T00:00:00Z"}"#).unwrap();
        assert!(last_attempt(&p, now).is_none());
        std::fs::write(&p, "not json").unwrap();
        assert!(last_attempt(&p, now).is_none());
    }

    #[test]
    fn only_safe_actions() {
        assert_eq!(
            decide(&report(Status::Ok, Status::Critical, Status::Unknown)),
            Some(Action::Start)
        );
        assert_eq!(
            decide(&report(Status::Ok, Status::Ok, Status::Critical)),
            Some(Action::Restart)
        );
        assert_eq!(
            decide(&report(Status::Ok, Status::Warning, Status::Ok)),
            None,
            "a disabled unit is not enabled behind the operator's back"
        );
        assert_eq!(
            decide(&report(Status::Critical, Status::Critical, Status::Unknown)),
            None,
            "nothing to start when not installed"
        );
    }
}
