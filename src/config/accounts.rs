//! `[accounts]`: the accounts capability. The keys, their defaults and their checks, and the
//! check of `uid_range` against the host.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::fragments::DurationValue;
use super::{
    Issue, Location, Picked, Resolver, Settings, Severity, absolute_path, as_is, duration_in,
    duration_str, group_names, in_range, optional_group,
};
use crate::names;

fragment! {
    /// `[accounts]` as written: every key optional, with its span.
    AccountsFragment {
        enabled: bool, source: SourceKind, file: String, iam_path_prefix: String,
        iam_page_size: u32, read_session_preferences: bool, interval: DurationValue,
        splay: DurationValue, extra: Vec<String>, host_groups: Vec<String>,
        allowed_groups: Vec<String>, sudo_group: String, shell: String, uid_range: Vec<i64>,
        retire_grace: DurationValue, retire_confirmations: u32, max_retire_fraction: f64,
        remove_home: bool, stop_timeout: DurationValue, tool_timeout: DurationValue,
        reserved_names: Vec<String>, primary_group: String, lookup_timeout: DurationValue,
        mapping: MappingFragment,
    }
}

fragment! {
    /// `[accounts.mapping]` as written.
    MappingFragment {
        bucket: String, prefix: String, public_keys: Vec<String>, interval: DurationValue,
        account: String, region: String,
    }
}

/// Where the desired accounts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// IAM users and roles of this account carrying `SSMSessionRunAs`.
    Iam,
    /// A local TOML or JSON file.
    File,
    /// The signed mapping `ssm-companion publish` writes to S3 once for the fleet
    /// (`[accounts.mapping]`): no IAM call from the host.
    Mapping,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Iam => "iam",
            SourceKind::File => "file",
            SourceKind::Mapping => "mapping",
        })
    }
}

/// `[accounts]`: the accounts capability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountsSettings {
    /// `enabled`; default true.
    pub enabled: bool,
    /// `source`; default "iam".
    pub source: SourceKind,
    /// `file`; default "/etc/ssm-companion/accounts.toml" (read when source = "file").
    pub file: PathBuf,
    /// `iam_path_prefix`; default "/": only IAM users/roles whose path starts with this.
    pub iam_path_prefix: String,
    /// `iam_page_size`; default 1000: `MaxItems` of each GetAccountAuthorizationDetails page.
    pub iam_page_size: u32,
    /// `read_session_preferences`; default: true when source = "iam", else false. Reads
    /// `runAsEnabled`/`runAsDefaultUser` from the `SSM-SessionManagerRunShell` document.
    pub read_session_preferences: bool,
    /// `interval`; default "5m": time between syncs (each jittered by ±10 %).
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// `splay`; default "30s": the first sync waits a random time up to this.
    #[serde(with = "duration_str")]
    pub splay: Duration,
    /// `extra`; default []: names that always get an account.
    pub extra: Vec<String>,
    /// `host_groups`; default []: this host's groups (scope tag `ssm-companion:host-groups`).
    pub host_groups: BTreeSet<String>,
    /// `allowed_groups`; default []: supplementary groups principals may ask for.
    pub allowed_groups: BTreeSet<String>,
    /// `sudo_group`; default "": the allowlisted group whose members get sudo.
    pub sudo_group: String,
    /// `shell`; default "/bin/bash".
    pub shell: PathBuf,
    /// `uid_range`; default [20000, 59999].
    pub uid_range: [u32; 2],
    /// `retire_grace`; default "24h".
    #[serde(with = "duration_str")]
    pub retire_grace: Duration,
    /// `retire_confirmations`; default 3.
    pub retire_confirmations: u32,
    /// `max_retire_fraction`; default 0.25.
    pub max_retire_fraction: f64,
    /// `remove_home`; default false: `userdel -r` when an account is finally deleted.
    pub remove_home: bool,
    /// `stop_timeout`; default "10s": SIGTERM → SIGKILL delay for a retiring user's processes.
    #[serde(with = "duration_str")]
    pub stop_timeout: Duration,
    /// `tool_timeout`; default "60s": deadline for one shadow-utils/visudo run.
    #[serde(with = "duration_str")]
    pub tool_timeout: Duration,
    /// `reserved_names`; default []: more names never created, besides the built-in list and
    /// the host's sysusers.d files (`name`, or `prefix*`).
    pub reserved_names: Vec<String>,
    /// `primary_group`; default "": each account gets its own group (GID = UID); a name: every
    /// account's primary group is that one group, created by ssm-companion.
    pub primary_group: String,
    /// `lookup_timeout`; default "10s": deadline for the NSS lookups (LDAP, SSSD…) of one sync.
    #[serde(with = "duration_str")]
    pub lookup_timeout: Duration,
    /// `[accounts.mapping]`: where the fleet's mapping is read when source = "mapping".
    pub mapping: MappingSettings,
}

