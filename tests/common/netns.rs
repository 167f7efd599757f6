//! Network namespaces, test certificates and listeners for the reachability checks.

use super::*;

/// A network namespace for reachability tests: 10.213.0.1 (TLS listener), 10.213.0.4 (a plain
/// TCP listener, so TLS fails), 10.213.0.2 (nothing listens: refused) on a veth whose peer
/// answers nothing, and a static neighbour 10.213.0.99 that swallows packets (timeouts).
pub struct NetNs {
    /// Its name (for `ip netns exec`).
    pub name: String,
    peer: String,
}

impl NetNs {
    /// Creates it.
    pub fn new() -> Self {
        let tag = format!("{:x}", std::process::id() ^ fastrand_u32());
        let name = format!("ssmc-{tag}");
        let peer = format!("ssmc-p{tag}");
        let (v0, v1) = (format!("sv0{tag}"), format!("sv1{tag}"));
        let sh = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(&["netns", "add", &name]);
        sh(&["netns", "add", &peer]);
        sh(&[
            "link",
            "add",
            &v0[..v0.len().min(15)],
            "type",
            "veth",
            "peer",
            "name",
            &v1[..v1.len().min(15)],
        ]);
        let (v0, v1) = (
            v0[..v0.len().min(15)].to_string(),
            v1[..v1.len().min(15)].to_string(),
        );
        sh(&["link", "set", &v0, "netns", &name]);
        sh(&["link", "set", &v1, "netns", &peer]);
        for a in ["10.213.0.1/24", "10.213.0.2/24", "10.213.0.4/24"] {
            sh(&["-n", &name, "addr", "add", a, "dev", &v0]);
        }
        sh(&["-n", &name, "link", "set", &v0, "up"]);
        sh(&["-n", &name, "link", "set", "lo", "up"]);
        sh(&["-n", &peer, "link", "set", &v1, "up"]);
        sh(&[
            "-n",
            &name,
            "neigh",
            "add",
            "10.213.0.99",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            &v0,
            "nud",
            "permanent",
        ]);
        Self { name, peer }
    }

    /// `ip netns exec <name>` as a command prefix.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.peer])
            .status();
    }
}

fn fastrand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos()
}

/// A test CA and a server certificate for `names`, made with openssl: (ca.pem, cert.pem, key.pem).
pub fn make_certs(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ssm-companion test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "req.csr",
        "-subj",
        "/CN=test endpoint",
    ]);
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={}\n", san.join(",")),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// Listeners started by [`start_listeners`], stopped on drop.
pub struct Listeners(Child);

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tests/support/listener.py` in `ns`.
pub fn start_listeners(ns: &NetNs, args: &[String]) -> Listeners {
    let mut child = ns
        .command(python())
        .arg(repo().join("tests/support/listener.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "listener did not start");
    Listeners(child)
}

/// `<service>.us-east-1.amazonaws.com` for each service.
pub fn endpoint_names(services: &[&str]) -> Vec<String> {
    services
        .iter()
        .map(|s| format!("{s}.us-east-1.amazonaws.com"))
        .collect()
}

/// A CA and a certificate for `names` under `dir/certs`, and the listeners (`tests/support/listener.py`)
/// serving TLS with it on 10.213.0.1:443, plus `extra` listener arguments. Returns the CA file.
pub fn tls_endpoints(
    ns: &NetNs,
    dir: &Path,
    names: &[String],
    extra: &[String],
) -> (PathBuf, Listeners) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (ca, cert, key) = make_certs(&certs, &refs);
    let mut args: Vec<String> = vec![
        "--tls".into(),
        "10.213.0.1:443".into(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ];
    args.extend_from_slice(extra);
    (ca, start_listeners(ns, &args))
}
