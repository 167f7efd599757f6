//! `ssm-companion publish` end to end against the emulator with several accounts (no account
//! pin: `sts:AssumeRole` lands in the role's account), real KMS ECDSA P-256 signing and S3
//! conditional writes; then a host (`accounts.source = "mapping"`, real shadow-utils in a
//! private user database) applying what was published.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use common::{Emulator, Host, block_on};
use serde_json::{Value, json};

/// The emulator's own account (its IMDS identity document says so).
const OWN: &str = "123456789012";
/// A member account, read through its read role.
const MEMBER: &str = "111111111111";
const BUCKET: &str = "fleet-mapping";
const ROLE: &str = "ssm-companion-publish-read";

/// An SDK configuration acting in `account` through its read role.
fn in_account(emu: &Emulator, account: &str) -> aws_config::SdkConfig {
    emu.in_account(account, ROLE)
}

fn tagged_user(conf: &aws_config::SdkConfig, name: &str) {
    let tag = aws_sdk_iam::types::Tag::builder()
        .key("SSMSessionRunAs")
        .value(name)
        .build()
        .unwrap();
    block_on(
        aws_sdk_iam::Client::new(conf)
            .create_user()
            .user_name(name)
            .tags(tag)
            .send(),
    )
    .unwrap();
}

fn untag_user(conf: &aws_config::SdkConfig, name: &str) {
    block_on(
        aws_sdk_iam::Client::new(conf)
            .untag_user()
            .user_name(name)
            .tag_keys("SSMSessionRunAs")
            .send(),
    )
    .unwrap();
}

fn publish(host: &Host, args: &[&str], code: i32) -> Value {
    let mut all = vec!["publish", "--json"];
    all.extend_from_slice(args);
    host.json(&all, code)
}

fn account<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// The manifest's generation as published for `account`.
fn generation(emu: &Emulator, account: &str) -> u64 {
    let objects = emu.objects(BUCKET);
    let (_, env) = objects
        .iter()
        .find(|(k, _)| k == &format!("ssm-companion/mapping/{account}/manifest.json"))
        .unwrap();
    let env: Value = serde_json::from_slice(env).unwrap();
    let payload = aws_smithy_types::base64::decode(env["payload"].as_str().unwrap()).unwrap();
    let m: Value = serde_json::from_slice(&payload).unwrap();
    m["generation"].as_u64().unwrap()
}

