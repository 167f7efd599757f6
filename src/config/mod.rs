//! Configuration: TOML files and drop-ins → validated [`Settings`].
//!
//! Files are applied in this order, later values winning key by key (arrays are replaced, not
//! appended):
//!
//! 1. `/usr/lib/ssm-companion/config.d/*.toml` (packaged defaults), in name order, except names
//!    that also exist in the admin's drop-in directory (those mask them, as in systemd);
//! 2. the main file, `/etc/ssm-companion/config.toml` (or `--config PATH`);
//! 3. `<dir of the main file>/config.d/*.toml` (admin and cloud-init drop-ins), in name order.
//!
//! Three stages: each file is deserialized into a fragment where every key is optional and
//! carries its span ([`fragments`]); fragments are layered; the winning value of every key is
//! validated into [`Settings`], and a bad one is reported with the file, line and key that set
//! it. Unknown keys are errors for `config check` and warnings for the daemon, so an old binary
//! survives a drop-in written for a newer one.

mod fragments;
mod toml_doc;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

pub use fragments::Fragment;
pub use toml_doc::{Issue, Location, Severity};

use crate::names;

/// The default main configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ssm-companion/config.toml";
/// The packaged defaults directory.
pub const VENDOR_CONFIG_DIR: &str = "/usr/lib/ssm-companion/config.d";
/// Environment variable that overrides [`VENDOR_CONFIG_DIR`] (tests, unusual layouts).
pub const VENDOR_CONFIG_DIR_ENV: &str = "SSM_COMPANION_VENDOR_CONFIG_DIR";

/// Where to read configuration from.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The main file.
    pub main: PathBuf,
    /// True when the user named the main file: then it must exist.
    pub main_required: bool,
    /// The packaged drop-in directory.
    pub vendor_dir: PathBuf,
    /// Unknown keys are errors (`config check`) rather than warnings (daemon).
    pub strict: bool,
}

impl LoadOptions {
    /// Options for `--config` (or the default path) with the vendor directory from the
    /// environment override or the packaged default.
    pub fn new(config: Option<&Path>, strict: bool) -> Self {
        Self {
            main: config.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH), Path::to_path_buf),
            main_required: config.is_some(),
            vendor_dir: std::env::var_os(VENDOR_CONFIG_DIR_ENV)
                .map_or_else(|| PathBuf::from(VENDOR_CONFIG_DIR), PathBuf::from),
            strict,
        }
    }
}

/// A configuration that cannot be used; `Display` lists every problem, one per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The problems (at least one).
    pub issues: Vec<Issue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.issues.len())?;
        if self.issues.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for i in &self.issues {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated settings.
    pub settings: Settings,
    /// The files that were read, in the order applied.
    pub files: Vec<PathBuf>,
    /// Problems that did not stop loading (unknown keys when not strict).
    pub warnings: Vec<Issue>,
}

/// Everything the daemon can be told, validated. Field docs give the TOML key and default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// `[aws]`
    pub aws: AwsSettings,
    /// `[accounts]`
    pub accounts: AccountsSettings,
    /// `[health]`
    pub health: HealthSettings,
    /// `[paths]`
    pub paths: Paths,
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
    /// `timeout`; default "5s": each network step (DNS, TCP, TLS, an AWS call).
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
}

/// `[aws]`: how to reach AWS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwsSettings {
    /// `region`; default "" = from IMDSv2 (then `AWS_REGION`).
    pub region: String,
    /// `endpoint_url`; default "" = the SDK's own (`AWS_ENDPOINT_URL` is honoured too).
    pub endpoint_url: String,
    /// `imds_endpoint`; default "" = the SDK's own (`AWS_EC2_METADATA_SERVICE_ENDPOINT` is
    /// honoured too).
    pub imds_endpoint: String,
    /// `call_timeout`; default "20s": deadline of one AWS call including its retries.
    #[serde(with = "duration_str")]
    pub call_timeout: Duration,
    /// `max_attempts`; default 3: attempts per AWS call (standard retry mode, jittered backoff).
    pub max_attempts: u32,
}

