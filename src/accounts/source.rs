//! Sources of the desired set: IAM, a local file, `accounts.extra`, and the Session Manager
//! preference `runAsDefaultUser`.
//!
//! A read is complete or it is unknown: any error (a throttled page, access denied, expired
//! credentials, an unreadable file) marks the whole read incomplete, and an incomplete read
//! never retires an account.
//!
//! IAM is read with one paginated `GetAccountAuthorizationDetails` (filter User + Role): it
//! returns users and roles *with their tags*, so a sync costs ⌈principals / page size⌉ calls. The
//! alternative, `ListUsers` + `ListRoles` + one `List*Tags` per principal, costs N + 2 calls
//! (measured in `bench/`), and IAM's request budget is small, shared by the whole account and
//! cannot be raised.

use std::path::Path;

use aws_sdk_iam::types::{EntityType, Tag};
use serde::Deserialize;

use super::desired::{self, Claim, SourceRead, TAG_GROUPS, TAG_HOST_GROUPS, TAG_RUN_AS};
use crate::aws::sdk_error;
use crate::config::SourceKind;

/// Principal label of `accounts.extra` names.
pub const EXTRA_PRINCIPAL: &str = "config:accounts.extra";
/// Principal label of the `runAsDefaultUser` preference.
pub const DEFAULT_USER_PRINCIPAL: &str = "ssm:SSM-SessionManagerRunShell/runAsDefaultUser";

/// True when the claims name no principal of the source itself: nothing but `extra` names and
/// the default user (an empty answer, which never starts retirements without an override).
pub fn is_empty_answer(claims: &[Claim]) -> bool {
    !claims
        .iter()
        .any(|c| c.principal != EXTRA_PRINCIPAL && c.principal != DEFAULT_USER_PRINCIPAL)
}

/// Reads the configured source, plus `extra` and the preferences. `persist`: a mapping read
/// may store its last good copy (not in a plan, which changes nothing).
pub async fn read(
    all: &crate::config::Settings,
    aws: Option<&crate::aws::Aws>,
    persist: bool,
    now: std::time::SystemTime,
) -> SourceRead {
    let settings = &all.accounts;
    let sdk = aws.and_then(crate::aws::Aws::sdk);
    let mut read = match settings.source {
        SourceKind::Iam => match sdk {
            Some(sdk) => {
                read_iam(
                    &crate::aws::clients::iam(sdk),
                    &settings.iam_path_prefix,
                    settings.iam_page_size,
                )
                .await
            }
            None => incomplete("iam", "AWS is not configured (see the error above)"),
        },
        SourceKind::File => read_file(&settings.file),
        SourceKind::Mapping => super::mapping::fetch::read(all, aws, persist, now).await,
    };
    for name in &settings.extra {
        read.claims.push(Claim {
            principal: EXTRA_PRINCIPAL.into(),
            run_as: name.clone(),
            groups: vec![],
            host_groups: None,
        });
    }
    if settings.read_session_preferences {
        match sdk {
            Some(sdk) => {
                read.api_calls += 1;
                match crate::aws::ssm::session_preferences(&crate::aws::clients::ssm(sdk)).await {
                    Ok(Some(p)) => {
                        if let Some(u) = &p.default_user {
                            read.claims.push(Claim {
                                principal: DEFAULT_USER_PRINCIPAL.into(),
                                run_as: u.clone(),
                                groups: vec![],
                                host_groups: None,
                            });
                        }
                        read.preferences = Some(p);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        read.complete = false;
                        let grant = if e.fault.is_access_denied() {
                            format!("; grant {}", crate::aws::ssm::PREFERENCES_PERMISSION)
                        } else {
                            String::new()
                        };
                        read.problems.push(format!(
                            "{e} (so this read is incomplete{grant}; or set accounts.read_session_preferences = false)"
                        ));
                    }
                }
            }
            None => {
                read.complete = false;
                read.problems
                    .push("cannot read Session Manager preferences: AWS is not configured".into());
            }
        }
    }
    read
}

