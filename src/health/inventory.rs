//! Sending the report to SSM Inventory as `Custom:SsmCompanionHealth`, within PutInventory's
//! limits (one item, ≤ 50 keys per row, values ≤ 4,096 characters), when it changed and at least
//! every `health.inventory_max_age`, but never more often than `health.inventory_min_interval`
//! (remembered across restarts in the state directory), after a random 0–30 s delay like the
//! agent's own inventory uploads.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_sdk_ssm::types::InventoryItem;
use serde::{Deserialize, Serialize};

use super::report::{self, INVENTORY_SCHEMA_VERSION, INVENTORY_TYPE, Report};
use crate::aws::sdk_error;

/// File in the state directory remembering the last send.
pub const STATE_FILE: &str = "health-inventory.json";

/// What was last sent, and the failed attempts since.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// When (RFC 3339).
    pub at: Option<String>,
    /// The status hash ([`report::status_hash`]) of what was sent.
    pub hash: Option<String>,
    /// When the last attempt failed (RFC 3339), if the last attempt failed.
    #[serde(default)]
    pub failed_at: Option<String>,
    /// Consecutive failed attempts.
    #[serde(default)]
    pub failures: u32,
}

/// The first retry after a failed send waits this long, doubling per failure up to
/// `health.inventory_min_interval`.
pub const RETRY_BASE: Duration = Duration::from_secs(60);

impl Sent {
    /// The record after a successful send.
    pub fn success(now: SystemTime, hash: String) -> Self {
        Self {
            at: Some(crate::clock::rfc3339(now)),
            hash: Some(hash),
            failed_at: None,
            failures: 0,
        }
    }

    /// The record after a failed attempt (the last success is kept).
    pub fn failure(mut self, now: SystemTime) -> Self {
        self.failed_at = Some(crate::clock::rfc3339(now));
        self.failures = self.failures.saturating_add(1);
        self
    }
}

/// How long ago `at` was; a time in the future (the clock went back) counts as long ago, so a
/// clock correction cannot silence sending for as long as it jumped.
fn age(at: Option<&str>, now: SystemTime) -> Option<Duration> {
    let at = crate::clock::parse_rfc3339(at?)?;
    Some(now.duration_since(at).unwrap_or(Duration::MAX))
}

/// Loads the last-send record.
pub fn load(state_dir: &Path) -> Sent {
    std::fs::read_to_string(state_dir.join(STATE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Saves it.
pub fn save(state_dir: &Path, s: &Sent) -> Result<(), crate::state::StateError> {
    crate::state::write_atomic(
        &state_dir.join(STATE_FILE),
        serde_json::to_string(s).unwrap_or_default().as_bytes(),
        0o600,
    )
}

/// Whether to send now (pure).
pub fn due(
    last: &Sent,
    hash: &str,
    now: SystemTime,
    min_interval: Duration,
    max_age: Duration,
) -> bool {
    if let Some(since) = age(last.failed_at.as_deref(), now) {
        let exp = last.failures.saturating_sub(1).min(16);
        let wait = RETRY_BASE.saturating_mul(1 << exp).min(min_interval);
        if since < wait {
            return false;
        }
    }
    let Some(age) = age(last.at.as_deref(), now) else {
        return true;
    };
    if age < min_interval {
        return false;
    }
    last.hash.as_deref() != Some(hash) || age >= max_age
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as Inventory wants.
fn capture_time(now: SystemTime) -> String {
    crate::clock::rfc3339(now)
}

/// Sends one report; returns its status hash.
pub async fn send(
    client: &aws_sdk_ssm::Client,
    instance_id: &str,
    r: &Report,
    now: SystemTime,
) -> Result<String, String> {
    let hash = report::content_hash(r);
    let content: Vec<HashMap<String, String>> = report::inventory_content(r)
        .into_iter()
        .map(|m| m.into_iter().collect())
        .collect();
    let item = InventoryItem::builder()
        .type_name(INVENTORY_TYPE)
        .schema_version(INVENTORY_SCHEMA_VERSION)
        .capture_time(capture_time(now))
        .content_hash(&hash)
        .set_content(Some(content))
        .build()
        .map_err(|e| e.to_string())?;
    client
        .put_inventory()
        .instance_id(instance_id)
        .items(item)
        .send()
        .await
        .map_err(|e| format!("PutInventory: {}", sdk_error(&e)))?;
    Ok(report::status_hash(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let min = Duration::from_secs(1800);
        let max = Duration::from_secs(86400);
        let sent = Sent::success(t0, "a".into());
        assert!(due(&Sent::default(), "a", t0, min, max), "first send");
        assert!(
            !due(&sent, "b", t0 + Duration::from_secs(60), min, max),
            "changed, but too soon"
        );
        assert!(due(&sent, "b", t0 + min, min, max), "changed, and allowed");
        assert!(
            !due(&sent, "a", t0 + Duration::from_secs(7200), min, max),
            "unchanged"
        );
        assert!(due(&sent, "a", t0 + max, min, max), "at least daily");
        assert!(
            due(&sent, "a", t0 - Duration::from_secs(3600), min, max),
            "the clock went back: a send in the future does not count"
        );
    }

    #[test]
    fn failures_back_off() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let min = Duration::from_secs(1800);
        let max = Duration::from_secs(86400);
        let s = |secs| t0 + Duration::from_secs(secs);
        let once = Sent::default().failure(t0);
        assert!(!due(&once, "a", s(30), min, max));
        assert!(due(&once, "a", s(60), min, max));
        let thrice = Sent::default().failure(t0).failure(t0).failure(t0);
        assert!(!due(&thrice, "a", s(239), min, max));
        assert!(due(&thrice, "a", s(240), min, max));
        let many = (0..40).fold(Sent::default(), |x, _| x.failure(t0));
        assert!(
            !due(&many, "a", s(1799), min, max),
            "capped, not overflowed"
        );
        assert!(due(&many, "a", s(1800), min, max));
        // A success clears the failures.
        let ok = Sent::success(s(1800), "a".into());
        assert_eq!(ok.failures, 0);
        assert!(ok.failed_at.is_none());
    }
}
