//! The agent's service state from systemd (`systemctl show`), and its verdict (pure parsing).

use std::collections::BTreeMap;

use super::model::{CheckResult, Status};

/// The properties we ask `systemctl show` for.
pub const PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,UnitFileState,FragmentPath,MainPID,NRestarts,ExecMainStatus,ExecMainCode,Result,Job,StartLimitBurst";

/// The service units the agent is installed as: deb/rpm, then snap.
pub const UNITS: [&str; 2] = [
    "amazon-ssm-agent.service",
    "snap.amazon-ssm-agent.amazon-ssm-agent.service",
];

/// What systemd says about a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `Id`.
    pub id: String,
    /// `LoadState` (`loaded`, `not-found`, `masked`, …).
    pub load_state: String,
    /// `ActiveState` (`active`, `inactive`, `failed`, `activating`, …).
    pub active_state: String,
    /// `SubState` (`running`, `dead`, `auto-restart`, …).
    pub sub_state: String,
    /// `UnitFileState` (`enabled`, `disabled`, `static`, …).
    pub unit_file_state: String,
    /// `FragmentPath`.
    pub fragment_path: String,
    /// `MainPID` (0 when none).
    pub main_pid: u32,
    /// `NRestarts`.
    pub n_restarts: u32,
    /// `ExecMainStatus`.
    pub exec_main_status: i32,
    /// `Result` (`success`, `exit-code`, …).
    pub result: String,
    /// `Job`: the id of a queued or running systemd job for the unit, empty when none.
    pub job: String,
    /// `StartLimitBurst`: starts allowed within `StartLimitIntervalSec`.
    pub start_limit_burst: u32,
}

impl UnitState {
    /// systemd stopped restarting the unit after repeated crashes: `Result=start-limit-hit`
    /// after a manual start, or — as systemd 252 leaves automatic restarts that hit the limit —
    /// `failed` with `Result=exit-code` after automatic restarts (`NRestarts` is then
    /// `StartLimitBurst` or one less, the first start counting too: both seen).
    pub fn gave_up(&self) -> bool {
        self.result == "start-limit-hit" || (self.active_state == "failed" && self.n_restarts > 0)
    }
}

/// Parses `systemctl show` output (`Key=Value` lines; unknown keys ignored).
pub fn parse_show(text: &str) -> UnitState {
    let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| map.get(k).map(|v| v.to_string()).unwrap_or_default();
    UnitState {
        id: get("Id"),
        load_state: get("LoadState"),
        active_state: get("ActiveState"),
        sub_state: get("SubState"),
        unit_file_state: get("UnitFileState"),
        fragment_path: get("FragmentPath"),
        main_pid: get("MainPID").parse().unwrap_or(0),
        n_restarts: get("NRestarts").parse().unwrap_or(0),
        exec_main_status: get("ExecMainStatus").parse().unwrap_or(0),
        result: get("Result"),
        job: get("Job"),
        start_limit_burst: get("StartLimitBurst").parse().unwrap_or(0),
    }
}

/// Restarts at or above this count are worth a warning.
pub const RESTART_WARNING: u32 = 3;