fn incomplete(source: &str, problem: &str) -> SourceRead {
    SourceRead {
        source: source.into(),
        claims: vec![],
        complete: false,
        problems: vec![problem.into()],
        preferences: None,
        api_calls: 0,
        unchanged: false,
    }
}

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == key).map(Tag::value)
}

/// Turns one principal's tags into a claim (`None` without `SSMSessionRunAs`).
pub fn claim_from_tags(arn: &str, tags: &[Tag]) -> Option<Claim> {
    let run_as = tag(tags, TAG_RUN_AS)?;
    Some(Claim {
        principal: arn.to_string(),
        run_as: run_as.to_string(),
        groups: tag(tags, TAG_GROUPS)
            .map(desired::split_words)
            .unwrap_or_default(),
        host_groups: tag(tags, TAG_HOST_GROUPS).map(desired::split_words),
    })
}

/// The closing tag of a `GetAccountAuthorizationDetails` answer.
const GAAD_END: &str = "</GetAccountAuthorizationDetailsResponse>";

/// A read longer than this many pages is taken for a loop (at 1,000 principals a page, ten
/// million principals).
const MAX_PAGES: u32 = 10_000;

/// Checks that a `GetAccountAuthorizationDetails` answer is a whole document that says whether
/// more pages follow. The SDK cannot tell: its XML reader accepts a document cut short after any
/// complete `<member>`, and its output has `is_truncated: bool`, so an absent `<IsTruncated>`
/// reads as `false` — a partial page that looks like the last one.
pub fn check_gaad_answer(body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let end = text.trim_end();
    if !end.ends_with(GAAD_END) {
        let tail: String = {
            let chars: Vec<char> = end.chars().rev().take(40).collect();
            chars.into_iter().rev().collect()
        };
        return Err(format!(
            "the answer was cut short: {} bytes that do not end with {GAAD_END} (they end with {tail:?})",
            body.len()
        ));
    }
    if !text.contains("<IsTruncated>") {
        return Err(
            "the answer has no <IsTruncated> element, so it does not say whether more pages follow"
                .into(),
        );
    }
    Ok(())
}

/// Fails a `GetAccountAuthorizationDetails` call whose answer parsed but is not a whole
/// document ([`check_gaad_answer`]): it runs on the raw body after the SDK read it.
#[derive(Debug)]
struct WholeAnswer;

impl aws_smithy_runtime_api::client::interceptors::Intercept for WholeAnswer {
    fn name(&self) -> &'static str {
        "complete-answer check"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        // An error answer is an error already.
        if context.output_or_error().is_err() {
            return Ok(());
        }
        match context.response().body().bytes() {
            Some(body) => check_gaad_answer(body).map_err(Into::into),
            None => Err("the answer's body was not in memory, so it cannot be checked".into()),
        }
    }
}

