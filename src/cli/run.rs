//! `ssm-companion run`: the daemon (the systemd service).

use std::sync::Arc;

use super::{Cli, Error, ExitCode, exit, load, must_be_root, runtime};
use crate::clock::SystemClock;
use crate::config::LoadOptions;

/// Runs the daemon until SIGTERM/SIGINT.
pub(super) fn run(cli: &Cli) -> Result<ExitCode, Error> {
    let opts = LoadOptions::new(cli.config.as_deref(), false);
    let loaded = load(cli)?;
    must_be_root("`run`")?;
    runtime()?.block_on(crate::daemon::run(opts, loaded, Arc::new(SystemClock)))?;
    Ok(exit::OK)
}
