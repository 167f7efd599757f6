//! The fleet mapping: what `ssm-companion publish` writes to S3 once per target account, and the
//! checks a host makes before it trusts any of it (`accounts.source = "mapping"`).
//!
//! Per account, under the configured prefix:
//! - `<prefix>/<account>/document.json`: the account list, in the `file` source's JSON shape
//!   (`{"account": [{"name", "principals", "groups", "host_groups"}]}`), so an operator can also
//!   fetch it and use it as a `file` source;
//! - `<prefix>/<account>/manifest.json`: an [`Envelope`] carrying the exact bytes of a small
//!   [`Manifest`] (base64, so no JSON canonicalisation is needed) and their ECDSA P-256 signature
//!   by a KMS key (`ECDSA_SHA_256`, message type RAW).
//!
//! The manifest pins the document by sha256 and size (and version id), names the account it is
//! for, counts generations upwards, and expires. A host refuses — and so reads nothing from —
//! an envelope too large, not signed by one of its configured public keys, for another account,
//! of an older generation than the last it accepted (a replay), of the same generation with other
//! content, expired or issued in the future, of an unknown schema; and a document whose size or
//! hash differs. These are the client checks The Update Framework lists against arbitrary files,
//! rollback, indefinite freeze and endless data.

pub mod directory;
pub mod fetch;
pub mod identity_center;
pub mod publish;
pub mod publisher;
pub mod schedule;

use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::signing::{TrustedKey, public_key_pem, trusted_key};

/// The manifest's schema this version reads and writes.
pub const SCHEMA: u32 = 1;
/// The one signing algorithm (KMS `SigningAlgorithm`).
pub const ALG: &str = "ECDSA_SHA_256";
/// Bound on an envelope: a manifest is about 400 bytes.
pub const MAX_ENVELOPE_BYTES: usize = 64 << 10;
/// Bound on a manifest's own bytes (KMS signs at most 4,096 bytes as RAW).
pub const MAX_MANIFEST_BYTES: usize = 4096;
/// How far a manifest's issue time may be ahead of this host's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// The object at `<prefix>/<account>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The manifest's bytes, base64.
    pub payload: String,
    /// [`ALG`].
    pub alg: String,
    /// The KMS key that signed (an ARN; informational: trust comes from the configured keys).
    pub key_id: String,
    /// The DER signature, base64.
    pub sig: String,
}

/// What the publisher signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Whom it is for.
    pub scope: Scope,
    /// Rises by one with every publication for this account.
    pub generation: u64,
    /// False when the publisher could read only part of the account: the document may create
    /// and repair accounts, never retire them.
    pub complete: bool,
    /// RFC 3339.
    pub issued_at: String,
    /// RFC 3339: after it the manifest is stale, as if none had been read.
    pub expires_at: String,
    /// The document it vouches for.
    pub document: DocumentRef,
}

/// The account a manifest is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The 12-digit AWS account id.
    pub account: String,
}

/// The document a manifest pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRef {
    /// Its S3 key.
    pub key: String,
    /// Its S3 version (versioned buckets), read by version so a later write cannot swap it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Lower-case hex sha256 of its bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a host knows when it checks a manifest.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Its own AWS account id.
    pub account: &'a str,
    /// The last manifest it accepted: generation and sha256 of its bytes (persisted).
    pub last: Option<(u64, &'a str)>,
    /// Now, on its clock.
    pub now: SystemTime,
}

/// A manifest that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// It.
    pub manifest: Manifest,
    /// sha256 of its bytes (lower-case hex): what the next check compares a same generation with.
    pub payload_sha256: String,
    /// The label of the trusted key that verified it.
    pub key: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Why a manifest or document is not used. Each is an incomplete read: nothing is created or
