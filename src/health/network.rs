//! Can this host reach the agent's endpoints? DNS (a private answer means a VPC endpoint), TCP,
//! and a real TLS handshake (a TCP connect alone passes where a middlebox breaks TLS), each with a
//! deadline, through the agent's proxy when it uses one. All endpoints are probed in parallel.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::agent::AgentConfig;
use super::model::{CheckResult, Status};
use super::proxy::{Proxy, parse_proxy_url, redact};
use crate::aws::fault::Fault;

/// The DNS domain of a region (reference/ssm-agent.md §9).
pub fn domain(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region.starts_with("us-isob-") {
        "sc2s.sgov.gov"
    } else if region.starts_with("us-iso-") {
        "c2s.ic.gov"
    } else if region.starts_with("eusc-de-") {
        "amazonaws.eu"
    } else {
        "amazonaws.com"
    }
}

/// The host name the agent uses for `service` in `region`, honouring the agent's endpoint
/// overrides and `Agent.ServiceDomain`.
pub fn host(service: &str, region: &str, agent: &AgentConfig) -> String {
    if let Some(e) = agent.endpoints.get(service) {
        let e = e.split("://").last().unwrap_or(e);
        let e = e.split('/').next().unwrap_or(e);
        return e.split(':').next().unwrap_or(e).to_string();
    }
    let d = agent.service_domain.as_deref().unwrap_or(domain(region));
    format!("{service}.{region}.{d}")
}

/// True for addresses only reachable inside a network (RFC 1918, unique local): an interface
/// VPC endpoint answers with one.
pub fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00 || v6.is_loopback(),
    }
}

