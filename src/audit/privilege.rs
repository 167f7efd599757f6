//! Privilege use — `sudo` and `su` — from the journal (audit-capture.md §5): the lines real sudo
//! 1.9 and su write through syslog, read from `journalctl -o json` entries.
//!
//! | Source | `MESSAGE` |
//! |---|---|
//! | sudo, accepted | `    root : TTY=pts/0 ; PWD=/usr/bin ; USER=nobody ; COMMAND=/usr/bin/id` (the user is left-padded) |
//! | sudo, refused | `alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls` (also `user NOT in sudoers`, `command not allowed`, …) |
//! | su, accepted | `(to nobody) root on pts/0` |
//! | su, refused | `FAILED SU (to root) alice on pts/0` |
//!
//! Only entries the kernel attributes to the real programs count: `_EXE` is the system's `sudo` or
//! `su` (`/usr/bin`, `/bin`, `/usr/sbin`, `/sbin`) and `_COMM` matches. `_UID` does not tell: it
//! is the real UID of whoever ran sudo (`65534` for nobody's sudo, accepted or refused; measured
//! with sudo 1.9.13). Anyone can `logger -t sudo` a line that looks like sudo's, or run a copy
//! named `sudo`; such an entry is reported as [`Parsed::Forged`], never as privilege use. When
//! journald could not read the sender's `/proc` entry (the sender had exited: `_EXE` and `_COMM`
//! or either missing, and nothing against it) the use is kept and marked `unverified`. A line's fields are
//! user-controlled in part (the working directory, the command's arguments can hold ` ; USER=`):
//! the fields are read left to right, the command is everything after the first `COMMAND=`, and
//! a line where a field marker appears twice is marked ambiguous — the command sudo was invoked
//! with (`_CMDLINE`, from the kernel) is kept beside it.

use serde::{Deserialize, Serialize};

use super::ocsf;

/// One journal entry, as `journalctl -o json` prints it (the fields used here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `__CURSOR`: the position (the checkpoint, and the event's `metadata.uid`).
    pub cursor: String,
    /// `__REALTIME_TIMESTAMP`, microseconds since the epoch.
    pub realtime_us: i64,
    /// `SYSLOG_IDENTIFIER`.
    pub identifier: String,
    /// `MESSAGE` (a byte array in the JSON when it is not UTF-8: decoded lossily).
    pub message: String,
    /// `_PID`.
    pub pid: Option<u32>,
    /// `_UID`.
    pub uid: Option<u32>,
    /// `_COMM`.
    pub comm: String,
    /// `_EXE`.
    pub exe: String,
    /// `_CMDLINE`.
    pub cmdline: String,
    /// `MESSAGE_ID` and the `SSM_COMPANION_*` fields (ssm-companion's own entries).
    pub fields: std::collections::BTreeMap<String, String>,
}

fn text(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        // journalctl prints fields that are not valid UTF-8 as an array of bytes.
        Some(serde_json::Value::Array(bytes)) => {
            let raw: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            String::from_utf8_lossy(&raw).into_owned()
        }
        _ => String::new(),
    }
}

