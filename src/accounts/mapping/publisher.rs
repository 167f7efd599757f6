//! `ssm-companion publish`: per target account, one paginated `GetAccountAuthorizationDetails`
//! (this account's own credentials, or a role assumed there), the published mapping read back,
//! the decision of [`super::publish::decide`], and — unless it is a dry run — the document
//! written, the manifest signed by KMS (ECDSA P-256, RAW) and written with a compare-and-swap:
//! `If-Match` on the ETag read (`If-None-Match: *` the first time), so two publishers cannot
//! interleave or roll a generation back. A publisher that lost the race reads again and redoes
//! the account.

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;

use super::publish::{self, Decision, Diff, Published};
use super::{Envelope, Manifest, envelope, public_key_pem, sha256_hex};
use crate::accounts::desired::{Claim, SourceRead};
use crate::config::PublishSettings;

/// Attempts at one account's compare-and-swap before giving up (another publisher kept
/// winning).
const CAS_ATTEMPTS: u32 = 3;

/// What `publish` was asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Read and decide, write nothing.
    pub dry_run: bool,
    /// Publish an account's empty answer even where its published mapping had principals.
    pub allow_empty: bool,
}

/// One account's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    /// The account.
    pub account: String,
    /// "published", "unchanged", "skipped", "would-publish" (dry run) or "failed".
    pub outcome: &'static str,
    /// Why.
    pub detail: String,
    /// The generation now published (or that would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// What changes for hosts, by OS user name.
    pub diff: Diff,
    /// Principals with `SSMSessionRunAs` read.
    pub principals: usize,
    /// IAM calls made for this account.
    pub iam_calls: u32,
    /// Of the principals, Identity Center users (with `publish.identity_center`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_center_users: Option<usize>,
    /// What the read noted without failing: principals left out and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ssm-companion/publish/v1`.
    pub schema: &'static str,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// Where.
    pub bucket: String,
    /// Under which prefix.
    pub prefix: String,
    /// The signing key's public key, PEM (what hosts put in accounts.mapping.public_keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Per account, in order.
    pub accounts: Vec<AccountReport>,
    /// How the target accounts were found: "this account", "publish.accounts",
    /// "organizations" or "organizations + publish.accounts".
    pub targets: &'static str,
    /// Calls to Organizations and Identity Center (once per run, and per account), not IAM.
    pub directory_calls: u32,
}

impl Report {
    /// True when some account was not published as it should be (skipped or failed).
    pub fn has_problems(&self) -> bool {
        self.accounts
            .iter()
            .any(|a| matches!(a.outcome, "skipped" | "failed"))
    }
}

/// The `--json` schema.
pub const SCHEMA: &str = "ssm-companion/publish/v1";

/// What is published for an account: the manifest object's ETag and its parsed manifest, and
/// the document's claims.
struct Current {
    etag: String,
    published: Published,
}

/// Reads what is published for `account` (`None`: nothing yet).
async fn current(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    account: &str,
    spki: Option<&[u8]>,
    notes: &mut Vec<String>,
) -> Result<Option<Current>, String> {
    let key = super::object_key(prefix, account, "manifest.json");
    let out = match s3.get_object().bucket(bucket).key(&key).send().await {
        Ok(o) => o,
        Err(e) if crate::aws::http_status(&e) == Some(404) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "reading s3://{bucket}/{key} failed: {} (the publisher needs s3:GetObject and s3:ListBucket there)",
                crate::aws::sdk_error(&e)
            ));
        }
    };
    let etag = out.e_tag().unwrap_or_default().to_string();
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?
        .into_bytes();
    let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| {
        format!("s3://{bucket}/{key} is not a manifest envelope ({e}): remove it or fix it by hand")
    })?;
    let payload = aws_smithy_types::base64::decode(&env.payload)
        .map_err(|e| format!("s3://{bucket}/{key}: its payload is not base64 ({e})"))?;
    let sig = aws_smithy_types::base64::decode(&env.sig).unwrap_or_default();
    let current_key = spki.is_none_or(|spki| {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            spki,
        )
        .verify(&payload, &sig)
        .is_ok()
    });
    if !current_key {
        notes.push(format!(
            "the published manifest (signed by {}) does not verify with this signing key: a key rotation, or it was written by someone else",
            env.key_id
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&payload)
        .map_err(|e| format!("s3://{bucket}/{key}: its manifest is unreadable ({e})"))?;
    let doc = s3
        .get_object()
        .bucket(bucket)
        .key(&manifest.document.key)
        .set_version_id(manifest.document.version_id.clone())
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading the published document s3://{bucket}/{} failed: {}",
                manifest.document.key,
                crate::aws::sdk_error(&e)
            )
        })?;
    let text = doc
        .body
        .collect()
        .await
        .map_err(|e| format!("reading the published document: {e}"))?
        .into_bytes();
    let claims = crate::accounts::source::parse_account_list(
        &String::from_utf8_lossy(&text),
        true,
        "published",
    )
    .map_err(|e| {
        format!(
            "the published document {} is invalid: {e}",
            manifest.document.key
        )
    })?;
    Ok(Some(Current {
        etag,
        published: Published {
            manifest,
            claims,
            current_key,
        },
    }))
}