/// The `agent.service` verdict for the first unit that is loaded (deb/rpm or snap).
pub fn service_verdict(units: &[UnitState]) -> CheckResult {
    const ID: &str = "agent.service";
    let Some(u) = units.iter().find(|u| u.load_state == "loaded") else {
        let masked = units.iter().find(|u| u.load_state == "masked");
        return match masked {
            Some(u) => CheckResult::new(
                ID,
                Status::Critical,
                format!("{} is masked", u.id),
                format!(
                    "systemctl unmask {} && systemctl enable --now {}",
                    u.id, u.id
                ),
            ),
            None => CheckResult::new(
                ID,
                Status::Critical,
                "no amazon-ssm-agent service unit is loaded (not installed, or installed without its unit)",
                "install amazon-ssm-agent (deb, rpm or snap) and enable it",
            ),
        };
    };
    let enabled = matches!(
        u.unit_file_state.as_str(),
        "enabled" | "enabled-runtime" | "static" | "alias"
    );
    let running = (u.active_state.as_str(), u.sub_state.as_str()) == ("active", "running");
    if !running && !u.job.is_empty() {
        return CheckResult::new(
            ID,
            Status::Warning,
            format!(
                "{} is {} ({}) and systemd job {} for it is pending (e.g. waiting for network-online.target)",
                u.id, u.active_state, u.sub_state, u.job
            ),
            "systemctl list-jobs; check again in a minute",
        );
    }
    match (u.active_state.as_str(), u.sub_state.as_str()) {
        ("active", "running") => {
            let mut detail = format!("{} is running (pid {}", u.id, u.main_pid);
            if u.n_restarts > 0 {
                detail.push_str(&format!(", restarted {} time(s)", u.n_restarts));
            }
            detail.push(')');
            if !enabled {
                return CheckResult::new(
                    ID,
                    Status::Warning,
                    format!(
                        "{detail}, but it is {}: it will not start after a reboot",
                        u.unit_file_state
                    ),
                    format!("systemctl enable {}", u.id),
                );
            }
            if u.n_restarts >= RESTART_WARNING {
                return CheckResult::new(
                    ID,
                    Status::Warning,
                    format!("{detail}: it keeps crashing"),
                    format!("journalctl -u {} and /var/log/amazon/ssm/errors.log", u.id),
                );
            }
            CheckResult::ok(ID, detail)
        }
        ("activating", "auto-restart") => CheckResult::new(
            ID,
            Status::Critical,
            format!(
                "{} exited ({}, status {}) and systemd is waiting to restart it (restarted {} time(s))",
                u.id, u.result, u.exec_main_status, u.n_restarts
            ),
            format!("journalctl -u {} and /var/log/amazon/ssm/errors.log", u.id),
        ),
        ("activating" | "reloading", _) => CheckResult::new(
            ID,
            Status::Warning,
            format!("{} is {} ({})", u.id, u.active_state, u.sub_state),
            "check again in a minute",
        ),
        ("failed", _) if u.gave_up() => CheckResult::new(
            ID,
            Status::Critical,
            format!(
                "{} crashed {} time(s) in a row and systemd stopped restarting it (its start limit): the instance is not reachable through Session Manager",
                u.id, u.n_restarts
            ),
            format!(
                "find the cause in journalctl -u {} and /var/log/amazon/ssm/errors.log, then systemctl reset-failed {} and start it",
                u.id, u.id
            ),
        ),
        (state, sub) => CheckResult::new(
            ID,
            Status::Critical,
            format!(
                "{} is {state} ({sub}{}): the instance is not reachable through Session Manager",
                u.id,
                if u.result.is_empty() || u.result == "success" {
                    String::new()
                } else {
                    format!(", result {}", u.result)
                }
            ),
            format!(
                "systemctl {} {}",
                if enabled { "start" } else { "enable --now" },
                u.id
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/systemctl")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn parses_show_output() {
        let u = parse_show(
            "Id=amazon-ssm-agent.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nMainPID=812\nNRestarts=0\nExecMainStatus=0\nResult=success\nFragmentPath=/lib/systemd/system/amazon-ssm-agent.service\n",
        );
        assert_eq!(u.main_pid, 812);
        assert_eq!(
            u.fragment_path,
            "/lib/systemd/system/amazon-ssm-agent.service"
        );
        assert_eq!(service_verdict(&[u]).status, Status::Ok);
    }

    #[test]
    fn verdicts_on_captured_real_output() {
        let cases = [
            ("active-enabled.txt", Status::Ok, "is running"),
            ("inactive-enabled.txt", Status::Critical, "systemctl start"),
            ("failed.txt", Status::Critical, "failed"),
            (
                "activating-auto-restart.txt",
                Status::Critical,
                "waiting to restart",
            ),
            ("inactive-disabled.txt", Status::Critical, "enable --now"),
            (
                "snap-active-enabled.txt",
                Status::Ok,
                "snap.amazon-ssm-agent",
            ),
        ];
        for (file, status, needle) in cases {
            let v = service_verdict(&[parse_show(&fixture(file))]);
            assert_eq!(v.status, status, "{file}: {v:?}");
            assert!(
                format!("{} {}", v.detail, v.remedy).contains(needle),
                "{file}: {v:?}"
            );
        }
        let missing = parse_show(&fixture("not-found.txt"));
        assert_eq!(missing.load_state, "not-found");
        let v = service_verdict(&[missing]);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.detail.contains("no amazon-ssm-agent service unit"),
            "{v:?}"
        );
    }

    #[test]
    fn running_but_disabled_or_flapping_is_a_warning() {
        let mut u = parse_show(&fixture("active-enabled.txt"));
        u.unit_file_state = "disabled".into();
        assert_eq!(
            service_verdict(std::slice::from_ref(&u)).status,
            Status::Warning
        );
        u.unit_file_state = "enabled".into();
        u.n_restarts = 5;
        let v = service_verdict(&[u]);
        assert_eq!(v.status, Status::Warning);
        assert!(v.detail.contains("keeps crashing"));
    }

    #[test]
    fn a_pending_job_is_a_warning_not_a_failure() {
        let mut u = parse_show(&fixture("inactive-enabled.txt"));
        assert!(u.job.is_empty(), "{u:?}");
        u.job = "55".into();
        let v = service_verdict(&[u]);
        assert_eq!(v.status, Status::Warning, "{v:?}");
        assert!(v.detail.contains("job 55"), "{v:?}");
        let mut running = parse_show(&fixture("active-enabled.txt"));
        running.job = "56".into();
        assert_eq!(service_verdict(&[running]).status, Status::Ok);
    }

    #[test]
    fn the_snap_unit_counts_when_the_package_unit_is_missing() {
        let missing = parse_show(&fixture("not-found.txt"));
        let snap = parse_show(&fixture("snap-active-enabled.txt"));
        assert_eq!(service_verdict(&[missing, snap]).status, Status::Ok);
    }
}
