//! `agent.latest`: the installed agent against the latest release AWS publishes for the region
//! (what `ssm-cli get-diagnostics` shows as "SSM Agent version"). The release bucket's
//! `latest/VERSION` is read at most once a day per host (cached in the state directory), through
//! the agent's proxy, within the network phase's deadline; when it cannot be read the check says
//! so and stays ok — the latest release is advice, never a failure of the run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::model::{CheckResult, Status};
use super::network;
use super::proxy::Proxy;

/// The check's id.
pub const ID: &str = "agent.latest";
/// The cache, in the state directory.
pub const CACHE_FILE: &str = "agent-latest-release.json";
/// How long a read release stays fresh.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long after a failed read the next is tried.
pub const RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How long a stale one is still worth showing when a new read fails.
pub const STALE_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most of an answer that is read: a version is a few bytes.
const MAX_BODY: usize = 256;

/// The last release read, and the last failed read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// Where it was read.
    pub url: String,
    /// The version (`3.3.1142.0`); empty when never read.
    #[serde(default)]
    pub version: String,
    /// When (RFC 3339); empty when never read.
    #[serde(default)]
    pub fetched_at: String,
    /// When a read last failed (RFC 3339), if after `fetched_at`.
    #[serde(default)]
    pub failed_at: String,
    /// Why it failed.
    #[serde(default)]
    pub error: String,
}

/// The region's release bucket (the agent's own: `amazon-ssm-<region>`, in the region's domain).
pub fn url(region: &str) -> String {
    let domain = network::domain(region);
    format!("https://s3.{region}.{domain}/amazon-ssm-{region}/latest/VERSION")
}

fn day(rfc3339: &str) -> &str {
    rfc3339.split('T').next().unwrap_or_default()
}

/// The latest release for `url`: the cached one when younger than [`MAX_AGE`], else a new read
/// (cached on success). A failed read is remembered and not tried again for [`RETRY_AFTER`]: a
/// host that cannot reach S3 (a private subnet) pays one timeout an hour, not one per run. The
/// second value is a note on where the release came from.
pub async fn latest(
    url: &str,
    state_dir: &Path,
    now: SystemTime,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
) -> Result<(String, String), String> {
    let cached = load(state_dir)
        .filter(|c| c.url == url)
        .unwrap_or_else(|| Cached {
            url: url.to_string(),
            ..Cached::default()
        });
    let age = |t: &str| crate::clock::parse_rfc3339(t).and_then(|t| now.duration_since(t).ok());
    let usable =
        |c: &Cached| !c.version.is_empty() && age(&c.fetched_at).is_some_and(|a| a < STALE_AGE);
    if !cached.version.is_empty() && age(&cached.fetched_at).is_some_and(|a| a < MAX_AGE) {
        return Ok((cached.version.clone(), "read within the last day".into()));
    }
    let failure = |c: &Cached| {
        if usable(c) {
            Ok((
                c.version.clone(),
                format!(
                    "read {}; reading it again failed {}: {}",
                    day(&c.fetched_at),
                    c.failed_at,
                    c.error
                ),
            ))
        } else {
            Err(c.error.clone())
        }
    };
    if age(&cached.failed_at).is_some_and(|a| a < RETRY_AFTER) {
        let mut c = cached.clone();
        c.error = format!(
            "{} (at {}; tried again an hour later)",
            c.error, c.failed_at
        );
        return failure(&c);
    }
    let mut entry = cached.clone();
    let result = match fetch(url, timeout, tls, proxy).await {
        Ok(version) => {
            entry = Cached {
                url: url.to_string(),
                version: version.clone(),
                fetched_at: crate::clock::rfc3339(now),
                ..Cached::default()
            };
            Ok((version, "read now".into()))
        }
        Err(e) => {
            entry.failed_at = crate::clock::rfc3339(now);
            entry.error = e;
            failure(&entry)
        }
    };
    // A cache that cannot be written costs one read per run, nothing else.
    if let Err(e) = crate::state::ensure_dir(state_dir)
        .and_then(|()| crate::state::save_json(state_dir, CACHE_FILE, &entry, 0o644))
    {
        tracing::warn!("agent.latest: cannot cache the latest release: {e}");
    }
    result
}

fn load(state_dir: &Path) -> Option<Cached> {
    crate::state::load_json::<Cached>(state_dir, CACHE_FILE)
        .ok()
        .flatten()
        .filter(|c| c.version.is_empty() || parse(&c.version).is_some())
}

