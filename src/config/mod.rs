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

/// Resolves one key of a section: picks `<section>.<field>` from the layers, checks it with
/// `check` and stores the result in `settings.<field>`; a bad value becomes an issue at the
/// file:line:column that set it. Gives the picked value (for checks between keys).
macro_rules! key {
    ($r:expr, $section:ident, $settings:expr, $field:ident => $check:expr) => {
        $r.set(
            &mut $settings.$field,
            concat!(stringify!($section), ".", stringify!($field)),
            |f| f.$section()?.$field.as_ref(),
            $check,
        )
    };
}

/// A section's fragment: the struct one file's `[section]` table is read into, every key
/// optional and spanned (for file:line:column), unknown keys refused. Keys in the order the
/// error for an unknown key lists them.
macro_rules! fragment {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(missing_docs)]
        pub struct $name {
            $(pub $field: Option<toml::Spanned<$ty>>,)*
        }
    };
}

/// [`key!`] for several keys of one section, in order.
macro_rules! keys {
    ($r:expr, $section:ident, $settings:expr, { $($field:ident => $check:expr),* $(,)? }) => {
        $(key!($r, $section, $settings, $field => $check);)*
    };
}

mod accounts;
mod audit;
mod aws;
mod fragments;
mod health;
mod paths;
mod publish;
mod toml_doc;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

pub use accounts::{AccountsSettings, MappingSettings, SourceKind, uid_range_fits_host};
pub use audit::{
    AlertRule, AuditSettings, CloudWatchEvents, CloudWatchSettings, ExecBackend, ExecScope,
    PrivilegeSource, S3Settings, SEVERITIES, format_size, parse_size,
};
pub use aws::AwsSettings;
pub use fragments::Fragment;
pub use health::{HEALTH_SERVICES, HealthSettings};
pub use paths::{HealthPaths, Paths};
pub use publish::{DEFAULT_VALIDITY as DEFAULT_PUBLISH_VALIDITY, PublishSettings};
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settings {
    /// `[aws]`
    pub aws: AwsSettings,
    /// `[accounts]`
    pub accounts: AccountsSettings,
    /// `[health]`
    pub health: HealthSettings,
    /// `[audit]`
    pub audit: AuditSettings,
    /// `[paths]`
    pub paths: Paths,
    /// `[publish]` (the `publish` command only)
    pub publish: PublishSettings,
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
    aws::resolve(&mut r, &mut s.aws);
    accounts::resolve(&mut r, &mut s.accounts);
    paths::resolve(&mut r, &mut s.paths);
    health::resolve(&mut r, &mut s.health);
    audit::resolve(&mut r, &mut s.audit);
    publish::resolve(&mut r, &mut s.publish);
    s
}

/// A key's value as written (booleans, enums).
fn as_is<T: Copy>(p: &Picked<T>) -> Result<T, String> {
    Ok(p.value)
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