/// Reads users and roles with `SSMSessionRunAs` through `GetAccountAuthorizationDetails`.
///
/// A read is complete only when it provably is: every page answered, each one a whole document
/// ([`WholeAnswer`]), and the last one saying `IsTruncated=false`. A page that says more follow
/// but gives no `Marker`, or gives back the request's own `Marker` (or any earlier page's), would
/// end or loop the listing early: each is an incomplete read that names the page.
pub async fn read_iam(
    client: &aws_sdk_iam::Client,
    path_prefix: &str,
    page_size: u32,
) -> SourceRead {
    let mut read = SourceRead {
        source: if path_prefix == "/" {
            "iam".into()
        } else {
            format!("iam (path {path_prefix})")
        },
        claims: vec![],
        complete: true,
        problems: vec![],
        preferences: None,
        api_calls: 0,
        unchanged: false,
    };
    let mut case_variants = Vec::new();
    let mut marker: Option<String> = None;
    let mut markers_seen = std::collections::BTreeSet::new();
    let incomplete = |read: &mut SourceRead, page: u32, what: String| {
        read.complete = false;
        read.problems.push(format!(
            "IAM GetAccountAuthorizationDetails page {page}: {what}; so this read is incomplete (nothing is retired)"
        ));
    };
    loop {
        read.api_calls += 1;
        let page_no = read.api_calls;
        let page = client
            .get_account_authorization_details()
            .filter(EntityType::User)
            .filter(EntityType::Role)
            .max_items(i32::try_from(page_size).unwrap_or(1000))
            .set_marker(marker.clone())
            .customize()
            .interceptor(WholeAnswer)
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                incomplete(&mut read, page_no, format!("failed: {}", sdk_error(&e)));
                break;
            }
        };
        let users = page
            .user_detail_list()
            .iter()
            .map(|u| (u.arn(), u.path(), u.tags()));
        let roles = page
            .role_detail_list()
            .iter()
            .map(|r| (r.arn(), r.path(), r.tags()));
        for (arn, path, tags) in users.chain(roles) {
            let (Some(arn), path) = (arn, path.unwrap_or("/")) else {
                continue;
            };
            if !path.starts_with(path_prefix) {
                continue;
            }
            if let Some(c) = claim_from_tags(arn, tags) {
                read.claims.push(c);
            } else if let Some(t) = tags
                .iter()
                .find(|t| t.key().eq_ignore_ascii_case(TAG_RUN_AS))
            {
                case_variants.push(format!(
                    "{arn} has tag `{}` (the key is case-sensitive: `{TAG_RUN_AS}`)",
                    t.key()
                ));
            }
        }
        if !page.is_truncated() {
            break;
        }
        match page.marker().filter(|m| !m.is_empty()) {
            None => {
                incomplete(
                    &mut read,
                    page_no,
                    "IsTruncated=true but no Marker for the next page".into(),
                );
                break;
            }
            Some(m) if marker.as_deref() == Some(m) => {
                incomplete(
                    &mut read,
                    page_no,
                    "IsTruncated=true with the request's own Marker again (the listing would never move on)".into(),
                );
                break;
            }
            Some(m) if !markers_seen.insert(m.to_string()) => {
                incomplete(
                    &mut read,
                    page_no,
                    "IsTruncated=true with the Marker of an earlier page (the listing loops)"
                        .into(),
                );
                break;
            }
            Some(m) => marker = Some(m.to_string()),
        }
        if page_no >= MAX_PAGES {
            incomplete(
                &mut read,
                page_no,
                format!("more than {MAX_PAGES} pages, taken for a loop"),
            );
            break;
        }
    }
    if !case_variants.is_empty() {
        read.problems.push(format!(
            "ignored tags with the wrong case: {}",
            case_variants.join("; ")
        ));
    }
    read
}

/// The shape of the `file` source (TOML, or JSON with the same structure).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    account: Vec<FileAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccount {
    name: String,
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    host_groups: Option<Vec<String>>,
}

/// The claims of an account list: one per principal, or one labelled `<source>#<entry>` for an
/// entry that names none.
fn claims_of(doc: FileDoc, source: &str) -> Vec<Claim> {
    let mut claims = Vec::new();
    for (i, a) in doc.account.into_iter().enumerate() {
        let principals = if a.principals.is_empty() {
            vec![format!("{source}#{}", i + 1)]
        } else {
            a.principals
        };
        for p in principals {
            claims.push(Claim {
                principal: p,
                run_as: a.name.clone(),
                groups: a.groups.clone(),
                host_groups: a.host_groups.clone(),
            });
        }
    }
    claims
}

/// The claims of an account list in the `file` source's shape (JSON when `json`, else TOML).
pub fn parse_account_list(text: &str, json: bool, source: &str) -> Result<Vec<Claim>, String> {
    let doc: FileDoc = if json {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        toml::from_str(text).map_err(|e| e.to_string())?
    };
    Ok(claims_of(doc, source))
}

