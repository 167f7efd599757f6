//! STS `GetCallerIdentity`: proves the credentials work with a signed request, and its response's
//! `Date` header measures this host's clock against AWS's.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

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

/// A failed `GetCallerIdentity`: its kind and the rendered error.
pub type Failure = super::fault::CallError;

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
/// Calls `GetCallerIdentity` (no permission needed) and reads the response's `Date`.
pub async fn caller_identity(client: &aws_sdk_sts::Client) -> Result<CallerIdentity, Failure> {
    let date = DateHeader::default();
    let out = client
        .get_caller_identity()
        .customize()
        .interceptor(date.clone())
        .send()
        .await
        .map_err(|e| Failure::from_sdk(&e))?;
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
    use crate::aws::fault::Fault;
    use aws_credential_types::provider::error::CredentialsError;

    #[test]
    fn http_dates() {
        let t = parse_http_date("Sun, 29 Nov 2026 17:44:49 GMT").unwrap();
        assert_eq!(crate::clock::rfc3339(t), "2026-11-29T17:44:49Z");
        assert!(parse_http_date("yesterday").is_none());
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
        assert_eq!(e.fault, Fault::NoCredentials, "{e:?}");
    }

    /// Serves one canned HTTP answer to every connection on a loopback port.
    async fn answering(status: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    async fn call(url: &str) -> Failure {
        let conf = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .build();
        caller_identity(&aws_sdk_sts::Client::from_conf(conf))
            .await
            .unwrap_err()
    }

    fn error_xml(code: &str) -> String {
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>m</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
        )
    }

    #[tokio::test]
    async fn every_kind_of_failure_of_a_real_sdk_call_is_classified() {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let cases: Vec<(&str, &str, Fault)> = vec![
            (
                "400 Bad Request",
                leak(error_xml("Throttling")),
                Fault::Aws {
                    code: "Throttling".into(),
                    status: 400,
                },
            ),
            (
                "403 Forbidden",
                leak(error_xml("AccessDenied")),
                Fault::Aws {
                    code: "AccessDenied".into(),
                    status: 403,
                },
            ),
            (
                "502 Bad Gateway",
                "<html>proxy error</html>",
                Fault::Http(502),
            ),
            ("200 OK", "not xml at all", Fault::Garbled),
        ];
        for (status, body, want) in cases {
            let e = call(&answering(status, body).await).await;
            assert_eq!(e.fault, want, "{status}: {e:?}");
        }
        assert!(
            call(&answering("400 Bad Request", leak(error_xml("Throttling"))).await)
                .await
                .fault
                .is_transient()
        );
        // Nothing listens on the discard port of loopback: refused.
        let refused = call("http://127.0.0.1:9").await;
        assert_eq!(refused.fault, Fault::Connect, "{refused:?}");
    }
}