#[test]
fn publish_reads_each_account_once_signs_and_hosts_apply_it() {
    require_root!();
    let emu = Emulator::start_multi_account();
    emu.bucket(BUCKET);
    block_on(
        emu.s3()
            .put_bucket_versioning()
            .bucket(BUCKET)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let own = emu.sdk();
    let member = in_account(&emu, MEMBER);
    tagged_user(&own, "alice");
    tagged_user(&own, "bob");
    tagged_user(&member, "carol");
    let key = emu.signing_key();
    let host = Host::new();
    let publish_cfg = format!(
        "\n[publish]\nbucket = \"{BUCKET}\"\nkms_key_id = \"{key}\"\naccounts = [\"{OWN}\", \"{MEMBER}\"]\nrole_name = \"{ROLE}\"\nexternal_id = \"fleet-test\"\n"
    );
    host.configure(&emu, &publish_cfg);

    // A dry run writes nothing and says what would change.
    let dry = publish(&host, &["--dry-run"], 0);
    assert_eq!(account(&dry, OWN)["outcome"], "would-publish", "{dry:#}");
    assert_eq!(
        names(&account(&dry, OWN)["diff"]["added"]),
        ["alice", "bob"]
    );
    assert_eq!(names(&account(&dry, MEMBER)["diff"]["added"]), ["carol"]);
    assert!(emu.objects(BUCKET).is_empty(), "a dry run wrote");

    // Published: one IAM call per account, generation 1 each.
    emu.reset_stats();
    let first = publish(&host, &[], 0);
    for id in [OWN, MEMBER] {
        let a = account(&first, id);
        assert_eq!(a["outcome"], "published", "{first:#}");
        assert_eq!(a["generation"], 1);
        assert_eq!(a["iam_calls"], 1);
    }
    let stats = emu.stats();
    assert_eq!(stats["iam:GetAccountAuthorizationDetails"], 2, "{stats}");
    assert_eq!(stats["kms:Sign"], 2, "{stats}");
    let public_key = first["public_key"].as_str().unwrap().to_string();

    // A host of the own account applies it, verifying with the printed public key.
    host.configure(
        &emu,
        &format!(
            "source = \"mapping\"\n[accounts.mapping]\nbucket = \"{BUCKET}\"\npublic_keys = [\"\"\"{public_key}\"\"\"]\n{publish_cfg}"
        ),
    );
    let applied = host.apply(0);
    assert_eq!(
        Host::steps(&applied, "create"),
        ["alice", "bob"],
        "{applied:#}"
    );

    // Nothing changed: nothing written.
    let again = publish(&host, &[], 0);
    assert_eq!(account(&again, OWN)["outcome"], "unchanged", "{again:#}");
    assert_eq!(account(&again, MEMBER)["outcome"], "unchanged");

    // bob's tag removed, and the own account's read throttled on its first page: that
    // account is skipped (its mapping stays), the member is current.
    untag_user(&own, "bob");
    emu.faults(json!([{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 1, "times": 10, "status": 400, "code": "Throttling", "message": "Rate exceeded"}]));
    let partial = publish(&host, &[], 1);
    let a = account(&partial, OWN);
    assert_eq!(a["outcome"], "skipped", "{partial:#}");
    assert!(
        a["detail"].as_str().unwrap().contains("incomplete"),
        "{a:#}"
    );
    assert_eq!(
        generation(&emu, OWN),
        1,
        "the skipped account's mapping stays"
    );
    emu.faults(json!([]));

    // Read whole again: bob is removed (generation 2), and the host starts retiring him.
    let second = publish(&host, &[], 0);
    let a = account(&second, OWN);
    assert_eq!(a["outcome"], "published", "{second:#}");
    assert_eq!(names(&a["diff"]["removed"]), ["bob"]);
    assert_eq!(a["generation"], 2);
    let applied = host.apply(0);
    assert!(
        applied["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["user"] == "bob"),
        "bob's retirement starts: {applied:#}"
    );

    // The member answers with nobody: not published without --allow-empty.
    untag_user(&member, "carol");
    let empty = publish(&host, &["--account", MEMBER], 1);
    let m = account(&empty, MEMBER);
    assert_eq!(m["outcome"], "skipped", "{empty:#}");
    assert!(
        m["detail"].as_str().unwrap().contains("--allow-empty"),
        "{m:#}"
    );
    let forced = publish(&host, &["--account", MEMBER, "--allow-empty"], 0);
    assert_eq!(
        account(&forced, MEMBER)["outcome"],
        "published",
        "{forced:#}"
    );
    assert_eq!(generation(&emu, MEMBER), 2);

    // Key rotation: publish with a new key re-signs every account at once; hosts that trust
    // both keys accept it.
    let key2 = emu.signing_key();
    let rotated_cfg = publish_cfg.replace(&key, &key2);
    host.configure(&emu, &rotated_cfg);
    let rotated = publish(&host, &[], 0);
    for id in [OWN, MEMBER] {
        let a = account(&rotated, id);
        assert_eq!(a["outcome"], "published", "{rotated:#}");
        assert!(a["detail"].as_str().unwrap().contains("rotation"), "{a:#}");
    }
    let new_key = rotated["public_key"].as_str().unwrap();
    host.configure(
        &emu,
        &format!(
            "source = \"mapping\"\n[accounts.mapping]\nbucket = \"{BUCKET}\"\npublic_keys = [\"\"\"{public_key}\"\"\", \"\"\"{new_key}\"\"\"]\n{rotated_cfg}"
        ),
    );
    let applied = host.apply(0);
    assert_eq!(applied["complete"], true, "{applied:#}");
    assert_eq!(
        publish(&host, &[], 0)["accounts"][0]["outcome"],
        "unchanged",
        "signed by the key in use now"
    );
}

/// Two publishers at once (their writes slowed so both read the same manifest first): one
/// writes the next generation, the other loses the compare-and-swap, reads again and finds it
/// current — never two manifests of one generation.
#[test]
fn two_publishers_at_once_write_one_generation() {
    require_root!();
    let emu = Emulator::start_multi_account();
    emu.bucket(BUCKET);
    let own = emu.sdk();
    tagged_user(&own, "alice");
    let key = emu.signing_key();
    let host = Host::new();
    host.configure(
        &emu,
        &format!("\n[publish]\nbucket = \"{BUCKET}\"\nkms_key_id = \"{key}\"\n"),
    );
    assert_eq!(account(&publish(&host, &[], 0), OWN)["generation"], 1);
    tagged_user(&own, "dave");
    emu.faults(json!([{"service": "s3", "action": "PUT", "times": 8, "delay_ms": 1500}]));
    let racers: Vec<_> = (0..2)
        .map(|_| host.ssmc_spawn(&["publish", "--json"]))
        .collect();
    let outcomes: Vec<String> = racers
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "{e}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            account(&doc, OWN)["outcome"].as_str().unwrap().to_string()
        })
        .collect();
    let published = outcomes.iter().filter(|o| *o == "published").count();
    assert_eq!(published, 1, "{outcomes:?}");
    assert_eq!(generation(&emu, OWN), 2);
}

