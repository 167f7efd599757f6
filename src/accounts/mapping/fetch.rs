//! The host's side of the fleet mapping (`accounts.source = "mapping"`): one conditional GET of
//! this account's manifest per poll (a 304 when nothing changed: no other work), the checks of
//! [`super::verify`], the document fetched only when its hash changed, and the last good copy
//! kept in the state directory with the ETag that names it.
//!
//! Any failure — S3 unreachable or throttling, no manifest, a refused manifest, a document that
//! does not match — is an incomplete read without claims: nothing is created or retired from
//! it, and the problem says why. The ETag and the copy are stored only after verification, so a
//! refused manifest is examined again at the next poll instead of being answered by a 304.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Expect, TrustedKey, Verified, check_document, trusted_key, verify};
use crate::accounts::desired::SourceRead;
use crate::config::MappingSettings;

/// The last good copy, in the state directory.
pub const CACHE_FILE: &str = "mapping.json";

/// The most bytes of a document a host reads (a manifest pinning a larger one is refused before
/// the GET): about 100,000 accounts.
pub const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// The last manifest accepted, its document and the ETag S3 gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// The account it is for.
    pub account: String,
    /// The manifest object's ETag, sent as `If-None-Match`.
    pub etag: String,
    /// Its generation: a manifest older than this is a replay.
    pub generation: u64,
    /// sha256 of its payload: the same generation with other content is a fork.
    pub payload_sha256: String,
    /// The envelope as S3 gave it.
    pub envelope: String,
    /// The document it pins.
    pub document: String,
}

/// Where the copy lives.
pub fn cache_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CACHE_FILE)
}

/// What one poll found.
#[derive(Debug)]
pub struct Fetched {
    /// The read, complete or not.
    pub read: SourceRead,
    /// The copy to store (after a 200 that passed every check); `None`: keep the stored one.
    pub store: Option<Cache>,
    /// The bucket answered 503 (SlowDown) or 5xx: the caller backs off.
    pub throttled: bool,
}

fn failed(source: &str, problem: String, api_calls: u32, throttled: bool) -> Fetched {
    Fetched {
        read: SourceRead {
            source: source.into(),
            claims: vec![],
            complete: false,
            problems: vec![format!(
                "{problem}; so nothing is created or retired this cycle"
            )],
            preferences: None,
            api_calls,
            unchanged: false,
        },
        store: None,
        throttled,
    }
}

/// Reads the stored copy; a missing one is `None`, an unreadable or damaged one too, with why.
pub fn load_cache(state_dir: &Path) -> (Option<Cache>, Option<String>) {
    let path = cache_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(c) => (Some(c), None),
            Err(e) => (
                None,
                Some(format!(
                    "the mapping's last good copy {} is damaged ({e}): it is read again in full",
                    path.display()
                )),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => (
            None,
            Some(format!(
                "cannot read the mapping's last good copy {} ({e}): it is read again in full",
                path.display()
            )),
        ),
    }
}

/// Stores the copy (atomically, owner-only).
pub fn store_cache(state_dir: &Path, cache: &Cache) -> Result<(), String> {
    let body = serde_json::to_vec(cache).map_err(|e| e.to_string())?;
    crate::state::write_atomic(&cache_path(state_dir), &body, 0o600).map_err(|e| e.to_string())
}

/// Why a body was not read.
enum Body {
    /// Longer than the bound.
    TooLarge(u64),
    /// The connection failed.
    Read(String),
}

impl std::fmt::Display for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::TooLarge(max) => write!(f, "it is larger than {max} bytes"),
            Body::Read(e) => f.write_str(e),
        }
    }
}

/// Reads a body of at most `max` bytes.
async fn bounded(
    mut body: aws_sdk_s3::primitives::ByteStream,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, Body> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Body::Read(format!("reading the {what}: {e}")))?;
        out.extend_from_slice(&chunk);
        if out.len() as u64 > max {
            return Err(Body::TooLarge(max));
        }
    }
    Ok(out)
}

