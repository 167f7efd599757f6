//! What kind of failure a call to AWS met — DNS, TCP, the proxy, TLS, a timeout, missing
//! credentials, an HTTP status, an AWS error code. One classification for the SDK's errors and
//! for our own endpoint probes, so every check derives its remedy from the same facts instead of
//! guessing one remedy per call.

use std::error::Error;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

/// The kind of a failure on the way to AWS or from AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The name did not resolve.
    Dns,
    /// No TCP connection (refused, unreachable, reset) — to the endpoint, or to the proxy when
    /// one is used.
    Connect,
    /// The proxy refused or failed the `CONNECT`.
    Proxy,
    /// The TLS handshake failed (an inspecting proxy or firewall, a wrong CA, a bad certificate).
    Tls,
    /// Nothing answered in time.
    Timeout,
    /// No AWS configuration to call with (no region).
    NoConfig,
    /// No credentials could be loaded.
    NoCredentials,
    /// AWS rejected the request's time: this host's clock is off.
    RequestTime,
    /// An AWS error code, with the HTTP status.
    Aws {
        /// The error code (`AccessDeniedException`, `ThrottlingException`, …).
        code: String,
        /// The HTTP status.
        status: u16,
    },
    /// An HTTP status without an AWS error in the body (a proxy's page, a load balancer).
    Http(u16),
    /// A success status with a body that is not the operation's answer.
    Garbled,
    /// AWS answered, but what the answer holds is unusable (a document that is not valid).
    BadContent,
    /// Anything else.
    Other,
}

/// Codes AWS services use when a caller exceeds its rate.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
];

/// Codes that say the caller lacks a permission.
const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
];

/// Codes that say the credentials themselves are bad (unknown key, expired session, bad
/// signature for a reason other than time).
const BAD_CREDENTIALS: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];

impl Fault {
    /// A short, stable name (`dns`, `tcp`, `proxy`, `tls`, `timeout`, `config`, `credentials`, `clock`,
    /// `aws:<code>`, `http:<status>`, `garbled`, `content`, `other`): the `cause` of a check in JSON.
    pub fn label(&self) -> String {
        match self {
            Fault::Dns => "dns".into(),
            Fault::Connect => "tcp".into(),
            Fault::Proxy => "proxy".into(),
            Fault::Tls => "tls".into(),
            Fault::Timeout => "timeout".into(),
            Fault::NoConfig => "config".into(),
            Fault::NoCredentials => "credentials".into(),
            Fault::RequestTime => "clock".into(),
            Fault::Aws { code, .. } => format!("aws:{code}"),
            Fault::Http(s) => format!("http:{s}"),
            Fault::Garbled => "garbled".into(),
            Fault::BadContent => "content".into(),
            Fault::Other => "other".into(),
        }
    }

    /// AWS asked the caller to slow down (a code, or HTTP 429).
    pub fn is_throttling(&self) -> bool {
        match self {
            Fault::Aws { code, status } => THROTTLING.contains(&code.as_str()) || *status == 429,
            Fault::Http(s) => *s == 429,
            _ => false,
        }
    }

    /// AWS failed on its side (an AWS error with HTTP 5xx that is not throttling; a bare 5xx
    /// without an AWS error is more likely a proxy's or load balancer's).
    pub fn is_server_side(&self) -> bool {
        !self.is_throttling() && matches!(self, Fault::Aws { status, .. } if *status >= 500)
    }

    /// The caller lacks a permission.
    pub fn is_access_denied(&self) -> bool {
        matches!(self, Fault::Aws { code, .. } if ACCESS_DENIED.contains(&code.as_str()))
    }

    /// The credentials are invalid or expired.
    pub fn is_bad_credentials(&self) -> bool {
        matches!(self, Fault::Aws { code, .. } if BAD_CREDENTIALS.contains(&code.as_str()))
    }