/// Where the desired accounts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// IAM users and roles of this account carrying `SSMSessionRunAs`.
    Iam,
    /// A local TOML or JSON file.
    File,
    /// A mapping document published once for the fleet (S3 / Parameter Store). Part of the
    /// configuration contract; not available in this version, so it reads nothing.
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
}

/// `[paths]`: every host path the daemon reads or writes, so tests can point it elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paths {
    /// `state_dir`; default "/var/lib/ssm-companion".
    pub state_dir: PathBuf,
    /// `home_base`; default "/home". The agent hard-codes `HOME=/home/<user>`: change only in tests.
    pub home_base: PathBuf,
    /// `skel`; default "/etc/skel".
    pub skel: PathBuf,
    /// `sudoers_file`; default "/etc/sudoers.d/ssm-companion".
    pub sudoers_file: PathBuf,
    /// `sudoers_main`; default "/etc/sudoers" (checked for an `includedir` of the drop-in dir).
    pub sudoers_main: PathBuf,
    /// `passwd`; default "/etc/passwd".
    pub passwd: PathBuf,
    /// `group`; default "/etc/group".
    pub group: PathBuf,
    /// `login_defs`; default "/etc/login.defs".
    pub login_defs: PathBuf,
    /// `machine_id`; default "/etc/machine-id".
    pub machine_id: PathBuf,
    /// `proc`; default "/proc".
    pub proc: PathBuf,
    /// `cgroup`; default "/sys/fs/cgroup" (a retiring user's slice is killed with `cgroup.kill`).
    pub cgroup: PathBuf,
    /// `subuid`; default "/etc/subuid" (`uid_range` must not overlap subordinate ranges).
    pub subuid: PathBuf,
    /// `subgid`; default "/etc/subgid".
    pub subgid: PathBuf,
    /// `nsswitch`; default "/etc/nsswitch.conf" (which sources answer for users and groups).
    pub nsswitch: PathBuf,
    /// `sysusers_dirs`; default the systemd-sysusers directories: every user and group named
    /// there is reserved.
    pub sysusers_dirs: Vec<PathBuf>,
    /// `useradd`; default "/usr/sbin/useradd".
    pub useradd: PathBuf,
    /// `usermod`; default "/usr/sbin/usermod".
    pub usermod: PathBuf,
    /// `userdel`; default "/usr/sbin/userdel".
    pub userdel: PathBuf,
    /// `groupadd`; default "/usr/sbin/groupadd".
    pub groupadd: PathBuf,
    /// `visudo`; default "/usr/sbin/visudo".
    pub visudo: PathBuf,
    /// `mkhomedir_helper`; default "/usr/sbin/mkhomedir_helper" (PAM's: re-creates a managed
    /// account's missing home from the skeleton).
    pub mkhomedir_helper: PathBuf,
    /// `agent_bin_dir`; default "/usr/bin" (deb/rpm installs).
    pub agent_bin_dir: PathBuf,
    /// `agent_snap_dir`; default "/snap/amazon-ssm-agent/current".
    pub agent_snap_dir: PathBuf,
    /// `agent_state_dir`; default "/var/lib/amazon/ssm".
    pub agent_state_dir: PathBuf,
    /// `agent_log_dir`; default "/var/log/amazon/ssm".
    pub agent_log_dir: PathBuf,
    /// `agent_config_dir`; default "/etc/amazon/ssm".
    pub agent_config_dir: PathBuf,
    /// `systemctl`; default "/usr/bin/systemctl".
    pub systemctl: PathBuf,
    /// `snap`; default "/usr/bin/snap".
    pub snap: PathBuf,
    /// `systemd_run_dir`; default "/run/systemd/system" (exists when systemd is PID 1).
    pub systemd_run_dir: PathBuf,
}

/// The paths the health capability uses (a view of [`Paths`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPaths {
    /// deb/rpm binaries.
    pub bin_dir: PathBuf,
    /// snap binaries.
    pub snap_dir: PathBuf,
    /// Agent state.
    pub state_dir: PathBuf,
    /// Agent logs.
    pub log_dir: PathBuf,
    /// Agent config.
    pub config_dir: PathBuf,
    /// systemctl.
    pub systemctl: PathBuf,
    /// snap.
    pub snap: PathBuf,
    /// systemd's runtime dir.
    pub systemd_run_dir: PathBuf,
    /// /proc.
    pub proc: PathBuf,
    /// ssm-companion's state directory.
    pub own_state_dir: PathBuf,
}

