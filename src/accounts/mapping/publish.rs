//! The publisher's decisions, without I/O: the document of an account's claims (deterministic,
//! so an unchanged account gives the same bytes and the same hash), what changed against the
//! published one, whether to publish, and the next manifest.
//!
//! Safety first, as on the hosts: an account whose read was not complete is never published
//! (the previous document stays, and hosts keep what they have); an empty answer for an account
//! whose published document had principals needs an explicit override, because "nobody" is
//! what a broken read looks like.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{DocumentRef, Manifest, SCHEMA, Scope, sha256_hex};
use crate::accounts::desired::Claim;

pub use crate::config::DEFAULT_PUBLISH_VALIDITY as DEFAULT_VALIDITY;

/// One entry of the document (the `file` source's shape).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Entry {
    name: String,
    principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_groups: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Document {
    account: Vec<Entry>,
}

/// What a claim grants besides the name: its groups and host groups, sorted, without repeats.
type Access = (Vec<String>, Option<Vec<String>>);

fn access(c: &Claim) -> Access {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    (sorted(&c.groups), c.host_groups.as_deref().map(sorted))
}

/// The document of `claims`: one entry per (name, groups, host groups), its principals sorted,
/// the entries sorted; the same claims in any order give the same bytes.
pub fn document(claims: &[Claim]) -> Vec<u8> {
    let mut by: BTreeMap<(String, Access), BTreeSet<String>> = BTreeMap::new();
    for c in claims {
        by.entry((c.run_as.clone(), access(c)))
            .or_default()
            .insert(c.principal.clone());
    }
    let account = by
        .into_iter()
        .map(|((name, (groups, host_groups)), principals)| Entry {
            name,
            principals: principals.into_iter().collect(),
            groups,
            host_groups,
        })
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&Document { account }).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// What a new document changes for hosts, by OS user name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Names only the new document has.
    pub added: Vec<String>,
    /// Names only the published document has.
    pub removed: Vec<String>,
    /// Names in both whose principals, groups or host groups differ.
    pub changed: Vec<String>,
}

