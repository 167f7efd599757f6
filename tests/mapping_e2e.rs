//! The `mapping` source end to end: the real binary reads a signed mapping from the emulator's
//! S3 (its account from the strict IMDSv2 stub) and applies it with real shadow-utils in a
//! private user database. Every refusal — a tampered document, an unknown signing key, an
//! expired or replayed manifest, a missing document, a throttling bucket — is an incomplete
//! read that changes no account; an unchanged mapping costs one 304; no IAM call is made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use common::{Emulator, Host, block_on};
use serde_json::{Value, json};

/// The emulator's account (its IMDS identity document says so).
const ACCOUNT: &str = "123456789012";
const BUCKET: &str = "fleet-mapping";
const PREFIX: &str = "ssm-companion/mapping";

/// A signing key, as KMS's ECC_NIST_P256 key would sign (ECDSA_SHA_256, DER signatures).
struct Signer(EcdsaKeyPair);

impl Signer {
    fn new() -> Self {
        Self(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }

    fn pem(&self) -> String {
        let der = self.0.public_key().as_der().unwrap();
        ssm_companion::accounts::mapping::public_key_pem(der.as_ref())
    }

    fn seal(&self, manifest: &Value) -> Vec<u8> {
        let payload = serde_json::to_vec(manifest).unwrap();
        let sig = self.0.sign(&SystemRandom::new(), &payload).unwrap();
        serde_json::to_vec(&json!({
            "payload": aws_smithy_types::base64::encode(&payload),
            "alg": "ECDSA_SHA_256",
            "key_id": "arn:aws:kms:us-east-1:123456789012:key/test",
            "sig": aws_smithy_types::base64::encode(sig.as_ref()),
        }))
        .unwrap()
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn sha256_hex(b: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn put(emu: &Emulator, key: &str, body: Vec<u8>) {
    block_on(
        emu.s3()
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into())
            .send(),
    )
    .unwrap();
}

/// The document of `names` (each with its own IAM user as principal).
fn document(names: &[&str]) -> Vec<u8> {
    let accounts: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "principals": [format!("arn:aws:iam::{ACCOUNT}:user/{n}")]}))
        .collect();
    serde_json::to_vec(&json!({ "account": accounts })).unwrap()
}

/// A manifest of `generation` pinning `doc` at `key`, valid for `valid` from now (negative:
/// expired that long ago).
fn manifest(generation: u64, doc: &[u8], key: &str, valid: i64) -> Value {
    let now = SystemTime::now();
    let expires = if valid >= 0 {
        now + Duration::from_secs(valid.unsigned_abs())
    } else {
        now - Duration::from_secs(valid.unsigned_abs())
    };
    json!({
        "schema": 1,
        "scope": {"account": ACCOUNT},
        "generation": generation,
        "complete": true,
        "issued_at": rfc3339(now - Duration::from_secs(7200)),
        "expires_at": rfc3339(expires),
        "document": {"key": key, "sha256": sha256_hex(doc), "size": doc.len()},
    })
}

const MANIFEST: &str = "ssm-companion/mapping/123456789012/manifest.json";
const DOCUMENT: &str = "ssm-companion/mapping/123456789012/document.json";

/// Publishes `doc` under generation `generation`, signed by `signer`; returns the envelope.
fn publish(emu: &Emulator, signer: &Signer, generation: u64, doc: &[u8]) -> Vec<u8> {
    put(emu, DOCUMENT, doc.to_vec());
    let env = signer.seal(&manifest(generation, doc, DOCUMENT, 86400));
    put(emu, MANIFEST, env.clone());
    env
}

/// An incomplete read that changed nothing, with `why` among its problems.
fn refused(doc: &Value, why: &str) {
    assert_eq!(doc["complete"], false, "{doc:#}");
    let problems = doc["problems"].to_string();
    assert!(problems.contains(why), "`{why}` not in {problems}");
    assert!(
        problems.contains("nothing is created or retired"),
        "{problems}"
    );
    assert!(
        doc["steps"].as_array().unwrap().is_empty(),
        "no account changes: {doc:#}"
    );
}

