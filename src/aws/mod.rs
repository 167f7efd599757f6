//! AWS plumbing shared by the capabilities: IMDSv2 identity, SDK configuration, error rendering.
//!
//! - Region and instance identity come from IMDSv2 only: the SDK's IMDS client always fetches a
//!   session token first and has no IMDSv1 fallback. The same client (and token cache) feeds the
//!   instance-profile credentials of the default chain.
//! - Endpoints: `aws.endpoint_url` / `aws.imds_endpoint` in the config, else the SDK's standard
//!   environment variables (`AWS_ENDPOINT_URL`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
//! - Every call has a deadline (`aws.call_timeout`, covering its retries) and the standard retry
//!   mode (exponential backoff with full jitter, `aws.max_attempts`).

use std::time::Duration;

use aws_config::imds;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::operation::RequestId;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{ConnectorBuilder, tls};
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::config::AwsSettings;

pub mod fault;
pub mod logs;
pub mod s3;
pub mod ssm;
pub mod sts;

/// How long identity discovery may take in total (IMDS is link-local: it answers fast or not
/// at all, e.g. on premises).
const IMDS_DEADLINE: Duration = Duration::from_secs(6);

/// What IMDS says about this instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `meta-data/instance-id`, only when it is a well-formed EC2 instance id.
    pub instance_id: Option<String>,
    /// `meta-data/placement/region`.
    pub region: Option<String>,
    /// Why IMDS's answer for the instance id was not used (empty, malformed).
    pub instance_id_problem: Option<String>,
}

/// True for a well-formed EC2 instance id: `i-` and 8 or 17 lowercase hexadecimal digits.
///
/// The instance id binds the accounts ledger to the machine, so a garbled answer (an HTTP 200
/// with an empty or odd body from a broken proxy or metadata service) must never be taken for a
/// new instance: it would make every managed account look inherited.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Errors of the AWS plumbing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// IMDS could not be reached or refused us.
    #[error("instance metadata (IMDSv2) is not available: {0}")]
    Imds(String),
    /// No region from config, environment or IMDS.
    #[error(
        "no AWS region: set aws.region in the config or AWS_REGION, or run on EC2 with IMDSv2 reachable ({0})"
    )]
    NoRegion(String),
    /// A bad endpoint setting.
    #[error("invalid endpoint `{0}`: {1}")]
    Endpoint(String, String),
}

impl AwsError {
    /// A stable slug for scripts and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AwsError::Imds(_) => "imds-unavailable",
            AwsError::NoRegion(_) => "no-region",
            AwsError::Endpoint(..) => "invalid-endpoint",
        }
    }
}

/// A configured IMDS client (IMDSv2 only, short timeouts, token cached for 6 h).
pub fn imds_client(settings: &AwsSettings) -> Result<imds::Client, AwsError> {
    let mut b = imds::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .max_attempts(2)
        .token_ttl(Duration::from_secs(6 * 3600));
    if !settings.imds_endpoint.is_empty() {
        b = b
            .endpoint(&settings.imds_endpoint)
            .map_err(|e| AwsError::Endpoint(settings.imds_endpoint.clone(), e.to_string()))?;
    }
    Ok(b.build())
}

/// Reads the instance id and region from IMDSv2.
pub async fn identity(client: &imds::Client) -> Result<Identity, AwsError> {
    let fetch = async {
        let instance_id = client
            .get("/latest/meta-data/instance-id")
            .await
            .map_err(|e| AwsError::Imds(display_error(&e)))?;
        let region = client
            .get("/latest/meta-data/placement/region")
            .await
            .map_err(|e| AwsError::Imds(display_error(&e)))?;
        let instance_id = instance_id.as_ref().trim();
        let ok = is_instance_id(instance_id);
        Ok(Identity {
            instance_id: ok.then(|| instance_id.to_string()),
            region: Some(region.as_ref().trim().to_string()),
            instance_id_problem: (!ok).then(|| {
                format!(
                    "IMDS answered {:?} for meta-data/instance-id, which is not an EC2 instance id (i- and 8 or 17 hex digits): ignored, as if IMDS were unreachable",
                    instance_id.chars().take(64).collect::<String>()
                )
            }),
        })
    };
    match tokio::time::timeout(IMDS_DEADLINE, fetch).await {
        Ok(r) => r,
        Err(_) => Err(AwsError::Imds(format!(
            "no answer within {}s",
            IMDS_DEADLINE.as_secs()
        ))),
    }
}

