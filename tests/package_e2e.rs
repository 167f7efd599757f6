//! The packages under real systemd: PID 1 in private namespaces (`scripts/systemd-ns.sh`) over a
//! minimal root of this machine's distribution (`scripts/debian-root.sh`), the local AWS emulator
//! on the host's loopback. The .deb and the .rpm (x86_64) install, enable and start the hardened
//! unit, which reports READY, syncs accounts from the emulator and writes health.json; upgrades
//! keep the administrator's config and restart the service; removal stops it and keeps the
//! accounts and the ledger; purge keeps them too.
//!
//! Needs the packages (`make packages`, which scripts/test.sh runs first), hence the
//! `package-tests` feature: `cargo test --features package-tests --test package_e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Emulator, Systemd, package, repo};

const UNIT: &str = "ssm-companion.service";

/// The emulator with two principals carrying SSMSessionRunAs.
fn emulator() -> Emulator {
    let emu = Emulator::start();
    emu.user("alice", "/", &[("SSMSessionRunAs", "alice")]);
    emu.role("OpsRole", &[("SSMSessionRunAs", "bob")]);
    emu
}

/// The emulator (with alice and bob) and systemd booted over the minimal root with the test
/// drop-in ([`common::boot_debian`]), in a fresh directory. Bind them in this order: the
/// container stops before its directory goes.
fn booted(prefix: &str) -> (tempfile::TempDir, Emulator, Systemd) {
    let emu = emulator();
    let work = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    let sd = common::boot_debian(work.path(), &emu);
    (work, emu, sd)
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn prop(sd: &Systemd, name: &str) -> String {
    sd.sh(&format!("systemctl show -p {name} --value {UNIT}"))
        .trim()
        .to_string()
}

fn user_exists(sd: &Systemd, name: &str) -> bool {
    sd.exec(&["getent", "passwd", name]).status.success()
}

/// True once the daemon has reported `action` on `subject` as done: its journal entry is written
/// after the step's tools have exited, unlike a passwd line, which `useradd`/`userdel` write
/// before they are done with group and gshadow. (`--merge`: every journal file, also those of an
/// earlier machine-id.)
fn reported(sd: &Systemd, action: &str, subject: &str) -> bool {
    let out = sd.exec(&[
        "journalctl",
        "--merge",
        "-o",
        "cat",
        &format!("MESSAGE_ID={}", ssm_companion::events::ACCOUNT_CHANGE),
        &format!("SSM_COMPANION_ACTION={action}"),
        &format!("SSM_COMPANION_USER={subject}"),
        "SSM_COMPANION_OUTCOME=done",
    ]);
    out.status.success() && !out.stdout.is_empty()
}

/// What every install must show: enabled, active after READY, accounts synced from the
/// emulator, the hardening in force, health written, journal entries.
fn check_running(sd: &Systemd) {
    assert_eq!(
        sd.sh(&format!("systemctl is-enabled {UNIT}")).trim(),
        "enabled"
    );
    wait_for(
        "the unit to be active (READY)",
        Duration::from_secs(60),
        || prop(sd, "ActiveState") == "active",
    );
    wait_for(
        "the creates of alice and bob reported done",
        Duration::from_secs(60),
        || reported(sd, "create", "alice") && reported(sd, "create", "bob"),
    );
    assert!(user_exists(sd, "alice") && user_exists(sd, "bob"));
    let home = sd.sh("stat -c %U /home/alice");
    assert_eq!(home.trim(), "alice", "home made by useradd under the unit");
    sd.sh("pwck -r -q && grpck -r");
    // The sandbox is in force on the running process.
    let pid = prop(sd, "MainPID");
    let status = sd.sh(&format!("cat /proc/{pid}/status"));
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    // CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_KILL: bits 0, 1, 3, 5.
    // chown, dac_override, fowner, kill; net_admin, sys_ptrace, perfmon, bpf (the exec capture).
    assert_eq!(field("CapBnd:"), "000000c00008102b");
    // A read-only file system around it, writable where accounts live.
    let ns = sd.sh(&format!(
        "nsenter -t {pid} -m sh -c 'touch /usr/x 2>&1; touch /etc/.ssmc-rw && rm /etc/.ssmc-rw && echo etc-rw'"
    ));
    assert!(ns.contains("Read-only file system"), "{ns}");
    assert!(ns.contains("etc-rw"), "{ns}");
    wait_for("health.json", Duration::from_secs(60), || {
        sd.exec(&["test", "-s", "/var/lib/ssm-companion/health.json"])
            .status
            .success()
    });
    // Files get the mode the daemon asks for, whatever the unit's UMask=0077.
    assert_eq!(
        sd.sh("stat -c %a /var/lib/ssm-companion/health.json")
            .trim(),
        "644"
    );
    let journal = sd.sh(&format!(
        // --merge: all journal files, also those of an earlier machine-id (see `first_boot`).
        "journalctl --merge -u {UNIT} -o cat MESSAGE_ID=a6f2c4d1b8e94c0e9d57c1f3e2b8a901"
    ));
    assert!(
        journal.contains("alice"),
        "account changes in the journal: {journal}"
    );
    let status_text = prop(sd, "StatusText");
    assert!(status_text.contains("accounts"), "{status_text}");
}

/// An upgrade by `command` (the same version again runs the same maintainer-script paths)
/// restarts the service and keeps the administrator's edit of config.toml.
fn upgrade_keeps_config_and_restarts(sd: &Systemd, command: &str) {
    let pid = prop(sd, "MainPID");
    sd.sh("echo '# edited by the administrator' >> /etc/ssm-companion/config.toml");
    sd.sh(command);
    wait_for("the restart", Duration::from_secs(30), || {
        let now = prop(sd, "MainPID");
        now != pid && now != "0" && prop(sd, "ActiveState") == "active"
    });
    assert!(
        sd.sh("cat /etc/ssm-companion/config.toml")
            .contains("edited by the administrator"),
        "the administrator's config.toml survives the upgrade"
    );
}

/// Audit on, under the packaged unit in this container. The exec capture: the container is a PID
/// namespace of its own, where the kernel's host PIDs cannot be resolved, so no backend may run —
/// and `audit status` says why rather than tying commands to the wrong processes (the aarch64 VM
/// test, in a real host's namespaces, checks that the eBPF backend runs under the unit). The
/// sudo/su source: journalctl follows the journal inside the unit's sandbox.
fn audit_under_the_unit_in_a_container(sd: &Systemd) {
    sd.sh("printf '[audit]\\nenabled = true\\n' > /etc/ssm-companion/config.d/60-audit.toml");
    sd.sh(&format!("systemctl restart {UNIT}"));
    let mut doc = serde_json::Value::Null;
    wait_for("the exec capture's status", Duration::from_secs(60), || {
        let out = sd.exec(&["ssm-companion", "audit", "status", "--json"]);
        doc = serde_json::from_slice(&out.stdout).unwrap_or_default();
        !doc["exec"]["reported_at"].is_null()
    });
    assert!(doc["exec"]["backend"].is_null(), "{doc:#}");
    let tried = doc["exec"]["tried"].as_array().cloned().unwrap_or_default();
    assert_eq!(tried.len(), 2, "ebpf and proc-connector tried: {doc:#}");
    for t in &tried {
        let why = t["why"].as_str().unwrap_or_default();
        assert!(why.contains("PID namespace of its own"), "{doc:#}");
    }
    // The privilege source: journalctl, run by the daemon under the unit's sandbox.
    let t = Instant::now();
    while !prop(sd, "StatusText").contains("journal following") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the journal source is not following: {}\n{}",
            prop(sd, "StatusText"),
            sd.sh(&format!(
                "journalctl -u {UNIT} -o cat | grep -i journal | tail -5"
            ))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sd.sh("rm /etc/ssm-companion/config.d/60-audit.toml");
}

fn ledger_and_users_kept(sd: &Systemd) {
    assert!(user_exists(sd, "alice") && user_exists(sd, "bob"));
    assert!(sd.exec(&["test", "-d", "/home/alice"]).status.success());
    let ledger = sd.sh("cat /var/lib/ssm-companion/accounts-ledger.json");
    assert!(ledger.contains("alice"), "the ledger stays: {ledger}");
}

#[test]
fn deb_installs_runs_upgrades_and_removes_under_real_systemd() {
    require_root!();
    let deb = package("_amd64.deb");
    let (_work, _emu, sd) = booted("ssmc-deb");
    sd.put(&deb, "/tmp/ssm-companion.deb");
    let out = sd.sh("dpkg -i /tmp/ssm-companion.deb 2>&1");
    assert!(out.contains("Setting up ssm-companion"), "{out}");
    check_running(&sd);

    // The unit as installed passes systemd's own checks, and its exposure stays at most 2.8.
    let verify = sd.exec(&["systemd-analyze", "verify", UNIT]);
    assert!(
        verify.status.success() && verify.stdout.is_empty() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = sd.sh(&format!(
        "systemd-analyze security --no-pager {UNIT} | tail -1"
    ));
    let score: f64 = security
        .split("level for ssm-companion.service: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {security}"));
    assert!(score <= 2.8, "exposure {score} > 2.8: {security}");

    // Reload keeps it running; the package's files are where the docs say.
    let pid = prop(&sd, "MainPID");
    sd.sh(&format!("systemctl reload {UNIT}"));
    assert_eq!(prop(&sd, "MainPID"), pid, "reload is not a restart");
    for f in [
        "/usr/bin/ssm-companion",
        "/usr/lib/ssm-companion/config.d/10-defaults.toml",
        "/etc/ssm-companion/config.toml",
        "/usr/lib/tmpfiles.d/ssm-companion.conf",
        "/usr/share/man/man1/ssm-companion.1.gz",
        "/usr/share/doc/ssm-companion/copyright",
    ] {
        assert!(sd.exec(&["test", "-f", f]).status.success(), "{f} missing");
    }
    sd.sh("ssm-companion config check >/dev/null");

    upgrade_keeps_config_and_restarts(
        &sd,
        "dpkg -i --force-confold /tmp/ssm-companion.deb >/dev/null 2>&1",
    );
    audit_under_the_unit_in_a_container(&sd);

    // Removal stops and disables it; the accounts, homes and ledger stay.
    sd.sh("dpkg -r ssm-companion >/dev/null 2>&1");
    assert_eq!(prop(&sd, "ActiveState"), "inactive");
    ledger_and_users_kept(&sd);
    assert!(
        sd.exec(&["test", "-f", "/etc/ssm-companion/config.toml"])
            .status
            .success(),
        "remove keeps conffiles"
    );
    // Purge removes the configuration, still not the accounts or the ledger.
    let out = sd.sh("dpkg -P ssm-companion 2>&1");
    assert!(out.contains("kept /var/lib/ssm-companion"), "{out}");
    assert!(
        !sd.exec(&["test", "-f", "/etc/ssm-companion/config.toml"])
            .status
            .success()
    );
    ledger_and_users_kept(&sd);
}

#[test]
fn rpm_installs_runs_and_removes_under_real_systemd() {
    require_root!();
    let rpm = package(".x86_64.rpm");
    let (_work, _emu, sd) = booted("ssmc-rpm");
    sd.put(&rpm, "/tmp/ssm-companion.rpm");
    // The root is Debian, so rpm's database knows none of the required packages: --nodeps.
    sd.sh("rpm -i --nodeps /tmp/ssm-companion.rpm");
    check_running(&sd);
    // %postun with $1 = 1 restarts the service; %config(noreplace) keeps the file.
    upgrade_keeps_config_and_restarts(&sd, "rpm -U --replacepkgs --nodeps /tmp/ssm-companion.rpm");
    sd.sh("rpm -e --nodeps ssm-companion");
    assert_eq!(prop(&sd, "ActiveState"), "inactive");
    assert_ne!(
        sd.exec(&["systemctl", "is-enabled", UNIT]).status.code(),
        Some(0),
        "disabled on removal"
    );
    ledger_and_users_kept(&sd);
}

/// The version the recipes must name (they are copied by users: keep them current).
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn recipe(name: &str) -> PathBuf {
    repo().join("packaging/recipes").join(name)
}

/// A YAML recipe as JSON, read by PyYAML from the emulator's venv (pinned there).
fn yaml(path: &Path) -> serde_json::Value {
    let out = Command::new(common::python())
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} is not valid YAML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `script` with `shell` inside; panics with its output when it fails.
fn run_script(sd: &Systemd, shell: &[&str], script: &str, what: &str) -> String {
    let mut args = shell.to_vec();
    args.push(script);
    let out = sd.exec(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// After a bake: the unit enabled but stopped, no state, no account made for the build
/// instance (the test drop-in of `boot` would sync at once if the build-time drop-in did not
/// switch accounts off).
fn check_baked(sd: &Systemd) {
    assert_eq!(prop(sd, "ActiveState"), "inactive");
    assert_eq!(
        sd.sh(&format!("systemctl is-enabled {UNIT}")).trim(),
        "enabled"
    );
    assert_eq!(
        sd.sh("ls -A /var/lib/ssm-companion").trim(),
        "",
        "state left in the image"
    );
    assert!(
        !user_exists(sd, "alice") && !user_exists(sd, "bob"),
        "accounts made on the build instance"
    );
    assert!(
        !sd.exec(&[
            "test",
            "-e",
            "/etc/ssm-companion/config.d/99-image-build.toml"
        ])
        .status
        .success()
    );
}

/// "First boot" of an instance from the image: a new machine-id, then the enabled unit starts;
/// it syncs and binds a new ledger to this machine.
fn first_boot(sd: &Systemd) {
    sd.sh("tr -d - < /proc/sys/kernel/random/uuid > /etc/machine-id");
    sd.sh(&format!("systemctl start {UNIT}"));
    check_running(sd);
    let machine_id = sd.sh("cat /etc/machine-id");
    let ledger = sd.sh("cat /var/lib/ssm-companion/accounts-ledger.json");
    assert!(
        ledger.contains(machine_id.trim()),
        "ledger bound to this machine-id {machine_id}: {ledger}"
    );
    assert!(
        !sd.sh("ls /var/lib/ssm-companion").contains("foreign"),
        "a clean image has no foreign ledger"
    );
}

#[test]
fn cloud_init_recipe_installs_configures_and_starts() {
    require_root!();
    let path = recipe("cloud-init.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("#cloud-config\n"),
        "user-data must start with #cloud-config"
    );
    let doc = yaml(&path);
    let deb = package("_amd64.deb");
    let (_work, emu, sd) = booted("ssmc-ci");
    // The packages where the recipe's PKG_BASE points (a local directory here, S3 or HTTPS in
    // the recipe).
    sd.sh("mkdir -p /srv/packages");
    sd.put(
        &deb,
        &format!(
            "/srv/packages/{}",
            deb.file_name().unwrap().to_string_lossy()
        ),
    );

    // cloud-init's order: write_files, then runcmd.
    for f in doc["write_files"].as_array().expect("write_files") {
        let path = f["path"].as_str().unwrap();
        let mode = f["permissions"].as_str().unwrap();
        let out = sd.exec_stdin(
            &[
                "sh",
                "-c",
                &format!("mkdir -p \"$(dirname {path})\" && cat > {path} && chmod {mode} {path}"),
            ],
            Some(f["content"].as_str().unwrap().as_bytes()),
        );
        assert!(out.status.success());
    }
    let runcmd = doc["runcmd"][0]
        .as_str()
        .expect("runcmd[0] is the install script");
    assert!(
        runcmd.contains(&format!("VERSION={VERSION}\n")),
        "the recipe names version {VERSION}"
    );
    let script = runcmd.replace(
        "PKG_BASE=s3://example-bucket/ssm-companion/$VERSION",
        "PKG_BASE=/srv/packages",
    );
    assert_ne!(script, runcmd, "PKG_BASE line not found in the recipe");
    // The checksums, pasted as an operator would: target/packages/SHA256SUMS of this build.
    const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000  replace-with-target/packages/SHA256SUMS";
    assert!(script.contains(PLACEHOLDER), "the SHA256SUMS placeholder");
    let sums = std::fs::read_to_string(deb.parent().unwrap().join("SHA256SUMS"))
        .expect("target/packages/SHA256SUMS (packaging/build.sh writes it)");
    let deb_name = deb.file_name().unwrap().to_string_lossy().to_string();
    assert!(sums.contains(&deb_name), "{sums}");
    let not_installed = |script: &str, needle: &str| {
        let out = sd.exec(&["sh", "-c", script]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "installed anyway: {stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(
            !sd.exec(&["dpkg", "-s", "ssm-companion"]).status.success(),
            "nothing is installed"
        );
    };
    // As shipped, nothing is listed: nothing is installed.
    not_installed(&script, &format!("{deb_name} is not listed in SHA256SUMS"));
    // A checksum that does not match (the download was altered): nothing is installed.
    not_installed(
        &script.replace(PLACEHOLDER, &format!("{}  {deb_name}", "f".repeat(64))),
        "not installed (the download was altered",
    );
    let script = script.replace(PLACEHOLDER, sums.trim());
    let out = run_script(&sd, &["sh", "-c"], &script, "the cloud-init runcmd");
    assert!(out.contains("active"), "{out}");
    check_running(&sd);

    // The recipe's drop-in is in force.
    let check: serde_json::Value =
        serde_json::from_str(&sd.sh("ssm-companion config check --json")).unwrap();
    assert_eq!(check["settings"]["accounts"]["sudo_group"], "ssm-admins");
    assert_eq!(check["settings"]["health"]["inventory"], true);
    assert!(
        check["files"]
            .to_string()
            .contains("/etc/ssm-companion/config.d/50-cloud-init.toml"),
        "{check}"
    );

    // The rest of the account tools under the sandbox: a group grant with sudo (groupadd,
    // usermod, visudo) and a retirement (userdel), the daemon restarted to sync at once.
    emu.tag_user("alice", "ssm-companion:groups", "ssm-admins");
    sd.sh("printf '[accounts]\nretire_grace = \"0s\"\nretire_confirmations = 1\ninterval = \"2s\"\n' > /etc/ssm-companion/config.d/60-test.toml");
    sd.sh(&format!("systemctl restart {UNIT}"));
    wait_for(
        "alice's repair (into ssm-admins) reported done",
        Duration::from_secs(60),
        || reported(&sd, "repair", "alice"),
    );
    assert!(
        sd.sh("id -nG alice")
            .split_whitespace()
            .any(|g| g == "ssm-admins")
    );
    assert!(reported(
        &sd,
        "write-sudoers",
        "/etc/sudoers.d/ssm-companion"
    ));
    sd.sh("visudo -c 2>&1");
    emu.untag_user("alice", "SSMSessionRunAs");
    sd.sh(&format!("systemctl restart {UNIT}"));
    wait_for(
        "alice's retire-finish (userdel) reported done",
        Duration::from_secs(60),
        || reported(&sd, "retire-finish", "alice"),
    );
    assert!(!user_exists(&sd, "alice"));
    assert!(user_exists(&sd, "bob"));
    sd.sh("pwck -r -q && grpck -r");

    // Taking it off the host for good, as docs/usage/packaging.md says (the block after the
    // `decommission` marker, run as written).
    let doc = std::fs::read_to_string(repo().join("docs/usage/packaging.md")).unwrap();
    let block = doc
        .split("<!-- decommission -->\n```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the decommission block in docs/usage/packaging.md");
    let out = run_script(
        &sd,
        &["sh", "-eu", "-c"],
        block,
        "the decommission procedure",
    );
    assert!(!user_exists(&sd, "bob"), "bob retired: {out}");
    assert!(
        !sd.exec(&["test", "-e", "/home/bob"]).status.success(),
        "home removed"
    );
    assert!(
        !sd.exec(&["test", "-e", "/etc/sudoers.d/ssm-companion"])
            .status
            .success()
    );
    assert!(
        !sd.exec(&["test", "-e", "/var/lib/ssm-companion"])
            .status
            .success()
    );
    assert!(
        !sd.exec(&["test", "-e", "/etc/ssm-companion"])
            .status
            .success()
    );
    assert!(
        !sd.exec(&["dpkg", "-s", "ssm-companion"]).status.success(),
        "the package is purged"
    );
    sd.sh("pwck -r -q && grpck -r");
}

#[test]
fn image_builder_component_bakes_an_image_without_instance_state() {
    require_root!();
    let doc = yaml(&recipe("image-builder-component.yaml"));
    assert_eq!(doc["schemaVersion"], 1.0);
    let phase = |name: &str| {
        doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} phase"))["steps"]
            .as_array()
            .unwrap()
            .clone()
    };
    let version = doc["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p.get("Version"))
        .expect("a Version parameter")["default"]
        .clone();
    assert_eq!(version, VERSION, "the component's default version");
    // Image Builder's ExecuteBash runs the commands with bash; parameters are substituted.
    let bash = |step: &serde_json::Value| {
        step["inputs"]["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().replace("{{ Version }}", VERSION))
            .collect::<Vec<_>>()
            .join("\n")
    };

    let deb = package("_amd64.deb");
    let (_work, _emu, sd) = booted("ssmc-ib");
    for step in phase("build") {
        let name = step["name"].as_str().unwrap();
        match step["action"].as_str().unwrap() {
            // S3Download of the prefix: the packages are put where it would write them.
            "S3Download" => {
                let dest = step["inputs"][0]["destination"].as_str().unwrap();
                assert!(
                    step["inputs"][0]["source"]
                        .as_str()
                        .unwrap()
                        .ends_with("/*")
                );
                sd.sh(&format!("mkdir -p {dest}"));
                sd.put(
                    &deb,
                    &format!("{dest}/{}", deb.file_name().unwrap().to_string_lossy()),
                );
            }
            "ExecuteBash" => {
                run_script(&sd, &["bash", "-c"], &bash(&step), name);
            }
            other => panic!("step {name}: action {other} not handled by this test"),
        }
    }
    check_baked(&sd);
    for step in phase("validate") {
        run_script(&sd, &["bash", "-c"], &bash(&step), "validate");
    }
    first_boot(&sd);
    // The test phase runs on an instance launched from the image.
    for step in phase("test") {
        run_script(&sd, &["bash", "-c"], &bash(&step), "test");
    }
    // The image-wide drop-in of the Configure step is in force.
    let check: serde_json::Value =
        serde_json::from_str(&sd.sh("ssm-companion config check --json")).unwrap();
    assert_eq!(check["settings"]["health"]["inventory"], true);
}

#[test]
fn packer_provisioners_bake_an_image_without_instance_state() {
    require_root!();
    let text = std::fs::read_to_string(recipe("packer.pkr.hcl")).unwrap();
    assert!(text.contains("destination = \"/tmp/ssm-companion-package\""));
    // The shell provisioner's `inline` list: one HCL string per line (JSON-compatible escapes).
    let start = text.find("inline = [").expect("an inline list") + "inline = [".len();
    let end = start
        + text[start..]
            .find("\n    ]")
            .expect("the end of the inline list");
    let deb = package("_amd64.deb");
    let name = deb.file_name().unwrap().to_string_lossy().to_string();
    let commands: Vec<String> = text[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let s: String = serde_json::from_str(l.trim_end_matches(','))
                .unwrap_or_else(|e| panic!("not a plain string: {l}: {e}"));
            s.replace("${var.ssmc_package}", &name)
        })
        .collect();
    assert!(commands.len() > 5, "{commands:?}");

    let (_work, _emu, sd) = booted("ssmc-packer");
    sd.put(&deb, "/tmp/ssm-companion-package");
    // Packer writes the inline commands to a script; execute_command runs it with `sh -eu`.
    run_script(
        &sd,
        &["sh", "-eu", "-c"],
        &commands.join("\n"),
        "the Packer provisioner",
    );
    check_baked(&sd);
    first_boot(&sd);
}

/// The aarch64 .deb in a full-system aarch64 VM (qemu-system-aarch64) with real systemd: it
/// installs, reaches READY and syncs the emulator's accounts under the hardened unit
/// (`scripts/aarch64-vm.sh`; qemu-user cannot run the daemon). Slow: debootstrap's second stage
/// runs under emulation (about 10 minutes on 2 cores).
#[test]
fn arm64_deb_installs_and_runs_in_an_aarch64_vm() {
    require_root!();
    let deb = package("_arm64.deb");
    let emu = emulator();
    let work = tempfile::Builder::new()
        .prefix("ssmc-a64")
        .tempdir_in("/tmp")
        .unwrap();
    // The VM reaches this machine's loopback as 10.0.2.2 (qemu's user-mode network).
    let guest = |url: &str| url.replace("127.0.0.1", "10.0.2.2");
    let config = work.path().join("50-test.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nregion = \"us-east-1\"\n[accounts]\nsplay = \"0s\"\n[health]\nservices = []\n[audit]\nenabled = true\n",
            guest(&emu.moto),
            guest(&emu.imds)
        ),
    )
    .unwrap();
    assert_ne!(
        guest(&emu.moto),
        emu.moto,
        "the emulator listens on 127.0.0.1"
    );
    let out = Command::new(repo().join("scripts/aarch64-vm.sh"))
        .arg(&deb)
        .arg(&config)
        .arg(work.path().join("vm"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the aarch64 VM check failed:\n{text}");
    assert!(text.contains("SSMC-VM-RESULT ok"), "{text}");
    assert!(text.contains("ssmc-vm: aarch64"), "{text}");
    // The eBPF exec capture loaded on the arm64 kernel and recorded the stand-in session's command.
    assert!(text.contains("exec capture by ebpf"), "{text}");
    assert!(text.contains("marker-arm64"), "{text}");
    println!("{text}");
}
