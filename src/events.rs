//! Structured events: every account change is logged and also sent to the journal as an entry
//! with a fixed `MESSAGE_ID` and `SSM_COMPANION_*` fields, so it can be found with
//! `journalctl MESSAGE_ID=…` and shipped by the audit capability.
//!
//! Events are tracing events with the target [`TARGET`]; `crate::logging` routes that target to
//! journald (field names upper-cased, no prefix) and to stderr.

/// The tracing target of structured events.
pub const TARGET: &str = "ssm_companion::event";

/// `MESSAGE_ID` of account change entries (fixed forever: monitoring matches on it).
pub const ACCOUNT_CHANGE: &str = "a6f2c4d1b8e94c0e9d57c1f3e2b8a901";

/// Outcome of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// Attempted and failed.
    Failed,
}

/// Records one account change (or a failed attempt).
pub fn account_change(
    action: &str,
    subject: &str,
    uid: Option<u32>,
    principals: &[String],
    detail: &str,
    outcome: Outcome,
) {
    let uid = uid.map(|u| u.to_string()).unwrap_or_default();
    let principals = principals.join(" ");
    match outcome {
        Outcome::Done => tracing::info!(
            target: TARGET,
            message_id = ACCOUNT_CHANGE,
            ssm_companion_action = action,
            ssm_companion_user = subject,
            ssm_companion_uid = %uid,
            ssm_companion_principals = %principals,
            ssm_companion_outcome = "done",
            "account {action} {subject}: {detail}"
        ),
        Outcome::Failed => tracing::warn!(
            target: TARGET,
            message_id = ACCOUNT_CHANGE,
            ssm_companion_action = action,
            ssm_companion_user = subject,
            ssm_companion_uid = %uid,
            ssm_companion_principals = %principals,
            ssm_companion_outcome = "failed",
            "account {action} {subject} failed: {detail}"
        ),
    }
}

/// `MESSAGE_ID` of audit events that matched an alert rule (fixed forever).
pub const AUDIT_ALERT: &str = "5b7e2d9c4a1f4e6b8c3d0a9f1e2b7c45";

/// Writes an audit event that matched alert rules to the journal: a warning, an error from
/// severity High (4) up. `rules`: the rules' names; `uid`: the event's `metadata.uid`.
pub fn audit_alert(rules: &[&str], severity_id: u32, severity: &str, uid: &str, message: &str) {
    let rules = rules.join(" ");
    let message = format!("audit alert [{rules}] ({severity}): {message}");
    macro_rules! alert {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                message_id = AUDIT_ALERT,
                ssm_companion_rules = %rules,
                ssm_companion_severity = %severity,
                ssm_companion_event_uid = %uid,
                "{message}"
            )
        };
    }
    if severity_id >= 4 {
        alert!(tracing::Level::ERROR);
    } else {
        alert!(tracing::Level::WARN);
    }
}

/// `MESSAGE_ID` of health verdict changes (fixed forever).
pub const HEALTH_CHANGE: &str = "3d9c1e8a7b5f4c2e8d0a6b4f2e1c9d7a";
/// `MESSAGE_ID` of health remediations (`--fix`).
pub const HEALTH_FIX: &str = "8e4b2f6a1c3d4e5f9a7b0c2d4e6f8a1b";

/// Records a check whose status changed: an error when it turned critical, a warning for
/// warning and unknown, info when it is ok again.
pub fn health_change(check: &str, from: &str, to: &str, detail: &str) {
    let message = format!("health {check}: {from} -> {to}: {detail}");
    // tracing needs the level as a constant: one call per level, the same fields.
    macro_rules! change {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                message_id = HEALTH_CHANGE,
                ssm_companion_check = check,
                ssm_companion_from = from,
                ssm_companion_status = to,
                "{message}"
            )
        };
    }
    match to {
        "ok" => change!(tracing::Level::INFO),
        // Journal priority err: what monitoring of the journal pages on.
        "critical" => change!(tracing::Level::ERROR),
        _ => change!(tracing::Level::WARN),
    }
}

/// Records a remediation attempt.
pub fn health_fix(action: &str, unit: &str, outcome: Outcome, detail: &str) {
    let outcome = match outcome {
        Outcome::Done => "done",
        Outcome::Failed => "failed",
    };
    tracing::warn!(
        target: TARGET,
        message_id = HEALTH_FIX,
        ssm_companion_action = action,
        ssm_companion_unit = unit,
        ssm_companion_outcome = outcome,
        "health fix: {action} {unit}: {outcome}: {detail}"
    );
}