/// One HTTPS GET of `url` (DNS, TCP, the proxy, TLS, the answer), ended by `timeout`; the body
/// must be a version and nothing else.
pub async fn fetch(
    url: &str,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("`{url}` is not an https:// URL"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
        ),
        None => (authority, 443),
    };
    let (probe, conn) = network::open(host, port, deadline, timeout, tls, proxy).await;
    let Some(conn) = conn else {
        let (phase, e) = probe
            .error
            .unwrap_or((network::Phase::Tcp, "no connection".into()));
        return Err(format!("{host}: {} failed: {e}", phase.as_str()));
    };
    let request = http::Request::get(format!("/{path}"))
        .header(http::header::HOST, authority)
        .header(
            http::header::USER_AGENT,
            concat!("ssm-companion/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("`{url}`: {e}"))?;
    let exchange = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(conn))
                .await
                .map_err(|e| e.to_string())?;
        let answer = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            if status != http::StatusCode::OK {
                return Err(format!("HTTP {}", status.as_u16()));
            }
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        format!("the answer is longer than {MAX_BODY} bytes: not a version")
                    } else {
                        format!("the answer broke off: {e}")
                    }
                })?
                .to_bytes();
            Ok::<_, String>(body)
        };
        // The connection is driven alongside; it ends when the answer has been read.
        let (body, _) = tokio::join!(answer, connection);
        body
    };
    let body = match tokio::time::timeout_at(deadline, exchange).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ));
        }
    };
    let text = std::str::from_utf8(&body).unwrap_or_default().trim();
    if parse(text).is_some() {
        Ok(text.to_string())
    } else {
        // Never echo what a hostile server sent: its length says enough.
        Err(format!(
            "the answer is not a version like 3.3.1142.0 ({} bytes)",
            body.len()
        ))
    }
}

