//! `[aws]`: how to reach AWS. The keys, their defaults and their checks.

use std::time::Duration;

use serde::Serialize;

use super::fragments::DurationValue;
use super::{Picked, Resolver, duration_in, duration_str, endpoint, in_range};

fragment! {
    /// `[aws]` as written: every key optional, with its span.
    AwsFragment {
        region: String, endpoint_url: String, imds_endpoint: String,
        call_timeout: DurationValue, max_attempts: u32,
    }
}

/// `[aws]`: how to reach AWS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwsSettings {
    /// `region`; default "" = from IMDSv2 (then `AWS_REGION`).
    pub region: String,
    /// `endpoint_url`; default "" = the SDK's own (`AWS_ENDPOINT_URL` is honoured too).
    pub endpoint_url: String,
    /// `imds_endpoint`; default "" = the SDK's own (`AWS_EC2_METADATA_SERVICE_ENDPOINT` is
    /// honoured too).
    pub imds_endpoint: String,
    /// `call_timeout`; default "20s": deadline of one AWS call including its retries.
    #[serde(with = "duration_str")]
    pub call_timeout: Duration,
    /// `max_attempts`; default 3: attempts per AWS call (standard retry mode, jittered backoff).
    pub max_attempts: u32,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: String::new(),
            endpoint_url: String::new(),
            imds_endpoint: String::new(),
            call_timeout: Duration::from_secs(20),
            max_attempts: 3,
        }
    }
}

fn region(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim();
    if v.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` is not a region name (like `eu-west-1`); leave it empty to read it from IMDSv2"
        ))
    }
}

/// Resolves `[aws]` from the layers.
pub(super) fn resolve(r: &mut Resolver<'_>, s: &mut AwsSettings) {
    keys!(r, aws, s, {
        region => region,
        endpoint_url => endpoint,
        imds_endpoint => endpoint,
        call_timeout => duration_in(Duration::from_secs(1), Duration::from_secs(600)),
        max_attempts => in_range(1, 10, "attempts"),
    });
}
