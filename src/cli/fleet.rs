//! `ssm-companion fleet health [--json] [--stale-after]`: the fleet, from SSM Inventory.

use std::time::Duration;

use super::{Cli, Error, ExitCode, block_on, load, out, outln};
use crate::aws::Aws;
use crate::clock::{Clock, SystemClock};
use crate::health::fleet;

/// Reads every instance's report; the exit status is the worst status.
pub(super) fn health(cli: &Cli, json: bool, stale_after: Duration) -> Result<ExitCode, Error> {
    let settings = load(cli)?.settings;
    let mut view = block_on(async {
        let aws = Aws::load(&settings.aws).await;
        match aws.sdk() {
            Some(sdk) => fleet::read(&crate::aws::clients::ssm(sdk)).await,
            None => Err(aws.sdk.err().map(|e| e.to_string()).unwrap_or_default()),
        }
    })?
    .map_err(Error::Fleet)?;
    fleet::mark_stale(&mut view, SystemClock.now(), stale_after);
    if json {
        outln(fleet::json(&view))?;
    } else {
        out(fleet::text(&view))?;
    }
    Ok(view.worst().exit_code())
}