impl Paths {
    /// The health capability's view.
    pub fn health(&self) -> HealthPaths {
        HealthPaths {
            bin_dir: self.agent_bin_dir.clone(),
            snap_dir: self.agent_snap_dir.clone(),
            state_dir: self.agent_state_dir.clone(),
            log_dir: self.agent_log_dir.clone(),
            config_dir: self.agent_config_dir.clone(),
            systemctl: self.systemctl.clone(),
            snap: self.snap.clone(),
            systemd_run_dir: self.systemd_run_dir.clone(),
            proc: self.proc.clone(),
            own_state_dir: self.state_dir.clone(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            aws: AwsSettings {
                region: String::new(),
                endpoint_url: String::new(),
                imds_endpoint: String::new(),
                call_timeout: Duration::from_secs(20),
                max_attempts: 3,
            },
            accounts: AccountsSettings {
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
            },
            paths: Paths {
                state_dir: "/var/lib/ssm-companion".into(),
                home_base: "/home".into(),
                skel: "/etc/skel".into(),
                sudoers_file: "/etc/sudoers.d/ssm-companion".into(),
                sudoers_main: "/etc/sudoers".into(),
                passwd: "/etc/passwd".into(),
                group: "/etc/group".into(),
                login_defs: "/etc/login.defs".into(),
                machine_id: "/etc/machine-id".into(),
                proc: "/proc".into(),
                cgroup: "/sys/fs/cgroup".into(),
                subuid: "/etc/subuid".into(),
                subgid: "/etc/subgid".into(),
                nsswitch: "/etc/nsswitch.conf".into(),
                sysusers_dirs: vec![
                    "/usr/lib/sysusers.d".into(),
                    "/run/sysusers.d".into(),
                    "/etc/sysusers.d".into(),
                ],
                useradd: "/usr/sbin/useradd".into(),
                usermod: "/usr/sbin/usermod".into(),
                userdel: "/usr/sbin/userdel".into(),
                groupadd: "/usr/sbin/groupadd".into(),
                visudo: "/usr/sbin/visudo".into(),
                mkhomedir_helper: "/usr/sbin/mkhomedir_helper".into(),
                agent_bin_dir: "/usr/bin".into(),
                agent_snap_dir: "/snap/amazon-ssm-agent/current".into(),
                agent_state_dir: "/var/lib/amazon/ssm".into(),
                agent_log_dir: "/var/log/amazon/ssm".into(),
                agent_config_dir: "/etc/amazon/ssm".into(),
                systemctl: "/usr/bin/systemctl".into(),
                snap: "/usr/bin/snap".into(),
                systemd_run_dir: "/run/systemd/system".into(),
            },
            health: HealthSettings {
                enabled: true,
                interval: Duration::from_secs(60),
                network_interval: Duration::from_secs(600),
                timeout: Duration::from_secs(5),
                services: [
                    "ssm",
                    "ssmmessages",
                    "ec2messages",
                    "s3",
                    "logs",
                    "kms",
                    "sts",
                ]
                .map(String::from)
                .to_vec(),
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
                prometheus_textfile: String::new(),
                inventory: false,
                inventory_min_interval: Duration::from_secs(1800),
                inventory_max_age: Duration::from_secs(86400),
                inventory_splay: Duration::from_secs(30),
            },
        }
    }
}

impl Settings {
    /// The merged settings as a TOML document (what `config check` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The files to read, in application order.
pub fn config_files(opts: &LoadOptions) -> Result<Vec<PathBuf>, ConfigError> {
    let etc_dropins = opts
        .main
        .parent()
        .map(|d| d.join("config.d"))
        .unwrap_or_else(|| PathBuf::from("config.d"));
    let etc = toml_files_in(&etc_dropins)?;
    let etc_names: BTreeSet<_> = etc.iter().filter_map(|p| p.file_name()).collect();
    let mut files: Vec<PathBuf> = toml_files_in(&opts.vendor_dir)?
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| !etc_names.contains(n)))
        .collect();
    if opts.main.exists() || opts.main_required {
        files.push(opts.main.clone());
    }
    files.extend(etc.iter().cloned());
    Ok(files)
}

