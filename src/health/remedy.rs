//! What to do about a failed call or probe, derived from the kind of failure (DNS, TCP, the
//! proxy, TLS, a timeout, credentials, the clock, an HTTP status, an AWS error code) — one
//! mapping for every network check, so a DNS failure never gets a permission remedy and a
//! throttled call is not called broken.

use super::model::Status;
use crate::aws::fault::Fault;

/// What the failed call was: the endpoint it goes to, and the permission it needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call<'a> {
    /// The service's endpoint check (`ssm`, `sts`, …): `endpoint.<service>` shows the path.
    pub service: &'a str,
    /// The IAM permission the call needs (`ssm:GetDocument on SSM-SessionManagerRunShell`),
    /// when it needs one.
    pub permission: Option<&'a str>,
    /// The proxy the connection went through, when one was used.
    pub proxy: Option<&'a str>,
}

/// The remedy for a failure of this kind.
pub fn remedy(f: &Fault, call: &Call<'_>) -> String {
    let path = format!("endpoint.{} shows which step fails", call.service);
    match f {
        Fault::Dns => "check the VPC's DNS resolution (enableDnsSupport), the resolver, and for private subnets an interface VPC endpoint with private DNS".into(),
        Fault::Connect => match call.proxy {
            Some(p) => format!(
                "the proxy {p} does not accept connections: start it, or correct the proxy the agent uses (https_proxy)"
            ),
            None => "allow outbound HTTPS (443) in security groups and network ACLs, through a NAT gateway or a VPC endpoint".into(),
        },
        Fault::Proxy => "check the proxy the agent uses (https_proxy) and that it allows CONNECT to AWS endpoints".into(),
        Fault::Tls => "something between this host and AWS breaks TLS (an inspecting proxy or firewall); trust its CA (health.extra_ca_file) or exempt AWS endpoints".into(),
        Fault::Timeout => format!("nothing answered in time: {path}"),
        Fault::NoConfig => "set aws.region (on EC2, IMDS gives it)".into(),
        Fault::NoCredentials => "attach an instance profile (or set AWS credentials for the service)".into(),
        Fault::RequestTime => "fix time synchronisation (chrony/systemd-timesyncd; on EC2 169.254.169.123)".into(),
        f if f.is_throttling() => "AWS throttled the call: it passes by itself; if it persists, other callers in the account use up the API rate".into(),
        f if f.is_server_side() => "AWS failed on its side: retry later; see the AWS Health Dashboard".into(),
        f if f.is_access_denied() => match call.permission {
            Some(p) => format!("grant {p} to the instance profile's role"),
            None => "grant the permission named in the error to the instance profile's role".into(),
        },
        f if f.is_bad_credentials() => "the credentials are invalid or expired: check the instance profile (or the credentials configured for the service)".into(),
        Fault::Aws { code, .. } => format!("AWS refused the call ({code}): see the error's message"),
        Fault::Http(s) => format!(
            "something that is not AWS answered HTTP {s} (a proxy or firewall page?): {path}"
        ),
        Fault::Garbled => format!("the answer was not AWS's (a proxy or captive portal in the way?): {path}"),
        Fault::BadContent => "correct what the error names: AWS answered, but its content is unusable".into(),
        Fault::Other => path,
    }
}

/// The status of a failed check: `failing`, unless the failure passes by itself (throttling,
/// AWS's own trouble), which is a warning.
pub fn status(f: &Fault, failing: Status) -> Status {
    if f.is_transient() && failing == Status::Critical {
        Status::Warning
    } else {
        failing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(code: &str, status: u16) -> Fault {
        Fault::Aws {
            code: code.into(),
            status,
        }
    }

    #[test]
    fn each_kind_of_failure_has_its_own_remedy() {
        let call = Call {
            service: "ssm",
            permission: Some("ssm:GetDocument on SSM-SessionManagerRunShell"),
            proxy: None,
        };
        let r = |f: &Fault| remedy(f, &call);
        // A permission is named only when a permission is missing.
        assert!(r(&aws("AccessDeniedException", 400)).contains("grant ssm:GetDocument"));
        let kinds = [
            Fault::Dns,
            Fault::Connect,
            Fault::Proxy,
            Fault::Tls,
            Fault::Timeout,
            Fault::NoConfig,
            Fault::NoCredentials,
            Fault::RequestTime,
            aws("Throttling", 400),
            aws("InternalFailure", 500),
            aws("ExpiredToken", 403),
            aws("ValidationException", 400),
            Fault::Http(403),
            Fault::Garbled,
            Fault::BadContent,
        ];
        for f in &kinds {
            assert!(!r(f).contains("grant"), "{f:?}: {}", r(f));
        }
        assert!(r(&Fault::Dns).contains("DNS"));
        assert!(r(&Fault::Connect).contains("security groups"));
        assert!(r(&Fault::Tls).contains("TLS"));
        assert!(r(&Fault::RequestTime).contains("time synchronisation"));
        assert!(r(&aws("Throttling", 400)).contains("throttled"));
        assert!(r(&aws("ExpiredToken", 403)).contains("expired"));
        assert!(r(&Fault::Timeout).contains("endpoint.ssm"));
        assert!(r(&Fault::Http(502)).contains("HTTP 502"));
        // Every kind gets a remedy of its own.
        let all: std::collections::BTreeSet<String> = kinds.iter().map(r).collect();
        assert_eq!(all.len(), kinds.len());
    }

    #[test]
    fn a_dead_proxy_is_the_proxy_not_the_security_group() {
        let via = Call {
            service: "ssm",
            permission: None,
            proxy: Some("http://10.0.0.5:3128"),
        };
        let r = remedy(&Fault::Connect, &via);
        assert!(r.contains("proxy http://10.0.0.5:3128"), "{r}");
        assert!(!r.contains("security group"), "{r}");
    }

    #[test]
    fn throttling_and_aws_trouble_are_warnings_not_critical() {
        assert_eq!(
            status(&aws("Throttling", 400), Status::Critical),
            Status::Warning
        );
        assert_eq!(
            status(&aws("ServiceUnavailable", 503), Status::Critical),
            Status::Warning
        );
        assert_eq!(
            status(&aws("AccessDenied", 403), Status::Critical),
            Status::Critical
        );
        assert_eq!(status(&Fault::Dns, Status::Critical), Status::Critical);
        assert_eq!(status(&Fault::Dns, Status::Unknown), Status::Unknown);
    }
}