/// Reads the local account list (`.json` = JSON, anything else = TOML).
pub fn read_file(path: &Path) -> SourceRead {
    let source = format!("file:{}", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return incomplete(
                &source,
                &format!("cannot read the account list {}: {e}", path.display()),
            );
        }
    };
    let json = path.extension().is_some_and(|e| e == "json");
    let claims = match parse_account_list(&text, json, &source) {
        Ok(c) => c,
        Err(e) => {
            return incomplete(
                &source,
                &format!(
                    "the account list {} is invalid, so nothing in it is used: {e}",
                    path.display()
                ),
            );
        }
    };
    SourceRead {
        source,
        claims,
        complete: true,
        problems: vec![],
        preferences: None,
        api_calls: 0,
        unchanged: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build().unwrap()
    }

    #[test]
    fn tags_to_claim() {
        let c = claim_from_tags(
            "arn:aws:iam::1:user/a",
            &[
                t("SSMSessionRunAs", "alice"),
                t("ssm-companion:groups", "docker  adm"),
                t("ssm-companion:host-groups", "web"),
            ],
        )
        .unwrap();
        assert_eq!(c.run_as, "alice");
        assert_eq!(c.groups, ["docker", "adm"]);
        assert_eq!(c.host_groups, Some(vec!["web".to_string()]));
        assert!(claim_from_tags("arn", &[t("Team", "x")]).is_none());
        // The key is case-sensitive, as Session Manager's.
        assert!(claim_from_tags("arn", &[t("ssmsessionrunas", "x")]).is_none());
    }

    #[test]
    fn only_a_whole_answer_that_says_whether_more_follow_counts() {
        let whole = b"<GetAccountAuthorizationDetailsResponse xmlns=\"x\"><GetAccountAuthorizationDetailsResult><UserDetailList><member><UserName>a</UserName></member></UserDetailList><IsTruncated>false</IsTruncated></GetAccountAuthorizationDetailsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetAccountAuthorizationDetailsResponse>\n";
        assert_eq!(check_gaad_answer(whole), Ok(()));
        let cut = &whole[..whole.len() / 2];
        let e = check_gaad_answer(cut).unwrap_err();
        assert!(
            e.contains("cut short") && e.contains(&format!("{} bytes", cut.len())),
            "{e}"
        );
        let no_flag =
            String::from_utf8_lossy(whole).replace("<IsTruncated>false</IsTruncated>", "");
        let e = check_gaad_answer(no_flag.as_bytes()).unwrap_err();
        assert!(e.contains("no <IsTruncated>"), "{e}");
        assert!(check_gaad_answer(b"").is_err());
    }

    #[test]
    fn file_source_toml_and_json() {
        let d = tempfile::tempdir().unwrap();
        let toml_path = d.path().join("accounts.toml");
        std::fs::write(
            &toml_path,
            "[[account]]\nname = \"alice\"\nprincipals = [\"arn:a\", \"arn:b\"]\ngroups = [\"docker\"]\n\n[[account]]\nname = \"bob\"\nhost_groups = [\"web\"]\n",
        )
        .unwrap();
        let r = read_file(&toml_path);
        assert!(r.complete, "{:?}", r.problems);
        assert_eq!(r.claims.len(), 3);
        assert_eq!(
            r.claims[2].principal,
            format!("file:{}#2", toml_path.display())
        );
        assert_eq!(r.claims[2].host_groups, Some(vec!["web".to_string()]));

        let json_path = d.path().join("accounts.json");
        std::fs::write(
            &json_path,
            r#"{"account":[{"name":"carol","groups":["adm"]}]}"#,
        )
        .unwrap();
        let r = read_file(&json_path);
        assert!(r.complete);
        assert_eq!(r.claims[0].run_as, "carol");
    }

    #[test]
    fn broken_or_missing_file_is_incomplete_and_yields_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("accounts.toml");
        let r = read_file(&p);
        assert!(!r.complete);
        assert!(r.problems[0].contains("cannot read"));
        std::fs::write(
            &p,
            "[[account]]\nname = \"alice\"\n[[account]]\nnmae = \"typo\"\n",
        )
        .unwrap();
        let r = read_file(&p);
        assert!(!r.complete);
        assert!(r.claims.is_empty(), "a half-valid file is not used at all");
        assert!(r.problems[0].contains("nmae"), "{:?}", r.problems);
    }
}
