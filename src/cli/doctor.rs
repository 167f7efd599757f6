//! `ssm-companion doctor [--json] [--fix]`: every health check once.

use super::{Cli, Error, ExitCode, block_on, load, note, out, outln, require_root};
use crate::clock::{Clock, SystemClock};
use crate::health;

/// Runs every check (and a safe fix with `--fix`, then every check again); the exit status is
/// the worst status, as a monitoring plugin's.
pub(super) fn run(cli: &Cli, json: bool, fix: bool) -> Result<ExitCode, Error> {
    let settings = load(cli)?.settings;
    // As another user most checks could only say "permission denied": refuse, as UNKNOWN.
    require_root(
        "`doctor`",
        "the agent's state (/var/lib/amazon/ssm, mode 0700) and its process environment are root's",
        health::Status::Unknown.exit_code(),
    )?;
    let report = block_on(async {
        let aws = health::load_aws(&settings).await;
        let clock = SystemClock;
        let mut report = health::doctor(&settings, &aws, clock.now()).await;
        if fix && let Some(outcome) = health::fix::remediate(&settings, &report, &clock).await {
            note(&outcome);
            report = health::doctor(&settings, &aws, clock.now()).await;
        }
        report
    })?;
    if json {
        outln(health::report::json(&report))?;
    } else {
        out(health::report::text(&report))?;
    }
    Ok(report.overall.exit_code())
}
