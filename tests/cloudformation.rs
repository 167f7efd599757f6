//! The fleet's CloudFormation templates (`packaging/cloudformation/`): cfn-lint finds no error
//! or warning in them, and what they grant is what the design says and no more — the signing
//! key is ECDSA P-256 for signing, the mapping bucket is versioned and private, the publisher
//! role can do exactly what `ssm-companion publish` does, the member accounts' read role only
//! reads IAM and only with the ExternalId, and the hosts' policy only reads their own account's
//! mapping objects.
//!
//! The templates are loaded by cfn-lint's own decoder (in the emulator's venv), which turns the
//! short-form tags (`!Sub`, `!If`, ...) into their long form (`{"Fn::Sub": ...}`); the checks
//! below read that JSON. A statement inside `Fn::If` counts with both branches, i.e. with every
//! optional feature switched on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const PUBLISHER: &str = "packaging/cloudformation/fleet-publisher.yaml";
const MEMBER: &str = "packaging/cloudformation/fleet-member.yaml";

/// Everything `publish` needs (fleet-publish.md §1.1, §2, §3) with every option on.
const PUBLISHER_ACTIONS: &[&str] = &[
    // the mapping: read the current manifest, write document + manifest (CAS); 404 vs 403
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    // the signature
    "kms:Sign",
    "kms:GetPublicKey",
    // this account's identities; the other accounts' through their read role
    "iam:GetAccountAuthorizationDetails",
    "sts:AssumeRole",
    // Organizations discovery (optional)
    "organizations:ListAccounts",
    // IAM Identity Center (optional)
    "sso:ListInstances",
    "sso:DescribeInstanceAccessControlAttributeConfiguration",
    "sso:ListPermissionSetsProvisionedToAccount",
    "sso:DescribePermissionSet",
    "sso:ListAccountAssignments",
    "identitystore:ListUsers",
    "identitystore:ListGroupMemberships",
];

/// Action prefixes that must only be granted behind a template condition (a parameter).
const OPTIONAL_SERVICES: &[&str] = &["organizations:", "sso:", "identitystore:"];

fn path(rel: &str) -> PathBuf {
    common::repo().join(rel)
}

/// Both templates, decoded once by cfn-lint's decoder: `{"<rel path>": template}`.
fn templates() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| {
        const DECODE: &str = r#"
import json, sys
from cfnlint.decode import decode
out = {}
for rel, path in zip(sys.argv[1::2], sys.argv[2::2]):
    template, matches = decode(path)
    if matches:
        sys.exit(f"{rel} does not parse:\n" + "\n".join(str(m) for m in matches))
    out[rel] = template
print(json.dumps(out))
"#;
        let out = Command::new(common::python())
            .arg("-c")
            .arg(DECODE)
            .args([PUBLISHER, path(PUBLISHER).to_str().unwrap()])
            .args([MEMBER, path(MEMBER).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "decoding the templates failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
}

fn template(rel: &str) -> &'static Value {
    &templates()[rel]
}

/// The resource `name` of `rel`, which must have type `ty`.
fn resource<'a>(tpl: &'a Value, rel: &str, name: &str, ty: &str) -> &'a Value {
    let r = &tpl["Resources"][name];
    assert!(!r.is_null(), "{rel}: no resource {name}");
    assert_eq!(r["Type"], ty, "{rel}: {name} is not a {ty}");
    r
}

/// Resources of type `ty`: (logical id, resource).
fn resources_of<'a>(tpl: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    tpl["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(k, r)| (k.as_str(), r))
        .collect()
}

/// A statement of a policy, and whether it is granted only under a template condition.
struct Stmt<'a> {
    s: &'a Value,
    conditional: bool,
}

/// The statements of a policy document, each branch of an `Fn::If` included.
fn statements(doc: &Value) -> Vec<Stmt<'_>> {
    fn walk<'a>(v: &'a Value, conditional: bool, out: &mut Vec<Stmt<'a>>) {
        if v.get("Ref").is_some_and(|r| r == "AWS::NoValue") {
            return;
        }
        if let Some(branches) = v.get("Fn::If") {
            let b = branches.as_array().unwrap();
            walk(&b[1], true, out);
            walk(&b[2], true, out);
        } else if let Some(items) = v.as_array() {
            for i in items {
                walk(i, conditional, out);
            }
        } else {
            assert!(v.is_object(), "a statement that is not an object: {v}");
            out.push(Stmt { s: v, conditional });
        }
    }
    let mut out = Vec::new();
    walk(&doc["Statement"], false, &mut out);
    out
}

