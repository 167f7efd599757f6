//! IAM Identity Center users in the fleet mapping (pure; the reads are in
//! [`super::directory`]).
//!
//! Identity Center users share one role per permission set (`AWSReservedSSO_<set>_<suffix>`),
//! which AWS alone may tag, so a person's Run As name reaches Session Manager as a session tag:
//! an *attribute for access control* whose key is `SSMSessionRunAs` and whose source is a
//! `${path:…}` expression over the identity-store user (`${path:userName}`,
//! `${path:enterprise.employeeNumber}`, `${path:emails[primary eq true].value}`). `publish`
//! evaluates that expression for every user assigned to an account, directly or through a
//! group. A value that only an external IdP sends in its SAML assertion is not visible to any
//! AWS API: such users must come from the `file` source or `accounts.extra`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::accounts::desired::{Claim, TAG_GROUPS, TAG_HOST_GROUPS, TAG_RUN_AS, split_words};

/// One step of a path: an attribute, optionally filtered (`emails[primary eq true]`).
#[derive(Debug, Clone, PartialEq)]
struct Step {
    name: String,
    filter: Option<(String, Value)>,
}

/// A parsed `${path:…}` source.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    text: String,
    steps: Vec<Step>,
}

/// The attributes for access control that `publish` evaluates.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    /// `SSMSessionRunAs`'s source.
    pub run_as: Path,
    /// `ssm-companion:groups`'s source, when configured.
    pub groups: Option<Path>,
    /// `ssm-companion:host-groups`'s source, when configured.
    pub host_groups: Option<Path>,
}

/// Parses one attribute's source list: exactly one `${path:…}` expression.
pub fn parse_source(key: &str, sources: &[String]) -> Result<Path, String> {
    let [one] = sources else {
        return Err(format!(
            "the attribute {key} has {} sources; publish evaluates exactly one `${{path:…}}`",
            sources.len()
        ));
    };
    let inner = one
        .trim()
        .strip_prefix("${path:")
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| {
            format!(
                "the attribute {key}'s source `{one}` is not a `${{path:…}}` expression over the identity store"
            )
        })?;
    let mut steps = Vec::new();
    for part in split_steps(inner) {
        steps.push(parse_step(part).ok_or_else(|| {
            format!(
                "the attribute {key}'s source `{one}`: `{part}` is not an attribute name or `name[attribute eq value]`"
            )
        })?);
    }
    if steps.is_empty() {
        return Err(format!(
            "the attribute {key}'s source `{one}` names no attribute"
        ));
    }
    Ok(Path {
        text: inner.to_string(),
        steps,
    })
}

