//! Systems Manager calls shared by the capabilities.

use serde::Deserialize;

use super::fault::{CallError, Fault};

/// The Session Manager preferences document.
pub const PREFERENCES_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// Session Manager preferences that matter for Run As.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunAsPreferences {
    /// `runAsEnabled`.
    pub enabled: bool,
    /// `runAsDefaultUser`, when set.
    pub default_user: Option<String>,
}

/// The permission [`session_preferences`] needs.
pub const PREFERENCES_PERMISSION: &str = "ssm:GetDocument on SSM-SessionManagerRunShell";

/// Reads `runAsEnabled`/`runAsDefaultUser`. `Ok(None)` when the document does not exist. The
/// error says what kind of failure it was, so callers name the permission only when it is the
/// permission that is missing.
pub async fn session_preferences(
    client: &aws_sdk_ssm::Client,
) -> Result<Option<RunAsPreferences>, CallError> {
    let doc = match client
        .get_document()
        .name(PREFERENCES_DOCUMENT)
        .send()
        .await
    {
        Ok(d) => d,
        Err(e) => {
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_document())
            {
                return Ok(None);
            }
            let mut err = CallError::from_sdk(&e);
            err.message = format!(
                "cannot read the Session Manager preferences (SSM GetDocument {PREFERENCES_DOCUMENT}): {}",
                err.message
            );
            return Err(err);
        }
    };
    parse_preferences(doc.content().unwrap_or_default())
        .map(Some)
        .map_err(|message| CallError {
            fault: Fault::BadContent,
            message,
        })
}

/// Parses the preferences document content (JSON).
pub fn parse_preferences(content: &str) -> Result<RunAsPreferences, String> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        inputs: Inputs,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Inputs {
        #[serde(default)]
        run_as_enabled: Option<serde_json::Value>,
        #[serde(default)]
        run_as_default_user: Option<String>,
    }
    let doc: Doc = serde_json::from_str(content)
        .map_err(|e| format!("the {PREFERENCES_DOCUMENT} document is not valid JSON: {e}"))?;
    let enabled = match doc.inputs.run_as_enabled {
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    Ok(RunAsPreferences {
        enabled,
        default_user: doc.inputs.run_as_default_user.filter(|u| !u.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_parse() {
        let p = parse_preferences(
            r#"{"schemaVersion":"1.0","inputs":{"runAsEnabled":true,"runAsDefaultUser":"ops"}}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            RunAsPreferences {
                enabled: true,
                default_user: Some("ops".into())
            }
        );
        let p = parse_preferences(r#"{"inputs":{"runAsEnabled":"false","runAsDefaultUser":""}}"#)
            .unwrap();
        assert_eq!(
            p,
            RunAsPreferences {
                enabled: false,
                default_user: None
            }
        );
        assert!(parse_preferences("not json").is_err());
    }
}
