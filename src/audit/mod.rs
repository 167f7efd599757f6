//! The audit capability: who did what in Session Manager sessions, kept durably on the host and
//! shipped to S3. Its first part is the durable spool every collector writes into.

pub mod account;
pub mod agentlog;
pub mod alert;
pub mod authlog;
pub mod cloudwatch;
pub mod collector;
pub mod exec;
pub mod journal;
pub mod lineage;
pub mod ocsf;
pub mod privilege;
pub mod redact;
pub mod session;
pub mod ship;
pub mod spool;
pub mod transcript;

use std::path::{Path, PathBuf};

/// The audit directory under the state directory (the spool, the open sessions' details).
pub fn audit_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// The spool directory.
pub fn spool_dir(state_dir: &Path) -> PathBuf {
    audit_dir(state_dir).join("spool")
}

/// An account change as the accounts capability writes it to the journal.
fn account_change(device: &ocsf::Device, cloud: &ocsf::Cloud) -> ocsf::Event {
    let v = serde_json::json!({
        "__CURSOR": "s=4c1d0e2f3a4b5c6d;i=2b7;b=77e0f1a2b3c4d5e6;m=1f2e4a;t=640a1b2c3d4e5;x=1a2b3c4d",
        "__REALTIME_TIMESTAMP": "1796464790000000",
        "MESSAGE": "account create alice: uid 2001, home /home/alice",
        "MESSAGE_ID": crate::events::ACCOUNT_CHANGE,
        "SSM_COMPANION_ACTION": "create",
        "SSM_COMPANION_USER": "alice",
        "SSM_COMPANION_UID": "2001",
        "SSM_COMPANION_PRINCIPALS": "arn:aws:iam::123456789012:user/alice",
        "SSM_COMPANION_OUTCOME": "done",
        "_COMM": "ssm-companion", "_UID": "0", "_PID": "812",
        "_CMDLINE": "/usr/bin/ssm-companion run",
    });
    match privilege::Entry::from_json(&v) {
        Some(e) => account::event(&e, device, Some(cloud)),
        // The fixed entry above has a cursor: always an entry.
        None => ocsf::gap(0, &ocsf::Origin::default(), device, None, None, "no entry"),
    }
}

