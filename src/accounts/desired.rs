//! From what a source said to the set of accounts this host should have (pure).
//!
//! Sources produce [`Claim`]s: "principal P asks for OS user V, with groups G, on hosts H". This
//! module validates each claim on its own (a bad value is rejected with the principal and the
//! reason; the rest goes on), applies the host scope and the group allowlist, and merges claims
//! that name the same user. Checks that need the host's user database (system accounts,
//! pre-existing users) belong to the planner.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::names;

/// Tag naming the OS user (read by Session Manager itself).
pub const TAG_RUN_AS: &str = "SSMSessionRunAs";
/// Tag with the supplementary groups a principal asks for (space-separated).
pub const TAG_GROUPS: &str = "ssm-companion:groups";
/// Tag with the host groups a principal's account is limited to (space-separated).
pub const TAG_HOST_GROUPS: &str = "ssm-companion:host-groups";

/// One principal's request, as read from a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// Who asks: an IAM ARN, `config:extra`, `ssm:runAsDefaultUser`, or `file:<path>#<n>`.
    pub principal: String,
    /// The requested OS user name, exactly as written.
    pub run_as: String,
    /// Requested supplementary groups.
    pub groups: Vec<String>,
    /// Host groups this account is limited to; `None` = every host.
    pub host_groups: Option<Vec<String>>,
}

pub use crate::aws::ssm::RunAsPreferences;

/// What one read of the source produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRead {
    /// A short description ("iam", "file:/etc/ssm-companion/accounts.toml").
    pub source: String,
    /// Every claim read.
    pub claims: Vec<Claim>,
    /// True only if every page and every sub-read succeeded. An incomplete read may create and
    /// repair, but never retires anything.
    pub complete: bool,
    /// Why the read is incomplete, and other notes, one line each.
    pub problems: Vec<String>,
    /// Session Manager preferences, when read.
    pub preferences: Option<RunAsPreferences>,
    /// AWS calls made for this read (for `--json` and the benchmark).
    pub api_calls: u32,
    /// The source answered that nothing changed since the copy stored last (the mapping's
    /// 304): the claims are that copy's.
    #[serde(skip)]
    pub unchanged: bool,
}

/// Splits a space-separated tag value into its words (IAM tag values cannot hold commas).
pub fn split_words(value: &str) -> Vec<String> {
    value.split_whitespace().map(str::to_string).collect()
}

/// Stable reason slugs for rejected values (part of the JSON contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    /// The value is not a safe user name.
    InvalidName,
    /// `root`, `ssm-user`.
    ReservedName,
    /// An existing account or group below UID_MIN/GID_MIN.
    SystemAccount,
    /// The name of a group ssm-companion manages or grants (sudo group, allowlisted groups).
    OwnGroup,
    /// A requested supplementary group is not in `allowed_groups` (the account is still made).
    GroupNotAllowed,
    /// A requested supplementary group is not a valid group name.
    InvalidGroup,
    /// The host scope (`ssm-companion:host-groups`) is present but empty: refused rather than
    /// guessed (every host? none?).
    InvalidHostGroups,
}

impl RejectReason {
    /// The slug.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidName => "invalid-name",
            RejectReason::ReservedName => "reserved-name",
            RejectReason::SystemAccount => "system-account",
            RejectReason::OwnGroup => "own-group",
            RejectReason::GroupNotAllowed => "group-not-allowed",
            RejectReason::InvalidGroup => "invalid-group",
            RejectReason::InvalidHostGroups => "invalid-host-groups",
        }
    }
}

/// A value that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Rejection {
    /// Who asked.
    pub principal: String,
    /// The refused value (user or group name), verbatim.
    pub value: String,
    /// Stable slug.
    pub reason: RejectReason,
    /// Human explanation with the fix.
    pub detail: String,
}

/// An account this host should have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Want {
    /// Every principal that maps to it.
    pub principals: BTreeSet<String>,
    /// Requested supplementary groups that are allowlisted.
    pub groups: BTreeSet<String>,
}

/// The desired set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Desired {
    /// Accounts in scope on this host, by name.
    pub accounts: BTreeMap<String, Want>,
    /// Valid names whose every claim is scoped to other hosts, with their principals.
    pub out_of_scope: BTreeMap<String, BTreeSet<String>>,
    /// Refused values.
    pub rejections: Vec<Rejection>,
}

/// The policy knobs `build` needs.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// This host's groups; empty = no scoping.
    pub host_groups: BTreeSet<String>,
    /// Groups principals may ask for.
    pub allowed_groups: BTreeSet<String>,
}