/// Who runs `publish`: its account and partition.
struct Caller {
    account: String,
    partition: String,
}

/// The SDK configuration that reads `account`: the caller's own, or the read role assumed there.
async fn config_for(
    base: &SdkConfig,
    own: &Caller,
    account: &str,
    p: &PublishSettings,
) -> SdkConfig {
    if account == own.account {
        return base.clone();
    }
    let arn = format!("arn:{}:iam::{account}:role/{}", own.partition, p.role_name);
    let mut b = aws_config::sts::AssumeRoleProvider::builder(arn)
        .session_name("ssm-companion-publish")
        .configure(base);
    if !p.external_id.is_empty() {
        b = b.external_id(p.external_id.clone());
    }
    let provider = b.build().await;
    base.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

/// Signs `payload` with the KMS key; returns the key's ARN and the DER signature.
async fn sign(
    kms: &aws_sdk_kms::Client,
    key: &str,
    payload: &[u8],
) -> Result<(String, Vec<u8>), String> {
    let out = kms
        .sign()
        .key_id(key)
        .message(Blob::new(payload))
        .message_type(MessageType::Raw)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .map_err(|e| format!("kms:Sign with {key} failed: {}", crate::aws::sdk_error(&e)))?;
    let sig = out
        .signature()
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| "kms:Sign answered without a signature".to_string())?;
    Ok((out.key_id().unwrap_or(key).to_string(), sig))
}

/// The signing key's public key (SubjectPublicKeyInfo DER), checked to be ECDSA P-256.
async fn public_key(kms: &aws_sdk_kms::Client, key: &str) -> Result<Vec<u8>, String> {
    let out = kms.get_public_key().key_id(key).send().await.map_err(|e| {
        format!(
            "kms:GetPublicKey of {key} failed: {}",
            crate::aws::sdk_error(&e)
        )
    })?;
    let spki = out
        .public_key()
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| format!("kms:GetPublicKey of {key} gave no key"))?;
    // The same check the hosts make of a configured key.
    super::trusted_key(&public_key_pem(&spki), 0).map_err(|_| {
        format!(
            "the KMS key {key} is not an ECC_NIST_P256 signing key ({}): create one with KeySpec ECC_NIST_P256, KeyUsage SIGN_VERIFY",
            out.key_spec().map_or("unknown spec", |s| s.as_str())
        )
    })?;
    Ok(spki)
}

/// Writes one account's mapping: the document, then the signed manifest conditionally.
/// `Ok(None)`: another publisher changed the manifest meanwhile (redo).
#[allow(clippy::too_many_arguments)] // NOTE: each is one fact of the write, named at the call.
async fn write(
    s3: &aws_sdk_s3::Client,
    kms: &aws_sdk_kms::Client,
    p: &PublishSettings,
    account: &str,
    doc: &[u8],
    generation: u64,
    etag: Option<&str>,
    now: SystemTime,
) -> Result<Option<u64>, String> {
    let doc_key = super::object_key(&p.prefix, account, "document.json");
    let put = s3
        .put_object()
        .bucket(&p.bucket)
        .key(&doc_key)
        .content_type("application/json")
        .body(ByteStream::from(doc.to_vec()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "writing s3://{}/{doc_key} failed: {}",
                p.bucket,
                crate::aws::sdk_error(&e)
            )
        })?;
    let manifest = publish::manifest(
        account,
        generation,
        &doc_key,
        put.version_id().map(str::to_string),
        doc,
        now,
        p.validity,
    );
    let payload = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    if payload.len() > super::MAX_MANIFEST_BYTES {
        return Err(format!(
            "the manifest is {} bytes, above what KMS signs as RAW ({})",
            payload.len(),
            super::MAX_MANIFEST_BYTES
        ));
    }
    let (key_arn, sig) = sign(kms, &p.kms_key_id, &payload).await?;
    let body =
        serde_json::to_vec(&envelope(&payload, &key_arn, &sig)).map_err(|e| e.to_string())?;
    let manifest_key = super::object_key(&p.prefix, account, "manifest.json");
    let req = s3
        .put_object()
        .bucket(&p.bucket)
        .key(&manifest_key)
        .content_type("application/json")
        .body(ByteStream::from(body));
    let req = match etag {
        Some(t) => req.if_match(t),
        None => req.if_none_match("*"),
    };
    match req.send().await {
        Ok(_) => Ok(Some(generation)),
        Err(e) if matches!(crate::aws::http_status(&e), Some(412 | 409)) => Ok(None),
        Err(e) => Err(format!(
            "writing s3://{}/{manifest_key} failed: {}",
            p.bucket,
            crate::aws::sdk_error(&e)
        )),
    }
}

