//! `[audit]`: the audit capability. The keys, their defaults and their checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fragments::DurationValue;
use super::{Picked, Resolver, as_is, duration_in, duration_str};

fragment! {
    /// `[audit]` as written: every key optional, with its span.
    AuditFragment {
        enabled: bool, sessions: bool, privilege: bool, privilege_source: String,
        transcript: bool, exec_backend: String, exec_scope: String,
        redact: Vec<String>, spool_max: String, rescan_interval: DurationValue,
        default_alerts: bool, alert: Vec<AlertValue>, s3: S3Fragment,
        cloudwatch: CloudWatchFragment,
    }
}

fragment! {
    /// `[audit.s3]` as written.
    S3Fragment {
        bucket: String, prefix: String, region: String, max_object_size: String,
        max_delay: DurationValue, sse: String, kms_key_id: String,
        bucket_owner_full_control: bool,
    }
}

fragment! {
    /// `[audit.cloudwatch]` as written.
    CloudWatchFragment {
        log_group: String, events: String, region: String, max_delay: DurationValue,
    }
}

/// `audit.cloudwatch.events`: which events go to CloudWatch Logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloudWatchEvents {
    /// The events an alert rule marked (what a metric filter alarms on).
    Alerts,
    /// Every event.
    All,
}

/// `[audit.cloudwatch]`: the spool's events (alerts, or all) to CloudWatch Logs, at least once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudWatchSettings {
    /// `log_group`; default "": the sink is off until a log group is named. The group must
    /// exist; the daemon creates its stream (the instance id) in it.
    pub log_group: String,
    /// `events`; default "alerts": `alerts` or `all`.
    pub events: CloudWatchEvents,
    /// `region`; default "": the log group's region, when it is not the host's.
    pub region: String,
    /// `max_delay`; default "5s": an event waits at most this long for its batch (an alert
    /// goes at once).
    #[serde(with = "duration_str")]
    pub max_delay: Duration,
}

impl Default for CloudWatchSettings {
    fn default() -> Self {
        Self {
            log_group: String::new(),
            events: CloudWatchEvents::Alerts,
            region: String::new(),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// `[audit.s3]`: shipping the spool to S3.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct S3Settings {
    /// `bucket`; default "": shipping is off until a bucket is named.
    pub bucket: String,
    /// `prefix`; default "ssm-companion": the keys' first component.
    pub prefix: String,
    /// `region`; default "": the bucket's region, when it is not the host's.
    pub region: String,
    /// `max_object_size`; default "4MiB": an object is sealed at this many bytes of JSON Lines.
    #[serde(serialize_with = "size_str")]
    pub max_object_size: u64,
    /// `max_delay`; default "10s": an event waits at most this long for its object.
    #[serde(with = "duration_str")]
    pub max_delay: Duration,
    /// `sse`; default "": `aws:kms` or `AES256` (empty: the bucket's default encryption).
    pub sse: String,
    /// `kms_key_id`; default "": the KMS key for `sse = "aws:kms"` (empty: `aws/s3`).
    pub kms_key_id: String,
    /// `bucket_owner_full_control`; default false: the canned ACL for another account's bucket.
    pub bucket_owner_full_control: bool,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: "ssm-companion".into(),
            region: String::new(),
            max_object_size: 4 << 20,
            max_delay: Duration::from_secs(10),
            sse: String::new(),
            kms_key_id: String::new(),
            bucket_owner_full_control: false,
        }
    }
}

/// One `[[audit.alert]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertValue {
    name: String,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default, rename = "match")]
    equals: BTreeMap<String, toml::Value>,
    #[serde(default)]
    regex: BTreeMap<String, String>,
}

/// An alert rule: events whose fields (dotted paths into the OCSF event) have all the `equals`
/// values and match all the `regex` patterns are marked with the rule's severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRule {
    /// The rule's name (`metadata.labels` gets `alert:<name>`).
    pub name: String,
    /// False: the rule (a built-in one, by its name) is off.
    pub enabled: bool,
    /// OCSF `severity_id`: 1 informational … 5 critical.
    pub severity_id: u32,
    /// Field path → the exact value (numbers and booleans as written).
    #[serde(rename = "match")]
    pub equals: BTreeMap<String, String>,
    /// Field path → a regular expression the value must match.
    pub regex: BTreeMap<String, String>,
}

/// The severity names `[[audit.alert]] severity` takes, in `severity_id` order from 1.
pub const SEVERITIES: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// `audit.privilege_source`: where sudo and su are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrivilegeSource {
    /// The journal when journald runs (its socket exists), else the auth log.
    Auto,
    /// `journalctl` only.
    Journal,
    /// The first of `paths.auth_logs` that exists, followed by inode across rotation.
    AuthLog,
}