/// `[accounts.mapping]`: the signed mapping `ssm-companion publish` writes to S3.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappingSettings {
    /// `bucket`; default "": required when source = "mapping".
    pub bucket: String,
    /// `prefix`; default "ssm-companion/mapping": the manifest is `<prefix>/<account>/manifest.json`.
    pub prefix: String,
    /// `public_keys`; default []: PEM `PUBLIC KEY` blocks or paths of files holding one (the
    /// signing key's, and the next one's during a rotation); required when source = "mapping".
    pub public_keys: Vec<String>,
    /// `interval`; default "60s": time between polls (a 304 when nothing changed).
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// `account`; default "": this host's AWS account id (12 digits); empty: the instance
    /// identity document's (IMDS). Needed off EC2.
    pub account: String,
    /// `region`; default "": the bucket's region, when it is not the host's.
    pub region: String,
}

impl Default for MappingSettings {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: "ssm-companion/mapping".into(),
            public_keys: Vec::new(),
            interval: Duration::from_secs(60),
            account: String::new(),
            region: String::new(),
        }
    }
}

impl Default for AccountsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            source: SourceKind::Iam,
            file: PathBuf::from("/etc/ssm-companion/accounts.toml"),
            iam_path_prefix: "/".into(),
            iam_page_size: 1000,
            read_session_preferences: true,
            interval: Duration::from_secs(300),
            splay: Duration::from_secs(30),
            extra: Vec::new(),
            host_groups: BTreeSet::new(),
            allowed_groups: BTreeSet::new(),
            sudo_group: String::new(),
            shell: PathBuf::from("/bin/bash"),
            uid_range: [20000, 59999],
            retire_grace: Duration::from_secs(24 * 3600),
            retire_confirmations: 3,
            max_retire_fraction: 0.25,
            remove_home: false,
            stop_timeout: Duration::from_secs(10),
            tool_timeout: Duration::from_secs(60),
            reserved_names: Vec::new(),
            primary_group: String::new(),
            lookup_timeout: Duration::from_secs(10),
            mapping: MappingSettings::default(),
        }
    }
}

fn iam_path_prefix(p: &Picked<String>) -> Result<String, String> {
    if p.value.starts_with('/') && p.value.ends_with('/') {
        Ok(p.value.clone())
    } else {
        Err(format!(
            "`{}` is not an IAM path prefix; it must start and end with `/` (e.g. `/engineering/`)",
            p.value
        ))
    }
}

fn user_names(p: &Picked<Vec<String>>) -> Result<Vec<String>, String> {
    p.value
        .iter()
        .try_for_each(|n| names::check_syntax(n).map_err(|e| format!("`{n}`: {e}")))?;
    Ok(p.value.clone())
}

fn host_groups(p: &Picked<Vec<String>>) -> Result<BTreeSet<String>, String> {
    match p
        .value
        .iter()
        .find(|g| g.is_empty() || g.chars().any(char::is_whitespace))
    {
        Some(g) => Err(format!(
            "`{g}` is not a host group name: it must be non-empty without spaces"
        )),
        None => Ok(p.value.iter().cloned().collect()),
    }
}