/// Validates and merges claims into the desired set.
pub fn build(claims: &[Claim], policy: &Policy) -> Desired {
    let mut d = Desired::default();
    for c in claims {
        if let Err(e) = names::check_syntax(&c.run_as) {
            d.rejections.push(Rejection {
                principal: c.principal.clone(),
                value: c.run_as.clone(),
                reason: RejectReason::InvalidName,
                detail: e.to_string(),
            });
            continue;
        }
        if names::is_reserved(&c.run_as) {
            d.rejections.push(Rejection {
                principal: c.principal.clone(),
                value: c.run_as.clone(),
                reason: RejectReason::ReservedName,
                detail: format!(
                    "`{}` is never managed by ssm-companion (Session Manager refuses root; ssm-user belongs to the agent)",
                    c.run_as
                ),
            });
            continue;
        }
        if policy.allowed_groups.contains(&c.run_as) {
            d.rejections.push(Rejection {
                principal: c.principal.clone(),
                value: c.run_as.clone(),
                reason: RejectReason::OwnGroup,
                detail: format!(
                    "`{}` is a group ssm-companion grants (accounts.allowed_groups); a user of that name would be confused with it",
                    c.run_as
                ),
            });
            continue;
        }
        if c.host_groups.as_ref().is_some_and(Vec::is_empty) {
            d.rejections.push(Rejection {
                principal: c.principal.clone(),
                value: c.run_as.clone(),
                reason: RejectReason::InvalidHostGroups,
                detail: format!(
                    "the host scope (tag {TAG_HOST_GROUPS}, or host_groups in the file source) is present but empty, so it is unclear whether `{}` belongs on every host or on none; no account is made for this principal. Remove the tag to mean every host, or list host groups",
                    c.run_as
                ),
            });
            continue;
        }
        let in_scope = match &c.host_groups {
            None => true,
            Some(_) if policy.host_groups.is_empty() => true,
            Some(hg) => hg.iter().any(|g| policy.host_groups.contains(g)),
        };
        if !in_scope {
            d.out_of_scope
                .entry(c.run_as.clone())
                .or_default()
                .insert(c.principal.clone());
            continue;
        }
        let mut groups = BTreeSet::new();
        for g in &c.groups {
            if let Err(e) = names::check_syntax(g) {
                d.rejections.push(Rejection {
                    principal: c.principal.clone(),
                    value: g.clone(),
                    reason: RejectReason::InvalidGroup,
                    detail: format!("requested group: {e}"),
                });
            } else if policy.allowed_groups.contains(g) {
                groups.insert(g.clone());
            } else {
                d.rejections.push(Rejection {
                    principal: c.principal.clone(),
                    value: g.clone(),
                    reason: RejectReason::GroupNotAllowed,
                    detail: format!(
                        "group `{g}` is not in accounts.allowed_groups; the account `{}` is made without it",
                        c.run_as
                    ),
                });
            }
        }
        let want = d.accounts.entry(c.run_as.clone()).or_default();
        want.principals.insert(c.principal.clone());
        want.groups.extend(groups);
    }
    // A name in scope through one principal is in scope.
    d.out_of_scope
        .retain(|name, _| !d.accounts.contains_key(name));
    d.rejections.sort();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(p: &str, v: &str) -> Claim {
        Claim {
            principal: p.into(),
            run_as: v.into(),
            groups: vec![],
            host_groups: None,
        }
    }

    fn policy(host: &[&str], allowed: &[&str]) -> Policy {
        Policy {
            host_groups: host.iter().map(|s| s.to_string()).collect(),
            allowed_groups: allowed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn bad_values_are_rejected_alone_and_the_rest_goes_on() {
        let claims = vec![
            claim("arn:u/a", "alice"),
            claim("arn:u/b", "Bob"),
            claim("arn:u/c", "root"),
            claim("arn:u/d", "-g"),
            claim("arn:u/e", "carol"),
        ];
        let d = build(&claims, &policy(&[], &[]));
        assert_eq!(d.accounts.keys().collect::<Vec<_>>(), ["alice", "carol"]);
        let r: Vec<_> = d
            .rejections
            .iter()
            .map(|r| (r.principal.as_str(), r.reason))
            .collect();
        assert_eq!(
            r,
            [
                ("arn:u/b", RejectReason::InvalidName),
                ("arn:u/c", RejectReason::ReservedName),
                ("arn:u/d", RejectReason::InvalidName),
            ]
        );
    }

    #[test]
    fn two_principals_one_name_merge_stably() {
        let mut a = claim("arn:u/a", "ops");
        a.groups = vec!["docker".into()];
        let mut b = claim("arn:r/b", "ops");
        b.groups = vec!["adm".into()];
        let d1 = build(&[a.clone(), b.clone()], &policy(&[], &["docker", "adm"]));
        let d2 = build(&[b, a], &policy(&[], &["docker", "adm"]));
        assert_eq!(d1, d2);
        let w = &d1.accounts["ops"];
        assert_eq!(w.principals.len(), 2);
        assert_eq!(w.groups.iter().collect::<Vec<_>>(), ["adm", "docker"]);
    }

    #[test]
    fn groups_outside_the_allowlist_are_dropped_with_a_reason() {
        let mut a = claim("arn:u/a", "alice");
        a.groups = vec!["docker".into(), "wheel".into(), "Bad$".into()];
        let d = build(&[a], &policy(&[], &["docker"]));
        assert_eq!(
            d.accounts["alice"].groups.iter().collect::<Vec<_>>(),
            ["docker"]
        );
        let reasons: Vec<_> = d
            .rejections
            .iter()
            .map(|r| (r.value.as_str(), r.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                ("Bad$", RejectReason::InvalidGroup),
                ("wheel", RejectReason::GroupNotAllowed)
            ]
        );
    }

    #[test]
    fn host_scope() {
        let mut web = claim("arn:u/w", "webby");
        web.host_groups = Some(vec!["web".into()]);
        let mut db = claim("arn:u/d", "dba");
        db.host_groups = Some(vec!["db".into(), "reporting".into()]);
        let everywhere = claim("arn:u/e", "eve");
        let claims = [web, db, everywhere];

        // Unscoped host: everything.
        let d = build(&claims, &policy(&[], &[]));
        assert_eq!(d.accounts.len(), 3);

        // A web host: webby and eve; dba is out of scope, not rejected.
        let d = build(&claims, &policy(&["web"], &[]));
        assert_eq!(d.accounts.keys().collect::<Vec<_>>(), ["eve", "webby"]);
        assert_eq!(d.out_of_scope.keys().collect::<Vec<_>>(), ["dba"]);
        assert!(d.rejections.is_empty());

        // Intersection, not equality.
        let d = build(&claims, &policy(&["reporting", "x"], &[]));
        assert!(d.accounts.contains_key("dba"));
    }

    #[test]
    fn an_empty_host_scope_is_refused_on_every_host() {
        let mut c = claim("arn:u/a", "alice");
        c.host_groups = Some(vec![]);
        for host in [&[][..], &["web"][..]] {
            let d = build(std::slice::from_ref(&c), &policy(host, &[]));
            assert!(d.accounts.is_empty(), "{host:?}");
            assert!(d.out_of_scope.is_empty());
            assert_eq!(d.rejections[0].reason, RejectReason::InvalidHostGroups);
            assert!(d.rejections[0].detail.contains("Remove the tag"));
        }
        // The tag as IAM gives it: an empty (or blank) value.
        let from_tag = crate::accounts::source::claim_from_tags(
            "arn:u/a",
            &[
                aws_sdk_iam::types::Tag::builder()
                    .key(TAG_RUN_AS)
                    .value("alice")
                    .build()
                    .unwrap(),
                aws_sdk_iam::types::Tag::builder()
                    .key(TAG_HOST_GROUPS)
                    .value("  ")
                    .build()
                    .unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(from_tag.host_groups, Some(vec![]));
    }

    #[test]
    fn in_scope_through_any_principal() {
        let mut a = claim("arn:u/a", "ops");
        a.host_groups = Some(vec!["db".into()]);
        let mut b = claim("arn:u/b", "ops");
        b.host_groups = Some(vec!["web".into()]);
        let d = build(&[a, b], &policy(&["web"], &[]));
        assert_eq!(
            d.accounts["ops"].principals.iter().collect::<Vec<_>>(),
            ["arn:u/b"]
        );
        assert!(d.out_of_scope.is_empty());
    }

    #[test]
    fn names_of_granted_groups_are_refused_as_users() {
        let d = build(&[claim("arn:u/a", "docker")], &policy(&[], &["docker"]));
        assert!(d.accounts.is_empty());
        assert_eq!(d.rejections[0].reason, RejectReason::OwnGroup);
    }

    #[test]
    fn split_words_handles_runs_of_space() {
        assert_eq!(split_words("  docker   adm "), ["docker", "adm"]);
        assert!(split_words("").is_empty());
    }
}