/// retired from it, the last good copy stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Larger than any real one.
    #[error("the {what} is {size} bytes, above the {max}-byte bound")]
    TooLarge {
        /// "manifest envelope", "manifest".
        what: &'static str,
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// Not an envelope, or its payload not a manifest of this schema.
    #[error("the {what} is malformed: {why}")]
    Malformed {
        /// "manifest envelope", "manifest".
        what: &'static str,
        /// The parser's words.
        why: String,
    },
    /// Signed with another algorithm.
    #[error("signed with {0}, not {ALG}")]
    Algorithm(String),
    /// No configured key verifies it.
    #[error(
        "its signature (by {key_id}) does not verify with any of the {keys} configured public key(s): a tampered manifest, or a signing key the hosts do not trust yet (accounts.mapping.public_keys)"
    )]
    Signature {
        /// The key id the envelope claims.
        key_id: String,
        /// How many keys were tried.
        keys: usize,
    },
    /// Another schema.
    #[error("schema {0}, this version reads schema {SCHEMA}: upgrade ssm-companion")]
    Schema(u32),
    /// For another account.
    #[error("it is for account {got}, this host is in {want}")]
    Scope {
        /// The manifest's.
        got: String,
        /// This host's.
        want: String,
    },
    /// Older than the last accepted.
    #[error(
        "generation {got} is older than generation {last}, already accepted: a replayed or rolled-back manifest"
    )]
    Rollback {
        /// The manifest's.
        got: u64,
        /// The last accepted.
        last: u64,
    },
    /// The same generation as the last accepted, with other content.
    #[error(
        "generation {0} was already accepted with other content: two publications under one generation"
    )]
    Fork(u64),
    /// Expired.
    #[error("it expired at {0}: the publisher has not re-signed it (is `publish` still running?)")]
    Expired(String),
    /// Issued ahead of this host's clock by more than [`MAX_SKEW`].
    #[error("it was issued at {0}, ahead of this host's clock: check the clock (chrony)")]
    Future(String),
    /// The document is not the one the manifest pins.
    #[error("the document {key} does not match its manifest: {why}")]
    Document {
        /// Its key.
        key: String,
        /// Size or hash.
        why: String,
    },
}

fn malformed(what: &'static str, why: impl ToString) -> Refused {
    Refused::Malformed {
        what,
        why: why.to_string(),
    }
}

/// The key of an account's object `name` (`manifest.json`, `document.json`) under `prefix`.
pub fn object_key(prefix: &str, account: &str, name: &str) -> String {
    let sep = if prefix.is_empty() { "" } else { "/" };
    format!("{prefix}{sep}{account}/{name}")
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks an envelope as read from S3 (see the module docs); the manifest when it passes.
pub fn verify(bytes: &[u8], keys: &[TrustedKey], expect: &Expect<'_>) -> Result<Verified, Refused> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(Refused::TooLarge {
            what: "manifest envelope",
            size: bytes.len(),
            max: MAX_ENVELOPE_BYTES,
        });
    }
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| malformed("manifest envelope", e))?;
    if env.alg != ALG {
        return Err(Refused::Algorithm(env.alg));
    }
    let payload = aws_smithy_types::base64::decode(&env.payload)
        .map_err(|e| malformed("manifest envelope", format!("payload: {e}")))?;
    let sig = aws_smithy_types::base64::decode(&env.sig)
        .map_err(|e| malformed("manifest envelope", format!("sig: {e}")))?;
    if payload.len() > MAX_MANIFEST_BYTES {
        return Err(Refused::TooLarge {
            what: "manifest",
            size: payload.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    // The signature first: nothing of an unverified payload is looked at.
    let key = keys
        .iter()
        .find(|k| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &k.spki)
                .verify(&payload, &sig)
                .is_ok()
        })
        .ok_or_else(|| Refused::Signature {
            key_id: env.key_id.clone(),
            keys: keys.len(),
        })?;
    // The schema before the rest, so a newer publisher's manifest says "upgrade".
    #[derive(Deserialize)]
    struct Versioned {
        schema: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(&payload).map_err(|e| malformed("manifest", e))?;
    if versioned.schema != SCHEMA {
        return Err(Refused::Schema(versioned.schema));
    }
    let manifest: Manifest =
        serde_json::from_slice(&payload).map_err(|e| malformed("manifest", e))?;
    if manifest.scope.account != expect.account {
        return Err(Refused::Scope {
            got: manifest.scope.account,
            want: expect.account.to_string(),
        });
    }
    let payload_sha256 = sha256_hex(&payload);
    if let Some((last, last_sha)) = expect.last {
        if manifest.generation < last {
            return Err(Refused::Rollback {
                got: manifest.generation,
                last,
            });
        }
        if manifest.generation == last && payload_sha256 != last_sha {
            return Err(Refused::Fork(last));
        }
    }
    let time = |s: &str, field: &str| {
        crate::clock::parse_rfc3339(s).ok_or_else(|| {
            malformed(
                "manifest",
                format!("{field} = \"{s}\" is not an RFC 3339 time"),
            )
        })
    };
    let issued = time(&manifest.issued_at, "issued_at")?;
    let expires_at = time(&manifest.expires_at, "expires_at")?;
    if expect.now >= expires_at {
        return Err(Refused::Expired(manifest.expires_at));
    }
    if issued > expect.now + MAX_SKEW {
        return Err(Refused::Future(manifest.issued_at));
    }
    if manifest.document.sha256.len() != 64
        || !manifest
            .document
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(malformed(
            "manifest",
            "document.sha256 is not 64 lower-case hex digits",
        ));
    }
    Ok(Verified {
        manifest,
        payload_sha256,
        key: key.label.clone(),
        expires_at,
    })
}

