//! The public keys that verify the fleet mapping's signatures (ECDSA P-256, as KMS's
//! `ECC_NIST_P256` keys sign): read from configuration (`accounts.mapping.public_keys`) and
//! printed by `publish`. Neutral: the configuration checks keys with it, the accounts
//! capability verifies with them.

use std::path::Path;

use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;

/// A public key a host trusts (`accounts.mapping.public_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// Where it came from: the file's path, or "public_keys[N]" for an inline PEM.
    pub label: String,
    /// SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

/// Reads one `public_keys` entry: an inline PEM `PUBLIC KEY` block or the path of a file
/// holding one (`index` names an inline one in errors).
pub fn trusted_key(entry: &str, index: usize) -> Result<TrustedKey, String> {
    let (label, pem) = if entry.trim_start().starts_with("-----BEGIN") {
        (format!("public_keys[{index}]"), entry.as_bytes().to_vec())
    } else {
        let bytes = std::fs::read(Path::new(entry)).map_err(|e| {
            format!(
                "accounts.mapping.public_keys[{index}] = \"{entry}\": cannot read it ({e}); give a PEM \"PUBLIC KEY\" block or the path of a file holding one (aws kms get-public-key, converted to PEM)"
            )
        })?;
        (entry.to_string(), bytes)
    };
    let der = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "accounts.mapping.public_keys[{index}] ({label}): no PEM \"PUBLIC KEY\" block ({e}); give the signing key's public key as `-----BEGIN PUBLIC KEY-----` PEM"
        )
    })?;
    let spki = der.as_ref().to_vec();
    if !spki.starts_with(&P256_SPKI_PREFIX) || spki.len() != P256_SPKI_PREFIX.len() + 65 {
        return Err(format!(
            "accounts.mapping.public_keys[{index}] ({label}): not an ECDSA P-256 public key; the mapping is signed with a KMS key of spec ECC_NIST_P256"
        ));
    }
    Ok(TrustedKey { label, spki })
}

/// A SubjectPublicKeyInfo (DER) as the PEM `PUBLIC KEY` block `public_keys` takes.
pub fn public_key_pem(spki: &[u8]) -> String {
    let b64 = aws_smithy_types::base64::encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// The DER header of every P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a 66-byte
/// bit string holding an uncompressed point).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
