//! The proxy the agent uses: read from its environment (or its unit's), checked, and its URL
//! parsed and redacted for messages. Shared by the agent checks and the network probes.

use super::model::{CheckResult, Status};

/// The proxy settings the agent would use: only the lowercase variables, read from the running
/// agent's environment (the agent ignores `HTTPS_PROXY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    /// `https_proxy`.
    pub https: Option<String>,
    /// `no_proxy` entries.
    pub no_proxy: Vec<String>,
    /// Uppercase variables the agent ignores.
    pub ignored: Vec<String>,
    /// Where this was read, when not the process's own environment.
    pub source: Option<String>,
}

impl Proxy {
    /// True when `host` should be reached directly.
    pub fn bypass(&self, host: &str) -> bool {
        self.no_proxy.iter().any(|n| {
            let n = n.trim().trim_start_matches('.');
            !n.is_empty() && (n == "*" || host == n || host.ends_with(&format!(".{n}")))
        })
    }
}

/// Parses a `/proc/<pid>/environ` blob.
pub fn parse_proxy(environ: &[u8]) -> Proxy {
    let mut p = Proxy::default();
    for kv in environ.split(|b| *b == 0) {
        let kv = String::from_utf8_lossy(kv);
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        match k {
            "https_proxy" if !v.is_empty() => p.https = Some(v.to_string()),
            "no_proxy" => {
                p.no_proxy = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "HTTPS_PROXY" | "HTTP_PROXY" | "NO_PROXY" if !v.is_empty() => {
                p.ignored.push(k.to_string())
            }
            _ => {}
        }
    }
    p
}

/// The environment systemd gives a unit, as a `/proc/<pid>/environ` blob, from `systemctl show
/// -p Environment -p EnvironmentFiles` output and the files it names (`read`). The files'
/// settings come last: systemd lets them override `Environment=`.
pub fn unit_environ(show: &str, read: &dyn Fn(&str) -> Option<String>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |kv: &str| {
        if kv.contains('=') {
            out.extend_from_slice(kv.as_bytes());
            out.push(0);
        }
    };
    for line in show.lines() {
        if let Some(v) = line.strip_prefix("Environment=") {
            for word in split_words(v) {
                push(&word);
            }
        }
    }
    for line in show.lines() {
        let Some(v) = line.strip_prefix("EnvironmentFiles=") else {
            continue;
        };
        // `/etc/sysconfig/amazon-ssm-agent (ignore_errors=yes)`
        let path = v.rsplit_once(" (").map_or(v, |(p, _)| p).trim();
        let Some(text) = read(path) else { continue };
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if let Some((k, v)) = l.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                    .unwrap_or(v);
                push(&format!("{}={v}", k.trim()));
            }
        }
    }
    out
}

/// Splits `Environment=` as systemctl prints it: words separated by spaces, double quotes
/// around a word that holds spaces.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => cur.extend(chars.next()),
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// A proxy URL's parts: scheme, optional `user:password`, host, port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `user:password`, when given.
    pub userinfo: Option<String>,
    /// Host.
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
}

/// Parses `http://[user:pass@]host[:port][/]`.
pub fn parse_proxy_url(url: &str) -> Option<ProxyUrl> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let rest = rest.split('/').next()?;
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)
        }
        _ => (hostport.trim_matches(['[', ']']).to_string(), 80),
    };
    Some(ProxyUrl {
        scheme: scheme.to_ascii_lowercase(),
        userinfo,
        host,
        port,
    })
}

/// A proxy URL without its password, for messages, reports and logs.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        // The last `@`: a password may hold a raw one.
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        },
    }
}

/// The `agent.proxy` check: what the agent uses, and a warning for settings it ignores.
pub fn proxy_verdict(proxy: Option<&Proxy>) -> CheckResult {
    const ID: &str = "agent.proxy";
    let Some(p) = proxy else {
        return CheckResult::new(
            ID,
            Status::Unknown,
            "the agent is not running: its environment cannot be read",
            "",
        );
    };
    let mut detail = match &p.https {
        Some(url) => format!("the agent uses https_proxy={}", redact(url)),
        None => "the agent uses no proxy".to_string(),
    };
    if !p.no_proxy.is_empty() {
        detail.push_str(&format!(" (no_proxy={})", p.no_proxy.join(",")));
    }
    if let Some(src) = &p.source {
        detail.push_str(&format!(" [from {src}]"));
    }
    if p.ignored.is_empty() {
        CheckResult::ok(ID, detail)
    } else {
        CheckResult::new(
            ID,
            Status::Warning,
            format!(
                "{detail}; it ignores {} (only lowercase names count)",
                p.ignored.join(", ")
            ),
            "set the lowercase https_proxy/no_proxy in the agent's unit (systemctl edit amazon-ssm-agent)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_units_environment_stands_in_for_the_process() {
        let show = "Environment=https_proxy=http://p:3128 \"no_proxy=a, b\" LANG=C\nEnvironmentFiles=/etc/default/agent (ignore_errors=yes)\nEnvironmentFiles=/missing (ignore_errors=yes)\n";
        let read = |p: &str| {
            (p == "/etc/default/agent").then(|| {
                "# proxies\nhttps_proxy=\"http://file:8080\"\nHTTPS_PROXY=http://x\n\n".to_string()
            })
        };
        let p = parse_proxy(&unit_environ(show, &read));
        // The file overrides Environment=, as systemd does.
        assert_eq!(p.https.as_deref(), Some("http://file:8080"));
        assert_eq!(p.no_proxy, ["a", "b"]);
        assert_eq!(p.ignored, ["HTTPS_PROXY"]);
        assert!(
            parse_proxy(&unit_environ("Environment=\n", &read))
                .https
                .is_none()
        );
    }

    #[test]
    fn proxy_from_environ() {
        let p = parse_proxy(b"PATH=/usr/bin\0https_proxy=http://proxy:3128\0no_proxy=169.254.169.254,.internal\0HTTPS_PROXY=http://x\0");
        assert_eq!(p.https.as_deref(), Some("http://proxy:3128"));
        assert!(p.bypass("169.254.169.254"));
        assert!(p.bypass("db.internal"));
        assert!(!p.bypass("ssm.us-east-1.amazonaws.com"));
        let v = proxy_verdict(Some(&p));
        assert_eq!(v.status, Status::Warning);
        assert!(v.detail.contains("HTTPS_PROXY"));
        assert_eq!(proxy_verdict(Some(&Proxy::default())).status, Status::Ok);
    }

    #[test]
    fn proxy_urls() {
        let p = parse_proxy_url("http://proxy.corp:3128").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.userinfo),
            ("proxy.corp", 3128, None)
        );
        let p = parse_proxy_url("http://u:p%40ss@10.0.0.1:8080/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("10.0.0.1", 8080));
        assert_eq!(p.userinfo.as_deref(), Some("u:p%40ss"));
        assert_eq!(parse_proxy_url("proxy").unwrap().port, 80);
        assert_eq!(
            parse_proxy_url("http://[fd00::1]:3128").unwrap().host,
            "fd00::1"
        );
        assert_eq!(
            redact("http://user:secret@proxy:3128"),
            "http://***@proxy:3128"
        );
        assert_eq!(redact("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(redact("http://u:p@ss@proxy:3128"), "http://***@proxy:3128");
    }
}