/// Polls the mapping of `account` once. `cache` is the stored copy (for the ETag, the
/// generation floor, and the answer to a 304).
pub async fn poll(
    s3: &aws_sdk_s3::Client,
    m: &MappingSettings,
    account: &str,
    cache: Option<&Cache>,
    now: SystemTime,
) -> Fetched {
    let manifest_key = super::object_key(&m.prefix, account, "manifest.json");
    let source = format!("mapping:s3://{}/{manifest_key}", m.bucket);
    let keys: Vec<TrustedKey> = match m
        .public_keys
        .iter()
        .enumerate()
        .map(|(i, k)| trusted_key(k, i))
        .collect()
    {
        Ok(k) => k,
        Err(e) => return failed(&source, e, 0, false),
    };
    let cache = cache.filter(|c| c.account == account);
    let answer = s3
        .get_object()
        .bucket(&m.bucket)
        .key(&manifest_key)
        // A copy stored without an ETag (a store that sent none) is fetched whole every time.
        .set_if_none_match(cache.map(|c| c.etag.clone()).filter(|e| !e.is_empty()))
        .send()
        .await;
    let mut calls = 1;
    let (envelope, etag, fresh) = match answer {
        Ok(out) => {
            let etag = out.e_tag().unwrap_or_default().to_string();
            match bounded(out.body, super::MAX_ENVELOPE_BYTES as u64, "manifest").await {
                Ok(b) => (b, etag, true),
                Err(e) => return failed(&source, format!("the manifest: {e}"), calls, false),
            }
        }
        Err(e) if crate::aws::http_status(&e) == Some(304) => match cache {
            Some(c) => (c.envelope.clone().into_bytes(), c.etag.clone(), false),
            // Only ever sent with a copy at hand.
            None => {
                return failed(
                    &source,
                    "S3 answered 304 to an unconditional GET".into(),
                    calls,
                    false,
                );
            }
        },
        Err(e) => {
            let st = crate::aws::http_status(&e);
            let why = match st {
                Some(404) => format!(
                    "no manifest at s3://{}/{manifest_key}: has `ssm-companion publish` run for account {account}, and is accounts.mapping.prefix the one it writes to?",
                    m.bucket
                ),
                Some(403) => format!(
                    "reading s3://{}/{manifest_key} was denied ({}): the instance profile needs s3:GetObject on it (`ssm-companion iam-policy`); without s3:ListBucket S3 also answers 403 for a manifest that does not exist yet (has `ssm-companion publish` run for account {account}?)",
                    m.bucket,
                    crate::aws::sdk_error(&e)
                ),
                _ => format!(
                    "reading s3://{}/{manifest_key} failed: {}",
                    m.bucket,
                    crate::aws::sdk_error(&e)
                ),
            };
            return failed(&source, why, calls, st.is_some_and(|s| s >= 500));
        }
    };
    // A 304 re-checks the stored manifest too: it may have expired since.
    let last = cache.map(|c| (c.generation, c.payload_sha256.as_str()));
    let expect = Expect { account, last, now };
    let verified: Verified = match verify(&envelope, &keys, &expect) {
        Ok(v) => v,
        Err(e) => {
            return failed(
                &source,
                format!("the manifest is refused: {e}"),
                calls,
                false,
            );
        }
    };
    let pin = &verified.manifest.document;
    let source = format!(
        "{source}#generation={}{}",
        verified.manifest.generation,
        if fresh { "" } else { " (unchanged)" }
    );
    let document = match cache.filter(|c| check_document(c.document.as_bytes(), pin).is_ok()) {
        Some(c) => c.document.clone().into_bytes(),
        None if pin.size > MAX_DOCUMENT_BYTES => {
            return failed(
                &source,
                format!(
                    "the manifest pins a document of {} bytes, above the {MAX_DOCUMENT_BYTES}-byte bound",
                    pin.size
                ),
                calls,
                false,
            );
        }
        None => {
            calls += 1;
            let mismatch = |why: String| {
                format!(
                    "the document {} does not match its manifest: {why}",
                    pin.key
                )
            };
            let got = s3
                .get_object()
                .bucket(&m.bucket)
                .key(&pin.key)
                .set_version_id(pin.version_id.clone())
                .send()
                .await;
            let body = match got {
                Ok(out) => bounded(out.body, pin.size, "document")
                    .await
                    .map_err(|e| match e {
                        Body::TooLarge(max) => {
                            mismatch(format!("it is larger than the {max} bytes pinned"))
                        }
                        Body::Read(e) => e,
                    }),
                Err(e) => {
                    let st = crate::aws::http_status(&e);
                    return failed(
                        &source,
                        format!(
                            "reading the document s3://{}/{} failed: {}",
                            m.bucket,
                            pin.key,
                            crate::aws::sdk_error(&e)
                        ),
                        calls,
                        st.is_some_and(|s| s >= 500),
                    );
                }
            };
            match body.and_then(|b| {
                check_document(&b, pin).map_err(|e| e.to_string())?;
                Ok(b)
            }) {
                Ok(b) => b,
                Err(e) => return failed(&source, e, calls, false),
            }
        }
    };
    let text = match String::from_utf8(document) {
        Ok(t) => t,
        Err(_) => return failed(&source, "the document is not UTF-8".into(), calls, false),
    };
    let claims = match crate::accounts::source::parse_account_list(&text, true, &source) {
        Ok(c) => c,
        Err(e) => {
            return failed(
                &source,
                format!("the document {} is invalid: {e}", pin.key),
                calls,
                false,
            );
        }
    };
    let complete = verified.manifest.complete;
    let mut problems = Vec::new();
    if !complete {
        problems.push(format!(
            "the publisher could read only part of account {account} (generation {}): accounts are created and repaired from it, none retired",
            verified.manifest.generation
        ));
    }
    let store = fresh.then(|| Cache {
        account: account.to_string(),
        etag,
        generation: verified.manifest.generation,
        payload_sha256: verified.payload_sha256.clone(),
        envelope: String::from_utf8_lossy(&envelope).into_owned(),
        document: text,
    });
    Fetched {
        read: SourceRead {
            source,
            claims,
            complete,
            problems,
            preferences: None,
            api_calls: calls,
            unchanged: !fresh,
        },
        store,
        throttled: false,
    }
}