fn shell(p: &Picked<String>) -> Result<PathBuf, String> {
    let path = absolute_path(p)?;
    if p.value.contains(':') || p.value.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{}` cannot be a login shell: no `:` or spaces",
            p.value
        ));
    }
    Ok(path)
}

fn uid_range(p: &Picked<Vec<i64>>) -> Result<[u32; 2], String> {
    match p.value.as_slice() {
        [lo, hi] if 1000 <= *lo && lo <= hi && *hi <= i64::from(i32::MAX) => Ok([
            u32::try_from(*lo).unwrap_or(u32::MAX),
            u32::try_from(*hi).unwrap_or(u32::MAX),
        ]),
        _ => Err(format!(
            "{:?} is not a UID range; give [first, last] with 1000 <= first <= last <= {}",
            p.value,
            i32::MAX
        )),
    }
}

fn fraction(p: &Picked<f64>) -> Result<f64, String> {
    if p.value > 0.0 && p.value <= 1.0 {
        Ok(p.value)
    } else {
        Err(format!(
            "{} is out of range; allowed: a fraction above 0 and at most 1.0 (1.0 = no cap)",
            p.value
        ))
    }
}

fn reserved_names(p: &Picked<Vec<String>>) -> Result<Vec<String>, String> {
    p.value.iter().try_for_each(|n| match n.strip_suffix('*') {
        Some("") => Err("`*` alone would reserve every name; give a prefix like `svc-*`".into()),
        prefix => names::check_syntax(prefix.unwrap_or(n))
            .map_err(|e| format!("`{n}`: {e} (a name, or a prefix ending in `*`)")),
    })?;
    Ok(p.value.clone())
}

/// Resolves `[accounts]` from the layers, with the checks between keys.
pub(super) fn resolve(r: &mut Resolver<'_>, a: &mut AccountsSettings) {
    keys!(r, accounts, a, {
        enabled => as_is,
        source => as_is,
    });
    a.read_session_preferences = a.source == SourceKind::Iam;
    keys!(r, accounts, a, {
        file => absolute_path,
        iam_path_prefix => iam_path_prefix,
        iam_page_size => in_range(1, 1000, "items per page"),
        read_session_preferences => as_is,
        interval => duration_in(Duration::from_secs(1), Duration::from_secs(24 * 3600)),
        splay => duration_in(Duration::ZERO, Duration::from_secs(3600)),
        extra => user_names,
        host_groups => host_groups,
        allowed_groups => group_names,
    });
    if let Some(p) = key!(r, accounts, a, sudo_group => optional_group)
        && !a.sudo_group.is_empty()
        && !a.allowed_groups.contains(&a.sudo_group)
    {
        r.issues.push(p.issue(format!(
            "`{}` is not in accounts.allowed_groups; add it there (allowed: {})",
            a.sudo_group,
            if a.allowed_groups.is_empty() {
                "none configured".to_string()
            } else {
                a.allowed_groups
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    keys!(r, accounts, a, {
        shell => shell,
        uid_range => uid_range,
        retire_grace => duration_in(Duration::ZERO, Duration::from_secs(366 * 24 * 3600)),
        retire_confirmations => in_range(1, 1000, "complete reads"),
        max_retire_fraction => fraction,
        remove_home => as_is,
        stop_timeout => duration_in(Duration::ZERO, Duration::from_secs(300)),
        tool_timeout => duration_in(Duration::from_secs(1), Duration::from_secs(600)),
        lookup_timeout => duration_in(Duration::from_secs(1), Duration::from_secs(600)),
        reserved_names => reserved_names,
    });
    if let Some(p) = key!(r, accounts, a, primary_group => optional_group)
        && !a.primary_group.is_empty()
        && (a.allowed_groups.contains(&a.primary_group) || a.sudo_group == a.primary_group)
    {
        r.issues.push(p.issue(format!(
            "`{}` is also in accounts.allowed_groups or the sudo group: the primary group of every managed account must grant nothing; name a group of its own (e.g. `ssm-users`)",
            a.primary_group
        )));
    }
    resolve_mapping(r, a);
}

fn public_keys(p: &Picked<Vec<String>>) -> Result<Vec<String>, String> {
    for (i, k) in p.value.iter().enumerate() {
        crate::signing::trusted_key(k, i)?;
    }
    Ok(p.value.clone())
}

fn account_id(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim();
    if v.is_empty() || (v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit())) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` is not an AWS account id (12 digits); leave it empty on EC2 (the instance identity names it)"
        ))
    }
}