/// Splits at dots outside brackets (`emails[type eq "a.b"].value`).
fn split_steps(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0u32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.saturating_sub(1),
            '.' if !quoted && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_step(s: &str) -> Option<Step> {
    let Some((name, rest)) = s.split_once('[') else {
        return is_name(s).then(|| Step {
            name: s.to_string(),
            filter: None,
        });
    };
    let cond = rest.strip_suffix(']')?;
    let mut words = cond.splitn(3, ' ');
    let (attr, op, lit) = (words.next()?, words.next()?, words.next()?.trim());
    if !is_name(name) || !is_name(attr) || !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let value = match lit {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(lit.strip_prefix('"')?.strip_suffix('"')?.to_string()),
    };
    Some(Step {
        name: name.to_string(),
        filter: Some((attr.to_string(), value)),
    })
}

/// A member of an object by name, case-insensitively (SCIM attribute names are).
fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn matches(v: &Value, (attr, want): &(String, Value)) -> bool {
    match (member(v, attr), want) {
        (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

/// Evaluates `path` against a user (the JSON of [`user_json`]). `Err`: why it has no value.
pub fn evaluate(path: &Path, user: &Value) -> Result<String, String> {
    let mut at = user;
    for step in &path.steps {
        let v =
            member(at, &step.name).ok_or_else(|| format!("attribute {} is not set", path.text))?;
        at = match (&step.filter, v) {
            (None, v) => v,
            (Some(f), Value::Array(items)) => items
                .iter()
                .find(|i| matches(i, f))
                .ok_or_else(|| format!("attribute {} matches no entry", path.text))?,
            (Some(_), _) => return Err(format!("attribute {} is not a list", path.text)),
        };
    }
    match at {
        Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(_) | Value::Null => Err(format!("attribute {} is empty", path.text)),
        _ => Err(format!("attribute {} is not a single value", path.text)),
    }
}

/// Picks the attributes `publish` evaluates from the instance's configuration (key, sources).
/// `Ok(None)`: `SSMSessionRunAs` is not among them (Identity Center users' names, if any, come
/// from an IdP that AWS cannot be asked about).
pub fn attributes(config: &[(String, Vec<String>)]) -> Result<Option<Attributes>, String> {
    let find = |key: &str| config.iter().find(|(k, _)| k == key);
    let Some((_, run_as)) = find(TAG_RUN_AS) else {
        return Ok(None);
    };
    let optional = |key: &str| {
        find(key)
            .map(|(k, sources)| parse_source(k, sources))
            .transpose()
    };
    Ok(Some(Attributes {
        run_as: parse_source(TAG_RUN_AS, run_as)?,
        groups: optional(TAG_GROUPS)?,
        host_groups: optional(TAG_HOST_GROUPS)?,
    }))
}

/// An identity-store user as `publish` needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// `UserName` (the role session name hosts see).
    pub user_name: String,
    /// False for a disabled user (who cannot sign in: not published).
    pub enabled: bool,
    /// The user as SCIM-shaped JSON (`userName`, `name.givenName`, `emails[…]`,
    /// `enterprise.…`), what paths are evaluated against.
    pub attributes: Value,
}

/// One user's access to an account: through which permission set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// The permission set's name (the role is `AWSReservedSSO_<name>_<suffix>`).
    pub permission_set: String,
    /// The identity-store user id.
    pub user_id: String,
}

/// The claims of the users with access to `account`, and one line per user left out.
pub fn claims(
    partition: &str,
    account: &str,
    attrs: &Attributes,
    access: &[Access],
    users: &BTreeMap<String, User>,
) -> (Vec<Claim>, Vec<String>) {
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    let mut access = access.to_vec();
    access.sort();
    access.dedup();
    for a in &access {
        let Some(u) = users.get(&a.user_id) else {
            notes.push(format!(
                "Identity Center user {} (assigned through {}) is not in the identity store: left out",
                a.user_id, a.permission_set
            ));
            continue;
        };
        if !u.enabled {
            continue;
        }
        let run_as = match evaluate(&attrs.run_as, &u.attributes) {
            Ok(v) => v,
            Err(why) => {
                notes.push(format!(
                    "Identity Center user {}: {why}, so it has no {TAG_RUN_AS}: left out (a value only your IdP sends cannot be read from AWS: set the attribute in the identity store, or give the name to hosts with the file source or accounts.extra)",
                    u.user_name
                ));
                continue;
            }
        };
        let words = |p: &Option<Path>| {
            p.as_ref()
                .and_then(|p| evaluate(p, &u.attributes).ok())
                .map(|v| split_words(&v))
        };
        out.push(Claim {
            principal: format!(
                "arn:{partition}:sts::{account}:assumed-role/AWSReservedSSO_{}_*/{}",
                a.permission_set, u.user_name
            ),
            run_as,
            groups: words(&attrs.groups).unwrap_or_default(),
            host_groups: words(&attrs.host_groups),
        });
    }
    (out, notes)
}

/// An SDK document (identity-store extensions) as JSON.
pub fn document_json(d: &aws_smithy_types::Document) -> Value {
    use aws_smithy_types::{Document, Number};
    match d {
        Document::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), document_json(v)))
                .collect(),
        ),
        Document::Array(a) => Value::Array(a.iter().map(document_json).collect()),
        Document::Number(Number::PosInt(n)) => Value::from(*n),
        Document::Number(Number::NegInt(n)) => Value::from(*n),
        Document::Number(Number::Float(f)) => Value::from(*f),
        Document::String(s) => Value::String(s.clone()),
        Document::Bool(b) => Value::Bool(*b),
        Document::Null => Value::Null,
    }
}