fn toml_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    crate::sysfiles::files_in(dir, "toml")
        .map_err(|e| file_error(dir, format!("cannot list drop-in directory: {e}")))
}

fn file_error(path: &Path, message: String) -> ConfigError {
    ConfigError {
        issues: vec![Issue {
            severity: Severity::Error,
            location: Location {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
            },
            key: String::new(),
            message,
        }],
    }
}

/// Reads, layers and validates the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let files = config_files(opts)?;
    let mut layers = Vec::new();
    let mut issues = Vec::new();
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    " (create it, or leave out --config to use the defaults)"
                } else {
                    ""
                };
                issues.extend(file_error(path, format!("cannot read: {e}{hint}")).issues);
                continue;
            }
        };
        let (fragment, found): (Fragment, _) = toml_doc::parse_fragment(path, &text, opts.strict);
        issues.extend(found);
        layers.push(Layer {
            path: path.clone(),
            text,
            fragment,
        });
    }
    let settings = resolve(&layers, &mut issues);
    // (A range that is itself invalid is reported as such, not measured against the host.)
    if settings.accounts.enabled && !issues.iter().any(|i| i.key == "accounts.uid_range") {
        let at = pick(&layers, "accounts.uid_range", |f| {
            f.accounts()?.uid_range.as_ref()
        })
        .map(|p| p.location);
        issues.extend(uid_range_fits_host(&settings, at));
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = issues
        .into_iter()
        .partition(|i| i.severity == Severity::Error);
    if !errors.is_empty() {
        return Err(ConfigError { issues: errors });
    }
    Ok(Loaded {
        settings,
        files,
        warnings,
    })
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

/// Parses one TOML text as a whole configuration on top of the defaults (tests, docs).
pub fn from_str(text: &str) -> Result<Settings, ConfigError> {
    let path = PathBuf::from("<inline>");
    let (fragment, mut issues) = toml_doc::parse_fragment(&path, text, true);
    let layers = [Layer {
        path,
        text: text.to_string(),
        fragment,
    }];
    let settings = resolve(&layers, &mut issues);
    if issues.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError { issues })
    }
}

struct Layer {
    path: PathBuf,
    text: String,
    fragment: Fragment,
}

/// The value of one key after layering, and where it was set.
struct Picked<T> {
    value: T,
    location: Location,
    key: &'static str,
}

impl<T> Picked<T> {
    fn issue(&self, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            location: self.location.clone(),
            key: self.key.to_string(),
            message: message.into(),
        }
    }
}

struct Resolver<'a> {
    layers: &'a [Layer],
    issues: &'a mut Vec<Issue>,
}

/// The last layer's value for a key, and where it was set.
fn pick<T: Clone>(
    layers: &[Layer],
    key: &'static str,
    get: impl Fn(&Fragment) -> Option<&Spanned<T>>,
) -> Option<Picked<T>> {
    layers.iter().rev().find_map(|l| {
        get(&l.fragment).map(|s| Picked {
            value: s.get_ref().clone(),
            location: Location::at(&l.path, &l.text, s.span().start),
            key,
        })
    })
}

impl Resolver<'_> {
    /// The last layer's value for a key.
    fn pick<T: Clone>(
        &self,
        key: &'static str,
        get: impl Fn(&Fragment) -> Option<&Spanned<T>>,
    ) -> Option<Picked<T>> {
        pick(self.layers, key, get)
    }

    /// Picks a key, checks it with `check`, and stores the result in `slot`.
    fn set<T: Clone, U>(
        &mut self,
        slot: &mut U,
        key: &'static str,
        get: impl Fn(&Fragment) -> Option<&Spanned<T>>,
        check: impl FnOnce(&Picked<T>) -> Result<U, String>,
    ) -> Option<Picked<T>> {
        let picked = self.pick(key, get)?;
        match check(&picked) {
            Ok(v) => *slot = v,
            Err(msg) => self.issues.push(picked.issue(msg)),
        }
        Some(picked)
    }
}

