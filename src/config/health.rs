//! `[health]`: the agent health capability. The keys, their defaults and their checks.

use std::time::Duration;

use serde::Serialize;

use super::fragments::DurationValue;
use super::{Picked, Resolver, absolute_path, as_is, duration_in, duration_str, in_range};

fragment! {
    /// `[health]` as written: every key optional, with its span.
    HealthFragment {
        enabled: bool, interval: DurationValue, network_interval: DurationValue,
        timeout: DurationValue, services: Vec<String>, required_services: Vec<String>,
        endpoint_port: u16, extra_ca_file: String, min_agent_version: String,
        log_window: DurationValue, max_clock_skew: DurationValue, disk_warning_mib: u64,
        disk_critical_mib: u64, fix: bool, fix_min_interval: DurationValue,
        prometheus_textfile: String, inventory: bool, inventory_min_interval: DurationValue,
        inventory_max_age: DurationValue, inventory_splay: DurationValue,
        latest_agent_check: bool, latest_agent_url: String, max_minor_versions_behind: u32,
        shipping_lag_warning: DurationValue, shipping_lag_critical: DurationValue,
    }
}

/// `[health]`: the agent health capability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSettings {
    /// `enabled`; default true: continuous checks in the daemon.
    pub enabled: bool,
    /// `interval`; default "1m": the local checks (processes, service, files, log, disk).
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// `network_interval`; default "10m": DNS/TCP/TLS per endpoint, STS, clock skew, preferences.
    #[serde(with = "duration_str")]
    pub network_interval: Duration,
    /// `timeout`; default "5s": the network phase, all of it (DNS, TCP, TLS, the AWS calls, NSS).
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// `services`; default all seven: endpoints to probe.
    pub services: Vec<String>,
    /// `required_services`; default ["ssm", "ssmmessages"]: unreachable = critical (others: warning).
    pub required_services: Vec<String>,
    /// `endpoint_port`; default 443.
    pub endpoint_port: u16,
    /// `extra_ca_file`; default "": PEM certificates trusted besides the system's (TLS-inspecting proxies).
    pub extra_ca_file: String,
    /// `min_agent_version`; default "": older agents are a warning.
    pub min_agent_version: String,
    /// `log_window`; default "30m": failure lines older than this are history.
    #[serde(with = "duration_str")]
    pub log_window: Duration,
    /// `max_clock_skew`; default "1m": more is a warning; 4 minutes is critical (AWS rejects 5).
    #[serde(with = "duration_str")]
    pub max_clock_skew: Duration,
    /// `disk_warning_mib`; default 500: free space below this under the agent's directories warns.
    pub disk_warning_mib: u64,
    /// `disk_critical_mib`; default 50.
    pub disk_critical_mib: u64,
    /// `fix`; default false: restart a stopped agent (the daemon; `doctor --fix` once).
    pub fix: bool,
    /// `fix_min_interval`; default "15m": at most one remediation per this.
    #[serde(with = "duration_str")]
    pub fix_min_interval: Duration,
    /// `prometheus_textfile`; default "": a node_exporter textfile to write, e.g.
    /// /var/lib/node_exporter/textfile_collector/ssm_companion.prom.
    pub prometheus_textfile: String,
    /// `inventory`; default false: send the report as SSM Inventory `Custom:SsmCompanionHealth`.
    pub inventory: bool,
    /// `inventory_min_interval`; default "30m": never send more often.
    #[serde(with = "duration_str")]
    pub inventory_min_interval: Duration,
    /// `inventory_max_age`; default "24h": send at least this often even without changes.
    #[serde(with = "duration_str")]
    pub inventory_max_age: Duration,
    /// `inventory_splay`; default "30s": a random delay up to this before each send.
    #[serde(with = "duration_str")]
    pub inventory_splay: Duration,
    /// `latest_agent_check`; default true: compare the installed agent with the region's latest
    /// release (`agent.latest`), read at most once a day.
    pub latest_agent_check: bool,
    /// `latest_agent_url`; default "": the region's release bucket,
    /// `https://s3.<region>.<domain>/amazon-ssm-<region>/latest/VERSION`.
    pub latest_agent_url: String,
    /// `max_minor_versions_behind`; default 1: an agent more minor versions behind the latest
    /// release (or a major version behind) is a warning.
    pub max_minor_versions_behind: u32,
    /// `shipping_lag_warning`; default "5m": the oldest audit record not yet shipped to S3
    /// waiting longer is a warning (`audit.shipping`).
    #[serde(with = "duration_str")]
    pub shipping_lag_warning: Duration,
    /// `shipping_lag_critical`; default "30m": … and critical.
    #[serde(with = "duration_str")]
    pub shipping_lag_critical: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            network_interval: Duration::from_secs(600),
            timeout: Duration::from_secs(5),
            // Every service but `monitoring` (CloudWatch metrics: few hosts need it).
            services: HEALTH_SERVICES
                .iter()
                .filter(|s| **s != "monitoring")
                .map(|s| s.to_string())
                .collect(),
            required_services: vec!["ssm".into(), "ssmmessages".into()],
            endpoint_port: 443,
            extra_ca_file: String::new(),
            min_agent_version: String::new(),
            log_window: Duration::from_secs(1800),
            max_clock_skew: Duration::from_secs(60),
            disk_warning_mib: 500,
            disk_critical_mib: 50,
            fix: false,
            fix_min_interval: Duration::from_secs(900),
            latest_agent_check: true,
            latest_agent_url: String::new(),
            max_minor_versions_behind: 1,
            prometheus_textfile: String::new(),
            inventory: false,
            inventory_min_interval: Duration::from_secs(1800),
            inventory_max_age: Duration::from_secs(86400),
            inventory_splay: Duration::from_secs(30),
            shipping_lag_warning: Duration::from_secs(300),
            shipping_lag_critical: Duration::from_secs(1800),
        }
    }
}

