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

/// What was last sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// When (RFC 3339).
    pub at: Option<String>,
    /// The content hash sent.
    pub hash: Option<String>,
}

/// Loads the last-send record.
pub fn load(state_dir: &Path) -> Sent {
    std::fs::read_to_string(state_dir.join(STATE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Saves it.
pub fn save(state_dir: &Path, s: &Sent) -> Result<(), String> {
    crate::state::write_atomic(
        &state_dir.join(STATE_FILE),
        serde_json::to_string(s).unwrap_or_default().as_bytes(),
        0o600,
    )
    .map_err(|e| e.to_string())
}

/// Whether to send now (pure).
pub fn due(
    last: &Sent,
    hash: &str,
    now: SystemTime,
    min_interval: Duration,
    max_age: Duration,
) -> bool {
    let Some(at) = last.at.as_deref().and_then(crate::clock::parse_rfc3339) else {
        return true;
    };
    let age = now.duration_since(at).unwrap_or(Duration::ZERO);
    if age < min_interval {
        return false;
    }
    last.hash.as_deref() != Some(hash) || age >= max_age
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as Inventory wants.
fn capture_time(now: SystemTime) -> String {
    crate::clock::rfc3339(now)
}

/// Sends one report.
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
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let min = Duration::from_secs(1800);
        let max = Duration::from_secs(86400);
        let sent = Sent {
            at: Some(crate::clock::rfc3339(t0)),
            hash: Some("a".into()),
        };
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
    }
}