/// The AWS account this instance runs in (`dynamic/instance-identity/document`'s `accountId`,
/// only when it is 12 digits); `None` off EC2 or when IMDS does not answer.
pub async fn account_id(client: &imds::Client) -> Option<String> {
    let doc = tokio::time::timeout(
        IMDS_DEADLINE,
        client.get("/latest/dynamic/instance-identity/document"),
    )
    .await
    .ok()?
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(doc.as_ref()).ok()?;
    v.get("accountId")
        .and_then(serde_json::Value::as_str)
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

/// The instance profile role attached (IMDS `iam/security-credentials/`) and its credentials'
/// `Expiration`; `(None, None)` when no role is attached.
pub async fn instance_profile(
    client: &imds::Client,
) -> Result<(Option<String>, Option<String>), String> {
    let fetch = async {
        let roles = match client
            .get("/latest/meta-data/iam/security-credentials/")
            .await
        {
            Ok(r) => r.as_ref().trim().to_string(),
            Err(e) => {
                let text = display_error(&e);
                // 404: no role attached.
                if text.contains("404") || text.to_lowercase().contains("not found") {
                    return Ok((None, None));
                }
                return Err(format!("IMDS iam/security-credentials: {text}"));
            }
        };
        let Some(role) = roles
            .lines()
            .next()
            .map(str::to_string)
            .filter(|r| !r.is_empty())
        else {
            return Ok((None, None));
        };
        let creds = client
            .get(format!("/latest/meta-data/iam/security-credentials/{role}"))
            .await
            .map_err(|e| format!("IMDS credentials of role {role}: {}", display_error(&e)))?;
        let v: serde_json::Value = serde_json::from_str(creds.as_ref())
            .map_err(|e| format!("IMDS credentials of role {role} are not JSON: {e}"))?;
        let expiration = v
            .get("Expiration")
            .and_then(|x| x.as_str())
            .map(str::to_string);
        Ok((Some(role), expiration))
    };
    match tokio::time::timeout(IMDS_DEADLINE, fetch).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "IMDS gave no answer within {}s",
            IMDS_DEADLINE.as_secs()
        )),
    }
}

/// `AWS_REGION` or `AWS_DEFAULT_REGION`.
pub fn env_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// The agent's credentials file on a hybrid host (`identity_config.json`'s `ShareFile` and
/// `ShareProfile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCredentials {
    /// The file.
    pub file: std::path::PathBuf,
    /// The profile in it (`default` when the agent names none).
    pub profile: String,
}

/// What amazon-ssm-agent knows that helps where IMDS does not answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentHints {
    /// The agent's region (its config, or the hybrid registration).
    pub region: Option<String>,
    /// The credentials the agent shares on a hybrid host.
    pub shared_credentials: Option<SharedCredentials>,
}

/// Everything a capability needs to call AWS.
#[derive(Debug, Clone)]
pub struct Aws {
    /// IMDS identity (empty off EC2).
    pub identity: Identity,
    /// Why IMDS identity is missing, if it is.
    pub imds_problem: Option<String>,
    /// The SDK configuration (region, credentials, endpoint, timeouts, retries), or why there is
    /// none (no region).
    pub sdk: Result<SdkConfig, AwsError>,
}

impl Aws {
    /// Reads the IMDSv2 identity and builds the SDK configuration: region from config,
    /// environment or IMDSv2; the default credential chain (with our IMDS client); the endpoint
    /// override; deadlines and retries. Never fails: what is missing is said in the fields.
    pub async fn load(settings: &AwsSettings) -> Self {
        Self::load_with_agent_hints(settings, AgentHints::default()).await
    }

    /// [`Aws::load`], with what amazon-ssm-agent itself uses on hybrid hosts: a last-resort
    /// region (where neither the config, the environment nor IMDS names one), and the
    /// credentials file it shares, used when IMDS gives no instance.
    pub async fn load_with_agent_hints(settings: &AwsSettings, hints: AgentHints) -> Self {
        let hint = hints.region;
        let imds = match imds_client(settings) {
            Ok(c) => c,
            Err(e) => {
                return Self {
                    identity: Identity::default(),
                    imds_problem: Some(e.to_string()),
                    sdk: Err(e),
                };
            }
        };
        let (identity, imds_problem) = match identity(&imds).await {
            Ok(id) => {
                let problem = id.instance_id_problem.clone();
                (id, problem)
            }
            Err(e) => (Identity::default(), Some(e.to_string())),
        };
        let region = Some(settings.region.clone())
            .filter(|r| !r.is_empty())
            .or_else(env_region)
            .or_else(|| identity.region.clone())
            .or(hint.filter(|r| !r.is_empty()));
        // Off EC2, a hybrid agent's credentials are those it shares (`Profile.ShareCreds`).
        let shared = hints
            .shared_credentials
            .filter(|_| identity.instance_id.is_none());
        let sdk = match region {
            Some(r) => Ok(sdk_config(settings, Region::new(r), imds, shared).await),
            None => Err(AwsError::NoRegion(
                imds_problem
                    .clone()
                    .unwrap_or_else(|| "IMDS gave no region".into()),
            )),
        };
        Self {
            identity,
            imds_problem,
            sdk,
        }
    }

