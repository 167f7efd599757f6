//! Check results and the overall verdict (pure).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A check's verdict. The order is by severity for the overall verdict: critical > warning >
/// unknown > ok (a check that could not run hides nothing worse than a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but needs attention soon.
    Warning,
    /// Session Manager does not work, or will not soon.
    Critical,
    /// Could not be checked.
    Unknown,
}

impl Status {
    /// The monitoring-plugin exit code: 0 ok, 1 warning, 2 critical, 3 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    fn rank(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Unknown => 1,
            Status::Warning => 2,
            Status::Critical => 3,
        }
    }

    /// The worse of two.
    pub fn worst(self, other: Status) -> Status {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// The name as shown (`ok`, `warning`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Unknown => "unknown",
        }
    }

    /// Numeric value for metrics (0 ok, 1 warning, 2 critical, 3 unknown).
    pub fn value(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable id (`agent.service`, `endpoint.ssmmessages`, …), documented in docs/usage/health.md.
    pub id: String,
    /// Verdict.
    pub status: Status,
    /// One line: what was found.
    pub detail: String,
    /// One line: what to do (empty when ok).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remedy: String,
    /// What kind of failure it was, when a call or probe failed (`dns`, `tcp`, `proxy`, `tls`,
    /// `timeout`, `credentials`, `clock`, `aws:<code>`, `http:<status>`, …): checks that share
    /// a cause are reported under it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl CheckResult {
    /// A result.
    pub fn new(
        id: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            status,
            detail: detail.into(),
            remedy: remedy.into(),
            cause: None,
        }
    }

    /// The same result with the kind of failure that caused it.
    pub fn caused_by(mut self, fault: &crate::aws::fault::Fault) -> Self {
        self.cause = Some(fault.label());
        self
    }

    /// An ok result.
    pub fn ok(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(id, Status::Ok, detail, "")
    }
}

/// The overall verdict of a set of results.
pub fn overall(results: &[CheckResult]) -> Status {
    results
        .iter()
        .fold(Status::Ok, |acc, r| acc.worst(r.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_is_the_worst() {
        let r = |s| CheckResult::new("x", s, "", "");
        assert_eq!(overall(&[]), Status::Ok);
        assert_eq!(
            overall(&[r(Status::Ok), r(Status::Unknown)]),
            Status::Unknown
        );
        assert_eq!(
            overall(&[r(Status::Unknown), r(Status::Warning)]),
            Status::Warning
        );
        assert_eq!(
            overall(&[r(Status::Critical), r(Status::Warning), r(Status::Unknown)]),
            Status::Critical
        );
    }

    #[test]
    fn exit_codes_follow_the_monitoring_plugin_convention() {
        assert_eq!(
            [
                Status::Ok,
                Status::Warning,
                Status::Critical,
                Status::Unknown
            ]
            .map(Status::exit_code),
            [0, 1, 2, 3]
        );
    }
}