fn absolute_path(p: &Picked<String>) -> Result<PathBuf, String> {
    absolute(&p.value)
}

fn absolute(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_absolute() && !value.contains('\n') {
        Ok(path)
    } else {
        Err(format!(
            "`{value}` is not an absolute path; give a path starting with `/`"
        ))
    }
}

/// An optional group name: empty, or one that passes the name rule.
fn optional_group(p: &Picked<String>) -> Result<String, String> {
    if !p.value.is_empty() {
        names::check_syntax(&p.value).map_err(|e| format!("`{}`: {e}", p.value))?;
    }
    Ok(p.value.clone())
}

fn endpoint(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim();
    if v.is_empty() || v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` is not an http:// or https:// URL; leave it empty to use the SDK's default"
        ))
    }
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    lo: T,
    hi: T,
    what: &'static str,
) -> impl FnOnce(&Picked<T>) -> Result<T, String> {
    move |p| {
        if p.value >= lo && p.value <= hi {
            Ok(p.value)
        } else {
            Err(format!(
                "{} is out of range; allowed: {what} from {lo} to {hi}",
                p.value
            ))
        }
    }
}

fn duration_in(
    lo: Duration,
    hi: Duration,
) -> impl FnOnce(&Picked<fragments::DurationValue>) -> Result<Duration, String> {
    move |p| {
        let d = p.value.0;
        if d >= lo && d <= hi {
            Ok(d)
        } else {
            Err(format!(
                "{} is out of range; allowed: from {} to {}",
                humantime::format_duration(d),
                humantime::format_duration(lo),
                humantime::format_duration(hi)
            ))
        }
    }
}

fn group_names(p: &Picked<Vec<String>>) -> Result<BTreeSet<String>, String> {
    for g in &p.value {
        if let Err(e) = names::check_syntax(g) {
            return Err(format!("group `{g}`: {e}"));
        }
    }
    Ok(p.value.iter().cloned().collect())
}

fn resolve(layers: &[Layer], issues: &mut Vec<Issue>) -> Settings {
    let mut s = Settings::default();
    let mut r = Resolver { layers, issues };

    // [aws]
    r.set(&mut s.aws.region, "aws.region", |f| f.aws()?.region.as_ref(), |p| {
        let v = p.value.trim();
        if v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            Ok(v.to_string())
        } else {
            Err(format!("`{v}` is not a region name (like `eu-west-1`); leave it empty to read it from IMDSv2"))
        }
    });
    r.set(
        &mut s.aws.endpoint_url,
        "aws.endpoint_url",
        |f| f.aws()?.endpoint_url.as_ref(),
        endpoint,
    );
    r.set(
        &mut s.aws.imds_endpoint,
        "aws.imds_endpoint",
        |f| f.aws()?.imds_endpoint.as_ref(),
        endpoint,
    );
    r.set(
        &mut s.aws.call_timeout,
        "aws.call_timeout",
        |f| f.aws()?.call_timeout.as_ref(),
        duration_in(Duration::from_secs(1), Duration::from_secs(600)),
    );
    r.set(
        &mut s.aws.max_attempts,
        "aws.max_attempts",
        |f| f.aws()?.max_attempts.as_ref(),
        in_range(1, 10, "attempts"),
    );

    // [accounts]
    let a = &mut s.accounts;
    r.set(
        &mut a.enabled,
        "accounts.enabled",
        |f| f.accounts()?.enabled.as_ref(),
        |p| Ok(p.value),
    );
    r.set(
        &mut a.source,
        "accounts.source",
        |f| f.accounts()?.source.as_ref(),
        |p| Ok(p.value),
    );
    if let Some(p) = r.pick("accounts.source", |f| f.accounts()?.source.as_ref())
        && p.value == SourceKind::Mapping
    {
        r.issues.push(Issue {
            severity: Severity::Warning,
            ..p.issue(
                "\"mapping\" (a fleet-wide mapping document) is not available in this version: no account is created or retired until you use \"iam\" or \"file\"",
            )
        });
    }
    a.read_session_preferences = a.source == SourceKind::Iam;
    r.set(
        &mut a.file,
        "accounts.file",
        |f| f.accounts()?.file.as_ref(),
        absolute_path,
    );
    r.set(
        &mut a.iam_path_prefix,
        "accounts.iam_path_prefix",
        |f| f.accounts()?.iam_path_prefix.as_ref(),
        |p| {
            if p.value.starts_with('/') && p.value.ends_with('/') {
                Ok(p.value.clone())
            } else {
                Err(format!("`{}` is not an IAM path prefix; it must start and end with `/` (e.g. `/engineering/`)", p.value))
            }
        },
    );
    r.set(
        &mut a.iam_page_size,
        "accounts.iam_page_size",
        |f| f.accounts()?.iam_page_size.as_ref(),
        in_range(1, 1000, "items per page"),
    );
    r.set(
        &mut a.read_session_preferences,
        "accounts.read_session_preferences",
        |f| f.accounts()?.read_session_preferences.as_ref(),
        |p| Ok(p.value),
    );
    r.set(
        &mut a.interval,
        "accounts.interval",
        |f| f.accounts()?.interval.as_ref(),
        duration_in(Duration::from_secs(1), Duration::from_secs(24 * 3600)),
    );
    r.set(
        &mut a.splay,
        "accounts.splay",
        |f| f.accounts()?.splay.as_ref(),
        duration_in(Duration::ZERO, Duration::from_secs(3600)),
    );
    r.set(
        &mut a.extra,
        "accounts.extra",
        |f| f.accounts()?.extra.as_ref(),
        |p| {
            for n in &p.value {
                if let Err(e) = names::check_syntax(n) {
                    return Err(format!("`{n}`: {e}"));
                }
            }
            Ok(p.value.clone())
        },
    );
    r.set(
        &mut a.host_groups,
        "accounts.host_groups",
        |f| f.accounts()?.host_groups.as_ref(),
        |p| match p
            .value
            .iter()
            .find(|g| g.is_empty() || g.chars().any(char::is_whitespace))
        {
            Some(g) => Err(format!(
                "`{g}` is not a host group name: it must be non-empty without spaces"
            )),
            None => Ok(p.value.iter().cloned().collect()),
        },
    );
    r.set(
        &mut a.allowed_groups,
        "accounts.allowed_groups",
        |f| f.accounts()?.allowed_groups.as_ref(),
        group_names,
    );
    let sudo = r.set(
        &mut a.sudo_group,
        "accounts.sudo_group",
        |f| f.accounts()?.sudo_group.as_ref(),
        optional_group,
    );
    if let Some(p) = sudo
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
    r.set(
        &mut a.shell,
        "accounts.shell",
        |f| f.accounts()?.shell.as_ref(),
        |p| {
            let path = absolute_path(p)?;
            if p.value.contains(':') || p.value.chars().any(char::is_whitespace) {
                return Err(format!(
                    "`{}` cannot be a login shell: no `:` or spaces",
                    p.value
                ));
            }
            Ok(path)
        },
    );
    r.set(
        &mut a.uid_range,
        "accounts.uid_range",
        |f| f.accounts()?.uid_range.as_ref(),
        |p| match p.value.as_slice() {
            [lo, hi] if 1000 <= *lo && lo <= hi && *hi <= i64::from(i32::MAX) => Ok([
                u32::try_from(*lo).unwrap_or(u32::MAX),
                u32::try_from(*hi).unwrap_or(u32::MAX),
            ]),
            _ => Err(format!(
                "{:?} is not a UID range; give [first, last] with 1000 <= first <= last <= {}",
                p.value,
                i32::MAX
            )),
        },
    );
    r.set(
        &mut a.retire_grace,
        "accounts.retire_grace",
        |f| f.accounts()?.retire_grace.as_ref(),
        duration_in(Duration::ZERO, Duration::from_secs(366 * 24 * 3600)),
    );
    r.set(
        &mut a.retire_confirmations,
        "accounts.retire_confirmations",
        |f| f.accounts()?.retire_confirmations.as_ref(),
        in_range(1, 1000, "complete reads"),
    );
    r.set(
        &mut a.max_retire_fraction,
        "accounts.max_retire_fraction",
        |f| f.accounts()?.max_retire_fraction.as_ref(),
        |p| {
            if p.value > 0.0 && p.value <= 1.0 {
                Ok(p.value)
            } else {
                Err(format!("{} is out of range; allowed: a fraction above 0 and at most 1.0 (1.0 = no cap)", p.value))
            }
        },
    );
    r.set(
        &mut a.remove_home,
        "accounts.remove_home",
        |f| f.accounts()?.remove_home.as_ref(),
        |p| Ok(p.value),
    );
    r.set(
        &mut a.stop_timeout,
        "accounts.stop_timeout",
        |f| f.accounts()?.stop_timeout.as_ref(),
        duration_in(Duration::ZERO, Duration::from_secs(300)),
    );
    r.set(
        &mut a.tool_timeout,
        "accounts.tool_timeout",
        |f| f.accounts()?.tool_timeout.as_ref(),
        duration_in(Duration::from_secs(1), Duration::from_secs(600)),
    );
    r.set(
        &mut a.lookup_timeout,
        "accounts.lookup_timeout",
        |f| f.accounts()?.lookup_timeout.as_ref(),
        duration_in(Duration::from_secs(1), Duration::from_secs(600)),
    );
    r.set(
        &mut a.reserved_names,
        "accounts.reserved_names",
        |f| f.accounts()?.reserved_names.as_ref(),
        |p| {
            for n in &p.value {
                let name = n.strip_suffix('*').unwrap_or(n);
                if name.is_empty() && n.ends_with('*') {
                    return Err(
                        "`*` alone would reserve every name; give a prefix like `svc-*`".into(),
                    );
                }
                if let Err(e) = names::check_syntax(name) {
                    return Err(format!("`{n}`: {e} (a name, or a prefix ending in `*`)"));
                }
            }
            Ok(p.value.clone())
        },
    );
    let primary = r.set(
        &mut a.primary_group,
        "accounts.primary_group",
        |f| f.accounts()?.primary_group.as_ref(),
        optional_group,
    );
    if let Some(p) = primary
        && !a.primary_group.is_empty()
        && (a.allowed_groups.contains(&a.primary_group) || a.sudo_group == a.primary_group)
    {
        r.issues.push(p.issue(format!(
            "`{}` is also in accounts.allowed_groups or the sudo group: the primary group of every managed account must grant nothing; name a group of its own (e.g. `ssm-users`)",
            a.primary_group
        )));
    }

    // [paths]
    macro_rules! path_key {
        ($($field:ident),* $(,)?) => {$(
            r.set(
                &mut s.paths.$field,
                concat!("paths.", stringify!($field)),
                |f| f.paths()?.$field.as_ref(),
                absolute_path,
            );
        )*};
    }
    path_key!(
        state_dir,
        home_base,
        skel,
        sudoers_file,
        sudoers_main,
        passwd,
        group,
        login_defs,
        machine_id,
        proc,
        cgroup,
        subuid,
        subgid,
        nsswitch,
        useradd,
        usermod,
        userdel,
        groupadd,
        visudo,
        mkhomedir_helper,
        agent_bin_dir,
        agent_snap_dir,
        agent_state_dir,
        agent_log_dir,
        agent_config_dir,
        systemctl,
        snap,
        systemd_run_dir,
    );
    r.set(
        &mut s.paths.sysusers_dirs,
        "paths.sysusers_dirs",
        |f| f.paths()?.sysusers_dirs.as_ref(),
        |p| p.value.iter().map(|d| absolute(d)).collect(),
    );
    resolve_health(&mut r, &mut s.health);
    s
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

fn resolve_health(r: &mut Resolver<'_>, h: &mut HealthSettings) {
    r.set(
        &mut h.enabled,
        "health.enabled",
        |f| f.health()?.enabled.as_ref(),
        |p| Ok(p.value),
    );
    r.set(
        &mut h.interval,
        "health.interval",
        |f| f.health()?.interval.as_ref(),
        duration_in(Duration::from_secs(5), Duration::from_secs(3600)),
    );
    r.set(
        &mut h.network_interval,
        "health.network_interval",
        |f| f.health()?.network_interval.as_ref(),
        duration_in(Duration::from_secs(10), Duration::from_secs(24 * 3600)),
    );
    r.set(
        &mut h.timeout,
        "health.timeout",
        |f| f.health()?.timeout.as_ref(),
        duration_in(Duration::from_millis(100), Duration::from_secs(60)),
    );
    r.set(
        &mut h.services,
        "health.services",
        |f| f.health()?.services.as_ref(),
        service_list,
    );
    r.set(
        &mut h.required_services,
        "health.required_services",
        |f| f.health()?.required_services.as_ref(),
        service_list,
    );
    r.set(
        &mut h.endpoint_port,
        "health.endpoint_port",
        |f| f.health()?.endpoint_port.as_ref(),
        in_range(1, 65535, "ports"),
    );
    r.set(
        &mut h.extra_ca_file,
        "health.extra_ca_file",
        |f| f.health()?.extra_ca_file.as_ref(),
        |p| {
            if p.value.is_empty() {
                Ok(String::new())
            } else {
                absolute_path(p).map(|_| p.value.clone())
            }
        },
    );
    r.set(
        &mut h.min_agent_version,
        "health.min_agent_version",
        |f| f.health()?.min_agent_version.as_ref(),
        |p| {
            if p.value.is_empty()
                || p.value
                    .split('.')
                    .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit()))
            {
                Ok(p.value.clone())
            } else {
                Err(format!("`{}` is not a version like 3.3.987.0", p.value))
            }
        },
    );
    r.set(
        &mut h.log_window,
        "health.log_window",
        |f| f.health()?.log_window.as_ref(),
        duration_in(Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600)),
    );
    r.set(
        &mut h.max_clock_skew,
        "health.max_clock_skew",
        |f| f.health()?.max_clock_skew.as_ref(),
        duration_in(Duration::from_secs(1), Duration::from_secs(240)),
    );
    r.set(
        &mut h.disk_warning_mib,
        "health.disk_warning_mib",
        |f| f.health()?.disk_warning_mib.as_ref(),
        in_range(0, 1 << 20, "MiB"),
    );
    r.set(
        &mut h.disk_critical_mib,
        "health.disk_critical_mib",
        |f| f.health()?.disk_critical_mib.as_ref(),
        in_range(0, 1 << 20, "MiB"),
    );
    r.set(
        &mut h.fix,
        "health.fix",
        |f| f.health()?.fix.as_ref(),
        |p| Ok(p.value),
    );
    r.set(
        &mut h.fix_min_interval,
        "health.fix_min_interval",
        |f| f.health()?.fix_min_interval.as_ref(),
        duration_in(Duration::from_secs(60), Duration::from_secs(24 * 3600)),
    );
    r.set(
        &mut h.prometheus_textfile,
        "health.prometheus_textfile",
        |f| f.health()?.prometheus_textfile.as_ref(),
        |p| {
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
        },
    );
    r.set(
        &mut h.inventory,
        "health.inventory",
        |f| f.health()?.inventory.as_ref(),
        |p| Ok(p.value),
    );
    r.set(
        &mut h.inventory_min_interval,
        "health.inventory_min_interval",
        |f| f.health()?.inventory_min_interval.as_ref(),
        duration_in(Duration::from_secs(60), Duration::from_secs(24 * 3600)),
    );
    r.set(
        &mut h.inventory_splay,
        "health.inventory_splay",
        |f| f.health()?.inventory_splay.as_ref(),
        duration_in(Duration::ZERO, Duration::from_secs(3600)),
    );
    r.set(
        &mut h.inventory_max_age,
        "health.inventory_max_age",
        |f| f.health()?.inventory_max_age.as_ref(),
        duration_in(Duration::from_secs(600), Duration::from_secs(7 * 24 * 3600)),
    );
}

/// Serde adapter writing a `Duration` as a humantime string ("5m").
mod duration_str {
    use serde::Serializer;
    use std::time::Duration;

    /// Writes the largest whole unit, as people write durations here: "24h", "5m", "30s".
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let secs = d.as_secs();
        let text = if d.subsec_nanos() != 0 {
            humantime::format_duration(*d).to_string()
        } else if secs != 0 && secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs != 0 && secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        };
        s.serialize_str(&text)
    }
}

#[cfg(test)]
mod tests;
