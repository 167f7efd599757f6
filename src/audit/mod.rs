//! The audit capability: who did what in Session Manager sessions, kept durably on the host and
//! shipped to S3. Its first part is the durable spool every collector writes into.

pub mod collector;
pub mod ocsf;
pub mod session;
pub mod spool;

use std::path::{Path, PathBuf};

/// The audit directory under the state directory (the spool, the open sessions' details).
pub fn audit_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// The spool directory.
pub fn spool_dir(state_dir: &Path) -> PathBuf {
    audit_dir(state_dir).join("spool")
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
    vec![
        session::start_event(&shell, &device, Some(&cloud)),
        session::end_event(&shell, shell.started_ms + 754_000, &device, Some(&cloud)),
        session::start_event(&elevated, &device, Some(&cloud)),
        session::start_event(&port, &device, Some(&cloud)),
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