impl Diff {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Each name's claims, normalised, for comparing.
fn by_name(claims: &[Claim]) -> BTreeMap<String, BTreeSet<(String, Access)>> {
    let mut m: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
    for c in claims {
        m.entry(c.run_as.clone())
            .or_default()
            .insert((c.principal.clone(), access(c)));
    }
    m
}

/// What changes from `published` to `new`.
pub fn diff(published: &[Claim], new: &[Claim]) -> Diff {
    let (old, new) = (by_name(published), by_name(new));
    let mut d = Diff::default();
    for (name, claims) in &new {
        match old.get(name) {
            None => d.added.push(name.clone()),
            Some(o) if o != claims => d.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    d.removed = old
        .keys()
        .filter(|n| !new.contains_key(*n))
        .cloned()
        .collect();
    d
}

/// What is published for an account now.
#[derive(Debug, Clone)]
pub struct Published {
    /// Its manifest (verified against the publisher's own key).
    pub manifest: Manifest,
    /// Its document's claims.
    pub claims: Vec<Claim>,
    /// Whether its signature verifies with the signing key in use (not after a rotation).
    pub current_key: bool,
}

/// What to do for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write a new generation: the document changed, or the manifest is due for re-signing.
    Publish {
        /// Why, in words.
        reason: String,
    },
    /// The published mapping stands.
    Unchanged,
    /// Nothing is written for this account, and why; the previous mapping stays.
    Skip {
        /// Why, in words.
        why: String,
    },
}

/// The decision for an account whose read gave `claims` (`complete`: every page answered).
#[allow(clippy::too_many_arguments)] // NOTE: each is one fact of the decision, named at the call.
pub fn decide(
    account: &str,
    complete: bool,
    problems: &[String],
    claims: &[Claim],
    new_sha256: &str,
    published: Option<&Published>,
    now: SystemTime,
    validity: Duration,
    allow_empty: bool,
) -> Decision {
    if !complete {
        return Decision::Skip {
            why: format!(
                "the read of account {account} was incomplete ({}): its published mapping stays as it is",
                problems.join("; ")
            ),
        };
    }
    let Some(p) = published else {
        return Decision::Publish {
            reason: "nothing is published for this account yet".into(),
        };
    };
    if claims.is_empty() && !p.claims.is_empty() && !allow_empty {
        return Decision::Skip {
            why: format!(
                "account {account} answered with no principal at all, where the published mapping has {}: a broken read looks like this; if it is true, run publish with --allow-empty",
                p.claims.len()
            ),
        };
    }
    if p.manifest.document.sha256 != new_sha256 {
        return Decision::Publish {
            reason: "the document changed".into(),
        };
    }
    if !p.current_key {
        return Decision::Publish {
            reason: "unchanged, re-signed with the signing key in use (a rotation)".into(),
        };
    }
    let issued =
        crate::clock::parse_rfc3339(&p.manifest.issued_at).unwrap_or(SystemTime::UNIX_EPOCH);
    let expires =
        crate::clock::parse_rfc3339(&p.manifest.expires_at).unwrap_or(SystemTime::UNIX_EPOCH);
    // Re-signed once a quarter of the window has passed: hosts never get close to expiry
    // while the publisher runs.
    if now >= issued + validity / 4 || now + validity.mul_f64(0.75) >= expires {
        return Decision::Publish {
            reason: "unchanged, re-signed before it expires".into(),
        };
    }
    Decision::Unchanged
}

/// The manifest of generation `generation` pinning `document` (stored at `key`, version
/// `version_id`), issued `now`, valid for `validity`.
pub fn manifest(
    account: &str,
    generation: u64,
    key: &str,
    version_id: Option<String>,
    document: &[u8],
    now: SystemTime,
    validity: Duration,
) -> Manifest {
    Manifest {
        schema: SCHEMA,
        scope: Scope {
            account: account.to_string(),
        },
        generation,
        complete: true,
        issued_at: crate::clock::rfc3339(now),
        expires_at: crate::clock::rfc3339(now + validity),
        document: DocumentRef {
            key: key.to_string(),
            version_id,
            sha256: sha256_hex(document),
            size: document.len() as u64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(p: &str, name: &str, groups: &[&str]) -> Claim {
        Claim {
            principal: p.into(),
            run_as: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            host_groups: None,
        }
    }

    #[test]
    fn the_document_is_the_same_for_the_same_claims_and_reads_back() {
        let a = vec![
            claim("arn:aws:iam::1:user/b", "bob", &["docker"]),
            claim("arn:aws:iam::1:user/a", "alice", &["wheel", "docker"]),
            claim("arn:aws:iam::1:role/ops", "alice", &["docker", "wheel"]),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(document(&a), document(&b));
        let text = String::from_utf8(document(&a)).unwrap();
        let back = crate::accounts::source::parse_account_list(&text, true, "m").unwrap();
        assert_eq!(back.len(), 3);
        assert!(diff(&a, &back).is_empty(), "{:?}", diff(&a, &back));
        // alice's two principals with the same groups are one entry.
        assert_eq!(text.matches("\"alice\"").count(), 1, "{text}");
    }

    #[test]
    fn the_diff_names_added_removed_and_changed() {
        let old = vec![
            claim("p:a", "alice", &[]),
            claim("p:b", "bob", &[]),
            claim("p:c", "carol", &["docker"]),
        ];
        let new = vec![
            claim("p:a", "alice", &[]),
            claim("p:c", "carol", &[]),
            claim("p:d", "dave", &[]),
        ];
        assert_eq!(
            diff(&old, &new),
            Diff {
                added: vec!["dave".into()],
                removed: vec!["bob".into()],
                changed: vec!["carol".into()],
            }
        );
    }

    fn at(s: &str) -> SystemTime {
        crate::clock::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn decisions_keep_the_published_mapping_when_in_doubt() {
        let now = at("2026-12-06T12:00:00Z");
        let day = Duration::from_secs(86400);
        let claims = vec![claim("p:a", "alice", &[])];
        let doc = document(&claims);
        let sha = sha256_hex(&doc);
        let published = Published {
            manifest: manifest("1", 4, "k", None, &doc, now - day, 7 * day),
            claims: claims.clone(),
            current_key: true,
        };
        let d = |complete, claims: &[Claim], sha: &str, now, allow| {
            decide(
                "1",
                complete,
                &["page 2 throttled".into()],
                claims,
                sha,
                Some(&published),
                now,
                7 * day,
                allow,
            )
        };
        // Incomplete: skipped, whatever it says.
        assert!(
            matches!(d(false, &claims, "x", now, true), Decision::Skip { why } if why.contains("page 2 throttled"))
        );
        // Empty where there were principals: only with the override.
        let empty_sha = sha256_hex(&document(&[]));
        assert!(
            matches!(d(true, &[], &empty_sha, now, false), Decision::Skip { why } if why.contains("--allow-empty"))
        );
        assert!(matches!(
            d(true, &[], &empty_sha, now, true),
            Decision::Publish { .. }
        ));
        // Unchanged and fresh: nothing; changed: publish; a quarter of the window gone: re-sign.
        assert_eq!(d(true, &claims, &sha, now, false), Decision::Unchanged);
        assert!(
            matches!(d(true, &claims, "other", now, false), Decision::Publish { reason } if reason.contains("changed"))
        );
        assert!(
            matches!(d(true, &claims, &sha, now + day, false), Decision::Publish { reason } if reason.contains("re-signed"))
        );
        // Nothing published yet.
        assert!(matches!(
            decide("1", true, &[], &claims, &sha, None, now, 7 * day, false),
            Decision::Publish { .. }
        ));
    }

    #[test]
    fn the_manifest_pins_the_document() {
        let doc = document(&[claim("p:a", "alice", &[])]);
        let m = manifest(
            "111111111111",
            9,
            "m/111111111111/document.json",
            Some("v3".into()),
            &doc,
            at("2026-12-06T12:00:00Z"),
            DEFAULT_VALIDITY,
        );
        assert_eq!(m.generation, 9);
        assert_eq!(m.document.size, doc.len() as u64);
        assert_eq!(m.document.sha256, sha256_hex(&doc));
        assert_eq!(m.expires_at, "2026-12-13T12:00:00Z");
        assert!(super::super::check_document(&doc, &m.document).is_ok());
    }
}
