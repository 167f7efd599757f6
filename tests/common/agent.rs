//! The stand-in amazon-ssm-agent (`tests/support/stand-in-ssm-agent.c`) and its directories.

use super::*;

/// Builds the stand-in agent (`tests/support/stand-in-ssm-agent.c`) into `dir` under the agent's
/// binary names, owned by root, mode 0755.
pub fn install_stand_in_agent(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let core = dir.join("amazon-ssm-agent");
    compile_support("stand-in-ssm-agent.c", &core, &["-O2"], &[]);
    for name in [
        "ssm-agent-worker",
        "ssm-session-worker",
        "ssm-document-worker",
        "ssm-cli",
    ] {
        std::fs::copy(&core, dir.join(name)).unwrap();
    }
}

/// A running stand-in agent (core + worker), killed on drop.
pub struct StandInAgent {
    core: Child,
}

impl StandInAgent {
    /// Starts the core from `bin_dir`, logging to `log` every `period` seconds (`mode`
    /// "hibernate" logs the hibernation line instead of the health line).
    pub fn start(bin_dir: &Path, log: &Path, period: u32, mode: &str) -> Self {
        Self::start_with_env(bin_dir, log, period, mode, &[])
    }

    /// [`StandInAgent::start`] with extra environment variables (e.g. `https_proxy`), which the
    /// health checks read back from `/proc/<pid>/environ`.
    pub fn start_with_env(
        bin_dir: &Path,
        log: &Path,
        period: u32,
        mode: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let core = Command::new(bin_dir.join("amazon-ssm-agent"))
            .env_clear()
            .envs(env.iter().copied())
            .env("STAND_IN_LOG", log)
            .env("STAND_IN_PERIOD", period.to_string())
            .env("STAND_IN_MODE", mode)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the worker's first line.
        for _ in 0..100 {
            if std::fs::read_to_string(log).is_ok_and(|t| t.contains("ssm-agent-worker")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { core }
    }

    /// The core's PID.
    pub fn pid(&self) -> u32 {
        self.core.id()
    }
}

impl Drop for StandInAgent {
    fn drop(&mut self) {
        // The worker is the core's child: kill both.
        let pid = self.core.id();
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &pid.to_string()])
            .status();
        let _ = self.core.kill();
        let _ = self.core.wait();
    }
}

/// The stand-in agent's directories for a host: bin, log, state (with a fresh
/// `identity_config.json`: EC2 credentials valid for an hour), config.
#[derive(Clone)]
pub struct AgentDirs {
    /// Binaries (the stand-in under the agent's names).
    pub bin: PathBuf,
    /// `/var/log/amazon/ssm`.
    pub log: PathBuf,
    /// `/var/lib/amazon/ssm`.
    pub state: PathBuf,
    /// `/etc/amazon/ssm`.
    pub config: PathBuf,
}

/// The instance id the health tests use.
pub const INSTANCE: &str = "i-0123456789abcdef0";

impl AgentDirs {
    /// Creates them under `root` and installs the stand-in agent.
    pub fn new(root: &Path) -> Self {
        let d = Self {
            bin: root.join("agent-bin"),
            log: root.join("agent-log"),
            state: root.join("agent-state"),
            config: root.join("agent-config"),
        };
        install_stand_in_agent(&d.bin);
        for p in [&d.log, &d.state.join("runtimeconfig"), &d.config] {
            std::fs::create_dir_all(p).unwrap();
        }
        let now = chrono::Utc::now();
        std::fs::write(
            d.state.join("runtimeconfig/identity_config.json"),
            serde_json::json!({
                "SchemaVersion": "1.1", "InstanceId": INSTANCE, "IdentityType": "EC2", "ShareFile": "", "ShareProfile": "",
                "CredentialsExpiresAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "CredentialsRetrievedAt": now.to_rfc3339(), "CredentialSource": "EC2",
            })
            .to_string(),
        )
        .unwrap();
        d
    }

    /// The agent's log file.
    pub fn log_file(&self) -> PathBuf {
        self.log.join("amazon-ssm-agent.log")
    }

    /// A `[paths]` section pointing ssm-companion at these and at `state` (its own state dir).
    pub fn paths_toml(&self, state: &Path) -> String {
        format!(
            "[paths]\nstate_dir = \"{}\"\nagent_bin_dir = \"{}\"\nagent_snap_dir = \"/nonexistent/snap\"\nagent_state_dir = \"{}\"\nagent_log_dir = \"{}\"\nagent_config_dir = \"{}\"\nauth_logs = [\"{}\"]\n",
            state.display(),
            self.bin.display(),
            self.state.display(),
            self.log.display(),
            self.config.display(),
            self.auth_log().display()
        )
    }

    /// The host's auth log for the tests (never the machine's own): `<agent log dir>/auth.log`.
    pub fn auth_log(&self) -> std::path::PathBuf {
        self.log.join("auth.log")
    }
}
