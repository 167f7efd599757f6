//! `ssm-companion iam-policy`: the printed policies are accepted by IAM's policy validation (moto
//! checks documents the way IAM does: version, statement shape, actions, resource ARNs), for
//! several configurations, and a broken document is refused (so the check can fail).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::process::Command;

use common::{Emulator, bin, block_on};
use serde_json::Value;

fn iam_policy(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("iam-policy")
        .args(args)
        .env("SSM_COMPANION_VENDOR_CONFIG_DIR", dir.path().join("vendor"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn create_policy(emu: &Emulator, name: &str, doc: &str) -> Result<(), String> {
    block_on(
        emu.iam()
            .create_policy()
            .policy_name(name)
            .policy_document(doc)
            .send(),
    )
    .map(|_| ())
    .map_err(|e| format!("{e:?}"))
}

#[test]
fn printed_policies_are_valid_iam_policies() {
    let emu = Emulator::start();
    let configs = [
        ("defaults", ""),
        (
            "file-source-with-inventory",
            "[accounts]\nsource = \"file\"\nread_session_preferences = false\n[health]\ninventory = true\n",
        ),
        ("iam-without-health", "[health]\nenabled = false\n"),
        (
            "audit-shipping-with-kms",
            "[audit]\nenabled = true\n[audit.s3]\nbucket = \"audit-bucket\"\nprefix = \"audit/v1\"\nsse = \"aws:kms\"\n",
        ),
        (
            "mapping-source-and-a-full-publisher",
            "[accounts]\nsource = \"mapping\"\n[accounts.mapping]\nbucket = \"fleet-mapping\"\npublic_keys = [\"-----BEGIN PUBLIC KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\\nq9UdMvZsT1iULWzMzvr0dIn2qvHuWsYt/Z1Hf6vyLR/ZWrJGshdqNXTzMA==\\n-----END PUBLIC KEY-----\\n\"]\n[publish]\nbucket = \"fleet-mapping\"\nkms_key_id = \"arn:aws:kms:us-east-1:123456789012:key/k\"\naccounts = [\"111111111111\"]\norganizations = true\nidentity_center = true\n",
        ),
        (
            "audit-to-cloudwatch-logs",
            "[audit]\nenabled = true\n[audit.cloudwatch]\nlog_group = \"/ssm-companion/audit\"\nregion = \"eu-west-1\"\n",
        ),
    ];
    for (name, config) in configs {
        let (code, stdout, stderr) = iam_policy(config, &["--json", "--account", "123456789012"]);
        assert_eq!(code, 0, "{name}: {stderr}");
        let doc: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(doc["schema"], "ssm-companion/iam-policy/v1");
        let host = doc["instance_profile"].to_string();
        create_policy(&emu, &format!("{name}-host"), &host)
            .unwrap_or_else(|e| panic!("{name}: IAM refused {host}: {e}"));
        create_policy(
            &emu,
            &format!("{name}-operator"),
            &doc["operator"].to_string(),
        )
        .unwrap_or_else(|e| panic!("{name}: IAM refused the operator policy: {e}"));
        create_policy(
            &emu,
            &format!("{name}-publisher"),
            &doc["publisher"].to_string(),
        )
        .unwrap_or_else(|e| panic!("{name}: IAM refused the publisher policy: {e}"));
        let (code, only, _) = iam_policy(config, &["--for", "publisher"]);
        assert_eq!(code, 0);
        assert_eq!(
            serde_json::from_str::<Value>(&only).unwrap(),
            iam_policy(config, &["--json"]).1.parse::<Value>().unwrap()["publisher"]
        );
        // `--for` prints exactly that document, ready for put-role-policy.
        let (code, only, _) = iam_policy(
            config,
            &["--for", "instance-profile", "--account", "123456789012"],
        );
        assert_eq!(code, 0);
        assert_eq!(
            serde_json::from_str::<Value>(&only).unwrap(),
            doc["instance_profile"]
        );
    }
    // The validation is real: a resource in an unknown partition, or an action without its
    // service prefix, is refused.
    for broken in [
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:GetDocument","Resource":"arn:aws-moon:ssm:*:*:document/x"}]}"#,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"GetDocument","Resource":"*"}]}"#,
    ] {
        assert!(create_policy(&emu, "broken", broken).is_err(), "{broken}");
    }
}

#[test]
fn a_configuration_without_aws_calls_needs_no_host_policy() {
    let (code, stdout, stderr) = iam_policy(
        "[accounts]\nenabled = false\n[health]\nenabled = false\n",
        &["--for", "instance-profile"],
    );
    assert_eq!(code, 0);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("needs no permission"), "{stderr}");
    let (code, _, stderr) = iam_policy("", &["--region", "Mars 1"]);
    assert_eq!(code, 64, "bad usage");
    assert!(stderr.contains("--region"), "{stderr}");
}