/// `[accounts.mapping]`, and what source = "mapping" needs of it.
fn resolve_mapping(r: &mut Resolver<'_>, a: &mut AccountsSettings) {
    let m = &mut a.mapping;
    macro_rules! mapping {
        ($($field:ident => $check:expr),* $(,)?) => {
            $(r.set(
                &mut m.$field,
                concat!("accounts.mapping.", stringify!($field)),
                |f| f.accounts()?.mapping.as_ref()?.get_ref().$field.as_ref(),
                $check,
            );)*
        };
    }
    mapping! {
        bucket => super::audit::bucket_name,
        prefix => super::audit::key_prefix,
        public_keys => public_keys,
        interval => duration_in(Duration::from_secs(1), Duration::from_secs(24 * 3600)),
        account => account_id,
        region => super::audit::any_string,
    }
    if a.source != SourceKind::Mapping {
        return;
    }
    let missing: Vec<&str> = [
        ("bucket", a.mapping.bucket.is_empty()),
        ("public_keys", a.mapping.public_keys.is_empty()),
    ]
    .into_iter()
    .filter_map(|(k, empty)| empty.then_some(k))
    .collect();
    if !missing.is_empty()
        && let Some(p) = r.pick("accounts.source", |f| f.accounts()?.source.as_ref())
    {
        r.issues.push(p.issue(format!(
            "\"mapping\" needs accounts.mapping.{}: the bucket `ssm-companion publish` writes to and the public key(s) of its signing key (docs/usage/fleet.md)",
            missing.join(" and accounts.mapping.")
        )));
    }
}

/// Checks `accounts.uid_range` against the host it runs on: inside `UID_MIN`..`UID_MAX` and
/// `GID_MIN`..`GID_MAX` of login.defs (above the maxima useradd's own checks and the GID = UID of
/// the user private group break; below the minima the accounts count as system accounts), and
/// clear of every subordinate range in subuid/subgid (those IDs belong to another user's
/// containers). `at` is where the range was set (none: the default applies). Files that do not
/// exist impose nothing.
pub fn uid_range_fits_host(settings: &Settings, at: Option<Location>) -> Vec<Issue> {
    use crate::sysfiles::{parse_login_defs, parse_subordinate};
    let p = &settings.paths;
    let [lo, hi] = settings.accounts.uid_range;
    let mut issues = Vec::new();
    let mut push = |file: &Path, message: String| {
        issues.push(Issue {
            severity: Severity::Error,
            location: at.clone().unwrap_or(Location {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
            }),
            key: "accounts.uid_range".into(),
            message,
        });
    };
    let set = if at.is_some() {
        format!("[{lo}, {hi}]")
    } else {
        format!("the default [{lo}, {hi}] (accounts.uid_range is not set)")
    };
    if let Ok(text) = std::fs::read_to_string(&p.login_defs) {
        let d = parse_login_defs(&text);
        let (min, max) = (d.uid_min.max(d.gid_min), d.uid_max.min(d.gid_max));
        let fix = format!(
            "set accounts.uid_range within [{min}, {max}] (UID_MIN/GID_MIN..UID_MAX/GID_MAX of {})",
            p.login_defs.display()
        );
        if hi > d.uid_max || hi > d.gid_max {
            push(
                &p.login_defs,
                format!(
                    "{set} goes above UID_MAX {} / GID_MAX {} of {}: useradd would make accounts its own tools treat as out of range, and their groups could not get GID = UID; {fix}",
                    d.uid_max,
                    d.gid_max,
                    p.login_defs.display()
                ),
            );
        }
        if lo < d.uid_min || lo < d.gid_min {
            push(
                &p.login_defs,
                format!(
                    "{set} starts below UID_MIN {} / GID_MIN {} of {}: accounts there are system accounts to every tool; {fix}",
                    d.uid_min,
                    d.gid_min,
                    p.login_defs.display()
                ),
            );
        }
    }
    for (file, kind) in [
        (&p.subuid, "subordinate UIDs"),
        (&p.subgid, "subordinate GIDs"),
    ] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for r in parse_subordinate(&text) {
            if r.overlaps(u64::from(lo), u64::from(hi)) {
                push(
                    file,
                    format!(
                        "{set} overlaps the {kind} {}..{} of `{}` in {}: an account there would share its IDs with that user's containers; pick a range clear of it",
                        r.first,
                        r.last(),
                        r.owner,
                        file.display()
                    ),
                );
            }
        }
    }
    issues
}
