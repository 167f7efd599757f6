//! The agent's log format, shared by the health capability (freshness, known failures) and the
//! audit capability (sessions refused for a missing Run As user).
//!
//! Format (seelog): `2026-11-29 09:10:28.1234 INFO [tags] message`, host local time without a
//! zone, four fractional digits since agent 3.3.808.0 and none before (both are accepted). A line
//! that does not start with a timestamp continues the previous record (SDK errors span lines).

use std::time::SystemTime;

use chrono::TimeZone;

/// The log file's name.
pub const LOG_FILE: &str = "amazon-ssm-agent.log";

/// One log record (first line and its continuation lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When (host local time, converted).
    pub time: SystemTime,
    /// `INFO`, `ERROR`, …
    pub level: String,
    /// The message, continuation lines joined with `\n`.
    pub message: String,
}

/// Parses the timestamp and level at the start of a line.
pub(crate) fn parse_head(line: &str) -> Option<(SystemTime, String, &str)> {
    let b = line.as_bytes();
    // The first 20 bytes must be ASCII for the slicing below (a continuation line may hold
    // anything).
    if b.len() < 20
        || !b[..20].is_ascii()
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // `hibernate.log` of current agents: `%UTCDateT%UTCTimeZ` (2026-04-08T06:40:12Z), in UTC.
    if b[10] == b'T' && b[19] == b'Z' {
        let naive = chrono::NaiveDateTime::parse_from_str(&line[..19], "%Y-%m-%dT%H:%M:%S").ok()?;
        let rest = line[20..].trim_start();
        let (level, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        return is_level(level)
            .then(|| (SystemTime::from(naive.and_utc()), level.to_string(), msg));
    }
    if b[10] != b' ' {
        return None;
    }
    let (stamp, rest) = match line[19..].strip_prefix('.') {
        Some(frac) => {
            let digits = frac.chars().take_while(char::is_ascii_digit).count();
            (&line[..20 + digits], &line[20 + digits..])
        }
        None => (&line[..19], &line[19..]),
    };
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let time = chrono::Local.from_local_datetime(&naive).earliest()?;
    let rest = rest.trim_start();
    let (level, msg) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_level(level) {
        return None;
    }
    Some((SystemTime::from(time), level.to_string(), msg))
}

fn is_level(s: &str) -> bool {
    matches!(
        s,
        "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" | "CRITICAL"
    )
}

/// Splits text into records; a continuation line before the first record is dropped.
pub fn parse(text: &str) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for line in text.lines() {
        match parse_head(line) {
            Some((time, level, msg)) => out.push(Record {
                time,
                level,
                message: msg.to_string(),
            }),
            None => {
                if let Some(last) = out.last_mut() {
                    last.message.push('\n');
                    last.message.push_str(line);
                }
            }
        }
    }
    out
}
