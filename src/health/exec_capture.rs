//! `audit.exec`: whether the programs started in sessions are being recorded, from the status
//! the audit loop writes (`audit-exec.json` in the state directory): which backend runs, why
//! the better ones could not, and what was lost.

use super::{CheckResult, Status};
use crate::state::LoadError;
use crate::state::exec_status::ExecStatus;

/// The check's id.
pub const ID: &str = "audit.exec";

/// The verdict; `enabled`: audit on and `audit.exec_backend` not `off`.
pub fn verdict(status: &Result<Option<ExecStatus>, LoadError>, enabled: bool) -> CheckResult {
    if !enabled {
        return CheckResult::ok(
            ID,
            "exec capture is off (audit.enabled = false or audit.exec_backend = \"off\")",
        );
    }
    let s = match status {
        Err(e) => return CheckResult::new(ID, Status::Unknown, e.to_string(), ""),
        Ok(None) => {
            return CheckResult::ok(
                ID,
                "not started yet (the daemon starts the capture with the audit loop)",
            );
        }
        Ok(Some(s)) => s,
    };
    let not_used = s
        .tried
        .iter()
        .map(|t| format!("; {} not used: {}", t.backend, t.why))
        .collect::<String>();
    match &s.backend {
        None => CheckResult::new(
            ID,
            Status::Critical,
            format!(
                "no exec capture runs (audit.exec_backend = \"{}\"): {}{not_used}",
                s.setting,
                s.error.as_deref().unwrap_or("no backend works here")
            ),
            "give the daemon what the backend needs (the packaged unit grants CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; the daemon must run in the host's network and PID namespaces), or set audit.exec_backend = \"auto\"",
        ),
        Some(b) => {
            let detail = format!(
                "{b} (scope {}): {} command(s) recorded, {} process(es) of sessions tracked, {} lost{not_used}",
                s.scope, s.commands, s.tracked, s.lost
            );
            if s.lost > 0 {
                CheckResult::new(
                    ID,
                    Status::Warning,
                    detail,
                    "exec events were dropped (the kernel's buffer overflowed, or the spool was full): see the gap events in `audit tail` and the spool's room (audit.spool_max)",
                )
            } else {
                CheckResult::ok(ID, detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::exec_status::Tried;

    fn status(backend: Option<&str>, lost: u64) -> ExecStatus {
        ExecStatus {
            at: std::time::UNIX_EPOCH,
            setting: "auto".into(),
            scope: "sessions".into(),
            backend: backend.map(str::to_string),
            tried: vec![Tried {
                backend: "ebpf".into(),
                why: "no BTF".into(),
            }],
            error: backend
                .is_none()
                .then(|| "no exec backend works here".into()),
            tracked: 3,
            commands: 10,
            lost,
        }
    }

    #[test]
    fn the_backend_and_why_the_better_ones_were_not_used() {
        let ok = verdict(&Ok(Some(status(Some("proc-connector"), 0))), true);
        assert_eq!(ok.status, Status::Ok);
        assert!(
            ok.detail.starts_with("proc-connector (scope sessions)"),
            "{}",
            ok.detail
        );
        assert!(ok.detail.contains("ebpf not used: no BTF"), "{}", ok.detail);
        let lost = verdict(&Ok(Some(status(Some("ebpf"), 4))), true);
        assert_eq!(lost.status, Status::Warning);
        let none = verdict(&Ok(Some(status(None, 0))), true);
        assert_eq!(none.status, Status::Critical);
        assert!(none.detail.contains("no exec backend works here"));
        assert!(!none.remedy.is_empty());
        assert_eq!(verdict(&Ok(None), true).status, Status::Ok);
        assert_eq!(
            verdict(&Ok(Some(status(None, 0))), false).status,
            Status::Ok
        );
    }
}
