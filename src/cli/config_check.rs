//! `ssm-companion config check [--json]`: the configuration as the daemon would load it, with
//! every problem (exit 78), never a half-valid result.

use super::{Cli, Error, ExitCode, exit, note, out, outln};
use crate::config::{self, LoadOptions};

/// Validates the merged configuration strictly (unknown keys are errors) and prints it.
pub(super) fn run(cli: &Cli, json: bool) -> Result<ExitCode, Error> {
    let opts = LoadOptions::new(cli.config.as_deref(), true);
    let result = config::load(&opts);
    if json {
        let (valid, files, settings, issues) = match &result {
            Ok(l) => (
                true,
                l.files.clone(),
                serde_json::to_value(&l.settings).ok(),
                l.warnings.clone(),
            ),
            Err(e) => (
                false,
                config::config_files(&opts).unwrap_or_default(),
                None,
                e.issues.clone(),
            ),
        };
        let issues: Vec<_> = issues
            .iter()
            .map(|i| {
                serde_json::json!({
                    "severity": match i.severity {
                        config::Severity::Error => "error",
                        config::Severity::Warning => "warning",
                    },
                    "file": i.location.file, "line": i.location.line, "column": i.location.column,
                    "key": i.key, "message": i.message,
                })
            })
            .collect();
        outln(
            serde_json::to_string_pretty(&serde_json::json!({
                "schema": "ssm-companion/config-check/v1",
                "valid": valid,
                "files": files,
                "issues": issues,
                "settings": settings,
            }))
            .unwrap_or_default(),
        )?;
        return Ok(if valid { exit::OK } else { exit::CONFIG });
    }
    match result {
        Ok(l) => {
            for w in &l.warnings {
                note(format_args!("warning: {w}"));
            }
            let mut text = String::from("# Configuration is valid. Files read, in order:\n");
            if l.files.is_empty() {
                text.push_str("#   (none: built-in defaults)\n");
            }
            for f in &l.files {
                text.push_str(&format!("#   {}\n", f.display()));
            }
            text.push_str("# Effective settings:\n\n");
            text.push_str(&l.settings.to_toml());
            out(text)?;
            Ok(exit::OK)
        }
        Err(e) => {
            note(&e);
            Ok(exit::CONFIG)
        }
    }
}