impl Entry {
    /// Reads an entry of `journalctl -o json`; `None` without a cursor (not an entry).
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let cursor = text(v, "__CURSOR");
        if cursor.is_empty() {
            return None;
        }
        let number = |k: &str| text(v, k).trim().parse::<u64>().ok();
        Some(Self {
            cursor,
            realtime_us: number("__REALTIME_TIMESTAMP")
                .and_then(|n| i64::try_from(n).ok())
                .unwrap_or(0),
            identifier: text(v, "SYSLOG_IDENTIFIER"),
            message: text(v, "MESSAGE"),
            pid: number("_PID").and_then(|n| u32::try_from(n).ok()),
            uid: number("_UID").and_then(|n| u32::try_from(n).ok()),
            comm: text(v, "_COMM"),
            exe: text(v, "_EXE"),
            cmdline: text(v, "_CMDLINE"),
            fields: v
                .as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| *k == "MESSAGE_ID" || k.starts_with("SSM_COMPANION_"))
                        .map(|k| (k.clone(), text(v, k)))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// A use of sudo or su.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    /// `sudo` or `su`.
    pub tool: String,
    /// Who ran it.
    pub user: String,
    /// As whom (`USER=`; su's target).
    pub run_as: String,
    /// `GROUP=`, when given.
    #[serde(default)]
    pub run_group: Option<String>,
    /// The terminal (`pts/0`; `None` for `unknown`).
    #[serde(default)]
    pub tty: Option<String>,
    /// The working directory (`PWD=`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// The command sudo ran (`COMMAND=`); su has none.
    #[serde(default)]
    pub command: Option<String>,
    /// True when it was allowed.
    pub accepted: bool,
    /// Why it was refused, in sudo's words.
    #[serde(default)]
    pub reason: Option<String>,
    /// A field marker appeared twice (`PWD` or the arguments held ` ; USER=`): the fields may be
    /// misread; `invocation` is the kernel's record of what was run.
    #[serde(default)]
    pub ambiguous: bool,
    /// `_CMDLINE`: the sudo/su command line as the kernel saw it.
    #[serde(default)]
    pub invocation: String,
    /// The sudo/su process.
    #[serde(default)]
    pub pid: Option<u32>,
    /// journald could not tell which program sent the line (it had exited): it is shaped like
    /// sudo's or su's, but the kernel did not vouch for it.
    #[serde(default)]
    pub unverified: bool,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// sudo or su was used.
    Use(Box<Use>),
    /// A line shaped like sudo's or su's from another program (`logger -t sudo`): who sent it.
    Forged {
        /// `_EXE` of the sender (`_COMM` when journald gave no `_EXE`).
        comm: String,
        /// `_UID` of the sender.
        uid: Option<u32>,
    },
    /// Anything else (PAM session lines, sudo's own errors, other programs).
    Other,
}

/// The tty as a name (`pts/0`), `None` for `unknown`.
fn tty(v: &str) -> Option<String> {
    let v = v.trim().trim_start_matches("/dev/");
    (!v.is_empty() && v != "unknown").then(|| v.to_string())
}

fn parse_sudo(message: &str) -> Option<Use> {
    let (user, rest) = message.split_once(" : ")?;
    let user = user.trim();
    if user.is_empty() || user.contains(char::is_whitespace) {
        return None;
    }
    // The command is everything after the first `COMMAND=`: only it may hold ` ; `.
    let (head, command) = match rest.split_once("COMMAND=") {
        Some((h, c)) => (h, Some(c.to_string())),
        None => (rest, None),
    };
    let mut u = Use {
        tool: "sudo".into(),
        user: user.to_string(),
        run_as: String::new(),
        run_group: None,
        tty: None,
        cwd: None,
        command,
        accepted: true,
        reason: None,
        ambiguous: ["USER=", "TTY=", "PWD=", "COMMAND="]
            .iter()
            .any(|m| message.matches(m).count() > 1),
        invocation: String::new(),
        pid: None,
        unverified: false,
    };
    let mut known = false;
    for field in head.split(" ; ").map(str::trim).filter(|f| !f.is_empty()) {
        match field.split_once('=') {
            Some(("TTY", v)) => {
                u.tty = tty(v);
                known = true;
            }
            Some(("PWD", v)) => {
                u.cwd = Some(v.to_string());
                known = true;
            }
            Some(("USER", v)) => {
                u.run_as = v.to_string();
                known = true;
            }
            Some(("GROUP", v)) => {
                u.run_group = Some(v.to_string());
                known = true;
            }
            Some(("ENV" | "TSID" | "CHROOT" | "CWD", _)) => {}
            _ if !known => {
                // A reason comes before the fields: the attempt was refused.
                u.accepted = false;
                u.reason = Some(field.to_string());
            }
            _ => {}
        }
    }
    // A sudo line always has fields and the command (`TTY=` only with a terminal: none under
    // Run Command, cron or a script); anything else is not one.
    if !known || u.command.is_none() {
        return None;
    }
    if u.run_as.is_empty() {
        u.run_as = "root".into();
    }
    Some(u)
}

fn parse_su(message: &str) -> Option<Use> {
    // `(to nobody) root on pts/0`, `FAILED SU (to root) alice on pts/0`.
    let (accepted, rest) = match message.strip_prefix("FAILED SU ") {
        Some(r) => (false, r),
        None => (true, message),
    };
    let rest = rest.strip_prefix("(to ")?;
    let (target, rest) = rest.split_once(") ")?;
    let (user, on) = rest.split_once(" on ")?;
    if target.is_empty() || user.is_empty() || target.contains(' ') || user.contains(' ') {
        return None;
    }
    Some(Use {
        tool: "su".into(),
        user: user.to_string(),
        run_as: target.to_string(),
        run_group: None,
        tty: tty(on),
        cwd: None,
        command: None,
        accepted,
        reason: (!accepted).then(|| "authentication failure".to_string()),
        ambiguous: false,
        invocation: String::new(),
        pid: None,
        unverified: false,
    })
}

/// What a journal entry says about privilege use.
pub fn parse(e: &Entry) -> Parsed {
    let tool = match e.identifier.as_str() {
        "sudo" => "sudo",
        "su" => "su",
        _ => return Parsed::Other,
    };
    let parsed = if tool == "sudo" {
        parse_sudo(&e.message)
    } else {
        parse_su(&e.message)
    };
    let Some(mut u) = parsed else {
        return Parsed::Other;
    };
    // The kernel's word: the system's program (a copy elsewhere is not setuid root).
    let trusted = ["/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"]
        .iter()
        .any(|dir| e.exe.strip_prefix(dir) == Some(tool));
    // journald reads the sender's /proc entry after the fact: a sender that is exiting may
    // lose `_EXE`, `_COMM` or both (measured: 3 of 2,000 sudo runs at 80/s had `_COMM` but no
    // `_EXE`). Only evidence against the line refuses it; missing evidence marks it unverified.
    let comm_ok = e.comm.is_empty() || e.comm == tool;
    if e.exe.is_empty() && comm_ok {
        u.unverified = true;
    } else if !trusted || !comm_ok {
        return Parsed::Forged {
            comm: if e.exe.is_empty() {
                e.comm.clone()
            } else {
                e.exe.clone()
            },
            uid: e.uid,
        };
    }
    u.invocation.clone_from(&e.cmdline);
    u.pid = e.pid;
    Parsed::Use(Box::new(u))
}

/// The event of a privilege use: sudo as Process Activity: Launch (who ran which command as
/// whom, where; refused attempts with `status_id` 2 and sudo's reason), su as Authentication:
/// Account Switch (who became whom). `session`: the Session Manager session the terminal belongs
/// to, when known. The position is `e.cursor` in `source` (the journal's cursor, or the auth
/// log's `<dev>:<inode>:<offset>`).
pub fn event(
    u: &Use,
    e: &Entry,
    source: &str,
    session: Option<&str>,
    device: &ocsf::Device,
    cloud: Option<&ocsf::Cloud>,
) -> ocsf::Event {
    let origin = ocsf::Origin {
        source: source.into(),
        position: e.cursor.clone(),
    };
    let time_ms = e.realtime_us / 1000;
    let linux = |name: &str| ocsf::User {
        name: Some(name.to_string()),
        uid: None,
        type_id: Some(if name == "root" { 2 } else { 1 }),
        account: Some(ocsf::Account {
            type_id: 9,
            uid: None,
            name: None,
        }),
    };
    let ssm_session = session.map(|id| ocsf::Session {
        uid: id.to_string(),
        created_time: None,
        terminal: u.tty.clone(),
        is_remote: Some(true),
    });
    let mut ev = if u.tool == "sudo" {
        let mut ev = ocsf::event(
            ocsf::Class::ProcessActivity,
            (1, "Launch"),
            time_ms,
            &origin,
            device,
            cloud,
        );
        ev.process = Some(ocsf::Process {
            pid: None,
            name: u
                .command
                .as_deref()
                .and_then(|c| c.split_whitespace().next())
                .map(|p| p.rsplit('/').next().unwrap_or(p).to_string()),
            cmd_line: u.command.clone(),
            user: Some(linux(&u.run_as)),
            working_directory: u.cwd.clone(),
            session: ssm_session.clone(),
            ..ocsf::Process::default()
        });
        ev.message = format!(
            "sudo{}: {} ran `{}` as {}{}",
            if u.accepted { "" } else { " refused" },
            u.user,
            u.command.as_deref().unwrap_or_default(),
            u.run_as,
            u.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        ev
    } else {
        let mut ev = ocsf::event(
            ocsf::Class::Authentication,
            (7, "Account Switch"),
            time_ms,
            &origin,
            device,
            cloud,
        );
        ev.user = Some(linux(&u.run_as));
        ev.session.clone_from(&ssm_session);
        ev.message = format!(
            "su{}: {} became {}",
            if u.accepted { "" } else { " refused" },
            u.user,
            u.run_as
        );
        ev
    };
    ev.actor = Some(ocsf::Actor {
        user: Some(linux(&u.user)),
        process: Some(ocsf::Process {
            pid: u.pid,
            name: Some(u.tool.clone()),
            cmd_line: Some(u.invocation.clone()).filter(|c| !c.is_empty()),
            ..ocsf::Process::default()
        }),
    });
    if u.unverified {
        ev.message.push_str(if source == "journal" {
            " [unverified: journald could not tell which program sent it]"
        } else {
            " [unverified: read from the auth log, which any local program can write]"
        });
    }
    ev = ev.with_status(u.accepted, u.reason.clone());
    ev.metadata.original_event_uid = Some(e.cursor.clone());
    let mut unmapped = serde_json::Map::new();
    unmapped.insert(
        u.tool.clone(),
        serde_json::json!({
            "tty": u.tty,
            "run_group": u.run_group,
            "ambiguous": u.ambiguous,
            "unverified": u.unverified,
        }),
    );
    ev.unmapped = Some(unmapped);
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(identifier: &str, message: &str) -> Entry {
        Entry {
            cursor: "s=a;i=1".into(),
            realtime_us: 1,
            identifier: identifier.into(),
            message: message.into(),
            pid: Some(4321),
            uid: Some(0),
            comm: identifier.into(),
            exe: format!("/usr/bin/{identifier}"),
            cmdline: format!("{identifier} -u nobody id"),
            fields: Default::default(),
        }
    }

    fn used(e: &Entry) -> Use {
        match parse(e) {
            Parsed::Use(u) => *u,
            other => panic!("{other:?} for {e:?}"),
        }
    }

    #[test]
    fn sudo_lines_as_sudo_1_9_writes_them() {
        let u = used(&entry(
            "sudo",
            "    root : TTY=pts/0 ; PWD=/usr/bin ; USER=nobody ; COMMAND=/usr/bin/id",
        ));
        assert_eq!(
            (
                u.user.as_str(),
                u.run_as.as_str(),
                u.tty.as_deref(),
                u.cwd.as_deref()
            ),
            ("root", "nobody", Some("pts/0"), Some("/usr/bin"))
        );
        assert_eq!(u.command.as_deref(), Some("/usr/bin/id"));
        assert!(u.accepted && !u.ambiguous);
        assert_eq!(
            (u.pid, u.invocation.as_str()),
            (Some(4321), "sudo -u nobody id")
        );
        let u = used(&entry(
            "sudo",
            "alice : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls -l /root",
        ));
        assert!(!u.accepted);
        assert_eq!(u.reason.as_deref(), Some("3 incorrect password attempts"));
        assert_eq!(u.command.as_deref(), Some("/bin/ls -l /root"));
        let u = used(&entry(
            "sudo",
            "bob : user NOT in sudoers ; TTY=unknown ; PWD=/ ; USER=root ; GROUP=adm ; COMMAND=/usr/bin/tail /var/log/syslog",
        ));
        assert_eq!(
            (u.accepted, u.tty, u.run_group.as_deref()),
            (false, None, Some("adm"))
        );
        // A command with ` ; ` in its arguments is kept whole.
        let u = used(&entry(
            "sudo",
            "carol : TTY=pts/2 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh -c echo a ; echo b",
        ));
        assert_eq!(u.command.as_deref(), Some("/bin/sh -c echo a ; echo b"));
        assert!(!u.ambiguous);
    }

    #[test]
    fn su_lines() {
        let u = used(&entry("su", "(to nobody) root on pts/0"));
        assert_eq!(
            (
                u.user.as_str(),
                u.run_as.as_str(),
                u.tty.as_deref(),
                u.accepted
            ),
            ("root", "nobody", Some("pts/0"), true)
        );
        let u = used(&entry("su", "FAILED SU (to root) alice on pts/3"));
        assert_eq!(
            (u.user.as_str(), u.run_as.as_str(), u.accepted),
            ("alice", "root", false)
        );
    }

    #[test]
    fn sudo_without_a_terminal_is_still_sudo() {
        // sudo 1.9.13 run by a script (measured): no TTY= field at all.
        let u = used(&entry(
            "sudo",
            "    root : PWD=/work ; USER=nobody ; COMMAND=/usr/bin/id",
        ));
        assert_eq!(
            (u.user.as_str(), u.run_as.as_str(), u.tty, u.accepted),
            ("root", "nobody", None, true)
        );
        let u = used(&entry(
            "sudo",
            "  nobody : user NOT in sudoers ; PWD=/ ; USER=root ; COMMAND=/usr/bin/id",
        ));
        assert!(!u.accepted);
        assert_eq!(u.reason.as_deref(), Some("user NOT in sudoers"));
    }

    #[test]
    fn forged_and_foreign_lines_are_not_privilege_use() {
        // `logger -t sudo …` by an ordinary user: the identifier lies, the kernel does not.
        let mut forged = entry(
            "sudo",
            "mallory : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/true",
        );
        forged.comm = "logger".into();
        forged.exe = "/usr/bin/logger".into();
        forged.uid = Some(1000);
        assert_eq!(
            parse(&forged),
            Parsed::Forged {
                comm: "/usr/bin/logger".into(),
                uid: Some(1000)
            }
        );
        // A program that named itself sudo (prctl), and a copy of sudo elsewhere (not setuid).
        for exe in ["/usr/bin/python3", "/tmp/sudo", "/usr/bin/sudoedit"] {
            let mut named = forged.clone();
            named.comm = "sudo".into();
            named.exe = exe.into();
            assert!(matches!(parse(&named), Parsed::Forged { .. }), "{exe}");
        }
        // The real sudo run by an ordinary user: `_UID` is theirs.
        let mut real = forged.clone();
        real.comm = "sudo".into();
        real.exe = "/bin/sudo".into();
        let u = used(&real);
        assert!(!u.unverified);
        // journald lost the sender's /proc entry, or part of it: kept, unverified.
        real.exe = String::new();
        assert!(used(&real).unverified);
        real.comm = String::new();
        assert!(used(&real).unverified);
        // Evidence against it: another program's name.
        real.comm = "logger".into();
        assert!(matches!(parse(&real), Parsed::Forged { .. }));
        for (id, msg) in [
            (
                "sudo",
                "pam_unix(sudo:session): session opened for user nobody(uid=65534) by (uid=0)",
            ),
            (
                "sudo",
                "pam_limits(sudo:session): Could not set limit for 'nofile': Operation not permitted",
            ),
            (
                "su",
                "pam_unix(su:session): session opened for user nobody(uid=65534) by root(uid=0)",
            ),
            ("sshd", "Accepted publickey for alice"),
            ("sudo", ""),
            ("sudo", "alice : TTY=pts/0"),
        ] {
            assert_eq!(parse(&entry(id, msg)), Parsed::Other, "{msg:?}");
        }
    }

    #[test]
    fn a_working_directory_that_imitates_fields_is_marked_ambiguous() {
        let u = used(&entry(
            "sudo",
            "alice : TTY=pts/0 ; PWD=/tmp/x ; USER=root ; COMMAND=fake ; USER=nobody ; COMMAND=/usr/bin/id",
        ));
        assert!(u.ambiguous);
        assert_eq!(
            u.invocation, "sudo -u nobody id",
            "the kernel's record is kept"
        );
    }

    #[test]
    fn journal_json_entries_including_byte_array_messages() {
        let v = serde_json::json!({
            "__CURSOR": "s=4c1d;i=2a;b=77;m=1;t=2;x=3",
            "__REALTIME_TIMESTAMP": "1796464801500000",
            "SYSLOG_IDENTIFIER": "sudo",
            "MESSAGE": [97, 108, 105, 99, 101, 32, 58, 32, 255],
            "_PID": "4321", "_UID": "0", "_COMM": "sudo",
            "_CMDLINE": "sudo id"
        });
        let e = Entry::from_json(&v).unwrap();
        assert_eq!(e.realtime_us, 1_796_464_801_500_000);
        assert_eq!(e.message, "alice : \u{fffd}");
        assert_eq!((e.pid, e.uid), (Some(4321), Some(0)));
        assert!(Entry::from_json(&serde_json::json!({"MESSAGE": "x"})).is_none());
    }
}