/// TLS configuration: the system's roots plus an optional extra PEM file.
pub fn tls_config(extra_ca_file: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if !extra_ca_file.is_empty() {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(extra_ca_file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("health.extra_ca_file {extra_ca_file}: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "health.extra_ca_file {extra_ca_file} holds no certificate"
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("health.extra_ca_file {extra_ca_file}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Where a probe stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Name resolution.
    Dns,
    /// TCP connect (to the endpoint or the proxy).
    Tcp,
    /// The proxy refused the CONNECT.
    Proxy,
    /// TLS handshake.
    Tls,
}

impl Phase {
    /// The kind of failure a failed step is (a failed TCP connect through a proxy is a dead
    /// proxy: [`super::remedy`] says so from the probe's proxy).
    pub fn fault(self) -> Fault {
        match self {
            Phase::Dns => Fault::Dns,
            Phase::Tcp => Fault::Connect,
            Phase::Proxy => Fault::Proxy,
            Phase::Tls => Fault::Tls,
        }
    }

    /// How the step is named in a detail (`DNS`, `TCP`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "DNS",
            Phase::Tcp => "TCP",
            Phase::Proxy => "proxy CONNECT",
            Phase::Tls => "TLS",
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The host name.
    pub host: String,
    /// Resolved addresses.
    pub addrs: Vec<IpAddr>,
    /// The proxy used, if any.
    pub proxy: Option<String>,
    /// TCP connect time.
    pub tcp: Option<Duration>,
    /// TLS version and cipher suite, and handshake time.
    pub tls: Option<(String, String, Duration)>,
    /// The failure, if any.
    pub error: Option<(Phase, String)>,
}

/// `f` until `deadline`; on expiry the message names the probe's whole `budget` (every step of
/// a probe shares one deadline).
async fn bounded<T, E: std::fmt::Display>(
    deadline: tokio::time::Instant,
    budget: Duration,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(spent(budget)),
    }
}

fn spent(budget: Duration) -> String {
    format!(
        "timed out: the probe's {} were spent",
        humantime::format_duration(budget)
    )
}

/// `user:password` as Basic authentication wants it: the URL's percent-encoding undone in each
/// part (as Go's `net/http`, and so the agent, does), the `:` between them kept.
pub fn basic_credentials(userinfo: &str) -> Vec<u8> {
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut out: Vec<u8> = percent_encoding::percent_decode_str(user).collect();
    out.push(b':');
    out.extend(percent_encoding::percent_decode_str(pass));
    out
}

/// Connects to the first address that answers, all before `deadline`.
async fn connect_any(
    addrs: &[IpAddr],
    port: u16,
    deadline: tokio::time::Instant,
    budget: Duration,
) -> Result<TcpStream, String> {
    let attempt = async {
        let mut last = String::from("no address");
        for ip in addrs {
            match TcpStream::connect(SocketAddr::new(*ip, port)).await {
                Ok(s) => return Ok(s),
                Err(e) => last = format!("{ip}:{port}: {e}"),
            }
        }
        Err(last)
    };
    match tokio::time::timeout_at(deadline, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{}: {}",
            addrs
                .iter()
                .map(|a| format!("{a}:{port}"))
                .collect::<Vec<_>>()
                .join(", "),
            spent(budget)
        )),
    }
}

/// Probes `host:port`: DNS, TCP (every address in turn, or the proxy and CONNECT), TLS — all
/// within `timeout` together, so a probe never outlasts it however its steps are slow.
pub async fn probe(
    host: &str,
    port: u16,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
) -> Probe {
    let deadline = tokio::time::Instant::now() + timeout;
    open(host, port, deadline, timeout, tls, proxy).await.0
}

/// A TLS connection made the way [`probe`] makes one.
pub type Connection = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to `host:port` as [`probe`] does (the proxy when `proxy` says so), every step ended by
/// `deadline` (`budget` is how long that was, for the messages); the connection when every step
/// worked.
pub async fn open(
    host: &str,
    port: u16,
    deadline: tokio::time::Instant,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
) -> (Probe, Option<Connection>) {
    let mut p = Probe {
        host: host.to_string(),
        addrs: vec![],
        proxy: None,
        tcp: None,
        tls: None,
        error: None,
    };
    let via = proxy
        .filter(|x| !x.bypass(host))
        .and_then(|x| x.https.clone());
    // Resolve the endpoint even through a proxy: a private answer tells about VPC endpoints
    // (then only a quarter of the budget: the proxy resolves it anyway). On the lookup pool: a
    // resolver that never answers costs this probe its timeout, never a thread per run.
    let dns_budget = if via.is_some() { timeout / 4 } else { timeout };
    match crate::lookup::resolve(host, port, dns_budget).await {
        Ok(addrs) => p.addrs = addrs,
        Err(e) if via.is_none() => {
            p.error = Some((Phase::Dns, e));
            return (p, None);
        }
        Err(_) => {} // the proxy resolves it
    }
    let start = Instant::now();
    let stream = match &via {
        None => match connect_any(&p.addrs, port, deadline, timeout).await {
            Ok(s) => s,
            Err(e) => {
                p.error = Some((Phase::Tcp, e));
                return (p, None);
            }
        },
        Some(url) => {
            p.proxy = Some(redact(url));
            let Some(px) = parse_proxy_url(url) else {
                p.error = Some((
                    Phase::Proxy,
                    format!("cannot parse the proxy URL {}", redact(url)),
                ));
                return (p, None);
            };
            if px.scheme != "http" {
                p.error = Some((
                    Phase::Proxy,
                    format!(
                        "{}:// proxies are not probed (only http://, as most agents use)",
                        px.scheme
                    ),
                ));
                return (p, None);
            }
            // The proxy's own name, on the lookup pool too (tokio's resolver would leave a
            // blocking thread in a hung lookup).
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let proxy_addrs = match px.host.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(ip) => Ok(vec![ip]),
                Err(_) => crate::lookup::resolve(&px.host, px.port, left).await,
            };
            let mut s = match proxy_addrs {
                Ok(addrs) => match connect_any(&addrs, px.port, deadline, timeout).await {
                    Ok(s) => s,
                    Err(e) => {
                        p.error = Some((Phase::Tcp, format!("proxy {}:{}: {e}", px.host, px.port)));
                        return (p, None);
                    }
                },
                Err(e) => {
                    p.error = Some((
                        Phase::Proxy,
                        format!("proxy {}: name lookup failed: {e}", px.host),
                    ));
                    return (p, None);
                }
            };
            let auth = px
                .userinfo
                .as_ref()
                .map(|u| {
                    format!(
                        "Proxy-Authorization: Basic {}\r\n",
                        aws_smithy_types::base64::encode(basic_credentials(u))
                    )
                })
                .unwrap_or_default();
            let connect = async {
                s.write_all(
                    format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n")
                        .as_bytes(),
                )
                .await?;
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") && buf.len() < 8192 {
                    if s.read(&mut byte).await? == 0 {
                        break;
                    }
                    buf.push(byte[0]);
                }
                Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
            };
            match bounded(deadline, timeout, connect).await {
                Ok(head) if head.split_whitespace().nth(1) == Some("200") => s,
                Ok(head) => {
                    p.error = Some((
                        Phase::Proxy,
                        format!(
                            "the proxy answered: {}",
                            head.lines().next().unwrap_or("nothing")
                        ),
                    ));
                    return (p, None);
                }
                Err(e) => {
                    p.error = Some((Phase::Proxy, e));
                    return (p, None);
                }
            }
        }
    };
    p.tcp = Some(start.elapsed());
    let Ok(name) = ServerName::try_from(host.to_string()) else {
        p.error = Some((
            Phase::Tls,
            format!("`{host}` is not a valid TLS server name"),
        ));
        return (p, None);
    };
    let start = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(tls);
    match bounded(deadline, timeout, connector.connect(name, stream)).await {
        Ok(s) => {
            let (_, conn) = s.get_ref();
            let version = conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            let suite = conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default();
            p.tls = Some((version, suite, start.elapsed()));
            (p, Some(s))
        }
        Err(e) => {
            p.error = Some((Phase::Tls, e));
            (p, None)
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The `endpoint.<service>` verdict.
pub fn verdict(service: &str, p: &Probe, required: bool) -> CheckResult {
    let id = format!("endpoint.{service}");
    let addrs = if p.addrs.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = p.addrs.iter().take(3).map(IpAddr::to_string).collect();
        let kind = if p.addrs.iter().all(is_private) {
            "private: a VPC endpoint"
        } else if p.addrs.iter().all(IpAddr::is_ipv6) {
            "IPv6: public, or a VPC endpoint"
        } else {
            "public"
        };
        format!(" -> {} ({kind})", list.join(", "))
    };
    let via = p
        .proxy
        .as_ref()
        .map(|x| format!(" via proxy {x}"))
        .unwrap_or_default();
    match &p.error {
        None => {
            let (v, suite, t) = p.tls.clone().unwrap_or_default();
            CheckResult::ok(
                id,
                format!(
                    "{}{addrs}{via}: TCP {}, {v} ({suite}) {}",
                    p.host,
                    p.tcp.map(ms).unwrap_or_default(),
                    ms(t)
                ),
            )
        }
        Some((phase, e)) => {
            let status = if required {
                Status::Critical
            } else {
                Status::Warning
            };
            let fault = phase.fault();
            let remedy = super::remedy::remedy(
                &fault,
                &super::remedy::Call {
                    service,
                    permission: None,
                    proxy: p.proxy.as_deref(),
                },
            );
            let need = if required {
                ""
            } else {
                " (needed only for the features that use it)"
            };
            CheckResult::new(
                id,
                status,
                format!(
                    "{}{addrs}{via}: {} failed: {e}{need}",
                    p.host,
                    phase.as_str()
                ),
                remedy,
            )
            .caused_by(&fault)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_undo_percent_encoding() {
        assert_eq!(basic_credentials("ops:s3cret%2Fpw"), b"ops:s3cret/pw");
        assert_eq!(basic_credentials("dom%5Cops:p:w"), b"dom\\ops:p:w");
    }

    #[test]
    fn host_names() {
        let plain = AgentConfig::default();
        assert_eq!(
            host("ssm", "us-east-1", &plain),
            "ssm.us-east-1.amazonaws.com"
        );
        assert_eq!(
            host("ssmmessages", "cn-north-1", &plain),
            "ssmmessages.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            host("ssm", "us-iso-east-1", &plain),
            "ssm.us-iso-east-1.c2s.ic.gov"
        );
        let mut o = AgentConfig::default();
        o.endpoints.insert(
            "ssm".into(),
            "https://vpce-1.ssm.us-east-1.vpce.amazonaws.com:443/".into(),
        );
        o.service_domain = Some("example.internal".into());
        assert_eq!(
            host("ssm", "us-east-1", &o),
            "vpce-1.ssm.us-east-1.vpce.amazonaws.com"
        );
        assert_eq!(
            host("kms", "us-east-1", &o),
            "kms.us-east-1.example.internal"
        );
    }

    #[test]
    fn private_addresses() {
        for ip in ["10.0.1.5", "172.31.0.2", "192.168.1.1", "fd00:ec2::254"] {
            assert!(is_private(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["52.94.1.1", "2600:1f18::1"] {
            assert!(!is_private(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn refused_and_dns_failures_are_classified() {
        let tls = tls_config("").unwrap();
        // A closed port on loopback.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let p = probe("localhost", port, Duration::from_secs(2), tls.clone(), None).await;
        assert_eq!(p.error.as_ref().map(|e| e.0), Some(Phase::Tcp), "{p:?}");
        let v = verdict("ssm", &p, true);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.detail.contains("private"),
            "loopback counts as private: {v:?}"
        );
        let p = probe(
            "does-not-exist.invalid",
            443,
            Duration::from_secs(2),
            tls,
            None,
        )
        .await;
        assert_eq!(p.error.as_ref().map(|e| e.0), Some(Phase::Dns), "{p:?}");
        assert_eq!(verdict("kms", &p, false).status, Status::Warning);
    }

    #[tokio::test]
    async fn a_dead_proxy_gets_the_proxy_remedy_not_the_security_group_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let proxy = Proxy {
            https: Some(format!("http://127.0.0.1:{port}")),
            ..Proxy::default()
        };
        let p = probe(
            "ssm.us-east-1.amazonaws.com",
            443,
            Duration::from_secs(2),
            tls_config("").unwrap(),
            Some(&proxy),
        )
        .await;
        assert_eq!(p.error.as_ref().map(|e| e.0), Some(Phase::Tcp), "{p:?}");
        let v = verdict("ssm", &p, true);
        assert!(v.remedy.contains("proxy"), "{v:?}");
        assert!(!v.remedy.contains("security group"), "{v:?}");
        assert_eq!(v.cause.as_deref(), Some("tcp"));
    }

    #[tokio::test]
    async fn a_plain_tcp_server_fails_the_tls_step() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"HTTP/1.0 400 nope\r\n\r\n").await;
            }
        });
        let p = probe(
            "localhost",
            port,
            Duration::from_secs(2),
            tls_config("").unwrap(),
            None,
        )
        .await;
        assert_eq!(p.error.as_ref().map(|e| e.0), Some(Phase::Tls), "{p:?}");
        assert!(p.tcp.is_some());
    }
}
