//! STS `GetCallerIdentity`: proves the credentials work with a signed request, and its response's
//! `Date` header measures this host's clock against AWS's.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::sdk_error;

/// Who the credentials belong to, and AWS's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The principal's ARN.
    pub arn: String,
    /// The account.
    pub account: String,
    /// The response's `Date` header, parsed.
    pub server_date: Option<SystemTime>,
}

/// Keeps the `Date` header of the response it sees.
#[derive(Debug, Clone, Default)]
struct DateHeader(Arc<Mutex<Option<String>>>);

impl Intercept for DateHeader {
    fn name(&self) -> &'static str {
        "ssm-companion/date-header"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(d) = context.response().headers().get("date") {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.to_string());
        }
        Ok(())
    }
}

/// Parses an HTTP date (`Sun, 29 Nov 2026 17:44:49 GMT`).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(SystemTime::from)
}

/// Calls `GetCallerIdentity` (no permission needed) and reads the response's `Date`.
pub async fn caller_identity(client: &aws_sdk_sts::Client) -> Result<CallerIdentity, String> {
    let date = DateHeader::default();
    let out = client
        .get_caller_identity()
        .customize()
        .interceptor(date.clone())
        .send()
        .await
        .map_err(|e| sdk_error(&e))?;
    let server_date = date
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_deref()
        .and_then(parse_http_date);
    Ok(CallerIdentity {
        arn: out.arn().unwrap_or_default().to_string(),
        account: out.account().unwrap_or_default().to_string(),
        server_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let t = parse_http_date("Sun, 29 Nov 2026 17:44:49 GMT").unwrap();
        assert_eq!(crate::clock::rfc3339(t), "2026-11-29T17:44:49Z");
        assert!(parse_http_date("yesterday").is_none());
    }
}
