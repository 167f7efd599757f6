//! One configuration file as written: every key optional, every value with its span. Each
//! section's fragment lives with its section (`aws.rs`, `accounts.rs`, `health.rs`, `audit.rs`,
//! `paths.rs`), next to its defaults, checks and the docs of its keys (also in
//! `docs/usage/configuration.md`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::accounts::AccountsFragment;
use super::audit::AuditFragment;
use super::aws::AwsFragment;
use super::health::HealthFragment;
use super::paths::PathsFragment;
use super::publish::PublishFragment;

/// A whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    aws: Option<AwsFragment>,
    accounts: Option<AccountsFragment>,
    health: Option<HealthFragment>,
    audit: Option<AuditFragment>,
    paths: Option<PathsFragment>,
    publish: Option<PublishFragment>,
}

impl Fragment {
    /// The `[aws]` table, if present.
    pub fn aws(&self) -> Option<&AwsFragment> {
        self.aws.as_ref()
    }
    /// The `[accounts]` table, if present.
    pub fn accounts(&self) -> Option<&AccountsFragment> {
        self.accounts.as_ref()
    }
    /// The `[health]` table, if present.
    pub fn health(&self) -> Option<&HealthFragment> {
        self.health.as_ref()
    }
    /// The `[audit]` table, if present.
    pub fn audit(&self) -> Option<&AuditFragment> {
        self.audit.as_ref()
    }
    /// The `[paths]` table, if present.
    pub fn paths(&self) -> Option<&PathsFragment> {
        self.paths.as_ref()
    }
    /// The `[publish]` table, if present.
    pub fn publish(&self) -> Option<&PublishFragment> {
        self.publish.as_ref()
    }
}

/// A duration written as a string: "30s", "5m", "1h 30m", "24h".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(DurationValue).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration ({e}); write it like \"30s\", \"5m\", \"1h 30m\" or \"24h\""
            ))
        })
    }
}
