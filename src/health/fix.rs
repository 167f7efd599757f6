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

/// Remediates if the report calls for it and the rate limit allows; returns what it did (for
/// people), empty when there was nothing to do.
pub async fn remediate(
    settings: &Settings,
    report: &Report,
    clock: &dyn Clock,
    explicit: bool,
) -> Vec<String> {
    let Some(action) = decide(report) else {
        return Vec::new();
    };
    let paths = settings.paths.health();
    if !paths.systemd_run_dir.exists() {
        return vec![
            "not fixing: no systemd on this host; start the agent with its init system".into(),
        ];
    }
    let now = clock.now();
    let state_path = paths.own_state_dir.join(STATE_FILE);
    let last = std::fs::read_to_string(&state_path)
        .ok()
        .and_then(|t| serde_json::from_str::<FixState>(&t).ok())
        .and_then(|s| s.last_attempt)
        .and_then(|t| crate::clock::parse_rfc3339(&t));
    if let Some(last) = last
        && now.duration_since(last).unwrap_or(Duration::ZERO) < settings.health.fix_min_interval
    {
        return vec![format!(
            "not fixing: the last attempt was at {} (at most one per health.fix_min_interval = {})",
            crate::clock::rfc3339(last),
            humantime::format_duration(settings.health.fix_min_interval)
        )];
    }
    let s = settings.clone();
    let outcome = tokio::task::spawn_blocking(move || run(&s, action, now)).await;
    match outcome {
        Ok(notes) => notes,
        Err(e) => vec![format!("the fix task failed: {e}")],
    }
    .into_iter()
    .map(|n| {
        if explicit {
            n
        } else {
            format!("health.fix: {n}")
        }
    })
    .collect()
}

fn run(settings: &Settings, action: Action, now: SystemTime) -> Vec<String> {
    let paths = settings.paths.health();
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
        return vec!["not fixing: no loaded amazon-ssm-agent unit to start".into()];
    };
    // Remember the attempt first: a crash or a hang still counts against the rate limit.
    let state = FixState {
        last_attempt: Some(crate::clock::rfc3339(now)),
    };
    if let Err(e) = std::fs::create_dir_all(&paths.own_state_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            crate::state::write_atomic(
                &paths.own_state_dir.join(STATE_FILE),
                serde_json::to_string(&state).unwrap_or_default().as_bytes(),
                0o600,
            )
            .map_err(|e| e.to_string())
        })
    {
        return vec![format!("not fixing: cannot record the attempt ({e})")];
    }
    let verb = match action {
        Action::Start => "start",
        Action::Restart => "restart",
    };
    let r = crate::exec::run_ok(
        &paths.systemctl,
        &[OsStr::new(verb), OsStr::new("--"), OsStr::new(&unit.id)],
        None,
        Duration::from_secs(60).max(settings.health.timeout),
    );
    match r {
        Ok(_) => {
            events::health_fix(verb, &unit.id, Outcome::Done, "requested from systemd");
            vec![format!("ran `systemctl {verb} {}`", unit.id)]
        }
        Err(e) => {
            events::health_fix(verb, &unit.id, Outcome::Failed, &e.to_string());
            vec![format!("`systemctl {verb} {}` failed: {e}", unit.id)]
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
            checks: vec![
                CheckResult::new("agent.installed", installed, "", ""),
                CheckResult::new("agent.service", service, "", ""),
                CheckResult::new("agent.worker", worker, "", ""),
            ],
        }
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