/// Checks a document's bytes against the manifest's pin.
pub fn check_document(bytes: &[u8], pin: &DocumentRef) -> Result<(), Refused> {
    let refuse = |why: String| Refused::Document {
        key: pin.key.clone(),
        why,
    };
    if bytes.len() as u64 != pin.size {
        return Err(refuse(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            pin.size
        )));
    }
    let got = sha256_hex(bytes);
    if got != pin.sha256 {
        return Err(refuse(format!(
            "sha256 {got}, the manifest says {}",
            pin.sha256
        )));
    }
    Ok(())
}

/// The envelope of a manifest's bytes and their signature (the publisher's side).
pub fn envelope(payload: &[u8], key_id: &str, sig: &[u8]) -> Envelope {
    Envelope {
        payload: aws_smithy_types::base64::encode(payload),
        alg: ALG.to_string(),
        key_id: key_id.to_string(),
        sig: aws_smithy_types::base64::encode(sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    const ACCOUNT: &str = "111111111111";

    struct Signer(EcdsaKeyPair);

    impl Signer {
        fn new() -> Self {
            Self(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
        }

        fn key(&self, label: &str) -> TrustedKey {
            TrustedKey {
                label: label.into(),
                spki: self.0.public_key().as_der().unwrap().as_ref().to_vec(),
            }
        }

        fn pem(&self) -> String {
            public_key_pem(self.0.public_key().as_der().unwrap().as_ref())
        }

        fn seal(&self, payload: &[u8]) -> Vec<u8> {
            let sig = self.0.sign(&SystemRandom::new(), payload).unwrap();
            serde_json::to_vec(&envelope(
                payload,
                "arn:aws:kms:us-east-1:111111111111:key/k",
                sig.as_ref(),
            ))
            .unwrap()
        }
    }

    fn manifest(generation: u64, doc: &[u8]) -> Manifest {
        Manifest {
            schema: SCHEMA,
            scope: Scope {
                account: ACCOUNT.into(),
            },
            generation,
            complete: true,
            issued_at: "2026-12-06T12:00:00Z".into(),
            expires_at: "2026-12-07T12:00:00Z".into(),
            document: DocumentRef {
                key: "m/111111111111/document.json".into(),
                version_id: Some("v1".into()),
                sha256: sha256_hex(doc),
                size: doc.len() as u64,
            },
        }
    }

    fn at(s: &str) -> SystemTime {
        crate::clock::parse_rfc3339(s).unwrap()
    }

    fn expect(last: Option<(u64, &str)>) -> Expect<'_> {
        Expect {
            account: ACCOUNT,
            last,
            now: at("2026-12-06T13:00:00Z"),
        }
    }

    const DOC: &[u8] =
        br#"{"account":[{"name":"alice","principals":["arn:aws:iam::111111111111:user/alice"]}]}"#;

    #[test]
    fn a_signed_manifest_is_accepted_and_its_document_checked() {
        let s = Signer::new();
        let bytes = s.seal(&serde_json::to_vec(&manifest(7, DOC)).unwrap());
        let v = verify(&bytes, &[s.key("active")], &expect(None)).unwrap();
        assert_eq!(v.manifest.generation, 7);
        assert_eq!(v.key, "active");
        check_document(DOC, &v.manifest.document).unwrap();
        // The same manifest again (a restart: no ETag yet) is fine.
        verify(
            &bytes,
            &[s.key("active")],
            &expect(Some((7, &v.payload_sha256))),
        )
        .unwrap();
        // Rotation: signed by the next key, trusted beside the active one.
        let next = Signer::new();
        let bytes = next.seal(&serde_json::to_vec(&manifest(8, DOC)).unwrap());
        let v = verify(
            &bytes,
            &[s.key("active"), next.key("next")],
            &expect(Some((7, "x"))),
        )
        .unwrap();
        assert_eq!(v.key, "next");
    }

    #[test]
    fn every_hostile_manifest_is_refused() {
        let s = Signer::new();
        let keys = [s.key("active")];
        let good = serde_json::to_vec(&manifest(7, DOC)).unwrap();
        let refused = |bytes: &[u8], e: &Expect<'_>| verify(bytes, &keys, e).unwrap_err();

        // Tampered after signing: one byte of the payload.
        let mut env: Envelope = serde_json::from_slice(&s.seal(&good)).unwrap();
        let tampered = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"generation\":7", "\"generation\":9");
        env.payload = aws_smithy_types::base64::encode(tampered.as_bytes());
        let e = refused(&serde_json::to_vec(&env).unwrap(), &expect(None));
        assert!(matches!(e, Refused::Signature { keys: 1, .. }), "{e}");
        // Signed by a key the host does not trust.
        let e = refused(&Signer::new().seal(&good), &expect(None));
        assert!(
            e.to_string().contains("accounts.mapping.public_keys"),
            "{e}"
        );
        // Another account's manifest.
        let mut m = manifest(7, DOC);
        m.scope.account = "222222222222".into();
        let e = refused(&s.seal(&serde_json::to_vec(&m).unwrap()), &expect(None));
        assert_eq!(
            e,
            Refused::Scope {
                got: "222222222222".into(),
                want: ACCOUNT.into()
            }
        );
        // A replay of an older generation; another manifest under an accepted generation.
        let e = refused(&s.seal(&good), &expect(Some((8, "x"))));
        assert_eq!(e, Refused::Rollback { got: 7, last: 8 });
        let e = refused(&s.seal(&good), &expect(Some((7, "other"))));
        assert_eq!(e, Refused::Fork(7));
        // Expired; issued ahead of the clock.
        let mut e7 = expect(None);
        e7.now = at("2026-12-07T12:00:00Z");
        assert!(matches!(refused(&s.seal(&good), &e7), Refused::Expired(_)));
        e7.now = at("2026-12-06T11:50:00Z");
        assert!(matches!(refused(&s.seal(&good), &e7), Refused::Future(_)));
        // A newer schema, an unknown field, another algorithm, no JSON, endless data.
        let newer = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"schema\":1", "\"schema\":2");
        assert_eq!(
            refused(&s.seal(newer.as_bytes()), &expect(None)),
            Refused::Schema(2)
        );
        let extra = String::from_utf8(good.clone())
            .unwrap()
            .replace("{\"schema\"", "{\"x\":1,\"schema\"");
        assert!(matches!(
            refused(&s.seal(extra.as_bytes()), &expect(None)),
            Refused::Malformed { .. }
        ));
        let mut env: Envelope = serde_json::from_slice(&s.seal(&good)).unwrap();
        env.alg = "RSASSA_PSS_SHA_256".into();
        assert!(matches!(
            refused(&serde_json::to_vec(&env).unwrap(), &expect(None)),
            Refused::Algorithm(_)
        ));
        assert!(matches!(
            refused(b"<Error>SlowDown</Error>", &expect(None)),
            Refused::Malformed { .. }
        ));
        let e = refused(&vec![b' '; MAX_ENVELOPE_BYTES + 1], &expect(None));
        assert!(matches!(e, Refused::TooLarge { .. }), "{e}");
        // A bad time, a bad hash, in a validly signed manifest.
        let mut m = manifest(7, DOC);
        m.expires_at = "tomorrow".into();
        let e = refused(&s.seal(&serde_json::to_vec(&m).unwrap()), &expect(None));
        assert!(e.to_string().contains("expires_at = \"tomorrow\""), "{e}");
        let mut m = manifest(7, DOC);
        m.document.sha256 = "ABC".into();
        assert!(matches!(
            refused(&s.seal(&serde_json::to_vec(&m).unwrap()), &expect(None)),
            Refused::Malformed { .. }
        ));
    }

    #[test]
    fn a_document_other_than_the_pinned_one_is_refused() {
        let pin = manifest(1, DOC).document;
        let mut other = DOC.to_vec();
        other[20] ^= 1;
        let e = check_document(&other, &pin).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
        let e = check_document(&DOC[1..], &pin).unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
    }

    #[test]
    fn public_keys_inline_or_from_a_file_and_clear_errors() {
        let s = Signer::new();
        let k = trusted_key(&s.pem(), 0).unwrap();
        assert_eq!(k.spki, s.key("x").spki);
        assert_eq!(k.label, "public_keys[0]");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("active.pem");
        std::fs::write(&path, s.pem()).unwrap();
        let k = trusted_key(path.to_str().unwrap(), 1).unwrap();
        assert_eq!(k.label, path.to_str().unwrap());
        let e = trusted_key("/nonexistent/key.pem", 2).unwrap_err();
        assert!(
            e.contains("public_keys[2]") && e.contains("cannot read"),
            "{e}"
        );
        let e = trusted_key(
            "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
            0,
        )
        .unwrap_err();
        assert!(e.contains("PUBLIC KEY"), "{e}");
        // An RSA key (what `aws kms get-public-key` gives for an RSA key): refused by name.
        let rsa = "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMK5KP1vqGnyk1jzMpnCVDXjKHfyRONi\nHjDGN3NVEmPpN1mqr6IHyXj3f6DR3uAk9wX1bYFBG3SpoQ9p0k5UmOUCAwEAAQ==\n-----END PUBLIC KEY-----\n";
        let e = trusted_key(rsa, 0).unwrap_err();
        assert!(e.contains("not an ECDSA P-256"), "{e}");
    }
}
