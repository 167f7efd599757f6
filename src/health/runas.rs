//! Run As readiness: the Session Manager preferences, and every OS user a principal's sessions
//! would start as exists on this host (any NSS source counts, as for the agent's `id <user>`).
//! This is where the accounts capability's work meets the agent: the check names the principals
//! whose sessions would fail.

use std::time::{Duration, SystemTime};

use super::model::{CheckResult, Status};
use super::remedy;
use crate::aws::fault::CallError;
use crate::aws::ssm::{PREFERENCES_PERMISSION, RunAsPreferences};
use crate::state::LoadError;
use crate::state::accounts_status::AccountsStatus;
use crate::state::run_as::RunAsMap;

/// Looks a user up (NSS); `Err` when the lookup itself fails.
pub type UserExists<'a> = &'a dyn Fn(&str) -> Result<bool, String>;

/// The `runas.preferences` check.
pub fn preferences_verdict(
    p: &Result<Option<RunAsPreferences>, CallError>,
    exists: UserExists<'_>,
) -> CheckResult {
    const ID: &str = "runas.preferences";
    match p {
        // The remedy follows the kind of failure: the permission only when it is missing.
        Err(e) => CheckResult::new(
            ID,
            Status::Unknown,
            e.message.clone(),
            remedy::remedy(
                &e.fault,
                &remedy::Call {
                    service: "ssm",
                    permission: Some(PREFERENCES_PERMISSION),
                    proxy: None,
                },
            ),
        )
        .caused_by(&e.fault),
        Ok(None) => CheckResult::ok(
            ID,
            "no Session Manager preferences document in this region: Run As is off, sessions run as ssm-user",
        ),
        Ok(Some(p)) if !p.enabled => CheckResult::ok(
            ID,
            "Run As is off in the Session Manager preferences: sessions run as ssm-user and SSMSessionRunAs tags are ignored",
        ),
        Ok(Some(RunAsPreferences {
            default_user: None, ..
        })) => CheckResult::new(
            ID,
            Status::Warning,
            "Run As is on without a default user: sessions of principals without an SSMSessionRunAs tag fail (\"please set the RunAs default user\")",
            "set runAsDefaultUser in the Session Manager preferences, or tag every principal",
        ),
        Ok(Some(RunAsPreferences {
            default_user: Some(u),
            ..
        })) => match exists(u) {
            Ok(true) => CheckResult::ok(ID, format!("Run As is on; the default user `{u}` exists")),
            Ok(false) => CheckResult::new(
                ID,
                Status::Critical,
                format!(
                    "Run As is on and the default user `{u}` does not exist here: every principal without an SSMSessionRunAs tag fails"
                ),
                "let ssm-companion create it (accounts.read_session_preferences = true) or create it",
            ),
            Err(e) => CheckResult::new(ID, Status::Unknown, e, ""),
        },
    }
}

/// The `runas.users` check: every mapped user exists; unusable tag values are named.
pub fn users_verdict(
    map: &Result<Option<RunAsMap>, LoadError>,
    run_as_on: Option<bool>,
    exists: UserExists<'_>,
) -> CheckResult {
    const ID: &str = "runas.users";
    let m = match map {
        Ok(Some(m)) => m,
        Ok(None) => {
            return CheckResult::ok(
                ID,
                "no Run As map (the accounts capability has not synced here): nothing to check",
            );
        }
        Err(e) => return CheckResult::new(ID, Status::Unknown, e.to_string(), ""),
    };
    let mut failing = Vec::new();
    let mut unknown = Vec::new();
    for u in &m.mapped {
        match exists(&u.user) {
            Ok(true) => {}
            Ok(false) => failing.push(format!(
                "{} -> `{}` (missing)",
                u.principals.join(", "),
                u.user
            )),
            Err(e) => unknown.push(format!("`{}`: {e}", u.user)),
        }
    }
    let unusable: Vec<String> = m
        .unusable
        .iter()
        .map(|x| format!("{} -> {:?} ({})", x.principal, x.value, x.reason))
        .collect();
    let off = run_as_on == Some(false);
    let suffix = if off {
        " (Run As is off, so this matters only once it is turned on)"
    } else {
        ""
    };
    if !failing.is_empty() {
        return CheckResult::new(
            ID,
            if off {
                Status::Warning
            } else {
                Status::Critical
            },
            format!("sessions would fail for: {}{suffix}", failing.join("; ")),
            "see `ssm-companion accounts plan` for why these users are not created",
        );
    }
    if !unusable.is_empty() {
        return CheckResult::new(
            ID,
            Status::Warning,
            format!(
                "tag values that cannot be user names, so these principals' sessions fail: {}{suffix}",
                unusable.join("; ")
            ),
            "fix the SSMSessionRunAs tags (names must match ^[a-z_][a-z0-9_-]{0,31}$)",
        );
    }
    if !unknown.is_empty() {
        return CheckResult::new(
            ID,
            Status::Unknown,
            format!("cannot look up: {}", unknown.join("; ")),
            "",
        );
    }
    CheckResult::ok(ID, format!("all {} mapped user(s) exist", m.mapped.len()))
}