/// One event of every kind the audit capability emits, built by the same functions the
/// collectors use, from fixed inputs in the agent's formats: the schema test validates each
/// against OCSF, and docs/audit.md shows them.
pub fn examples() -> Vec<ocsf::Event> {
    let device = ocsf::Device {
        type_id: 6,
        hostname: Some("ip-10-0-1-23.ec2.internal".into()),
        instance_uid: Some("i-0123456789abcdef0".into()),
        region: Some("us-east-1".into()),
    };
    let cloud = ocsf::Cloud {
        provider: "AWS".into(),
        region: Some("us-east-1".into()),
        account: Some(ocsf::Account {
            type_id: 10,
            uid: Some("123456789012".into()),
            name: None,
        }),
    };
    let shell = session::SessionInfo {
        id: "alice-0c20c0d902585cf86".into(),
        owner: "arn:aws:iam::123456789012:user/alice".into(),
        run_as_requested: "alice".into(),
        user: "alice".into(),
        run_as_enabled: true,
        run_as_elevated: false,
        document: "SSM-SessionManagerRunShell".into(),
        session_type: "Standard_Stream".into(),
        client_id: "5e1c4d3a-0000-4000-8000-000000000001".into(),
        instance_id: "i-0123456789abcdef0".into(),
        worker_pid: Some(4242),
        started_ms: 1_796_464_801_500,
        logging: session::Logging::default(),
    };
    let elevated = session::SessionInfo {
        id: "ops-role-011e8a35a1cd6e285".into(),
        owner: "arn:aws:sts::123456789012:assumed-role/Ops/bob".into(),
        run_as_requested: String::new(),
        user: "root".into(),
        run_as_enabled: false,
        run_as_elevated: true,
        document: "Corp-RootShell".into(),
        ..shell.clone()
    };
    let port = session::SessionInfo {
        id: "carol-07f3a2b1c0d9e8f76".into(),
        owner: "arn:aws:sts::123456789012:assumed-role/Dev/carol".into(),
        user: "ssm-user".into(),
        run_as_enabled: false,
        document: "AWS-StartPortForwardingSession".into(),
        session_type: "Port".into(),
        ..shell.clone()
    };
    let journal = |message: &str, tool: &str, cmdline: &str| privilege::Entry {
        cursor: "s=4c1d0e2f3a4b5c6d;i=2a1;b=77e0f1a2b3c4d5e6;m=1f2e3d;t=640a1b2c3d4e5;x=9f8e7d6c"
            .into(),
        realtime_us: shell.started_ms * 1000 + 30_000_000,
        identifier: tool.into(),
        message: message.into(),
        pid: Some(4301),
        uid: Some(0),
        comm: tool.into(),
        exe: format!("/usr/bin/{tool}"),
        fields: Default::default(),
        cmdline: cmdline.into(),
    };
    let privileged = |e: privilege::Entry| match privilege::parse(&e) {
        privilege::Parsed::Use(u) => {
            privilege::event(&u, &e, "journal", Some(&shell.id), &device, Some(&cloud))
        }
        // The fixed lines above are real sudo/su lines: always a use.
        other => ocsf::gap(
            0,
            &ocsf::Origin {
                source: "journal".into(),
                position: format!("{other:?}"),
            },
            &device,
            None,
            None,
            "not a privilege use",
        ),
    };
    vec![
        privileged(journal(
            "alice : TTY=pts/0 ; PWD=/usr/bin ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
            "sudo",
            "sudo systemctl restart nginx",
        )),
        privileged(journal(
            "alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/usr/bin ; USER=root ; COMMAND=/bin/cat /etc/shadow",
            "sudo",
            "sudo cat /etc/shadow",
        )),
        privileged(journal("(to root) alice on pts/0", "su", "su -")),
        account_change(&device, &cloud),
        session::start_event(&shell, &device, Some(&cloud)),
        session::end_event(&shell, shell.started_ms + 754_000, &device, Some(&cloud)),
        session::start_event(&elevated, &device, Some(&cloud)),
        session::failed_event(
            &session::SessionInfo {
                id: "erin-0c20c0d902585cf86".into(),
                owner: "arn:aws:iam::123456789012:user/erin".into(),
                user: "erin".into(),
                run_as_requested: "erin".into(),
                run_as_enabled: true,
                ..session::SessionInfo::default()
            },
            shell.started_ms + 5_000,
            "Run As user `erin` does not exist on this host",
            &device,
            Some(&cloud),
        ),
        session::start_event(&port, &device, Some(&cloud)),
        session::output_event(
            &shell,
            shell.started_ms + 12_000,
            118,
            43,
            transcript::plain("alice@ip-10-0-1-23:~$ id\r\nuid=1001(alice) gid=1001(alice)\r\n"),
            &device,
            Some(&cloud),
        ),
        exec::event(
            &exec::Command {
                time_ms: shell.started_ms + 14_000,
                session: Some(shell.id.as_str().into()),
                exec: exec::Exec {
                    pid: 4312,
                    ppid: Some(4290),
                    uid: Some(1001),
                    euid: Some(1001),
                    tty: Some("pts/0".into()),
                    filename: Some("/usr/bin/systemctl".into()),
                    argv: vec!["systemctl".into(), "status".into(), "nginx".into()],
                    argv_state: exec::Argv::Complete,
                    cwd: Some("/home/alice".into()),
                    kernel_ns: None,
                },
            },
            Some(&shell),
            &mut {
                let mut n = exec::Names::default();
                n.insert(1001, "alice");
                n
            },
            "1796464800000:17".into(),
            &collector::Host {
                device: device.clone(),
                cloud: Some(cloud.clone()),
                ..collector::Host::default()
            },
        ),
        ocsf::gap(
            shell.started_ms + 1_000,
            &ocsf::Origin {
                source: "spool".into(),
                position: "seq/1041-1043".into(),
            },
            &device,
            Some(&cloud),
            Some(3),
            "records 1041-1043 failed their CRC32C check",
        ),
    ]
}