#[test]
fn a_signed_mapping_is_applied_and_every_bad_one_changes_nothing() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let signer = Signer::new();
    let host = Host::new();
    let key_file = host.dir().join("mapping-key.pem");
    std::fs::write(&key_file, signer.pem()).unwrap();
    host.configure(
        &emu,
        &format!(
            "source = \"mapping\"\n[accounts.mapping]\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\npublic_keys = [\"{}\"]\n",
            key_file.display()
        ),
    );

    // Nothing published yet: no manifest is an incomplete read that says what to do.
    refused(&host.apply(1), "has `ssm-companion publish` run");

    let first = publish(&emu, &signer, 1, &document(&["alice"]));
    emu.reset_stats();
    let doc = host.apply(0);
    assert_eq!(doc["complete"], true, "{doc:#}");
    assert_eq!(Host::steps(&doc, "create"), ["alice"], "{doc:#}");
    assert_eq!(doc["api_calls"], 2, "the manifest and the document");
    assert!(host.uid("alice").is_some());

    // Unchanged: one conditional GET answered 304, nothing else.
    let doc = host.apply(0);
    assert_eq!(doc["complete"], true, "{doc:#}");
    assert!(
        doc["source"].as_str().unwrap().contains("(unchanged)"),
        "{doc:#}"
    );
    assert_eq!(doc["api_calls"], 1);
    assert_eq!(doc["changes_pending"], false);

    // A document that is not the one the manifest pins (tampered with, or half written).
    let pinned = document(&["alice", "bob"]);
    put(&emu, DOCUMENT, document(&["alice", "mallory"]));
    put(
        &emu,
        MANIFEST,
        signer.seal(&manifest(2, &pinned, DOCUMENT, 86400)),
    );
    refused(&host.apply(1), "does not match its manifest");

    // Signed by a key the hosts do not trust.
    let stranger = Signer::new();
    publish(&emu, &stranger, 3, &document(&["alice", "mallory"]));
    refused(
        &host.apply(1),
        "does not verify with any of the 1 configured",
    );

    // Expired: the publisher stopped re-signing.
    let doc3 = document(&["alice", "mallory"]);
    put(&emu, DOCUMENT, doc3.clone());
    put(
        &emu,
        MANIFEST,
        signer.seal(&manifest(4, &doc3, DOCUMENT, -60)),
    );
    refused(&host.apply(1), "expired at");

    // A good one again: bob is created.
    publish(&emu, &signer, 5, &document(&["alice", "bob"]));
    let doc = host.apply(0);
    assert_eq!(doc["complete"], true, "{doc:#}");
    assert_eq!(Host::steps(&doc, "create"), ["bob"], "{doc:#}");

    // A replay of generation 1 (validly signed, not expired) is a rollback.
    put(&emu, MANIFEST, first);
    put(&emu, DOCUMENT, document(&["alice"]));
    refused(&host.apply(1), "older than generation 5");

    // The document the manifest pins is missing.
    let gone = document(&["alice", "bob", "carol"]);
    put(
        &emu,
        MANIFEST,
        signer.seal(&manifest(
            6,
            &gone,
            "ssm-companion/mapping/123456789012/gone.json",
            86400,
        )),
    );
    refused(&host.apply(1), "gone.json failed");

    // The bucket throttles (every attempt of the SDK's retries).
    publish(&emu, &signer, 7, &document(&["alice", "bob"]));
    emu.faults(json!([{"service": "s3", "action": "GET", "times": 10, "status": 503, "code": "SlowDown", "message": "Please reduce your request rate."}]));
    refused(&host.apply(1), "SlowDown");
    emu.faults(json!([]));

    // Through all of it: alice and bob kept, no IAM call.
    let doc = host.apply(0);
    assert_eq!(doc["complete"], true, "{doc:#}");
    assert_eq!(doc["changes_pending"], false, "{doc:#}");
    assert!(host.uid("alice").is_some() && host.uid("bob").is_some());
    let stats = emu.stats();
    let iam: Vec<_> = stats
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("iam:"))
        .collect();
    assert!(iam.is_empty(), "IAM calls from the host: {stats}");
    host.assert_consistent(&["alice", "bob"]);
}

/// The daemon with the mapping source: it polls on its schedule (interval 1 s here), picks up
/// each new generation, keeps every account through a bucket that throttles every request, and
/// converges once it stops — with no IAM call.
#[test]
fn the_daemon_follows_the_mapping_through_throttling_without_iam() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let signer = Signer::new();
    let host = Host::new();
    host.configure(
        &emu,
        &format!(
            "interval = \"4s\"\nsource = \"mapping\"\n[accounts.mapping]\nbucket = \"{BUCKET}\"\npublic_keys = [\"\"\"{}\"\"\"]\ninterval = \"1s\"\n",
            signer.pem()
        ),
    );
    publish(&emu, &signer, 1, &document(&["alice"]));
    let notify = host.dir().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = common::drain(&mut daemon);
    let mut seen = Vec::new();
    let wait = |needle: &str, seen: &mut Vec<String>| {
        common::wait_for(&sock, needle, Duration::from_secs(30), seen)
    };
    wait("accounts: 1 managed", &mut seen);

    publish(&emu, &signer, 2, &document(&["alice", "bob"]));
    wait("accounts: 2 managed", &mut seen);
    // Unchanged polls (304s) after a converged sync do no local work; a full sync still
    // comes within accounts.interval (4 s here) to repair local drift.
    let line = wait("no local work", &mut seen);
    assert!(
        line.contains("accounts: 2 managed") && line.contains("#generation=2 (unchanged)"),
        "{line}"
    );
    let line = wait("last sync", &mut seen);
    assert!(line.contains("accounts: 2 managed"), "{line}");

    // Unchanged: about one conditional GET a second (304s), nothing else.
    emu.reset_stats();
    std::thread::sleep(Duration::from_secs(5));
    let gets = emu.stats()["s3:GET"].as_u64().unwrap_or(0);
    assert!(
        (2..=10).contains(&gets),
        "{gets} GETs in 5 s at interval 1s"
    );

    // Every request throttled: incomplete reads, backing off, nobody retired.
    emu.faults(json!([{"service": "s3", "action": "GET", "times": 100000, "status": 503, "code": "SlowDown", "message": "Please reduce your request rate."}]));
    let line = wait("source read incomplete", &mut seen);
    assert!(line.contains("accounts: 2 managed"), "{line}");
    // Health says why.
    let check = host.doctor_check("accounts.sync");
    assert_eq!(check["status"], "warning", "{check:#}");
    assert!(
        check["detail"].as_str().unwrap().contains("SlowDown"),
        "{check:#}"
    );
    publish(&emu, &signer, 3, &document(&["alice", "bob", "carol"]));
    std::thread::sleep(Duration::from_secs(3));
    emu.faults(json!([]));
    wait("accounts: 3 managed", &mut seen);

    common::stop(&mut daemon);
    let log = log.join().unwrap();
    let iam: Vec<String> = emu
        .stats()
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("iam:"))
        .cloned()
        .collect();
    assert!(iam.is_empty(), "IAM calls from the daemon: {iam:?}");
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("INFO account ") && !l.contains("INFO account create"))
        .collect();
    assert!(changes.is_empty(), "only creations: {changes:#?}\n{log}");
    host.assert_consistent(&["alice", "bob", "carol"]);
}