/// The enterprise extension's name in the identity store.
pub const ENTERPRISE: &str = "aws:identitystore:enterprise";

/// An identity-store user as the SCIM-shaped JSON that paths are evaluated against.
pub fn user_json(u: &aws_sdk_identitystore::types::User) -> Value {
    use serde_json::json;
    let s = |v: Option<&str>| v.map_or(Value::Null, |v| Value::String(v.to_string()));
    let name = u.name().map(|n| {
        json!({
            "formatted": s(n.formatted()), "familyName": s(n.family_name()),
            "givenName": s(n.given_name()), "middleName": s(n.middle_name()),
            "honorificPrefix": s(n.honorific_prefix()), "honorificSuffix": s(n.honorific_suffix()),
        })
    });
    let emails: Vec<Value> = u
        .emails()
        .iter()
        .map(|e| json!({"value": s(e.value()), "type": s(e.r#type()), "primary": e.primary()}))
        .collect();
    let phones: Vec<Value> = u
        .phone_numbers()
        .iter()
        .map(|e| json!({"value": s(e.value()), "type": s(e.r#type()), "primary": e.primary()}))
        .collect();
    let addresses: Vec<Value> = u
        .addresses()
        .iter()
        .map(|a| {
            json!({
                "streetAddress": s(a.street_address()), "locality": s(a.locality()),
                "region": s(a.region()), "postalCode": s(a.postal_code()),
                "country": s(a.country()), "formatted": s(a.formatted()),
                "type": s(a.r#type()), "primary": a.primary(),
            })
        })
        .collect();
    json!({
        "userName": s(u.user_name()), "displayName": s(u.display_name()),
        "nickName": s(u.nick_name()), "profileUrl": s(u.profile_url()),
        "userType": s(u.user_type()), "title": s(u.title()),
        "preferredLanguage": s(u.preferred_language()), "locale": s(u.locale()),
        "timezone": s(u.timezone()), "name": name.unwrap_or(Value::Null),
        "emails": emails, "phoneNumbers": phones, "addresses": addresses,
        "enterprise": u
            .extensions()
            .and_then(|x| x.get(ENTERPRISE))
            .map_or(Value::Null, document_json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(s: &str) -> Path {
        parse_source("k", &[s.to_string()]).unwrap()
    }

    fn alice() -> Value {
        json!({
            "userName": "alice@example.com",
            "name": {"givenName": "Alice"},
            "emails": [{"value": "a2@x", "primary": false}, {"value": "a@x", "primary": true, "type": "work"}],
            "enterprise": {"employeeNumber": "alice", "costCenter": 42, "department": ""},
        })
    }

    #[test]
    fn paths_of_every_documented_form_evaluate() {
        let u = alice();
        assert_eq!(
            evaluate(&path("${path:userName}"), &u).unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            evaluate(&path("${path:name.givenName}"), &u).unwrap(),
            "Alice"
        );
        assert_eq!(
            evaluate(&path("${path:enterprise.employeeNumber}"), &u).unwrap(),
            "alice"
        );
        assert_eq!(
            evaluate(&path("${path:enterprise.costCenter}"), &u).unwrap(),
            "42"
        );
        assert_eq!(
            evaluate(&path("${path:emails[primary eq true].value}"), &u).unwrap(),
            "a@x"
        );
        assert_eq!(
            evaluate(&path("${path:emails[type eq \"WORK\"].value}"), &u).unwrap(),
            "a@x"
        );
        // Attribute names are case-insensitive, as in SCIM.
        assert_eq!(
            evaluate(&path("${path:USERNAME}"), &u).unwrap(),
            "alice@example.com"
        );
    }

    #[test]
    fn a_missing_or_empty_value_says_which_attribute() {
        let u = alice();
        let e = evaluate(&path("${path:enterprise.department}"), &u).unwrap_err();
        assert_eq!(e, "attribute enterprise.department is empty");
        let e = evaluate(&path("${path:enterprise.division}"), &u).unwrap_err();
        assert_eq!(e, "attribute enterprise.division is not set");
        let e = evaluate(&path("${path:emails[type eq \"home\"].value}"), &u).unwrap_err();
        assert!(e.contains("matches no entry"), "{e}");
        let e = evaluate(&path("${path:name}"), &u).unwrap_err();
        assert!(e.contains("not a single value"), "{e}");
    }

    #[test]
    fn sources_that_are_not_one_path_are_refused_with_the_key() {
        for bad in [
            vec![],
            vec!["${path:a}".to_string(), "${path:b}".to_string()],
            vec!["alice".to_string()],
            vec!["${path:}".to_string()],
            vec!["${path:emails[primary gt 1].value}".to_string()],
            vec!["${path:a b}".to_string()],
        ] {
            let e = parse_source(TAG_RUN_AS, &bad).unwrap_err();
            assert!(e.contains(TAG_RUN_AS), "{bad:?}: {e}");
        }
    }

    #[test]
    fn without_the_run_as_key_there_are_no_attributes_to_evaluate() {
        let cfg = vec![(
            "CostCenter".to_string(),
            vec!["${path:enterprise.costCenter}".to_string()],
        )];
        assert_eq!(attributes(&cfg).unwrap(), None);
        let cfg = vec![
            (
                TAG_RUN_AS.to_string(),
                vec!["${path:enterprise.employeeNumber}".to_string()],
            ),
            (TAG_GROUPS.to_string(), vec!["${path:title}".to_string()]),
        ];
        let a = attributes(&cfg).unwrap().unwrap();
        assert_eq!(a.run_as, path("${path:enterprise.employeeNumber}"));
        assert_eq!(a.groups.unwrap(), path("${path:title}"));
        assert!(a.host_groups.is_none());
    }

    #[test]
    fn claims_name_the_reserved_role_and_leave_out_users_without_a_value() {
        let attrs = Attributes {
            run_as: path("${path:enterprise.employeeNumber}"),
            groups: Some(path("${path:title}")),
            host_groups: None,
        };
        let mut users = BTreeMap::new();
        let mut a = alice();
        a["title"] = json!("adm wheel");
        users.insert(
            "u-1".to_string(),
            User {
                user_name: "alice@example.com".into(),
                enabled: true,
                attributes: a,
            },
        );
        users.insert(
            "u-2".to_string(),
            User {
                user_name: "eve".into(),
                enabled: true,
                attributes: json!({"userName": "eve"}),
            },
        );
        users.insert(
            "u-3".to_string(),
            User {
                user_name: "mallory".into(),
                enabled: false,
                attributes: alice(),
            },
        );
        let access: Vec<Access> = ["u-1", "u-2", "u-3", "u-4", "u-1"]
            .iter()
            .map(|u| Access {
                permission_set: "SSMRunAs".into(),
                user_id: u.to_string(),
            })
            .collect();
        let (claims, notes) = claims("aws", "111111111111", &attrs, &access, &users);
        assert_eq!(claims.len(), 1, "{claims:?}");
        assert_eq!(claims[0].run_as, "alice");
        assert_eq!(claims[0].groups, vec!["adm", "wheel"]);
        assert_eq!(
            claims[0].principal,
            "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_SSMRunAs_*/alice@example.com"
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("eve: attribute enterprise.employeeNumber is not set"),
            "{notes:?}"
        );
        assert!(notes[1].contains("u-4"), "{notes:?}");
    }
}
