//! Run As readiness: the Session Manager preferences, and every OS user a principal's sessions
//! would start as exists on this host (any NSS source counts, as for the agent's `id <user>`).
//! This is where the accounts capability's work meets the agent: the check names the principals
//! whose sessions would fail.

use super::model::{CheckResult, Status};
use crate::aws::ssm::RunAsPreferences;
use crate::state::run_as::RunAsMap;

/// Looks a user up (NSS); `Err` when the lookup itself fails.
pub type UserExists<'a> = &'a dyn Fn(&str) -> Result<bool, String>;

/// The `runas.preferences` check.
pub fn preferences_verdict(
    p: &Result<Option<RunAsPreferences>, String>,
    exists: UserExists<'_>,
) -> CheckResult {
    const ID: &str = "runas.preferences";
    match p {
        Err(e) => CheckResult::new(
            ID,
            Status::Unknown,
            e.clone(),
            "grant ssm:GetDocument on SSM-SessionManagerRunShell",
        ),
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
    map: &Result<Option<RunAsMap>, String>,
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
        Err(e) => return CheckResult::new(ID, Status::Unknown, e.clone(), ""),
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
        assert_eq!(
            preferences_verdict(&Err("denied".into()), &exists).status,
            Status::Unknown
        );
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
}
