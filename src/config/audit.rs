//! `[audit]`: the audit capability. The keys, their defaults and their checks.

use std::time::Duration;

use serde::Serialize;

use super::fragments::DurationValue;
use super::{Picked, Resolver, as_is, duration_in, duration_str};

fragment! {
    /// `[audit]` as written: every key optional, with its span.
    AuditFragment {
        enabled: bool, sessions: bool, privilege: bool, transcript: bool,
        redact: Vec<String>, spool_max: String, rescan_interval: DurationValue,
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
    /// `transcript`; default false: the terminal stream, when the agent writes it (may hold
    /// secrets typed at the prompt).
    pub transcript: bool,
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
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            sessions: true,
            privilege: true,
            transcript: false,
            redact: Vec::new(),
            spool_max: 1 << 30,
            rescan_interval: Duration::from_secs(5),
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

/// Resolves `[audit]` from the layers.
pub(super) fn resolve(r: &mut Resolver<'_>, s: &mut AuditSettings) {
    keys!(r, audit, s, {
        enabled => as_is,
        sessions => as_is,
        privilege => as_is,
        transcript => as_is,
        redact => patterns,
        spool_max => spool_size,
        rescan_interval => duration_in(Duration::from_secs(1), Duration::from_secs(300)),
    });
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