/// What `[publish]` must say before anything is read (no AWS call is made when it does not).
pub fn check(p: &PublishSettings, opts: Options) -> Result<(), String> {
    if p.bucket.is_empty() {
        return Err(
            "publish.bucket is not set: name the bucket hosts read (their accounts.mapping.bucket)"
                .into(),
        );
    }
    if p.kms_key_id.is_empty() && !opts.dry_run {
        return Err("publish.kms_key_id is not set: the mapping must be signed (an ECC_NIST_P256 SIGN_VERIFY key)".into());
    }
    Ok(())
}

/// Publishes (or, dry, decides) for every target account.
pub async fn run(
    base: &SdkConfig,
    p: &PublishSettings,
    opts: Options,
    now: SystemTime,
) -> Result<Report, String> {
    check(p, opts)?;
    let regional = crate::aws::in_region(base.clone(), &p.region);
    let s3 = crate::aws::clients::s3(&regional);
    let kms = crate::aws::clients::kms(&regional);
    let me = crate::aws::clients::sts(base)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            format!(
                "sts:GetCallerIdentity failed (no usable credentials?): {}",
                crate::aws::sdk_error(&e)
            )
        })?;
    let own = Caller {
        account: me.account().unwrap_or_default().to_string(),
        // arn:<partition>:sts::…: the other accounts' roles are in the same partition.
        partition: me
            .arn()
            .and_then(|a| a.split(':').nth(1))
            .filter(|p| !p.is_empty())
            .unwrap_or("aws")
            .to_string(),
    };
    let spki = if p.kms_key_id.is_empty() {
        None
    } else {
        Some(public_key(&kms, &p.kms_key_id).await?)
    };
    let mut directory_calls = 0;
    let (targets, how) = if p.organizations {
        let (mut ids, calls) = super::directory::organization_accounts(base).await?;
        directory_calls += calls;
        ids.extend(p.accounts.iter().cloned());
        ids.sort();
        ids.dedup();
        let how = if p.accounts.is_empty() {
            "organizations"
        } else {
            "organizations + publish.accounts"
        };
        (ids, how)
    } else if p.accounts.is_empty() {
        (vec![own.account.clone()], "this account")
    } else {
        (p.accounts.clone(), "publish.accounts")
    };
    let mut ic = if p.identity_center {
        let conf = crate::aws::in_region(base.clone(), &p.identity_center_region);
        let want = super::directory::Instance {
            arn: p.identity_center_instance.clone(),
            store_id: p.identity_store_id.clone(),
        };
        Some(super::directory::IdentityCenter::load(&conf, &want).await?)
    } else {
        None
    };
    let ctx = Context {
        s3: &s3,
        kms: &kms,
        base,
        own: &own,
        p,
        opts,
        spki: spki.as_deref(),
        now,
    };
    let mut reports = Vec::new();
    for account in &targets {
        reports.push(one(&ctx, account, ic.as_mut()).await);
    }
    directory_calls += ic.as_ref().map_or(0, |ic| ic.calls);
    Ok(Report {
        schema: SCHEMA,
        dry_run: opts.dry_run,
        bucket: p.bucket.clone(),
        prefix: p.prefix.clone(),
        public_key: spki.as_deref().map(public_key_pem),
        accounts: reports,
        targets: how,
        directory_calls,
    })
}

/// What every account's publish shares.
struct Context<'a> {
    s3: &'a aws_sdk_s3::Client,
    kms: &'a aws_sdk_kms::Client,
    base: &'a SdkConfig,
    own: &'a Caller,
    p: &'a PublishSettings,
    opts: Options,
    spki: Option<&'a [u8]>,
    now: SystemTime,
}