/// The services the health checks know how to probe.
pub const HEALTH_SERVICES: [&str; 8] = [
    "ssm",
    "ssmmessages",
    "ec2messages",
    "s3",
    "logs",
    "kms",
    "sts",
    "monitoring",
];

fn service_list(p: &Picked<Vec<String>>) -> Result<Vec<String>, String> {
    match p
        .value
        .iter()
        .find(|s| !HEALTH_SERVICES.contains(&s.as_str()))
    {
        Some(bad) => Err(format!(
            "`{bad}` is not a service the checks know; allowed: {}",
            HEALTH_SERVICES.join(", ")
        )),
        None => {
            // Two probes of one endpoint would report the same check id twice.
            let mut seen = std::collections::BTreeSet::new();
            match p.value.iter().find(|s| !seen.insert(s.as_str())) {
                Some(dup) => Err(format!("`{dup}` is listed twice; list each service once")),
                None => Ok(p.value.clone()),
            }
        }
    }
}

fn optional_file(p: &Picked<String>) -> Result<String, String> {
    if p.value.is_empty() {
        Ok(String::new())
    } else {
        absolute_path(p).map(|_| p.value.clone())
    }
}

fn version(p: &Picked<String>) -> Result<String, String> {
    if p.value.is_empty()
        || p.value
            .split('.')
            .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit()))
    {
        Ok(p.value.clone())
    } else {
        Err(format!("`{}` is not a version like 3.3.987.0", p.value))
    }
}

fn https_url(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim();
    let rest = v.strip_prefix("https://").unwrap_or_default();
    let host = rest.split('/').next().unwrap_or_default();
    if v.is_empty() {
        Ok(String::new())
    } else if host.is_empty() || !rest.contains('/') {
        Err(format!(
            "`{v}` is not an https:// URL of a file (https://host/path/VERSION); leave it empty for the region's release bucket"
        ))
    } else {
        Ok(v.to_string())
    }
}

fn textfile(p: &Picked<String>) -> Result<String, String> {
    if p.value.is_empty() {
        Ok(String::new())
    } else if !p.value.ends_with(".prom") {
        Err(format!(
            "`{}` must end in .prom (node_exporter's textfile collector reads only those)",
            p.value
        ))
    } else {
        absolute_path(p).map(|_| p.value.clone())
    }
}

/// Resolves `[health]` from the layers.
pub(super) fn resolve(r: &mut Resolver<'_>, h: &mut HealthSettings) {
    keys!(r, health, h, {
        enabled => as_is,
        interval => duration_in(Duration::from_secs(5), Duration::from_secs(3600)),
        network_interval => duration_in(Duration::from_secs(10), Duration::from_secs(24 * 3600)),
        timeout => duration_in(Duration::from_millis(100), Duration::from_secs(60)),
        services => service_list,
        required_services => service_list,
        endpoint_port => in_range(1, 65535, "ports"),
        extra_ca_file => optional_file,
        min_agent_version => version,
        log_window => duration_in(Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600)),
        max_clock_skew => duration_in(Duration::from_secs(1), Duration::from_secs(240)),
        disk_warning_mib => in_range(0, 1 << 20, "MiB"),
        disk_critical_mib => in_range(0, 1 << 20, "MiB"),
        fix => as_is,
        fix_min_interval => duration_in(Duration::from_secs(60), Duration::from_secs(24 * 3600)),
        prometheus_textfile => textfile,
        inventory => as_is,
        inventory_min_interval => duration_in(Duration::from_secs(60), Duration::from_secs(24 * 3600)),
        inventory_splay => duration_in(Duration::ZERO, Duration::from_secs(3600)),
        inventory_max_age => duration_in(Duration::from_secs(600), Duration::from_secs(7 * 24 * 3600)),
        latest_agent_check => as_is,
        latest_agent_url => https_url,
        max_minor_versions_behind => in_range(0, 1000, "minor versions"),
        shipping_lag_warning => duration_in(Duration::from_secs(30), Duration::from_secs(7 * 24 * 3600)),
    });
    if let Some(p) = key!(r, health, h, shipping_lag_critical => duration_in(Duration::from_secs(60), Duration::from_secs(30 * 24 * 3600)))
        && h.shipping_lag_critical <= h.shipping_lag_warning
    {
        r.issues.push(p.issue(format!(
            "must be longer than health.shipping_lag_warning ({}); raise it or lower the warning",
            humantime::format_duration(h.shipping_lag_warning)
        )));
    }
}
