//! `audit.shipping`: whether the audit records reach their destination, from the status the
//! shipper writes (`audit-shipping.json` in the state directory).
//!
//! The measure is the age of the oldest record not yet shipped: a few seconds normally
//! (`audit.s3.max_delay`), minutes in an outage. Over `health.shipping_lag_warning` it is a
//! warning, over `health.shipping_lag_critical` critical; a failure retrying cannot fix
//! (AccessDenied, a missing bucket or KMS key) is critical at once.

use std::time::{Duration, SystemTime};

use super::{CheckResult, Status};
use crate::state::LoadError;
use crate::state::shipping_status::ShippingStatus;

/// The check's id.
pub const ID: &str = "audit.shipping";

/// Thresholds and whether shipping is configured.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `audit.enabled` and `audit.s3.bucket` set.
    pub enabled: bool,
    /// Oldest unshipped age for a warning.
    pub warning: Duration,
    /// … and for critical.
    pub critical: Duration,
}

fn ago(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The verdict.
pub fn verdict(
    status: &Result<Option<ShippingStatus>, LoadError>,
    limits: Limits,
    now: SystemTime,
) -> CheckResult {
    if !limits.enabled {
        return CheckResult::ok(ID, "audit shipping is off (audit.s3.bucket is not set)");
    }
    let s = match status {
        Err(e) => return CheckResult::new(ID, Status::Unknown, e.to_string(), ""),
        Ok(None) => {
            return CheckResult::ok(
                ID,
                "nothing shipped yet (the daemon ships once the audit loop has run)",
            );
        }
        Ok(Some(s)) => s,
    };
    let age = s
        .oldest_unshipped
        .map(|t| now.duration_since(t).unwrap_or_default());
    let last = s.last_upload.map_or_else(
        || "no upload yet".to_string(),
        |t| {
            format!(
                "last upload {} ago",
                ago(now.duration_since(t).unwrap_or_default())
            )
        },
    );
    let mut status = match age {
        Some(a) if a >= limits.critical => Status::Critical,
        Some(a) if a >= limits.warning => Status::Warning,
        _ => Status::Ok,
    };
    let waiting = match age {
        Some(a) => format!(
            "{} record(s) waiting, the oldest for {}",
            s.durable_seq.saturating_sub(s.shipped_seq),
            ago(a)
        ),
        None => "nothing waiting".to_string(),
    };
    let mut detail = format!(
        "{}: shipped through seq {}, {}; {waiting}",
        s.destination, s.shipped_seq, last
    );
    let mut remedy = String::new();
    if let Some(e) = &s.error {
        detail.push_str(&format!("; failing: {e}"));
        if s.needs_operator {
            status = Status::Critical;
            remedy = "fix the permission or the destination named here (`ssm-companion iam-policy` prints the statements the host needs); records stay in the spool until then".into();
        } else if status != Status::Ok {
            remedy = "the network or the destination fails: `ssm-companion doctor` checks the endpoints; records stay in the spool and ship when it recovers".into();
        }
    } else if status != Status::Ok {
        remedy = "is the daemon running? `systemctl status ssm-companion`; `ssm-companion audit status` shows the spool".into();
    }
    let mut r = CheckResult::new(ID, status, detail, remedy);
    r.cause.clone_from(&s.cause);
    r
}

/// One verdict for several sinks (S3, CloudWatch Logs): the worst status, every sink's detail,
/// the remedy and cause of the worst.
pub fn combine(results: Vec<CheckResult>) -> CheckResult {
    let mut worst: Option<CheckResult> = None;
    let mut details = Vec::new();
    for r in results {
        details.push(r.detail.clone());
        let replace = worst
            .as_ref()
            .is_none_or(|w| w.status.worst(r.status) != w.status);
        if replace {
            worst = Some(r);
        }
    }
    let mut w = worst.unwrap_or_else(|| CheckResult::ok(ID, "audit shipping is off"));
    w.detail = details.join("; ");
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn limits() -> Limits {
        Limits {
            enabled: true,
            warning: 5 * MIN,
            critical: 30 * MIN,
        }
    }

    fn status(t: SystemTime) -> ShippingStatus {
        ShippingStatus {
            at: t,
            destination: "s3://audit/ssm-companion".into(),
            shipped_seq: 40,
            durable_seq: 42,
            objects: 3,
            bytes: 900,
            last_upload: Some(t),
            oldest_unshipped: Some(t),
            error: None,
            cause: None,
            needs_operator: false,
        }
    }

    #[test]
    fn the_oldest_unshipped_age_warns_then_is_critical() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let v = |after: Duration, s: ShippingStatus| verdict(&Ok(Some(s)), limits(), t0 + after);
        let ok = v(Duration::from_secs(8), status(t0));
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(
            ok.detail.contains("2 record(s) waiting, the oldest for 8s"),
            "{}",
            ok.detail
        );
        assert_eq!(v(5 * MIN, status(t0)).status, Status::Warning);
        let c = v(31 * MIN, status(t0));
        assert_eq!(c.status, Status::Critical);
        assert!(c.remedy.contains("daemon running"), "{}", c.remedy);
        // Nothing waiting: ok however old the last upload.
        let mut idle = status(t0);
        idle.oldest_unshipped = None;
        let c = v(48 * 60 * MIN, idle);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("nothing waiting"), "{}", c.detail);
    }

    #[test]
    fn a_failure_retrying_cannot_fix_is_critical_at_once() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut denied = status(t0);
        denied.error = Some("S3 refused PutObject (AccessDenied)".into());
        denied.cause = Some("aws:AccessDenied".into());
        denied.needs_operator = true;
        let c = verdict(&Ok(Some(denied)), limits(), t0 + Duration::from_secs(5));
        assert_eq!(c.status, Status::Critical);
        assert_eq!(c.cause.as_deref(), Some("aws:AccessDenied"));
        assert!(c.detail.contains("AccessDenied") && c.remedy.contains("iam-policy"));
        // A passing outage is only as bad as the wait it causes.
        let mut down = status(t0);
        down.error = Some("upload failed (http:503)".into());
        down.cause = Some("http:503".into());
        let c = verdict(&Ok(Some(down.clone())), limits(), t0 + MIN);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        let c = verdict(&Ok(Some(down)), limits(), t0 + 6 * MIN);
        assert_eq!(c.status, Status::Warning);
        assert!(c.remedy.contains("doctor"), "{}", c.remedy);
    }

    #[test]
    fn off_absent_or_unreadable() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let off = Limits {
            enabled: false,
            ..limits()
        };
        assert_eq!(verdict(&Ok(None), off, now).status, Status::Ok);
        assert_eq!(verdict(&Ok(None), limits(), now).status, Status::Ok);
        let bad = LoadError::Invalid {
            path: "/var/lib/ssm-companion/audit-shipping.json".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        let c = verdict(&Err(bad), limits(), now);
        assert_eq!(c.status, Status::Unknown);
        assert!(c.detail.contains("audit-shipping.json"), "{}", c.detail);
    }

    #[test]
    fn two_sinks_give_the_worst_verdict_with_both_details() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s3 = verdict(&Ok(Some(status(t0))), limits(), t0);
        let mut cw = status(t0);
        cw.destination = "cloudwatch://audit/i-1".into();
        cw.error = Some("log group `audit` does not exist".into());
        cw.cause = Some("aws:ResourceNotFoundException".into());
        cw.needs_operator = true;
        let cw = verdict(&Ok(Some(cw)), limits(), t0);
        let both = combine(vec![s3.clone(), cw]);
        assert_eq!(both.status, Status::Critical);
        assert_eq!(both.cause.as_deref(), Some("aws:ResourceNotFoundException"));
        assert!(
            both.detail.starts_with("s3://audit/ssm-companion"),
            "{}",
            both.detail
        );
        assert!(
            both.detail.contains("; cloudwatch://audit/i-1"),
            "{}",
            both.detail
        );
        assert_eq!(combine(vec![s3.clone()]), s3);
    }
}