/// `major.minor.build[.revision]`, digits only: what a release is named.
fn parse(v: &str) -> Option<Vec<u64>> {
    let parts: Vec<u64> = v
        .split('.')
        .map(|p| {
            if !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse().ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    (2..=4).contains(&parts.len()).then_some(parts)
}

/// The `agent.latest` verdict: `installed` (from `agent.version`) against `latest` (the release
/// and a note on where it came from) for `region`.
pub fn verdict(
    installed: Option<&str>,
    latest: &Result<(String, String), String>,
    region: &str,
    max_minor_behind: u32,
) -> CheckResult {
    let (release, note) = match latest {
        Ok(x) => x,
        Err(e) => {
            return CheckResult::ok(
                ID,
                format!(
                    "the latest release in {region} could not be read ({e}); only informative, so not a failure"
                ),
            );
        }
    };
    let Some(installed) = installed else {
        return CheckResult::ok(
            ID,
            format!(
                "the latest release in {region} is {release} ({note}); the installed version is unknown (agent.version)"
            ),
        );
    };
    let (Some(have), Some(want)) = (parse(installed), parse(release)) else {
        return CheckResult::ok(
            ID,
            format!("agent {installed}; the latest release in {region} is {release} ({note})"),
        );
    };
    if !super::agent::version_lt(installed, release) {
        return CheckResult::ok(
            ID,
            format!("agent {installed} is the latest release in {region} ({note})"),
        );
    }
    let behind = if want[0] > have[0] {
        None // a whole major version
    } else {
        Some(want[1].saturating_sub(have[1]))
    };
    match behind {
        Some(n) if n <= u64::from(max_minor_behind) => CheckResult::ok(
            ID,
            format!(
                "agent {installed}; the latest release in {region} is {release} ({note}): {n} minor version(s) behind, within health.max_minor_versions_behind ({max_minor_behind})"
            ),
        ),
        _ => CheckResult::new(
            ID,
            Status::Warning,
            format!(
                "agent {installed} is {} behind the latest release in {region}, {release} ({note}; health.max_minor_versions_behind = {max_minor_behind})",
                behind.map_or_else(
                    || "a major version".to_string(),
                    |n| format!("{n} minor versions")
                )
            ),
            "update the agent: the AWS-UpdateSSMAgent document (State Manager can keep it current), or your package manager",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_bucket_is_the_regions() {
        assert_eq!(
            url("eu-west-1"),
            "https://s3.eu-west-1.amazonaws.com/amazon-ssm-eu-west-1/latest/VERSION"
        );
        assert!(url("cn-north-1").starts_with("https://s3.cn-north-1.amazonaws.com.cn/"));
    }

    #[test]
    fn only_a_version_is_a_version() {
        assert_eq!(parse("3.3.1142.0"), Some(vec![3, 3, 1142, 0]));
        for bad in [
            "",
            "3",
            "3.3.1142.0.1",
            "3.3.x",
            "3..1",
            "<html>",
            "\u{1b}[2J3.3.1.0",
            "99999999999999999999.1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn behind_by_minor_versions_and_never_failing() {
        let ok = |r: &str| Ok((r.to_string(), "read now".to_string()));
        let v = verdict(Some("3.3.1142.0"), &ok("3.3.1142.0"), "us-east-1", 1);
        assert_eq!(v.status, Status::Ok);
        assert!(v.detail.contains("is the latest release"), "{v:?}");
        // Newer builds of the same minor version: ok, the detail says so.
        let v = verdict(Some("3.3.987.0"), &ok("3.3.1142.0"), "us-east-1", 1);
        assert_eq!(v.status, Status::Ok);
        assert!(v.detail.contains("0 minor version(s) behind"), "{v:?}");
        assert_eq!(
            verdict(Some("3.2.582.0"), &ok("3.3.1142.0"), "us-east-1", 1).status,
            Status::Ok
        );
        let v = verdict(Some("3.1.1004.0"), &ok("3.3.1142.0"), "us-east-1", 1);
        assert_eq!(v.status, Status::Warning);
        assert!(v.detail.contains("2 minor versions behind"), "{v:?}");
        assert!(v.remedy.contains("AWS-UpdateSSMAgent"));
        let v = verdict(Some("2.3.1319.0"), &ok("3.3.1142.0"), "us-east-1", 9);
        assert_eq!(v.status, Status::Warning);
        assert!(v.detail.contains("a major version behind"), "{v:?}");
        // Newer than the bucket (a staged rollout): ok.
        assert_eq!(
            verdict(Some("3.3.1200.0"), &ok("3.3.1142.0"), "us-east-1", 0).status,
            Status::Ok
        );
        // Unreadable, or no installed version: ok, said.
        let v = verdict(Some("3.3.1142.0"), &Err("HTTP 403".into()), "us-east-1", 1);
        assert_eq!(v.status, Status::Ok);
        assert!(v.detail.contains("could not be read (HTTP 403)"), "{v:?}");
        assert_eq!(
            verdict(None, &ok("3.3.1142.0"), "us-east-1", 1).status,
            Status::Ok
        );
    }

    /// A listener that counts connections and closes each at once (so a read fails at TLS).
    fn closing_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let n = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = n.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(c);
            }
        });
        (
            format!("https://127.0.0.1:{port}/amazon-ssm-x/latest/VERSION"),
            n,
        )
    }

    #[tokio::test]
    async fn a_day_of_cache_and_an_hour_between_failed_reads() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (url, connections) = closing_listener();
        let tls = network::tls_config("").unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |h: u64| t0 + Duration::from_secs(h * 3600);
        let read = |now| {
            latest(
                &url,
                dir.path(),
                now,
                Duration::from_secs(2),
                tls.clone(),
                None,
            )
        };
        let seed = |fetched: SystemTime| {
            let c = Cached {
                url: url.clone(),
                version: "3.3.1142.0".into(),
                fetched_at: crate::clock::rfc3339(fetched),
                ..Cached::default()
            };
            crate::state::save_json(dir.path(), CACHE_FILE, &c, 0o644).unwrap();
        };
        // Read 23 hours ago: no connection at all.
        seed(at(0));
        let (v, note) = read(at(23)).await.unwrap();
        assert_eq!(
            (v.as_str(), note.as_str()),
            ("3.3.1142.0", "read within the last day")
        );
        assert_eq!(connections.load(Ordering::SeqCst), 0);
        // A day old: read again; the read fails, the stale release is kept and said to be.
        let (v, note) = read(at(25)).await.unwrap();
        assert_eq!(v, "3.3.1142.0");
        assert!(note.contains("reading it again failed"), "{note}");
        assert!(note.contains("TLS failed"), "{note}");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        // Within the hour after the failure: not tried again.
        let (_, note) = read(at(25) + Duration::from_secs(3000)).await.unwrap();
        assert!(note.contains("tried again an hour later"), "{note}");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        // An hour later: tried again.
        let _ = read(at(26) + Duration::from_secs(60)).await;
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        // A week old and unreadable: no release, an error (the verdict stays ok).
        seed(at(0));
        let e = read(at(24 * 8)).await.unwrap_err();
        assert!(e.contains("TLS failed"), "{e}");
        // A cache for another URL, or a hostile one, is not used.
        std::fs::write(
            dir.path().join(CACHE_FILE),
            format!(
                r#"{{"url":"{url}","version":"\u001b[2J9.9","fetched_at":"{}"}}"#,
                crate::clock::rfc3339(at(200))
            ),
        )
        .unwrap();
        assert!(read(at(200)).await.is_err());
    }
}