impl PrivilegeSource {
    /// The names `privilege_source` takes.
    pub const NAMES: [&str; 3] = ["auto", "journal", "auth-log"];
}

fn privilege_source(p: &Picked<String>) -> Result<PrivilegeSource, String> {
    match p.value.as_str() {
        "auto" => Ok(PrivilegeSource::Auto),
        "journal" => Ok(PrivilegeSource::Journal),
        "auth-log" => Ok(PrivilegeSource::AuthLog),
        other => Err(format!(
            "`{other}` is not a privilege source; use one of {}",
            PrivilegeSource::NAMES.join(", ")
        )),
    }
}

/// `audit.exec_backend`: where the programs started in sessions are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecBackend {
    /// The best that works here, tried in order: eBPF, the proc connector.
    Auto,
    /// eBPF (kernel >= 5.8 with BTF, `CAP_BPF` and `CAP_PERFMON`).
    Ebpf,
    /// The kernel's proc connector (`CAP_NET_ADMIN`); argv read from `/proc`.
    ProcConnector,
    /// The kernel audit's EXECVE records, read beside an auditd that already has execve rules.
    Audit,
    /// No exec capture.
    Off,
}

impl ExecBackend {
    /// The names `exec_backend` takes.
    pub const NAMES: [&str; 5] = ["auto", "ebpf", "proc-connector", "audit", "off"];
}

fn exec_backend(p: &Picked<String>) -> Result<ExecBackend, String> {
    match p.value.as_str() {
        "auto" => Ok(ExecBackend::Auto),
        "ebpf" => Ok(ExecBackend::Ebpf),
        "proc-connector" => Ok(ExecBackend::ProcConnector),
        "audit" => Ok(ExecBackend::Audit),
        "off" => Ok(ExecBackend::Off),
        other => Err(format!(
            "`{other}` is not an exec backend; use one of {}",
            ExecBackend::NAMES.join(", ")
        )),
    }
}

/// `audit.exec_scope`: whose programs are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecScope {
    /// Those of Session Manager sessions (their workers' descendants).
    Sessions,
    /// Every program started on the host (those of no session marked unattributed).
    All,
}

fn exec_scope(p: &Picked<String>) -> Result<ExecScope, String> {
    match p.value.as_str() {
        "sessions" => Ok(ExecScope::Sessions),
        "all" => Ok(ExecScope::All),
        other => Err(format!(
            "`{other}` is not an exec scope; use `sessions` (the programs of Session Manager sessions) or `all` (every program on the host)"
        )),
    }
}

/// `[audit]`: who did what in Session Manager sessions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditSettings {
    /// `enabled`; default false: the daemon records audit events into the spool.
    pub enabled: bool,
    /// `sessions`; default true: session start and end from the agent's document-state files.
    pub sessions: bool,
    /// `privilege`; default true: `sudo` and `su` (from the journal, or the auth log).
    pub privilege: bool,
    /// `privilege_source`; default "auto": where sudo and su are read from — the journal when
    /// journald runs, else the auth log (`paths.auth_logs`).
    pub privilege_source: PrivilegeSource,
    /// `transcript`; default false: the terminal stream, when the agent writes it (may hold
    /// secrets typed at the prompt).
    pub transcript: bool,
    /// `exec_backend`; default "auto": every program started in a session, from the kernel —
    /// `auto` takes the first that works of `ebpf` and `proc-connector`; `audit` reads an
    /// auditd's execve records; `off`.
    pub exec_backend: ExecBackend,
    /// `exec_scope`; default "sessions": the programs of sessions only, or `all` on the host.
    pub exec_scope: ExecScope,
    /// `redact`; default []: regular expressions whose matches are replaced by `***` in command
    /// lines and transcripts.
    pub redact: Vec<String>,
    /// `spool_max`; default "1GiB": the most the on-host spool may hold.
    #[serde(serialize_with = "size_str")]
    pub spool_max: u64,
    /// `rescan_interval`; default "5s": the listing of the agent's session files (inotify only
    /// says when to list sooner).
    #[serde(with = "duration_str")]
    pub rescan_interval: Duration,
    /// `default_alerts`; default true: the built-in alert rules (any sudo, su to root, a root
    /// shell in a session, a runAsElevated session, a Run As failure, sudo granted).
    pub default_alerts: bool,
    /// `[[audit.alert]]`; default none: the operator's rules (a rule named like a built-in one
    /// replaces it; `enabled = false` switches it off).
    pub alert: Vec<AlertRule>,
    /// `[audit.s3]`.
    pub s3: S3Settings,
    /// `[audit.cloudwatch]`.
    pub cloudwatch: CloudWatchSettings,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            sessions: true,
            privilege: true,
            privilege_source: PrivilegeSource::Auto,
            transcript: false,
            exec_backend: ExecBackend::Auto,
            exec_scope: ExecScope::Sessions,
            redact: Vec::new(),
            spool_max: 1 << 30,
            rescan_interval: Duration::from_secs(5),
            default_alerts: true,
            alert: Vec::new(),
            s3: S3Settings::default(),
            cloudwatch: CloudWatchSettings::default(),
        }
    }
}