async fn one(
    ctx: &Context<'_>,
    account: &str,
    ic: Option<&mut super::directory::IdentityCenter>,
) -> AccountReport {
    let Context {
        s3,
        kms,
        base,
        own,
        p,
        opts,
        spki,
        now,
    } = *ctx;
    let mut report = AccountReport {
        account: account.to_string(),
        outcome: "failed",
        detail: String::new(),
        generation: None,
        diff: Diff::default(),
        principals: 0,
        iam_calls: 0,
        identity_center_users: None,
        notes: Vec::new(),
    };
    let conf = config_for(base, own, account, p).await;
    let mut read: SourceRead =
        crate::accounts::source::read_iam(&crate::aws::clients::iam(&conf), "/", 1000).await;
    report.iam_calls = read.api_calls;
    if let Some(ic) = ic {
        let users = ic.read(&own.partition, account).await;
        report.identity_center_users = Some(users.claims.len());
        read.complete &= users.complete;
        read.problems.extend(users.problems);
        read.claims.extend(users.claims);
    }
    report.principals = read.claims.len();
    if read.complete {
        report.notes = read.problems.clone();
    }
    let claims: &[Claim] = &read.claims;
    let doc = publish::document(claims);
    let sha = sha256_hex(&doc);
    for _ in 0..CAS_ATTEMPTS {
        let mut notes = Vec::new();
        let cur = match current(s3, &p.bucket, &p.prefix, account, spki, &mut notes).await {
            Ok(c) => c,
            Err(e) => {
                report.detail = e;
                return report;
            }
        };
        report.diff = publish::diff(
            cur.as_ref().map_or(&[][..], |c| &c.published.claims),
            claims,
        );
        let decision = publish::decide(
            account,
            read.complete,
            &read.problems,
            claims,
            &sha,
            cur.as_ref().map(|c| &c.published),
            now,
            p.validity,
            opts.allow_empty,
        );
        let generation = cur
            .as_ref()
            .map_or(1, |c| c.published.manifest.generation.saturating_add(1));
        let with_notes = |s: String| {
            if notes.is_empty() {
                s
            } else {
                format!("{s}; {}", notes.join("; "))
            }
        };
        match decision {
            Decision::Skip { why } => {
                report.outcome = "skipped";
                report.detail = with_notes(why);
                return report;
            }
            Decision::Unchanged => {
                report.outcome = "unchanged";
                report.generation = cur.map(|c| c.published.manifest.generation);
                report.detail = with_notes("the published mapping is current".into());
                return report;
            }
            Decision::Publish { reason } if opts.dry_run => {
                report.outcome = "would-publish";
                report.generation = Some(generation);
                report.detail = with_notes(reason);
                return report;
            }
            Decision::Publish { reason } => {
                let etag = cur.as_ref().map(|c| c.etag.as_str());
                match write(s3, kms, p, account, &doc, generation, etag, now).await {
                    Ok(Some(g)) => {
                        report.outcome = "published";
                        report.generation = Some(g);
                        report.detail = with_notes(reason);
                        return report;
                    }
                    // Another publisher wrote meanwhile: read again and decide again.
                    Ok(None) => continue,
                    Err(e) => {
                        report.detail = e;
                        return report;
                    }
                }
            }
        }
    }
    report.detail = format!(
        "another publisher changed the manifest {CAS_ATTEMPTS} times while this one wrote: run publish from one place (a schedule), then again"
    );
    report
}

/// The report as text.
pub fn text(r: &Report) -> String {
    let mut s = format!(
        "{}s3://{}/{} — {} account(s) from {}{}\n",
        if r.dry_run {
            "dry run (nothing written): "
        } else {
            ""
        },
        r.bucket,
        r.prefix,
        r.accounts.len(),
        r.targets,
        if r.directory_calls > 0 {
            format!(
                ", {} Organizations/Identity Center call(s)",
                r.directory_calls
            )
        } else {
            String::new()
        }
    );
    for a in &r.accounts {
        s.push_str(&format!(
            "{} {}: {}{} — {} principal(s), {} IAM call(s)\n",
            a.account,
            a.outcome,
            a.detail,
            a.generation
                .map(|g| format!(" (generation {g})"))
                .unwrap_or_default(),
            a.principals,
            a.iam_calls
        ));
        for n in &a.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        for (sign, names) in [
            ("+", &a.diff.added),
            ("-", &a.diff.removed),
            ("~", &a.diff.changed),
        ] {
            for n in names {
                s.push_str(&format!("  {sign} {n}\n"));
            }
        }
    }
    if let Some(k) = &r.public_key {
        s.push_str("\nhosts verify with this public key (accounts.mapping.public_keys):\n");
        s.push_str(k);
    }
    s
}