/// A statement's `Action` as a list; `NotAction` is refused (it grants everything else).
fn actions(s: &Value) -> Vec<String> {
    assert!(
        s.get("NotAction").is_none(),
        "a statement with NotAction: {s}"
    );
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        other => panic!("a statement without a plain Action list: {other} in {s}"),
    }
}

fn is_allow(s: &Value) -> bool {
    s["Effect"] == "Allow"
}

/// Every statement that applies to the role `role` of `tpl`: its inline `Policies`, and
/// `AWS::IAM::RolePolicy`, `AWS::IAM::Policy` and `AWS::IAM::ManagedPolicy` resources that name
/// it. Managed policy ARNs and permissions boundaries are refused: the template alone must say
/// everything the role may do.
fn role_statements<'a>(tpl: &'a Value, rel: &str, role: &str) -> Vec<Stmt<'a>> {
    let r = resource(tpl, rel, role, "AWS::IAM::Role");
    assert!(
        r["Properties"]["ManagedPolicyArns"].is_null(),
        "{rel}: {role} has ManagedPolicyArns: every permission must be in the template, where this test sees it"
    );
    let by_ref = |v: &Value| v.get("Ref").is_some_and(|x| x == role);
    let mut out = Vec::new();
    if let Some(policies) = r["Properties"]["Policies"].as_array() {
        for p in policies {
            out.extend(statements(&p["PolicyDocument"]));
        }
    }
    for (_, p) in resources_of(tpl, "AWS::IAM::RolePolicy") {
        if by_ref(&p["Properties"]["RoleName"]) {
            out.extend(statements(&p["Properties"]["PolicyDocument"]));
        }
    }
    for ty in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (_, p) in resources_of(tpl, ty) {
            let roles = p["Properties"]["Roles"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if roles.iter().any(by_ref) {
                out.extend(statements(&p["Properties"]["PolicyDocument"]));
            }
        }
    }
    out
}

/// The actions Allowed by `stmts`, after checking none is a wildcard or a NotAction/NotResource
/// grant.
fn allowed_actions(rel: &str, what: &str, stmts: &[Stmt<'_>]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for st in stmts.iter().filter(|st| is_allow(st.s)) {
        assert!(
            st.s.get("NotResource").is_none(),
            "{rel}: {what} grants with NotResource: {}",
            st.s
        );
        for a in actions(st.s) {
            assert!(
                !a.contains('*') && !a.contains('?'),
                "{rel}: {what} grants the wildcard action {a:?}: name each action"
            );
            set.insert(a);
        }
    }
    set
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// "missing: ..., extra: ..." between what is granted and what is expected.
fn diff(got: &BTreeSet<String>, want: &BTreeSet<String>) -> String {
    format!(
        "missing {:?}, extra {:?}",
        want.difference(got).collect::<Vec<_>>(),
        got.difference(want).collect::<Vec<_>>()
    )
}

/// The string a `Fn::Sub` (short or long form) or plain string stands for, placeholders kept.
fn sub_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        _ => match &v["Fn::Sub"] {
            Value::String(s) => s.clone(),
            Value::Array(a) => a[0].as_str().unwrap().to_string(),
            _ => panic!("not a string or Fn::Sub: {v}"),
        },
    }
}

