//! A host for the tests: a private user database (`scripts/private-userdb.sh`) with a config
//! and a state directory, in which the real binary runs real shadow-utils, sudo and pwck.

use super::*;

/// A host: a private user database plus a config and state directory for ssm-companion.
pub struct Host {
    dir: tempfile::TempDir,
    /// Run inside this network namespace.
    pub netns: Option<String>,
    /// The config file the binary is given.
    pub config: PathBuf,
    /// The state directory (outside the namespace's overlays, so it persists).
    pub state: PathBuf,
    /// The process holding the namespace every command joins ([`Host::with_journal`]).
    holder: Option<std::process::Child>,
}

impl Drop for Host {
    fn drop(&mut self) {
        // SIGTERM: the holder stops its journald and ends.
        if let Some(mut h) = self.holder.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(h.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = h.wait();
        }
    }
}

impl Host {
    /// A fresh private user database.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ssmc-host")
            .tempdir()
            .unwrap();
        let config = dir.path().join("config.toml");
        let state = dir.path().join("state");
        std::fs::create_dir_all(dir.path().join("vendor")).unwrap();
        Self {
            dir,
            netns: None,
            config,
            state,
            holder: None,
        }
    }

    /// A host whose commands all run in one namespace with its own journald, /dev and devpts
    /// (`PRIVATE_JOURNAL=1 scripts/private-userdb.sh`): sudo and su log to that journal, and
    /// pseudo-terminals are numbered from pts/0.
    pub fn with_journal() -> Self {
        let mut host = Self::new();
        let mut c = host.userdb();
        c.env("PRIVATE_JOURNAL", "1")
            .args(["/bin/sleep", "infinity"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        host.holder = Some(c.spawn().unwrap());
        // Ready when journald's socket shows in the namespace.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = host.sh("test -S /run/systemd/journal/socket");
            if out.status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the private journald did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        host
    }

    /// The scratch directory of this host.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the config: emulator endpoints, a private state dir, then `extra` (TOML).
    /// `extra` may contain `[accounts]`; its keys are merged after the defaults given here.
    pub fn configure(&self, emu: &Emulator, accounts: &str) {
        let text = format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 2\ncall_timeout = \"10s\"\n\n[accounts]\nsplay = \"0s\"\n{accounts}\n\n[paths]\nstate_dir = \"{}\"\n",
            emu.moto,
            emu.imds,
            self.state.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn userdb(&self) -> Command {
        let mut c = match (&self.holder, &self.netns) {
            // Join the namespace the holder keeps (its journald, /dev and /run).
            (Some(h), _) => {
                let mut c = Command::new("nsenter");
                c.args(["--target", &h.id().to_string(), "--mount", "--"]);
                c
            }
            (None, Some(ns)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(repo().join("scripts/private-userdb.sh"));
                c.arg(self.dir.path().join("db"));
                c
            }
            (None, None) => {
                let mut c = Command::new(repo().join("scripts/private-userdb.sh"));
                c.arg(self.dir.path().join("db"));
                c
            }
        };
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env(
                "SSM_COMPANION_VENDOR_CONFIG_DIR",
                self.dir.path().join("vendor"),
            );
        c
    }

    /// Runs a shell script inside the private user database.
    pub fn sh(&self, script: &str) -> Output {
        self.userdb()
            .args(["/bin/bash", "-c", script])
            .output()
            .unwrap()
    }

    /// Makes host-name lookups in this host's private /etc hang for ever: an NSS module that
    /// never returns (`tests/support/nss-hang.c`, built here) first on the `hosts:` line, found
    /// through the private ld.so.cache. Nothing outside the namespace changes.
    pub fn hang_host_lookups(&self) {
        self.hang_lookups(&["hosts"]);
    }

    /// Makes the named NSS databases (`hosts`, `passwd`) hang: the hanging module first on
    /// their lines in the private /etc/nsswitch.conf.
    pub fn hang_lookups(&self, databases: &[&str]) {
        let lib = self.dir().join("nss");
        std::fs::create_dir_all(&lib).unwrap();
        compile_support(
            "nss-hang.c",
            &lib.join("libnss_hang.so.2"),
            &["-shared", "-fPIC", "-O2"],
            &[],
        );
        let mut script = format!(
            "echo {} > /etc/ld.so.conf.d/zz-nss-hang.conf && ldconfig",
            lib.display()
        );
        for db in databases {
            script.push_str(&format!(
                " && sed -i 's/^{db}:[[:space:]]*/{db}: hang /' /etc/nsswitch.conf && grep -q '^{db}: hang' /etc/nsswitch.conf"
            ));
        }
        self.sh_ok(&script);
    }

    /// Starts `program args…` in this host's namespace (stdout and stderr to null).
    pub fn spawn(&self, program: &Path, args: &[&str]) -> std::process::Child {
        let mut c = self.userdb();
        c.arg(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c.spawn().unwrap()
    }

    /// Runs a shell script and returns its stdout; panics when it fails.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "script failed ({:?}): {script}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs ssm-companion inside the private user database with this host's config.
    pub fn ssmc(&self, args: &[&str]) -> Output {
        self.ssmc_env(args, &[])
    }

    /// Starts `ssm-companion --config … args` without waiting (stdout and stderr piped).
    pub fn ssmc_spawn(&self, args: &[&str]) -> std::process::Child {
        let mut c = self.userdb();
        c.arg(bin()).arg("--config").arg(&self.config).args(args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The same with extra environment variables.
    pub fn ssmc_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.userdb();
        c.arg(bin()).arg("--config").arg(&self.config).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Starts `ssm-companion run` in the private user database as systemd would: sd_notify
    /// messages to `notify` (a datagram socket the caller bound), stderr piped (shaped for the
    /// journal: `JOURNAL_STREAM` is set), plus `env`.
    pub fn daemon(&self, notify: &Path, env: &[(&str, &str)]) -> std::process::Child {
        self.daemon_under(&[], notify, env)
    }

    /// The same, started through `wrapper` (e.g. `setpriv --bounding-set …`).
    pub fn daemon_under(
        &self,
        wrapper: &[&str],
        notify: &Path,
        env: &[(&str, &str)],
    ) -> std::process::Child {
        let mut c = self.userdb();
        c.args(wrapper)
            .arg(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("NOTIFY_SOCKET", notify)
            .env("JOURNAL_STREAM", "8:12345")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    }

    /// `accounts apply --json`, asserting the exit status.
    pub fn apply(&self, expect_code: i32) -> Value {
        self.json(&["accounts", "apply", "--json"], expect_code)
    }

    /// `accounts plan --json`.
    pub fn plan(&self) -> Value {
        self.json(&["accounts", "plan", "--json"], 0)
    }

    /// Runs a command that prints JSON, asserting its exit status.
    pub fn json(&self, args: &[&str], expect_code: i32) -> Value {
        let out = self.ssmc(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(expect_code),
            "ssm-companion {args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// The passwd entry of `name` (fields), if any.
    pub fn getent(&self, name: &str) -> Option<Vec<String>> {
        let out = self.sh(&format!("getent passwd -- '{name}'"));
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .split(':')
                .map(str::to_string)
                .collect()
        })
    }

    /// The UID of `name`.
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.getent(name).map(|f| f[2].parse().unwrap())
    }

    /// Supplementary groups of `name` (from `id -nG`, without its own group).
    pub fn groups(&self, name: &str) -> Vec<String> {
        let mut g: Vec<String> = self
            .sh_ok(&format!("id -nG -- '{name}'"))
            .split_whitespace()
            .filter(|g| *g != name)
            .map(str::to_string)
            .collect();
        g.sort();
        g
    }

    /// Asserts the database is consistent: `pwck -r -q` and `grpck -r` pass, and `pwck -r`
    /// reports nothing about `managed` users (it does report the host's own system users whose
    /// homes do not exist in the private /home).
    pub fn assert_consistent(&self, managed: &[&str]) {
        let out =
            self.sh("pwck -r -q; echo pwck=$?; grpck -r; echo grpck=$?; pwck -r 2>&1 || true");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("pwck=0"), "pwck -r -q failed:\n{text}");
        assert!(text.contains("grpck=0"), "grpck -r failed:\n{text}");
        for m in managed {
            assert!(
                !text.contains(&format!("'{m}'")),
                "pwck complains about {m}:\n{text}"
            );
        }
    }

    /// The row `id` of `doctor --json` (the agent is absent in tests, so the overall verdict is
    /// critical; only this row matters).
    pub fn doctor_check(&self, id: &str) -> Value {
        let out = self.ssmc(&["doctor", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json is not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} check: {doc:#}"))
    }

    /// Steps of a sync JSON with the given action, as subject names.
    pub fn steps(doc: &Value, action: &str) -> Vec<String> {
        doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == action)
            .map(|s| {
                s["user"]
                    .as_str()
                    .or(s["group"].as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    /// Skipped names with the given reason.
    pub fn skipped(doc: &Value, reason: &str) -> Vec<String> {
        doc["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["reason"] == reason)
            .map(|s| s["user"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}