/// The `accounts.sync` check: how the accounts capability's last applied sync went (when,
/// complete or not, converged, and every safety stop holding a change back), so a capped mass
/// retirement, a blocked one or an unverified ledger is seen where health is watched, not only
/// in the daemon's log.
pub fn sync_verdict(
    status: &Result<Option<AccountsStatus>, LoadError>,
    enabled: bool,
    interval: Duration,
    now: SystemTime,
) -> CheckResult {
    const ID: &str = "accounts.sync";
    let s = match status {
        Err(e) => return CheckResult::new(ID, Status::Unknown, e.to_string(), ""),
        Ok(None) if enabled => {
            return CheckResult::ok(
                ID,
                "no sync recorded yet (the first one runs within accounts.splay of the start)",
            );
        }
        Ok(None) => return CheckResult::ok(ID, "the accounts capability is off"),
        Ok(Some(s)) => s,
    };
    let at = crate::clock::rfc3339(s.at);
    let age = now.duration_since(s.at).unwrap_or_default();
    let age_text = humantime::format_duration(Duration::from_secs(age.as_secs()));
    if !enabled {
        return CheckResult::ok(
            ID,
            format!("the accounts capability is off (last sync {at})"),
        );
    }
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    let mut remedy = String::new();
    // Three intervals (plus the ±10 % jitter and some slack) without a sync: something is stuck.
    let stale_after = interval * 3 + Duration::from_secs(120);
    if age > stale_after {
        status = Status::Warning;
        parts.push(format!(
            "the last sync was {age_text} ago (accounts.interval {}): is the daemon running?",
            humantime::format_duration(interval)
        ));
        remedy = "systemctl status ssm-companion; journalctl -u ssm-companion".into();
    }
    if let Some(e) = &s.error {
        status = Status::Critical;
        parts.push(format!("the last sync could not run: {e}"));
        remedy =
            "fix the cause named here; `ssm-companion accounts apply` runs a sync and shows it"
                .into();
    }
    for h in &s.holds {
        status = status.worst(Status::Warning);
        parts.push(format!("held by {}: {}", h.label(), h.message));
        if remedy.is_empty() {
            remedy = "`ssm-companion accounts plan` shows what is held and why".into();
        }
    }
    if s.error.is_none() && !s.complete {
        status = status.worst(Status::Warning);
        parts.push(format!(
            "the last read of {} was incomplete, so nothing was retired: {}",
            s.source,
            s.problems.join("; ")
        ));
        if remedy.is_empty() {
            remedy = "fix the source (permissions, network); `ssm-companion accounts plan` shows the read".into();
        }
    }
    if s.failed_steps > 0 {
        status = status.worst(Status::Warning);
        parts.push(format!("{} step(s) failed", s.failed_steps));
        if remedy.is_empty() {
            remedy = "journalctl MESSAGE_ID=a6f2c4d1b8e94c0e9d57c1f3e2b8a901 SSM_COMPANION_OUTCOME=failed".into();
        }
    }
    if status == Status::Ok {
        return CheckResult::ok(
            ID,
            format!(
                "last sync {at} ({age_text} ago): complete read of {}, {} managed account(s), converged",
                s.source, s.managed
            ),
        );
    }
    CheckResult::new(
        ID,
        status,
        format!("last sync {at} ({age_text} ago): {}", parts.join("; ")),
        remedy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::run_as::{Mapped, Unusable};

    fn exists(u: &str) -> Result<bool, String> {
        match u {
            "alice" | "ops" => Ok(true),
            "flaky" => Err("sssd timed out".into()),
            _ => Ok(false),
        }
    }

    #[test]
    fn preferences() {
        let p = |e: bool, u: Option<&str>| {
            Ok(Some(RunAsPreferences {
                enabled: e,
                default_user: u.map(String::from),
            }))
        };
        assert_eq!(
            preferences_verdict(&p(true, Some("ops")), &exists).status,
            Status::Ok
        );
        assert_eq!(
            preferences_verdict(&p(true, Some("ghost")), &exists).status,
            Status::Critical
        );
        assert_eq!(
            preferences_verdict(&p(true, None), &exists).status,
            Status::Warning
        );
        assert_eq!(
            preferences_verdict(&p(false, None), &exists).status,
            Status::Ok
        );
        assert_eq!(preferences_verdict(&Ok(None), &exists).status, Status::Ok);
        let failed = |fault| {
            preferences_verdict(
                &Err(CallError {
                    fault,
                    message: "cannot read the Session Manager preferences".into(),
                }),
                &exists,
            )
        };
        let denied = failed(crate::aws::fault::Fault::Aws {
            code: "AccessDeniedException".into(),
            status: 400,
        });
        assert_eq!(denied.status, Status::Unknown);
        assert!(
            denied.remedy.contains("grant ssm:GetDocument"),
            "{denied:?}"
        );
        // The call failed on DNS: the DNS remedy, never the permission.
        let dns = failed(crate::aws::fault::Fault::Dns);
        assert_eq!(dns.status, Status::Unknown);
        assert!(!dns.remedy.contains("GetDocument"), "{dns:?}");
        assert!(dns.remedy.contains("DNS"), "{dns:?}");
        assert_eq!(dns.cause.as_deref(), Some("dns"));
    }

    #[test]
    fn users_name_the_principals_that_would_fail() {
        let m = |mapped: &[(&str, &str)], unusable: &[(&str, &str)]| {
            Ok(Some(RunAsMap {
                generated_at: String::new(),
                complete: true,
                mapped: mapped
                    .iter()
                    .map(|(u, p)| Mapped {
                        user: u.to_string(),
                        principals: vec![p.to_string()],
                    })
                    .collect(),
                unusable: unusable
                    .iter()
                    .map(|(p, v)| Unusable {
                        principal: p.to_string(),
                        value: v.to_string(),
                        reason: "invalid-name".into(),
                    })
                    .collect(),
            }))
        };
        assert_eq!(
            users_verdict(&m(&[("alice", "arn:a")], &[]), Some(true), &exists).status,
            Status::Ok
        );
        let v = users_verdict(
            &m(&[("alice", "arn:a"), ("bob", "arn:b")], &[]),
            Some(true),
            &exists,
        );
        assert_eq!(v.status, Status::Critical);
        assert!(v.detail.contains("arn:b -> `bob` (missing)"), "{v:?}");
        assert_eq!(
            users_verdict(&m(&[("bob", "arn:b")], &[]), Some(false), &exists).status,
            Status::Warning
        );
        let v = users_verdict(
            &m(&[("alice", "arn:a")], &[("arn:d", "Dave.Smith")]),
            None,
            &exists,
        );
        assert_eq!(v.status, Status::Warning);
        assert!(v.detail.contains("arn:d -> \"Dave.Smith\""), "{v:?}");
        assert_eq!(
            users_verdict(&m(&[("flaky", "arn:f")], &[]), None, &exists).status,
            Status::Unknown
        );
        assert_eq!(users_verdict(&Ok(None), None, &exists).status, Status::Ok);
    }

    fn status(at: SystemTime) -> AccountsStatus {
        AccountsStatus {
            at,
            source: "iam".into(),
            error: None,
            complete: true,
            problems: vec![],
            failed_steps: 0,
            holds: vec![],
            managed: 3,
            converged: true,
        }
    }

    #[test]
    fn sync_verdicts() {
        use crate::state::accounts_status::Hold;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let now = t0 + Duration::from_secs(60);
        let i = Duration::from_secs(300);
        let v = |s: AccountsStatus| sync_verdict(&Ok(Some(s)), true, i, now);
        let ok = v(status(t0));
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.detail.contains("converged") && ok.detail.contains("3 managed"));

        let mut held = status(t0);
        held.converged = false;
        held.holds.push(Hold {
            code: "retire-capped".into(),
            users: vec!["a".into(), "b".into()],
            message: "run `ssm-companion accounts apply --allow-mass-retire` once".into(),
        });
        let c = v(held);
        assert_eq!(c.status, Status::Warning);
        assert!(
            c.detail.contains("held by retire-capped [a, b]: "),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("--allow-mass-retire"));

        let mut partial = status(t0);
        partial.complete = false;
        partial.problems = vec!["IAM page 2 failed".into()];
        let c = v(partial);
        assert_eq!(c.status, Status::Warning);
        assert!(c.detail.contains("incomplete") && c.detail.contains("page 2"));

        let mut failed = status(t0);
        failed.failed_steps = 2;
        assert_eq!(v(failed).status, Status::Warning);

        let mut broken = status(t0);
        broken.error = Some("the accounts ledger is unreadable".into());
        let c = v(broken);
        assert_eq!(c.status, Status::Critical);
        assert!(c.detail.contains("could not run"));

        // Three intervals without a sync: stale.
        let c = sync_verdict(
            &Ok(Some(status(t0))),
            true,
            i,
            t0 + Duration::from_secs(3600),
        );
        assert_eq!(c.status, Status::Warning);
        assert!(c.detail.contains("is the daemon running"), "{}", c.detail);
        // Off, or never synced: nothing to say; unreadable: unknown.
        assert_eq!(
            sync_verdict(&Ok(Some(status(t0))), false, i, now).status,
            Status::Ok
        );
        assert_eq!(sync_verdict(&Ok(None), true, i, now).status, Status::Ok);
        let invalid = LoadError::Invalid {
            path: "/var/lib/ssm-companion/accounts-status.json".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        let v = sync_verdict(&Err(invalid), true, i, now);
        assert_eq!(v.status, Status::Unknown);
        assert!(
            v.detail
                .starts_with("/var/lib/ssm-companion/accounts-status.json is not valid: "),
            "{v:?}"
        );
    }
}