    /// The SDK configuration, if there is one.
    pub fn sdk(&self) -> Option<&SdkConfig> {
        self.sdk.as_ref().ok()
    }
}

/// The SDK clients, built in one place from an [`SdkConfig`] (its region, credentials,
/// endpoint, timeouts and retries): a capability asks for a client here, never builds one.
pub mod clients {
    use aws_config::SdkConfig;

    /// IAM (`GetAccountAuthorizationDetails`).
    pub fn iam(sdk: &SdkConfig) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(sdk)
    }

    /// SSM (the Session Manager preferences, Inventory).
    pub fn ssm(sdk: &SdkConfig) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(sdk)
    }

    /// S3's configuration: path-style addressing when an endpoint is configured (an emulator, a
    /// VPC endpoint by address): `<bucket>.<host>` would not resolve there.
    fn s3_config(sdk: &SdkConfig) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some())
    }

    /// S3 (the audit objects, `publish`).
    pub fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(s3_config(sdk).build())
    }

    /// S3 with one attempt per call: for a caller that retries itself (the mapping's poll backs
    /// off with full jitter; the SDK's retries under it would multiply a throttled bucket's
    /// load).
    pub fn s3_single_attempt(sdk: &SdkConfig) -> aws_sdk_s3::Client {
        let conf = s3_config(sdk)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// KMS (`publish` signs the fleet mapping).
    pub fn kms(sdk: &SdkConfig) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(sdk)
    }

    /// CloudWatch Logs (the audit sink).
    pub fn logs(sdk: &SdkConfig) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(sdk)
    }

    /// STS (`GetCallerIdentity`).
    pub fn sts(sdk: &SdkConfig) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(sdk)
    }

    /// Organizations (`publish` lists the organization's accounts).
    pub fn organizations(sdk: &SdkConfig) -> aws_sdk_organizations::Client {
        aws_sdk_organizations::Client::new(sdk)
    }

    /// IAM Identity Center's administration API (`publish`: the instance, its attributes for
    /// access control, the account assignments).
    pub fn sso_admin(sdk: &SdkConfig) -> aws_sdk_ssoadmin::Client {
        aws_sdk_ssoadmin::Client::new(sdk)
    }

    /// IAM Identity Center's identity store (`publish`: users, their attributes, group members).
    pub fn identity_store(sdk: &SdkConfig) -> aws_sdk_identitystore::Client {
        aws_sdk_identitystore::Client::new(sdk)
    }
}

// aws-config's names for the profile-file types are deprecated aliases of aws-runtime's; they
// are the same types, and aws-runtime is not worth a direct dependency for two names.
#[allow(deprecated)]
async fn sdk_config(
    settings: &AwsSettings,
    region: Region,
    imds: imds::Client,
    shared: Option<SharedCredentials>,
) -> SdkConfig {
    let credentials = match shared {
        Some(s) => SharedCredentialsProvider::new(
            aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_files(
                    aws_config::profile::profile_file::ProfileFiles::builder()
                        .with_file(
                            aws_config::profile::profile_file::ProfileFileKind::Credentials,
                            s.file,
                        )
                        .build(),
                )
                .profile_name(s.profile)
                .build(),
        ),
        None => SharedCredentialsProvider::new(
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .region(region.clone())
                .imds_client(imds)
                .build()
                .await,
        ),
    };
    let attempt = settings.call_timeout / settings.max_attempts.max(1);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(settings.max_attempts)
                .with_initial_backoff(Duration::from_millis(500))
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(attempt.max(Duration::from_secs(1)))
                .operation_timeout(settings.call_timeout)
                .build(),
        );
    if !settings.endpoint_url.is_empty() {
        loader = loader.endpoint_url(&settings.endpoint_url);
    }
    loader
        .http_client(https_client(settings.call_timeout))
        .load()
        .await
}