/// The fleet of `tests/emulator/fleet_seed.py` (also the demo's): an organization with two
/// member accounts (ids chosen by the emulator) and IAM Identity Center users assigned to them.
fn fleet_seed(emu: &Emulator) -> Value {
    let out = std::process::Command::new(common::repo().join(".venv/bin/python"))
        .arg(common::repo().join("tests/emulator/fleet_seed.py"))
        .args(["--endpoint", &emu.moto, "--bucket", BUCKET, "--role", ROLE])
        .args(["--external-id", "fleet-test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Organizations discovery and Identity Center users: the management account lists the
/// member accounts (no account id configured), each account's document has its IAM users and
/// the Identity Center users assigned there (directly or through a group), evaluated from the
/// `SSMSessionRunAs` attribute for access control; a user without a value is left out and
/// named. A host of a member account applies them. Identity Center failing for one account
/// skips that account only; Organizations denied writes nothing.
#[test]
fn organizations_and_identity_center_users_reach_hosts() {
    require_root!();
    let emu = Emulator::start_multi_account();
    let seed = fleet_seed(&emu);
    let key = seed["kms_key_id"].as_str().unwrap();
    let first = seed["members"][0].as_str().unwrap().to_string();
    let second = seed["members"][1].as_str().unwrap().to_string();
    let host = Host::new();
    let publish_cfg = format!(
        "\n[publish]\nbucket = \"{BUCKET}\"\nkms_key_id = \"{key}\"\norganizations = true\nidentity_center = true\nrole_name = \"{ROLE}\"\nexternal_id = \"fleet-test\"\n"
    );
    host.configure(&emu, &publish_cfg);

    emu.reset_stats();
    let report = publish(&host, &[], 0);
    assert_eq!(report["targets"], "organizations", "{report:#}");
    assert_eq!(report["accounts"].as_array().unwrap().len(), 3);
    assert_eq!(names(&account(&report, OWN)["diff"]["added"]), ["alice"]);
    let a = account(&report, &first);
    assert_eq!(a["outcome"], "published", "{report:#}");
    assert_eq!(names(&a["diff"]["added"]), ["carol", "erin", "frank"]);
    assert_eq!(a["identity_center_users"], 2);
    let b = account(&report, &second);
    assert_eq!(names(&b["diff"]["added"]), ["dave"], "{report:#}");
    let notes = b["notes"].to_string();
    assert!(
        notes.contains("eve@example.com: attribute enterprise.employeeNumber is not set"),
        "{b:#}"
    );
    let stats = emu.stats();
    assert_eq!(stats["organizations:ListAccounts"], 1, "{stats}");
    assert_eq!(stats["iam:GetAccountAuthorizationDetails"], 3, "{stats}");
    assert_eq!(stats["identitystore:ListUsers"], 1, "{stats}");
    // `iam-policy --for publisher` grants every Organizations and Identity Center call made.
    let out = host.ssmc(&["iam-policy", "--for", "publisher"]);
    assert!(out.status.success());
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    let granted = policy["Statement"].to_string();
    for call in stats.as_object().unwrap().keys() {
        let service = call.split(':').next().unwrap();
        if ["organizations", "sso", "identitystore"].contains(&service) {
            assert!(
                granted.contains(&format!("\"{call}\"")),
                "{call} not granted: {policy:#}"
            );
        }
    }

    // The document names the reserved role of the permission set, any suffix.
    let doc: Value = serde_json::from_slice(
        &emu.objects(BUCKET)
            .into_iter()
            .find(|(k, _)| k == &format!("ssm-companion/mapping/{first}/document.json"))
            .unwrap()
            .1,
    )
    .unwrap();
    let erin = doc["account"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "erin")
        .unwrap();
    assert_eq!(
        erin["principals"][0],
        format!("arn:aws:sts::{first}:assumed-role/AWSReservedSSO_SSMRunAs_*/erin@example.com")
    );

    // A host of the first member applies its mapping.
    let public_key = report["public_key"].as_str().unwrap();
    host.configure(
        &emu,
        &format!(
            "source = \"mapping\"\n[accounts.mapping]\nbucket = \"{BUCKET}\"\naccount = \"{first}\"\npublic_keys = [\"\"\"{public_key}\"\"\"]\n{publish_cfg}"
        ),
    );
    let applied = host.apply(0);
    assert_eq!(
        Host::steps(&applied, "create"),
        ["carol", "erin", "frank"],
        "{applied:#}"
    );

    // --account: only that account, no discovery.
    emu.reset_stats();
    let only = publish(&host, &["--account", &first], 0);
    assert_eq!(only["targets"], "publish.accounts", "{only:#}");
    assert_eq!(only["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(account(&only, &first)["outcome"], "unchanged");
    assert!(emu.stats().get("organizations:ListAccounts").is_none());

    // Identity Center's assignments of the first member cannot be read: that account is
    // skipped (its mapping stays), the others are current; exit 1.
    emu.faults(json!([{"service": "sso", "action": "ListAccountAssignments", "params": {"AccountId": first}, "times": 100, "status": 400, "code": "ThrottlingException", "message": "Rate exceeded"}]));
    let partial = publish(&host, &[], 1);
    let a = account(&partial, &first);
    assert_eq!(a["outcome"], "skipped", "{partial:#}");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("ListAccountAssignments"),
        "{a:#}"
    );
    assert_eq!(account(&partial, &second)["outcome"], "unchanged");
    assert_eq!(generation(&emu, &first), 1);

    // Organizations denied: the run fails before anything is read or written.
    emu.faults(json!([{"service": "organizations", "action": "ListAccounts", "times": 100, "status": 400, "code": "AccessDeniedException", "message": "not the management account"}]));
    let out = host.ssmc(&["publish"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("organizations:ListAccounts failed") && err.contains("management account"),
        "{err}"
    );
    emu.faults(json!([]));
}
