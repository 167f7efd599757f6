//! `ssm-companion version [--json]`.

use super::{Error, ExitCode, exit, outln};

/// Prints the version, the target and the git description.
pub(super) fn run(json: bool) -> Result<ExitCode, Error> {
    let target = env!("SSM_COMPANION_TARGET");
    if json {
        outln(serde_json::json!({
            "schema": "ssm-companion/version/v1",
            "version": env!("CARGO_PKG_VERSION"),
            "full": crate::VERSION,
            "target": target,
        }))?;
    } else {
        outln(format_args!(
            "ssm-companion {}\ntarget: {target}",
            crate::VERSION
        ))?;
    }
    Ok(exit::OK)
}
