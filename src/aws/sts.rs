//! STS `GetCallerIdentity`: proves the credentials work with a signed request, and its response's
//! `Date` header measures this host's clock against AWS's.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::error::ProvideErrorMetadata;

use super::sdk_error;
use crate::clock::{Clock, SystemClock};

/// Who the credentials belong to, and AWS's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The principal's ARN.
    pub arn: String,
    /// The account.
    pub account: String,
    /// The response's `Date` header, parsed.
    pub server_date: Option<SystemTime>,
    /// This host's clock when the response arrived (what `server_date` compares with).
    pub local_date: Option<SystemTime>,
}

/// Why `GetCallerIdentity` failed, as far as the health checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No credentials could be loaded (none configured, or the provider failed).
    NoCredentials,
    /// AWS rejected the request's time: the clock is off.
    RequestTime,
    /// Anything else (network, permissions, throttling, …).
    Other,
}

/// A failed `GetCallerIdentity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The rendered error.
    pub message: String,
}

/// Keeps the `Date` header of the response it sees, with this host's time of arrival.
#[derive(Debug, Clone, Default)]
struct DateHeader(Arc<Mutex<Option<(String, SystemTime)>>>);

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
            // Stamped on arrival: the check's own `now` may be seconds older after a slow call.
            let arrived = SystemClock.now();
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((d.to_string(), arrived));
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

/// Whether an error (or one of its causes) is a credentials provider's failure.
fn is_credentials_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Whether a service error says the request's time is off. AWS words it as `Signature expired:
/// … is now earlier than …` or `Signature not yet current: … is still later than …`
/// (`SignatureDoesNotMatch`), or with the codes `RequestExpired` / `RequestTimeTooSkewed`.
pub fn is_request_time_error(code: Option<&str>, message: Option<&str>) -> bool {
    matches!(code, Some("RequestExpired" | "RequestTimeTooSkewed"))
        || message.is_some_and(|m| {
            m.contains("Signature expired") || m.contains("Signature not yet current")
        })
}

/// Calls `GetCallerIdentity` (no permission needed) and reads the response's `Date`.
pub async fn caller_identity(client: &aws_sdk_sts::Client) -> Result<CallerIdentity, Failure> {
    let date = DateHeader::default();
    let out = client
        .get_caller_identity()
        .customize()
        .interceptor(date.clone())
        .send()
        .await
        .map_err(|e| {
            let kind = if is_credentials_error(&e) {
                FailureKind::NoCredentials
            } else if e.as_service_error().is_some() && is_request_time_error(e.code(), e.message())
            {
                FailureKind::RequestTime
            } else {
                FailureKind::Other
            };
            Failure {
                kind,
                message: sdk_error(&e),
            }
        })?;
    let stamped = date.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (server_date, local_date) = match stamped {
        Some((d, at)) => (parse_http_date(&d), Some(at)),
        None => (None, None),
    };
    Ok(CallerIdentity {
        arn: out.arn().unwrap_or_default().to_string(),
        account: out.account().unwrap_or_default().to_string(),
        server_date,
        local_date,
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

    #[test]
    fn request_time_errors() {
        assert!(is_request_time_error(
            Some("SignatureDoesNotMatch"),
            Some(
                "Signature expired: 20261129T100000Z is now earlier than 20261129T101000Z (20261129T102000Z - 10 min.)"
            )
        ));
        assert!(is_request_time_error(
            Some("SignatureDoesNotMatch"),
            Some(
                "Signature not yet current: 20261129T103000Z is still later than 20261129T102500Z"
            )
        ));
        assert!(is_request_time_error(Some("RequestExpired"), None));
        // A wrong secret key is not the clock.
        assert!(!is_request_time_error(
            Some("SignatureDoesNotMatch"),
            Some("The request signature we calculated does not match the signature you provided.")
        ));
    }

    #[derive(Debug)]
    struct NoCredentials;
    impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                CredentialsError::not_loaded("nothing configured"),
            ))
        }
    }

    #[tokio::test]
    async fn missing_credentials_are_recognised() {
        // Fails before any connection: the endpoint is never dialled.
        let conf = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(NoCredentials)
            .build();
        let e = caller_identity(&aws_sdk_sts::Client::from_conf(conf))
            .await
            .unwrap_err();
        assert_eq!(e.kind, FailureKind::NoCredentials, "{e:?}");
    }
}