/// IAM's action matching: `*` any run of characters, `?` one; case-insensitive.
fn glob(pattern: &str, action: &str) -> bool {
    fn m(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], a) || (!a.is_empty() && m(p, &a[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => m(&p[1..], &a[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), action.as_bytes())
}

fn is_true(v: &Value) -> bool {
    v == &Value::Bool(true) || v == "true"
}

#[test]
fn cfn_lint_finds_no_error_or_warning() {
    // cfn-lint 1.x has no `__main__`, so `python -m cfnlint` does not run: call its entry point.
    const LINT: &str =
        "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())";
    let out = Command::new(common::python())
        .arg("-c")
        .arg(LINT)
        .args(["--non-zero-exit-code", "warning", "--format", "parseable"])
        .args(["--regions", "us-east-1", "eu-central-1", "--"])
        .arg(path(PUBLISHER))
        .arg(path(MEMBER))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cfn-lint found errors or warnings (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn signing_key_is_ecdsa_p256_for_signing_and_only_the_publisher_signs() {
    let tpl = template(PUBLISHER);
    let keys = resources_of(tpl, "AWS::KMS::Key");
    assert_eq!(keys.len(), 1, "{PUBLISHER}: expected one KMS key");
    let p = &keys[0].1["Properties"];
    assert_eq!(
        p["KeySpec"], "ECC_NIST_P256",
        "{PUBLISHER}: the signing key must be ECC_NIST_P256 (hosts verify ECDSA P-256 only)"
    );
    assert_eq!(
        p["KeyUsage"], "SIGN_VERIFY",
        "{PUBLISHER}: the signing key must have KeyUsage SIGN_VERIFY"
    );
    // Every key policy statement whose actions cover kms:Sign (also by a wildcard such as kms:*,
    // which for the account root would let any identity policy grant signing).
    let mut signers = 0;
    for st in statements(&p["KeyPolicy"]).iter().filter(|s| is_allow(s.s)) {
        if actions(st.s).iter().any(|a| glob(a, "kms:Sign")) {
            signers += 1;
            assert_eq!(
                st.s["Principal"]["AWS"]["Fn::GetAtt"][0], "PublisherRole",
                "{PUBLISHER}: a key policy statement whose actions cover kms:Sign must be for the publisher role only (for the account root it would let any identity policy grant signing): {}",
                st.s
            );
            assert_eq!(
                st.s["Condition"]["StringEquals"]["kms:SigningAlgorithm"], "ECDSA_SHA_256",
                "{PUBLISHER}: kms:Sign must require kms:SigningAlgorithm ECDSA_SHA_256: {}",
                st.s
            );
        }
    }
    assert_eq!(
        signers, 1,
        "{PUBLISHER}: the key policy must let the publisher role sign"
    );
}

#[test]
fn mapping_bucket_is_versioned_and_private() {
    let tpl = template(PUBLISHER);
    let b = &resource(tpl, PUBLISHER, "MappingBucket", "AWS::S3::Bucket")["Properties"];
    assert_eq!(
        b["VersioningConfiguration"]["Status"], "Enabled",
        "{PUBLISHER}: the mapping bucket must have versioning Enabled (manifests pin the document by VersionId)"
    );
    let pab = &b["PublicAccessBlockConfiguration"];
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert!(
            is_true(&pab[flag]),
            "{PUBLISHER}: the mapping bucket must block public access: {flag} is {}",
            pab[flag]
        );
    }
    assert_eq!(
        b["OwnershipControls"]["Rules"][0]["ObjectOwnership"], "BucketOwnerEnforced",
        "{PUBLISHER}: ACLs must be disabled (BucketOwnerEnforced)"
    );
    assert!(
        !b["BucketEncryption"].is_null(),
        "{PUBLISHER}: the bucket needs default encryption"
    );

    // The bucket policy: TLS only, writes by the publisher role only, organization reads of
    // one's own account only.
    let policies = resources_of(tpl, "AWS::S3::BucketPolicy");
    assert_eq!(policies.len(), 1, "{PUBLISHER}: expected one bucket policy");
    let stmts = statements(&policies[0].1["Properties"]["PolicyDocument"]);
    assert!(
        stmts.iter().any(|st| st.s["Effect"] == "Deny"
            && st.s["Condition"]["Bool"]["aws:SecureTransport"] == "false"),
        "{PUBLISHER}: the bucket policy must deny requests without TLS"
    );
    assert!(
        stmts.iter().any(|st| st.s["Effect"] == "Deny"
            && !st.conditional
            && actions(st.s).iter().any(|a| a == "s3:PutObject")
            && actions(st.s).iter().any(|a| a == "s3:DeleteObject")
            && st.s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]["Fn::GetAtt"][0]
                == "PublisherRole"),
        "{PUBLISHER}: the bucket policy must deny PutObject/DeleteObject to everyone but the publisher role"
    );
    for st in stmts.iter().filter(|st| is_allow(st.s)) {
        assert_eq!(
            actions(st.s),
            ["s3:GetObject", "s3:GetObjectVersion"],
            "{PUBLISHER}: the bucket policy may allow only reads: {}",
            st.s
        );
        assert!(
            st.conditional && !st.s["Condition"]["StringEquals"]["aws:PrincipalOrgID"].is_null(),
            "{PUBLISHER}: the bucket policy's read grant must be for the organization (aws:PrincipalOrgID), only when OrganizationId is set: {}",
            st.s
        );
        assert!(
            sub_text(&st.s["Resource"]).ends_with("/${!aws:PrincipalAccount}/*"),
            "{PUBLISHER}: an organization principal may read only its own account's objects: {}",
            st.s
        );
    }
}

#[test]
fn publisher_role_has_exactly_what_publish_needs() {
    let tpl = template(PUBLISHER);
    let stmts = role_statements(tpl, PUBLISHER, "PublisherRole");
    let got = allowed_actions(PUBLISHER, "the publisher role", &stmts);
    for a in &got {
        assert!(
            !a.starts_with("s3:Delete"),
            "{PUBLISHER}: the publisher role must not delete ({a}): a failed account keeps its previous manifest"
        );
        assert!(
            !a.starts_with("iam:") || a == "iam:GetAccountAuthorizationDetails",
            "{PUBLISHER}: the publisher role may only read IAM, not {a}"
        );
    }
    let want = set(PUBLISHER_ACTIONS);
    assert_eq!(
        got,
        want,
        "{PUBLISHER}: the publisher role's actions are not exactly what publish needs: {}",
        diff(&got, &want)
    );
    // The optional reads only behind their parameter; the rest always.
    for st in stmts.iter().filter(|st| is_allow(st.s)) {
        for a in actions(st.s) {
            let optional = OPTIONAL_SERVICES.iter().any(|p| a.starts_with(p));
            assert_eq!(
                st.conditional,
                optional,
                "{PUBLISHER}: {a} must be granted {} (a Fn::If on a parameter): {}",
                if optional {
                    "only behind a condition"
                } else {
                    "unconditionally"
                },
                st.s
            );
        }
    }
    // Where each of the core grants may point.
    let resource_of = |action: &str| -> Vec<String> {
        stmts
            .iter()
            .filter(|st| is_allow(st.s) && actions(st.s).iter().any(|a| a == action))
            .map(|st| match &st.s["Resource"] {
                Value::Array(r) => r.iter().map(sub_text).collect::<Vec<_>>().join(" "),
                Value::Object(o) if o.contains_key("Fn::GetAtt") => {
                    format!("GetAtt {}", st.s["Resource"]["Fn::GetAtt"][0])
                }
                r => sub_text(r),
            })
            .collect()
    };
    for a in ["s3:GetObject", "s3:PutObject"] {
        assert_eq!(
            resource_of(a),
            ["${MappingBucket.Arn}/${MappingPrefix}/*"],
            "{PUBLISHER}: {a} only under the prefix"
        );
    }
    assert_eq!(
        resource_of("sts:AssumeRole"),
        ["arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"],
        "{PUBLISHER}: sts:AssumeRole only on the member read role"
    );
    for a in ["kms:Sign", "kms:GetPublicKey"] {
        assert_eq!(
            resource_of(a),
            ["GetAtt \"SigningKey\""],
            "{PUBLISHER}: {a} only on the signing key"
        );
    }
    let list = stmts
        .iter()
        .find(|st| actions(st.s).iter().any(|a| a == "s3:ListBucket"))
        .unwrap();
    assert!(
        !list.s["Condition"]["StringLike"]["s3:prefix"].is_null(),
        "{PUBLISHER}: s3:ListBucket must be limited to the prefix (s3:prefix): {}",
        list.s
    );
    let sign = stmts
        .iter()
        .find(|st| actions(st.s).iter().any(|a| a == "kms:Sign"))
        .unwrap();
    assert_eq!(
        sign.s["Condition"]["StringEquals"]["kms:SigningAlgorithm"], "ECDSA_SHA_256",
        "{PUBLISHER}: kms:Sign must require ECDSA_SHA_256: {}",
        sign.s
    );
}

#[test]
fn publish_schedule_sends_a_valid_run_command() {
    let tpl = template(PUBLISHER);
    let s = &resource(
        tpl,
        PUBLISHER,
        "PublishSchedule",
        "AWS::Scheduler::Schedule",
    )["Properties"];
    assert_eq!(
        sub_text(&s["Target"]["Arn"]),
        "arn:${AWS::Partition}:scheduler:::aws-sdk:ssm:sendCommand"
    );
    // The input is JSON once its placeholders are filled in.
    let input = sub_text(&s["Target"]["Input"])
        .replace("${PublisherInstanceId}", "i-0123456789abcdef0")
        .replace("${PublishCommand}", "ssm-companion publish");
    let input: Value = serde_json::from_str(&input)
        .unwrap_or_else(|e| panic!("{PUBLISHER}: the schedule's Input is not JSON ({e}): {input}"));
    assert_eq!(input["DocumentName"], "AWS-RunShellScript");
    assert_eq!(input["InstanceIds"][0], "i-0123456789abcdef0");
    assert_eq!(input["Parameters"]["commands"][0], "ssm-companion publish");
    // Its role may send that one document to that one instance, nothing else.
    let stmts = role_statements(tpl, PUBLISHER, "PublishSchedulerRole");
    let got = allowed_actions(PUBLISHER, "the scheduler role", &stmts);
    assert_eq!(
        got,
        set(&["ssm:SendCommand"]),
        "{PUBLISHER}: the scheduler role"
    );
}

#[test]
fn member_read_role_only_reads_iam_and_requires_the_external_id() {
    let tpl = template(MEMBER);
    let role = resource(tpl, MEMBER, "PublishReadRole", "AWS::IAM::Role");
    let got = allowed_actions(
        MEMBER,
        "the read role",
        &role_statements(tpl, MEMBER, "PublishReadRole"),
    );
    let want = set(&["iam:GetAccountAuthorizationDetails"]);
    assert_eq!(
        got,
        want,
        "{MEMBER}: the read role may only call iam:GetAccountAuthorizationDetails: {}",
        diff(&got, &want)
    );
    let trust = statements(&role["Properties"]["AssumeRolePolicyDocument"]);
    assert!(!trust.is_empty(), "{MEMBER}: the read role trusts no one");
    for st in trust.iter().filter(|st| is_allow(st.s)) {
        assert_eq!(
            st.s["Principal"]["AWS"]["Ref"], "PublisherRoleArn",
            "{MEMBER}: the read role must trust the publisher role only: {}",
            st.s
        );
        assert_eq!(
            st.s["Condition"]["StringEquals"]["sts:ExternalId"]["Ref"], "ExternalId",
            "{MEMBER}: assuming the read role must require the ExternalId (StringEquals sts:ExternalId): {}",
            st.s
        );
    }
}

#[test]
fn host_policy_only_reads_its_own_accounts_mapping() {
    let tpl = template(MEMBER);
    let p = resource(
        tpl,
        MEMBER,
        "HostMappingReadPolicy",
        "AWS::IAM::ManagedPolicy",
    );
    let stmts = statements(&p["Properties"]["PolicyDocument"]);
    let got = allowed_actions(MEMBER, "the hosts' policy", &stmts);
    let want = set(&["s3:GetObject", "s3:GetObjectVersion"]);
    assert_eq!(
        got,
        want,
        "{MEMBER}: the hosts' policy may only grant s3:GetObject and s3:GetObjectVersion (hosts make no IAM or KMS call): {}",
        diff(&got, &want)
    );
    for st in &stmts {
        assert_eq!(
            sub_text(&st.s["Resource"]),
            "arn:${AWS::Partition}:s3:::${MappingBucketName}/${MappingPrefix}/${AWS::AccountId}/*",
            "{MEMBER}: hosts may read their own account's objects only: {}",
            st.s
        );
    }
}
