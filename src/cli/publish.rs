//! `ssm-companion publish [--dry-run] [--allow-empty] [--account ID]... [--json]`.

use super::{Cli, Error, ExitCode, PublishArgs, block_on, exit, load, out, outln};
use crate::accounts::mapping::publisher::{self, Options};
use crate::aws::Aws;
use crate::clock::{Clock, SystemClock};

/// Publishes (or shows, dry) every target account's mapping.
pub(super) fn run(cli: &Cli, a: &PublishArgs) -> Result<ExitCode, Error> {
    let settings = load(cli)?.settings;
    let mut p = settings.publish;
    let aws_settings = settings.aws;
    if !a.accounts.is_empty() {
        for id in &a.accounts {
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Usage(format!(
                    "--account {id}: not an AWS account id (12 digits)"
                )));
            }
        }
        p.accounts = a.accounts.clone();
        // Only these: no discovery.
        p.organizations = false;
    }
    let opts = Options {
        dry_run: a.dry_run,
        allow_empty: a.allow_empty,
    };
    publisher::check(&p, opts).map_err(Error::Publish)?;
    let report = block_on(async {
        let aws = Aws::load(&aws_settings).await;
        match aws.sdk() {
            Some(sdk) => publisher::run(sdk, &p, opts, SystemClock.now()).await,
            None => Err(aws.sdk.err().map(|e| e.to_string()).unwrap_or_default()),
        }
    })?
    .map_err(Error::Publish)?;
    if a.json {
        outln(serde_json::to_string_pretty(&report).unwrap_or_default())?;
    } else {
        out(publisher::text(&report))?;
    }
    Ok(if report.has_problems() {
        exit::FAILURE
    } else {
        exit::OK
    })
}