fn size_str<S: serde::Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_size(*bytes))
}

/// `1073741824` as `1GiB`, `8388608` as `8MiB`: the largest unit that divides it.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Parses a size: a whole number and a unit, `KiB`/`MiB`/`GiB` (or `K`/`M`/`G`, the same
/// powers of two), or bytes with `B` or no unit.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

fn spool_size(p: &Picked<String>) -> Result<u64, String> {
    let min = 8 << 20;
    let max = 1 << 40;
    match parse_size(&p.value) {
        Some(b) if (min..=max).contains(&b) => Ok(b),
        Some(b) => Err(format!(
            "{} is out of range; allowed: from 8MiB to 1024GiB",
            format_size(b)
        )),
        None => Err(format!(
            "`{}` is not a size; write it like \"512MiB\" or \"1GiB\"",
            p.value
        )),
    }
}

fn patterns(p: &Picked<Vec<String>>) -> Result<Vec<String>, String> {
    for (i, r) in p.value.iter().enumerate() {
        if r.is_empty() {
            return Err(format!(
                "pattern {} is empty: it would match everywhere",
                i + 1
            ));
        }
        if let Err(e) = regex::Regex::new(r) {
            return Err(format!(
                "pattern {} `{r}` is not a regular expression: {e}",
                i + 1
            ));
        }
    }
    Ok(p.value.clone())
}

fn alerts(p: &Picked<Vec<AlertValue>>) -> Result<Vec<AlertRule>, String> {
    let mut names = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, a) in p.value.iter().enumerate() {
        let at = format!("rule {} (`{}`)", i + 1, a.name);
        let name_ok = !a.name.is_empty()
            && a.name.len() <= 64
            && a.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "rule {}: name `{}` must be 1-64 letters, digits, `-` or `_`",
                i + 1,
                a.name
            ));
        }
        if !names.insert(a.name.clone()) {
            return Err(format!(
                "{at}: a second rule with this name; give each rule its own name"
            ));
        }
        let severity_id = match a.severity.as_deref() {
            None => 3,
            Some(s) => match SEVERITIES.iter().position(|x| *x == s) {
                Some(i) => u32::try_from(i).unwrap_or(0) + 1,
                None => {
                    return Err(format!(
                        "{at}: severity `{s}` is not one of {}",
                        SEVERITIES.join(", ")
                    ));
                }
            },
        };
        let enabled = a.enabled.unwrap_or(true);
        if enabled && a.equals.is_empty() && a.regex.is_empty() {
            return Err(format!(
                "{at}: no `match` and no `regex`: it would mark every event; give at least one field"
            ));
        }
        let mut equals = BTreeMap::new();
        for (k, v) in &a.equals {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "{at}: match `{k}` is a {}; give a string, a whole number or a boolean",
                        other.type_str()
                    ));
                }
            };
            equals.insert(k.clone(), v);
        }
        for (k, r) in &a.regex {
            if let Err(e) = regex::Regex::new(r) {
                return Err(format!(
                    "{at}: regex for `{k}`: `{r}` is not a regular expression: {e}"
                ));
            }
        }
        for k in a.equals.keys().chain(a.regex.keys()) {
            if k.is_empty() || k.split('.').any(str::is_empty) {
                return Err(format!(
                    "{at}: `{k}` is not a field path; write it like `actor.user.name`"
                ));
            }
        }
        out.push(AlertRule {
            name: a.name.clone(),
            enabled,
            severity_id,
            equals,
            regex: a.regex.clone(),
        });
    }
    Ok(out)
}