/// The mapping source's read: this host's account (`accounts.mapping.account`, or the instance
/// identity's), the stored copy, one poll; the copy stored after a good 200 when `persist`.
pub async fn read(
    settings: &crate::config::Settings,
    aws: Option<&crate::aws::Aws>,
    persist: bool,
    now: SystemTime,
) -> SourceRead {
    let m = &settings.accounts.mapping;
    let source = format!("mapping:s3://{}/{}", m.bucket, m.prefix);
    let Some((aws, sdk)) = aws.and_then(|a| Some((a, a.sdk()?))) else {
        return failed(
            &source,
            "AWS is not configured (see the error above)".into(),
            0,
            false,
        )
        .read;
    };
    let account = if m.account.is_empty() {
        match (
            &aws.identity.instance_id,
            crate::aws::imds_client(&settings.aws),
        ) {
            (Some(_), Ok(c)) => crate::aws::account_id(&c).await,
            _ => None,
        }
    } else {
        Some(m.account.clone())
    };
    let Some(account) = account else {
        return failed(
            &source,
            "this host's AWS account is unknown (the instance identity document gave none): set accounts.mapping.account".into(),
            0,
            false,
        )
        .read;
    };
    // One attempt per call: the poll's own backoff is the only retry layer.
    let s3 = crate::aws::clients::s3_single_attempt(&crate::aws::in_region(sdk.clone(), &m.region));
    let state_dir = &settings.paths.state_dir;
    let (cache, damaged) = load_cache(state_dir);
    let mut f = poll(&s3, m, &account, cache.as_ref(), now).await;
    f.read.problems.extend(damaged);
    if let (true, Some(c)) = (persist, &f.store)
        && let Err(e) = crate::state::ensure_dir(state_dir)
            .map_err(|e| e.to_string())
            .and_then(|()| store_cache(state_dir, c))
    {
        // Without the stored generation, a replay after a restart would go unnoticed.
        f.read.complete = false;
        f.read.problems.push(format!(
            "cannot store the mapping's last good copy in {} ({e}): nothing is retired until it can be",
            state_dir.display()
        ));
    }
    f.read
}
