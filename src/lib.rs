//! ssm-companion: the companion daemon of amazon-ssm-agent.
//!
//! Capabilities (`accounts`, `health`, later `audit`) never import each other; they share the
//! modules below and are wired together by [`daemon`] and [`cli`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Compiled-in crash points for tests (`--features failpoints`): `failpoint!("create:{user}:after")`
/// kills the process with SIGKILL when `SSM_COMPANION_FAILPOINT` names that point. Without the
/// feature it expands to nothing.
macro_rules! failpoint {
    ($($arg:tt)*) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoints::hit(&format!($($arg)*));
    };
}
pub(crate) use failpoint;

/// The accounts capability: local accounts in step with `SSMSessionRunAs`.
pub mod accounts;
/// The agent's log format (records, timestamps), shared by health and audit.
pub mod agent_log;
/// The audit capability: session events in a durable spool.
pub mod audit;
/// AWS plumbing: IMDSv2 identity, SDK configuration, error rendering.
pub mod aws;
/// The command line: parsing, dispatch, exit codes.
pub mod cli;
/// Wall-clock time as a parameter.
pub mod clock;
/// Configuration files, drop-ins and validated settings.
pub mod config;
/// The daemon: supervisor, signals, systemd notification.
pub mod daemon;
/// Structured events (journald entries with a fixed MESSAGE_ID).
pub mod events;
/// The one subprocess runner.
pub mod exec;
/// Test crash points.
#[cfg(feature = "failpoints")]
pub mod failpoints;
/// Following appended and rolled log files, with offsets that survive a restart.
pub mod follow;
/// The health capability: amazon-ssm-agent installed, running, able to reach AWS; Run As ready.
pub mod health;
/// The least-privilege IAM policies for a configuration (`iam-policy`).
pub mod iam_policy;
/// tracing setup: stderr shaped for journald, structured events to the journal.
pub mod logging;
/// Lookups that can hang (DNS, users through NSS) on a small fixed pool of threads.
pub mod lookup;
/// The user and group name rule, and the names that belong to the system.
pub mod names;
/// Scanning `/proc`: processes, their UIDs, state and executable.
pub mod procfs;
/// Terminal-safe text and aligned tables for every report.
pub mod render;
/// The public keys that verify the fleet mapping (neutral).
pub mod signing;
/// The state directory and atomic file writes.
pub mod state;
/// Parsers for system files read by more than one module (login.defs, subuid/subgid).
pub mod sysfiles;

/// The version string: the crate version plus the git description baked in by build.rs.
pub const VERSION: &str = env!("SSM_COMPANION_VERSION");