/// Resolves `[audit]` from the layers.
pub(super) fn resolve(r: &mut Resolver<'_>, s: &mut AuditSettings) {
    keys!(r, audit, s, {
        enabled => as_is,
        sessions => as_is,
        privilege => as_is,
        privilege_source => privilege_source,
        transcript => as_is,
        exec_backend => exec_backend,
        exec_scope => exec_scope,
        redact => patterns,
        spool_max => spool_size,
        rescan_interval => duration_in(Duration::from_secs(1), Duration::from_secs(300)),
        default_alerts => as_is,
        alert => alerts,
    });
    resolve_s3(r, &mut s.s3);
    resolve_cloudwatch(r, &mut s.cloudwatch);
}

/// An S3 bucket name as S3 takes it: 3 to 63 lowercase letters, digits, dots and hyphens.
pub(super) fn bucket_name(p: &Picked<String>) -> Result<String, String> {
    let b = p.value.trim();
    let ok = b.is_empty()
        || ((3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            && b.starts_with(|c: char| c.is_ascii_alphanumeric())
            && b.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(b.to_string())
    } else {
        Err(format!(
            "`{b}` is not an S3 bucket name (3-63 lowercase letters, digits, `.` and `-`); give the bucket's name, not its ARN or URL"
        ))
    }
}

pub(super) fn key_prefix(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim_matches('/');
    if v.len() <= 512 && !v.contains("//") && !v.chars().any(char::is_control) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{}` is not a usable key prefix (at most 512 characters, no control characters or empty components)",
            p.value
        ))
    }
}

fn object_size(p: &Picked<String>) -> Result<u64, String> {
    match parse_size(&p.value) {
        Some(b) if ((64 << 10)..=(1 << 30)).contains(&b) => Ok(b),
        _ => Err(format!(
            "`{}` is not a size from 64KiB to 1GiB (write it like \"4MiB\")",
            p.value
        )),
    }
}

fn sse(p: &Picked<String>) -> Result<String, String> {
    match p.value.as_str() {
        "" | "AES256" | "aws:kms" => Ok(p.value.clone()),
        other => Err(format!(
            "`{other}` is not a server-side encryption; use \"aws:kms\", \"AES256\" or \"\" (the bucket's default)"
        )),
    }
}

pub(super) fn any_string(p: &Picked<String>) -> Result<String, String> {
    Ok(p.value.clone())
}

fn resolve_s3(r: &mut Resolver<'_>, s: &mut S3Settings) {
    macro_rules! s3 {
        ($($field:ident => $check:expr),* $(,)?) => {
            $(r.set(
                &mut s.$field,
                concat!("audit.s3.", stringify!($field)),
                |f| f.audit()?.s3.as_ref()?.get_ref().$field.as_ref(),
                $check,
            );)*
        };
    }
    s3! {
        bucket => bucket_name,
        prefix => key_prefix,
        region => any_string,
        max_object_size => object_size,
        max_delay => duration_in(Duration::from_secs(1), Duration::from_secs(3600)),
        sse => sse,
        kms_key_id => any_string,
        bucket_owner_full_control => as_is,
    }
}

/// A log group name as CloudWatch Logs takes it: 1-512 of letters, digits, `_ - / . #`.
fn log_group(p: &Picked<String>) -> Result<String, String> {
    let g = p.value.trim();
    let ok = g.len() <= 512
        && g.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-/.#".contains(&c));
    if ok {
        Ok(g.to_string())
    } else {
        Err(format!(
            "`{g}` is not a log group name (at most 512 letters, digits, `_`, `-`, `/`, `.` and `#`); give the group's name, not its ARN"
        ))
    }
}

fn cloudwatch_events(p: &Picked<String>) -> Result<CloudWatchEvents, String> {
    match p.value.as_str() {
        "alerts" => Ok(CloudWatchEvents::Alerts),
        "all" => Ok(CloudWatchEvents::All),
        other => Err(format!(
            "`{other}` is not a choice of events; use \"alerts\" (what alert rules marked) or \"all\""
        )),
    }
}

fn resolve_cloudwatch(r: &mut Resolver<'_>, s: &mut CloudWatchSettings) {
    macro_rules! cw {
        ($($field:ident => $check:expr),* $(,)?) => {
            $(r.set(
                &mut s.$field,
                concat!("audit.cloudwatch.", stringify!($field)),
                |f| f.audit()?.cloudwatch.as_ref()?.get_ref().$field.as_ref(),
                $check,
            );)*
        };
    }
    cw! {
        log_group => log_group,
        events => cloudwatch_events,
        region => any_string,
        max_delay => duration_in(Duration::from_secs(1), Duration::from_secs(3600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size(" 512MiB "), Some(512 << 20));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("100"), Some(100));
        for bad in ["", "GiB", "1.5GiB", "-1G", "1TB", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(3 << 20), "3MiB");
        assert_eq!(format_size(1000), "1000B");
    }
}
