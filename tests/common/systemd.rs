//! Real systemd as PID 1 in namespaces (`scripts/systemd-ns.sh`), and the packages booted
//! over a minimal Debian root.

use super::*;

/// `scripts/systemd-ns.sh` around a test: real systemd as PID 1 in private namespaces, stopped
/// (and its cgroups removed) on drop.
pub struct Systemd {
    state: PathBuf,
}

/// How to boot a [`Systemd`].
#[derive(Default)]
pub struct SystemdOptions<'a> {
    /// Unit files installed (not enabled) before boot.
    pub units: &'a [&'a Path],
    /// Host paths bind-mounted read-only at the same place.
    pub bind_ro: &'a [&'a Path],
    /// Host paths bind-mounted read-write at the same place.
    pub bind_rw: &'a [&'a Path],
    /// A root file system to boot (`scripts/debian-root.sh`) instead of the host's.
    pub lower: Option<&'a Path>,
}

impl Systemd {
    /// Boots with `units` over the host's root, with the given bind mounts.
    pub fn start(state: &Path, units: &[&Path], bind_ro: &[&Path], bind_rw: &[&Path]) -> Self {
        Self::boot(
            state,
            &SystemdOptions {
                units,
                bind_ro,
                bind_rw,
                lower: None,
            },
        )
    }

    /// Boots as `opts` say.
    pub fn boot(state: &Path, opts: &SystemdOptions<'_>) -> Self {
        let join = |v: &[&Path]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut cmd = Command::new(repo().join("scripts/systemd-ns.sh"));
        cmd.arg("start")
            .arg(state)
            .args(opts.units)
            .env("SYSTEMD_NS_BIND", join(opts.bind_ro))
            .env("SYSTEMD_NS_BIND_RW", join(opts.bind_rw));
        if let Some(l) = opts.lower {
            cmd.env("SYSTEMD_NS_LOWER", l);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "systemd did not boot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            state: state.to_path_buf(),
        }
    }

    /// Runs a command inside.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_stdin(args, None)
    }

    /// Runs a command inside with `input` on its stdin (how files get in).
    pub fn exec_stdin(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(repo().join("scripts/systemd-ns.sh"))
            .arg("exec")
            .arg(&self.state)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(data) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(data).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs a shell command inside; panics unless it succeeds; its stdout.
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies a host file to `dest` inside.
    pub fn put(&self, src: &Path, dest: &str) {
        let data = std::fs::read(src).unwrap();
        let out = self.exec_stdin(&["sh", "-c", &format!("cat > '{dest}'")], Some(&data));
        assert!(out.status.success(), "copying {} in failed", src.display());
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/systemd-ns.sh"))
            .arg("stop")
            .arg(&self.state)
            .output();
    }
}

// ---- The packages (tests/package_e2e.rs, benches/cold_start.rs) ----

/// The one package in target/packages whose name ends with `suffix`.
pub fn package(suffix: &str) -> PathBuf {
    let dir = repo().join("target/packages");
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make packages` first", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want exactly one *{suffix} in {} (run `make packages`): {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

/// The minimal root (built once, shared by the tests).
pub fn debian_root() -> PathBuf {
    let dir = repo().join("target/debian-root");
    let out = Command::new(repo().join("scripts/debian-root.sh"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/debian-root.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Boots systemd over the minimal root, with a drop-in pointing ssm-companion at the emulator
/// (written before the package, as cloud-init would).
pub fn boot_debian(work: &Path, emu: &Emulator) -> Systemd {
    let sd = Systemd::boot(
        &work.join("sd"),
        &SystemdOptions {
            lower: Some(&debian_root()),
            ..Default::default()
        },
    );
    sd.sh(&format!(
        "mkdir -p /etc/ssm-companion/config.d && printf '%s' '[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nregion = \"us-east-1\"\n[accounts]\nsplay = \"0s\"\ninterval = \"20s\"\n[health]\nservices = []\n' > /etc/ssm-companion/config.d/50-test.toml",
        emu.moto, emu.imds
    ));
    sd
}