/// The SDK's name resolution on [`crate::lookup`]'s fixed pool: a resolver that never answers
/// costs a call its deadline, never a blocking thread per call.
#[derive(Debug, Clone)]
struct PoolResolver(Duration);

impl ResolveDns for PoolResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move {
            crate::lookup::resolve(name, 0, self.0)
                .await
                .map_err(ResolveDnsError::new)
        })
    }
}

/// The SDK's default HTTPS client (hyper, rustls with aws-lc, the proxy from the environment),
/// resolving names through [`PoolResolver`].
fn https_client(timeout: Duration) -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut b = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        b.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.set_proxy_config(Some(ProxyConfig::from_env()));
        b.build_with_resolver(PoolResolver(timeout))
    })
}

/// Renders any error with its chain of causes, one after the other (the plain `Display` of SDK
/// errors hides them: "dispatch failure" alone says nothing).
pub fn display_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

/// `sdk` for a resource in `region` (a bucket, a log group, Identity Center) when the
/// configuration names one; empty: as it is.
pub fn in_region(sdk: SdkConfig, region: &str) -> SdkConfig {
    if region.is_empty() {
        sdk
    } else {
        sdk.into_builder()
            .region(Region::new(region.to_string()))
            .build()
    }
}

/// Every page of an SDK listing (`into_paginator().send()`: the SDK stops on a repeated
/// token), each call counted in `calls`; the first failed page ends it, named by `what`.
pub async fn all_pages<O, E>(
    mut pages: aws_smithy_async::future::pagination_stream::PaginationStream<
        Result<O, SdkError<E, HttpResponse>>,
    >,
    calls: &mut u32,
    what: &str,
) -> Result<Vec<O>, String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        *calls += 1;
        out.push(page.map_err(|e| format!("{what} failed: {}", sdk_error(&e)))?);
    }
    Ok(out)
}

/// The HTTP status of a failed call's answer, when one came (a 304 or 412 is an "error" to the
/// SDK: told apart by its status).
pub fn http_status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Renders an SDK call's error: for a service error its code, message, HTTP status and request
/// id (what AWS support asks for); otherwise the chain of causes (timeouts, DNS, TLS, …).
pub fn sdk_error<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        // A "service error" with a success status is an answer the SDK could not parse (empty,
        // garbled, not the operation's document): say so, with the parser's own words.
        SdkError::ServiceError(se) if se.raw().status().is_success() => format!(
            "the answer could not be parsed (HTTP {}, {} bytes{}): {}",
            se.raw().status().as_u16(),
            se.raw().body().bytes().map_or(0, <[u8]>::len),
            e.request_id()
                .map(|r| format!(", request id {r}"))
                .unwrap_or_default(),
            display_error(e)
        ),
        SdkError::ServiceError(se) => format!(
            "{}: {} (HTTP {}{})",
            e.code().unwrap_or("unknown error"),
            e.message().unwrap_or("no message"),
            se.raw().status().as_u16(),
            e.request_id()
                .map(|r| format!(", request id {r}"))
                .unwrap_or_default()
        ),
        _ => display_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_instance_ids_are_accepted() {
        for ok in ["i-0123456789abcdef0", "i-12345678", "i-deadbeef"] {
            assert!(is_instance_id(ok), "{ok}");
        }
        for bad in [
            "",
            "i-",
            "i-123",
            "i-0123456789ABCDEF0",
            "i-0123456789abcdef",
            "i-0123456789abcdef01",
            "mi-0123456789abcdef0",
            "<html>",
            "i-0123456789abcdeg0",
            " i-12345678",
        ] {
            assert!(!is_instance_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn bad_imds_endpoint_is_named() {
        let s = AwsSettings {
            imds_endpoint: "not a url".into(),
            ..crate::config::Settings::default().aws
        };
        let err = imds_client(&s).unwrap_err();
        assert!(err.to_string().contains("not a url"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_imds_is_reported_not_hung() {
        // A closed port on loopback: connection refused, quickly.
        let s = AwsSettings {
            imds_endpoint: "http://127.0.0.1:9".into(),
            ..crate::config::Settings::default().aws
        };
        let c = imds_client(&s).unwrap();
        let err = identity(&c).await.unwrap_err();
        assert!(matches!(err, AwsError::Imds(_)), "{err}");
    }
}
