//! One configuration file as written: every key optional, every value with its span.
//!
//! Defaults live in [`super::Settings::default`]; the docs of each key are on the
//! [`super::Settings`] fields and in `docs/usage/configuration.md`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// A whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    aws: Option<AwsFragment>,
    accounts: Option<AccountsFragment>,
    health: Option<HealthFragment>,
    paths: Option<PathsFragment>,
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
    /// The `[paths]` table, if present.
    pub fn paths(&self) -> Option<&PathsFragment> {
        self.paths.as_ref()
    }
}

/// `[aws]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AwsFragment {
    pub region: Option<Spanned<String>>,
    pub endpoint_url: Option<Spanned<String>>,
    pub imds_endpoint: Option<Spanned<String>>,
    pub call_timeout: Option<Spanned<DurationValue>>,
    pub max_attempts: Option<Spanned<u32>>,
}

/// `[accounts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AccountsFragment {
    pub enabled: Option<Spanned<bool>>,
    pub source: Option<Spanned<super::SourceKind>>,
    pub file: Option<Spanned<String>>,
    pub iam_path_prefix: Option<Spanned<String>>,
    pub iam_page_size: Option<Spanned<u32>>,
    pub read_session_preferences: Option<Spanned<bool>>,
    pub interval: Option<Spanned<DurationValue>>,
    pub splay: Option<Spanned<DurationValue>>,
    pub extra: Option<Spanned<Vec<String>>>,
    pub host_groups: Option<Spanned<Vec<String>>>,
    pub allowed_groups: Option<Spanned<Vec<String>>>,
    pub sudo_group: Option<Spanned<String>>,
    pub shell: Option<Spanned<String>>,
    pub uid_range: Option<Spanned<Vec<i64>>>,
    pub retire_grace: Option<Spanned<DurationValue>>,
    pub retire_confirmations: Option<Spanned<u32>>,
    pub max_retire_fraction: Option<Spanned<f64>>,
    pub remove_home: Option<Spanned<bool>>,
    pub stop_timeout: Option<Spanned<DurationValue>>,
    pub tool_timeout: Option<Spanned<DurationValue>>,
    pub reserved_names: Option<Spanned<Vec<String>>>,
    pub primary_group: Option<Spanned<String>>,
    pub lookup_timeout: Option<Spanned<DurationValue>>,
}

/// `[paths]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PathsFragment {
    pub state_dir: Option<Spanned<String>>,
    pub home_base: Option<Spanned<String>>,
    pub skel: Option<Spanned<String>>,
    pub sudoers_file: Option<Spanned<String>>,
    pub sudoers_main: Option<Spanned<String>>,
    pub passwd: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub login_defs: Option<Spanned<String>>,
    pub machine_id: Option<Spanned<String>>,
    pub proc: Option<Spanned<String>>,
    pub cgroup: Option<Spanned<String>>,
    pub subuid: Option<Spanned<String>>,
    pub subgid: Option<Spanned<String>>,
    pub nsswitch: Option<Spanned<String>>,
    pub sysusers_dirs: Option<Spanned<Vec<String>>>,
    pub useradd: Option<Spanned<String>>,
    pub usermod: Option<Spanned<String>>,
    pub userdel: Option<Spanned<String>>,
    pub groupadd: Option<Spanned<String>>,
    pub visudo: Option<Spanned<String>>,
    pub mkhomedir_helper: Option<Spanned<String>>,
    pub agent_bin_dir: Option<Spanned<String>>,
    pub agent_snap_dir: Option<Spanned<String>>,
    pub agent_state_dir: Option<Spanned<String>>,
    pub agent_log_dir: Option<Spanned<String>>,
    pub agent_config_dir: Option<Spanned<String>>,
    pub systemctl: Option<Spanned<String>>,
    pub snap: Option<Spanned<String>>,
    pub systemd_run_dir: Option<Spanned<String>>,
}

/// `[health]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HealthFragment {
    pub enabled: Option<Spanned<bool>>,
    pub interval: Option<Spanned<DurationValue>>,
    pub network_interval: Option<Spanned<DurationValue>>,
    pub timeout: Option<Spanned<DurationValue>>,
    pub services: Option<Spanned<Vec<String>>>,
    pub required_services: Option<Spanned<Vec<String>>>,
    pub endpoint_port: Option<Spanned<u16>>,
    pub extra_ca_file: Option<Spanned<String>>,
    pub min_agent_version: Option<Spanned<String>>,
    pub log_window: Option<Spanned<DurationValue>>,
    pub max_clock_skew: Option<Spanned<DurationValue>>,
    pub disk_warning_mib: Option<Spanned<u64>>,
    pub disk_critical_mib: Option<Spanned<u64>>,
    pub fix: Option<Spanned<bool>>,
    pub fix_min_interval: Option<Spanned<DurationValue>>,
    pub prometheus_textfile: Option<Spanned<String>>,
    pub inventory: Option<Spanned<bool>>,
    pub inventory_min_interval: Option<Spanned<DurationValue>>,
    pub inventory_max_age: Option<Spanned<DurationValue>>,
    pub inventory_splay: Option<Spanned<DurationValue>>,
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
