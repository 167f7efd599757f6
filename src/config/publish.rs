//! `[publish]`: what `ssm-companion publish` reads and where it writes the fleet's mapping. Read
//! only by that command (an operator's machine, CI or a scheduled job), never by the daemon.

use std::time::Duration;

use serde::Serialize;

use super::fragments::DurationValue;
use super::{Picked, Resolver, as_is, duration_in, duration_str};

fragment! {
    /// `[publish]` as written.
    PublishFragment {
        bucket: String, prefix: String, kms_key_id: String, accounts: Vec<String>,
        role_name: String, external_id: String, organizations: bool, identity_center: bool,
        identity_center_instance: String, identity_store_id: String,
        identity_center_region: String, validity: DurationValue, region: String,
    }
}

/// How long a manifest is valid by default: hosts refuse it after this (an indefinitely frozen
/// mapping is a threat); `publish` re-signs after a quarter of it.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[publish]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishSettings {
    /// `bucket`; default "": where the mapping is written (the hosts' accounts.mapping.bucket).
    pub bucket: String,
    /// `prefix`; default "ssm-companion/mapping" (the hosts' accounts.mapping.prefix).
    pub prefix: String,
    /// `kms_key_id`; default "": the signing key (ECC_NIST_P256, SIGN_VERIFY): id, ARN or alias.
    pub kms_key_id: String,
    /// `accounts`; default []: the accounts to publish for (12-digit ids); empty: this account
    /// only (or, with `organizations`, every active member).
    pub accounts: Vec<String>,
    /// `role_name`; default "ssm-companion-publish-read": the role assumed in the other accounts.
    pub role_name: String,
    /// `external_id`; default "": the ExternalId the read role's trust policy requires.
    pub external_id: String,
    /// `organizations`; default false: also every active account of the organization
    /// (`organizations:ListAccounts`, from the management or a delegated administrator account).
    pub organizations: bool,
    /// `identity_center`; default false: also IAM Identity Center users, by the
    /// `SSMSessionRunAs` attribute for access control.
    pub identity_center: bool,
    /// `identity_center_instance`; default "" (discovered: the one instance sso:ListInstances
    /// answers): the Identity Center instance ARN.
    pub identity_center_instance: String,
    /// `identity_store_id`; default "" (the instance's): the identity store (`d-…`).
    pub identity_store_id: String,
    /// `identity_center_region`; default "" (the default region): where Identity Center is.
    pub identity_center_region: String,
    /// `validity`; default "7d": how long a manifest is valid (re-signed after a quarter of it).
    #[serde(with = "duration_str")]
    pub validity: Duration,
    /// `region`; default "": the bucket's and key's region, when not the default one.
    pub region: String,
}

impl Default for PublishSettings {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: "ssm-companion/mapping".into(),
            kms_key_id: String::new(),
            accounts: Vec::new(),
            role_name: "ssm-companion-publish-read".into(),
            external_id: String::new(),
            organizations: false,
            identity_center: false,
            identity_center_instance: String::new(),
            identity_store_id: String::new(),
            identity_center_region: String::new(),
            validity: DEFAULT_VALIDITY,
            region: String::new(),
        }
    }
}

fn account_ids(p: &Picked<Vec<String>>) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    for a in &p.value {
        let a = a.trim();
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{a}` is not an AWS account id (12 digits)"));
        }
        if !ids.iter().any(|i| i == a) {
            ids.push(a.to_string());
        }
    }
    Ok(ids)
}

fn role_name(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim();
    let ok = (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` is not an IAM role name (1-64 letters, digits and +=,.@_-; the name, not the ARN)"
        ))
    }
}

fn external_id(p: &Picked<String>) -> Result<String, String> {
    let v = &p.value;
    let ok = v.is_empty()
        || ((2..=1224).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/-_".contains(&b)));
    if ok {
        Ok(v.clone())
    } else {
        Err("not an ExternalId (2-1224 letters, digits and +=,.@:/-_)".into())
    }
}

fn instance_arn(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim();
    let ok = v.is_empty()
        || (v.starts_with("arn:")
            && v.contains(":sso:::instance/ssoins-")
            && v.bytes().all(|b| b.is_ascii_graphic()));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` is not an Identity Center instance ARN (arn:aws:sso:::instance/ssoins-…; sso:ListInstances shows it)"
        ))
    }
}

fn store_id(p: &Picked<String>) -> Result<String, String> {
    let v = p.value.trim();
    let ok = v.is_empty()
        || ((1..=36).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` is not an identity store id (d-1234567890; sso:ListInstances shows it)"
        ))
    }
}

/// Resolves `[publish]` from the layers.
pub(super) fn resolve(r: &mut Resolver<'_>, s: &mut PublishSettings) {
    keys!(r, publish, s, {
        bucket => super::audit::bucket_name,
        prefix => super::audit::key_prefix,
        kms_key_id => super::audit::any_string,
        accounts => account_ids,
        role_name => role_name,
        external_id => external_id,
        organizations => as_is,
        identity_center => as_is,
        identity_center_instance => instance_arn,
        identity_store_id => store_id,
        identity_center_region => super::audit::any_string,
        validity => duration_in(Duration::from_secs(3600), Duration::from_secs(90 * 24 * 3600)),
        region => super::audit::any_string,
    });
}
