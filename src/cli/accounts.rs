//! `ssm-companion accounts plan|apply|list`.

use super::{Cli, Error, ExitCode, block_on, exit, load, must_be_root, out, outln};
use crate::accounts::{self, Mode, report};
use crate::aws::Aws;
use crate::clock::SystemClock;

/// `accounts list [--json]`: the managed accounts, from the ledger.
pub(super) fn list(cli: &Cli, json: bool) -> Result<ExitCode, Error> {
    let loaded = load(cli)?;
    let rows = accounts::list(&loaded.settings)?;
    if json {
        outln(report::list_json(&rows))?;
    } else {
        out(report::list_text(&rows))?;
    }
    Ok(exit::OK)
}

/// `accounts plan` and `accounts apply`: one sync, shown or made.
pub(super) fn sync(cli: &Cli, mode: Mode, json: bool, detailed: bool) -> Result<ExitCode, Error> {
    let settings = load(cli)?.settings;
    // Both read the ledger (0600) and the sudoers drop-in (0440); apply runs shadow-utils.
    must_be_root(match mode {
        Mode::Plan => "`accounts plan`",
        Mode::Apply { .. } => "`accounts apply`",
    })?;
    let report = block_on(async {
        let aws = Aws::load(&settings.aws).await;
        accounts::sync(&settings, Some(&aws), &SystemClock, mode).await
    })??;
    if json {
        outln(report::sync_json(&report))?;
    } else {
        out(report::sync_text(&report))?;
    }
    Ok(match mode {
        Mode::Plan if detailed && report.plan.pending() => exit::CHANGES,
        Mode::Plan => exit::OK,
        Mode::Apply { .. } if report.converged() => exit::OK,
        Mode::Apply { .. } => exit::FAILURE,
    })
}
