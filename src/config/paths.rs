//! `[paths]`: every host path the daemon reads or writes, so tests can point it elsewhere.

use std::path::PathBuf;

use serde::Serialize;

use super::{Resolver, absolute, absolute_path};

fragment! {
    /// `[paths]` as written: every key optional, with its span.
    PathsFragment {
        state_dir: String, home_base: String, skel: String, sudoers_file: String,
        sudoers_main: String, passwd: String, group: String, login_defs: String,
        machine_id: String, proc: String, cgroup: String, subuid: String, subgid: String,
        nsswitch: String, sysusers_dirs: Vec<String>, useradd: String, usermod: String,
        userdel: String, groupadd: String, visudo: String, mkhomedir_helper: String,
        agent_bin_dir: String, agent_snap_dir: String, agent_state_dir: String,
        agent_log_dir: String, agent_config_dir: String, systemctl: String, snap: String,
        systemd_run_dir: String, auth_logs: Vec<String>,
    }
}

/// `[paths]`: every host path the daemon reads or writes, so tests can point it elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paths {
    /// `state_dir`; default "/var/lib/ssm-companion".
    pub state_dir: PathBuf,
    /// `home_base`; default "/home". The agent hard-codes `HOME=/home/<user>`: change only in tests.
    pub home_base: PathBuf,
    /// `skel`; default "/etc/skel".
    pub skel: PathBuf,
    /// `sudoers_file`; default "/etc/sudoers.d/ssm-companion".
    pub sudoers_file: PathBuf,
    /// `sudoers_main`; default "/etc/sudoers" (checked for an `includedir` of the drop-in dir).
    pub sudoers_main: PathBuf,
    /// `passwd`; default "/etc/passwd".
    pub passwd: PathBuf,
    /// `group`; default "/etc/group".
    pub group: PathBuf,
    /// `login_defs`; default "/etc/login.defs".
    pub login_defs: PathBuf,
    /// `machine_id`; default "/etc/machine-id".
    pub machine_id: PathBuf,
    /// `proc`; default "/proc".
    pub proc: PathBuf,
    /// `cgroup`; default "/sys/fs/cgroup" (a retiring user's slice is killed with `cgroup.kill`).
    pub cgroup: PathBuf,
    /// `subuid`; default "/etc/subuid" (`uid_range` must not overlap subordinate ranges).
    pub subuid: PathBuf,
    /// `subgid`; default "/etc/subgid".
    pub subgid: PathBuf,
    /// `nsswitch`; default "/etc/nsswitch.conf" (which sources answer for users and groups).
    pub nsswitch: PathBuf,
    /// `sysusers_dirs`; default the systemd-sysusers directories: every user and group named
    /// there is reserved.
    pub sysusers_dirs: Vec<PathBuf>,
    /// `useradd`; default "/usr/sbin/useradd".
    pub useradd: PathBuf,
    /// `usermod`; default "/usr/sbin/usermod".
    pub usermod: PathBuf,
    /// `userdel`; default "/usr/sbin/userdel".
    pub userdel: PathBuf,
    /// `groupadd`; default "/usr/sbin/groupadd".
    pub groupadd: PathBuf,
    /// `visudo`; default "/usr/sbin/visudo".
    pub visudo: PathBuf,
    /// `mkhomedir_helper`; default "/usr/sbin/mkhomedir_helper" (PAM's: re-creates a managed
    /// account's missing home from the skeleton).
    pub mkhomedir_helper: PathBuf,
    /// `agent_bin_dir`; default "/usr/bin" (deb/rpm installs).
    pub agent_bin_dir: PathBuf,
    /// `agent_snap_dir`; default "/snap/amazon-ssm-agent/current".
    pub agent_snap_dir: PathBuf,
    /// `agent_state_dir`; default "/var/lib/amazon/ssm".
    pub agent_state_dir: PathBuf,
    /// `auth_logs`; default ["/var/log/auth.log", "/var/log/secure"]: where sudo and su are read
    /// on hosts without journald — the first that exists, with its rolled files.
    pub auth_logs: Vec<PathBuf>,
    /// `agent_log_dir`; default "/var/log/amazon/ssm".
    pub agent_log_dir: PathBuf,
    /// `agent_config_dir`; default "/etc/amazon/ssm".
    pub agent_config_dir: PathBuf,
    /// `systemctl`; default "/usr/bin/systemctl".
    pub systemctl: PathBuf,
    /// `snap`; default "/usr/bin/snap".
    pub snap: PathBuf,
    /// `systemd_run_dir`; default "/run/systemd/system" (exists when systemd is PID 1).
    pub systemd_run_dir: PathBuf,
}