    /// Passes again by itself (throttling, AWS's own trouble): a warning, not critical.
    pub fn is_transient(&self) -> bool {
        self.is_throttling() || self.is_server_side()
    }
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

/// Classifies an SDK call's error.
pub fn classify<E>(e: &SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + Error + 'static,
{
    if chain_has::<CredentialsError>(e) {
        return Fault::NoCredentials;
    }
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            if se.raw().status().is_success() {
                Fault::Garbled
            } else if is_request_time_error(e.code(), e.message()) {
                Fault::RequestTime
            } else {
                match e.code() {
                    Some(code) if !code.is_empty() => Fault::Aws {
                        code: code.to_string(),
                        status,
                    },
                    _ => Fault::Http(status),
                }
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status();
            if status.is_success() {
                Fault::Garbled
            } else {
                Fault::Http(status.as_u16())
            }
        }
        SdkError::TimeoutError(_) => Fault::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => Fault::Timeout,
        _ => transport(e),
    }
}

/// Classifies a transport failure from its chain of causes: DNS, TLS, then the socket's own
/// error kind.
pub fn transport(e: &(dyn Error + 'static)) -> Fault {
    let mut text = String::new();
    let mut cur = Some(e);
    let mut io_kind = None;
    let mut tls = false;
    while let Some(c) = cur {
        text.push_str(&c.to_string().to_ascii_lowercase());
        text.push('\n');
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        tls |= c.downcast_ref::<rustls::Error>().is_some();
        cur = c.source();
    }
    // hyper-util's resolver says "dns error"; getaddrinfo's own words follow it.
    if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
        || text.contains("temporary failure in name resolution")
    {
        return Fault::Dns;
    }
    if tls || text.contains("invalid peer certificate") || text.contains("tls handshake") {
        return Fault::Tls;
    }
    use std::io::ErrorKind as K;
    match io_kind {
        Some(K::TimedOut) => Fault::Timeout,
        Some(
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::AddrNotAvailable,
        ) => Fault::Connect,
        _ if text.contains("connection refused") || text.contains("unreachable") => Fault::Connect,
        _ if text.contains("timed out") => Fault::Timeout,
        _ => Fault::Other,
    }
}

fn chain_has<T: Error + 'static>(e: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<T>().is_some() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// A failed call: its kind and its rendered error (with the request id when AWS answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// What kind of failure.
    pub fault: Fault,
    /// The rendered error.
    pub message: String,
}

impl CallError {
    /// From an SDK error.
    pub fn from_sdk<E>(e: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + Error + 'static,
    {
        Self {
            fault: classify(e),
            message: super::sdk_error(e),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<dyn Error + Send + Sync>>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn chain(top: &'static str, inner: Box<dyn Error + Send + Sync>) -> Wrap {
        Wrap(top, Some(inner))
    }

    #[test]
    fn transport_failures_are_told_apart_by_their_causes() {
        let io = |k| Box::new(std::io::Error::from(k)) as Box<dyn Error + Send + Sync>;
        // The words hyper-util and getaddrinfo use for DNS.
        let dns = chain(
            "io error",
            Box::new(Wrap(
                "dns error",
                Some(Box::new(Wrap(
                    "failed to lookup address information: Name or service not known",
                    None,
                ))),
            )),
        );
        assert_eq!(transport(&dns), Fault::Dns);
        let refused = chain(
            "error trying to connect",
            io(std::io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(transport(&refused), Fault::Connect);
        let timeout = chain("error trying to connect", io(std::io::ErrorKind::TimedOut));
        assert_eq!(transport(&timeout), Fault::Timeout);
        let tls = chain(
            "io error",
            Box::new(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        );
        assert_eq!(transport(&tls), Fault::Tls);
        assert_eq!(transport(&Wrap("something odd", None)), Fault::Other);
    }

    #[test]
    fn codes_say_whether_to_wait_grant_or_fix_credentials() {
        let aws = |code: &str, status| Fault::Aws {
            code: code.into(),
            status,
        };
        assert!(aws("ThrottlingException", 400).is_throttling());
        assert!(aws("Throttling", 400).is_transient());
        assert!(Fault::Http(429).is_throttling());
        assert!(aws("InternalFailure", 500).is_server_side());
        assert!(!Fault::Http(502).is_server_side());
        assert!(aws("ServiceUnavailable", 503).is_transient());
        assert!(!aws("ThrottlingException", 400).is_server_side());
        assert!(aws("AccessDeniedException", 400).is_access_denied());
        assert!(aws("AccessDenied", 403).is_access_denied());
        assert!(!aws("AccessDenied", 403).is_transient());
        assert!(aws("ExpiredToken", 403).is_bad_credentials());
        assert!(!Fault::Dns.is_transient());
        assert_eq!(aws("AccessDenied", 403).label(), "aws:AccessDenied");
        assert_eq!(Fault::Http(502).label(), "http:502");
        assert_eq!(Fault::Dns.label(), "dns");
    }

    #[test]
    fn request_time_errors() {
        assert!(is_request_time_error(Some("RequestExpired"), None));
        assert!(is_request_time_error(
            Some("SignatureDoesNotMatch"),
            Some("Signature expired: 20261129T174449Z is now earlier than 20261129T180000Z")
        ));
        assert!(!is_request_time_error(
            Some("SignatureDoesNotMatch"),
            Some("The request signature we calculated does not match")
        ));
    }
}