/// The paths the health capability uses (a view of [`Paths`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPaths {
    /// deb/rpm binaries.
    pub bin_dir: PathBuf,
    /// snap binaries.
    pub snap_dir: PathBuf,
    /// Agent state.
    pub state_dir: PathBuf,
    /// Agent logs.
    pub log_dir: PathBuf,
    /// Agent config.
    pub config_dir: PathBuf,
    /// systemctl.
    pub systemctl: PathBuf,
    /// snap.
    pub snap: PathBuf,
    /// systemd's runtime dir.
    pub systemd_run_dir: PathBuf,
    /// /proc.
    pub proc: PathBuf,
    /// ssm-companion's state directory.
    pub own_state_dir: PathBuf,
}

impl Paths {
    /// The health capability's view.
    pub fn health(&self) -> HealthPaths {
        HealthPaths {
            bin_dir: self.agent_bin_dir.clone(),
            snap_dir: self.agent_snap_dir.clone(),
            state_dir: self.agent_state_dir.clone(),
            log_dir: self.agent_log_dir.clone(),
            config_dir: self.agent_config_dir.clone(),
            systemctl: self.systemctl.clone(),
            snap: self.snap.clone(),
            systemd_run_dir: self.systemd_run_dir.clone(),
            proc: self.proc.clone(),
            own_state_dir: self.state_dir.clone(),
        }
    }
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            state_dir: "/var/lib/ssm-companion".into(),
            home_base: "/home".into(),
            skel: "/etc/skel".into(),
            sudoers_file: "/etc/sudoers.d/ssm-companion".into(),
            sudoers_main: "/etc/sudoers".into(),
            passwd: "/etc/passwd".into(),
            group: "/etc/group".into(),
            login_defs: "/etc/login.defs".into(),
            machine_id: "/etc/machine-id".into(),
            proc: "/proc".into(),
            cgroup: "/sys/fs/cgroup".into(),
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
            nsswitch: "/etc/nsswitch.conf".into(),
            sysusers_dirs: vec![
                "/usr/lib/sysusers.d".into(),
                "/run/sysusers.d".into(),
                "/etc/sysusers.d".into(),
            ],
            useradd: "/usr/sbin/useradd".into(),
            usermod: "/usr/sbin/usermod".into(),
            userdel: "/usr/sbin/userdel".into(),
            groupadd: "/usr/sbin/groupadd".into(),
            visudo: "/usr/sbin/visudo".into(),
            mkhomedir_helper: "/usr/sbin/mkhomedir_helper".into(),
            agent_bin_dir: "/usr/bin".into(),
            agent_snap_dir: "/snap/amazon-ssm-agent/current".into(),
            agent_state_dir: "/var/lib/amazon/ssm".into(),
            agent_log_dir: "/var/log/amazon/ssm".into(),
            auth_logs: vec!["/var/log/auth.log".into(), "/var/log/secure".into()],
            agent_config_dir: "/etc/amazon/ssm".into(),
            systemctl: "/usr/bin/systemctl".into(),
            snap: "/usr/bin/snap".into(),
            systemd_run_dir: "/run/systemd/system".into(),
        }
    }
}

/// Resolves `[paths]` from the layers: every key an absolute path.
pub(super) fn resolve(r: &mut Resolver<'_>, s: &mut Paths) {
    keys!(r, paths, s, {
        state_dir => absolute_path,
        home_base => absolute_path,
        skel => absolute_path,
        sudoers_file => absolute_path,
        sudoers_main => absolute_path,
        passwd => absolute_path,
        group => absolute_path,
        login_defs => absolute_path,
        machine_id => absolute_path,
        proc => absolute_path,
        cgroup => absolute_path,
        subuid => absolute_path,
        subgid => absolute_path,
        nsswitch => absolute_path,
        useradd => absolute_path,
        usermod => absolute_path,
        userdel => absolute_path,
        groupadd => absolute_path,
        visudo => absolute_path,
        mkhomedir_helper => absolute_path,
        agent_bin_dir => absolute_path,
        agent_snap_dir => absolute_path,
        agent_state_dir => absolute_path,
        agent_log_dir => absolute_path,
        agent_config_dir => absolute_path,
        systemctl => absolute_path,
        snap => absolute_path,
        systemd_run_dir => absolute_path,
        sysusers_dirs => |p| p.value.iter().map(|d| absolute(d)).collect(),
        auth_logs => |p| p.value.iter().map(|d| absolute(d)).collect(),
    });
}
