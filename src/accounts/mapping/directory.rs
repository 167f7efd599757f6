//! `publish`'s reads beyond IAM: the organization's accounts (`organizations:ListAccounts`) and
//! IAM Identity Center's users with access to an account (sso-admin and identitystore). Made
//! with the publisher's own credentials, in the management (or a delegated administrator)
//! account; every listing is paginated by the SDK, which stops on a repeated token.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_ssoadmin::types::PrincipalType;

use super::identity_center::{self, Access, Attributes, User};
use crate::accounts::desired::{Claim, TAG_RUN_AS};
use crate::aws::sdk_error;

/// The organization's active accounts, sorted, and the calls made. An empty answer is an
/// error: it is what a member account is told (by some implementations) instead of
/// AccessDenied, and publishing for no account would look like success.
pub async fn organization_accounts(base: &SdkConfig) -> Result<(Vec<String>, u32), String> {
    let advice = "run publish in the organization's management account or a delegated administrator account (organizations:ListAccounts), or list the accounts in publish.accounts and set publish.organizations = false";
    let pages = crate::aws::clients::organizations(base)
        .list_accounts()
        .into_paginator()
        .send();
    let mut calls = 0;
    let pages = crate::aws::all_pages(pages, &mut calls, "organizations:ListAccounts")
        .await
        .map_err(|e| format!("{e}; {advice}"))?;
    let mut ids = Vec::new();
    for a in pages.iter().flat_map(|p| p.accounts()) {
        let active = match (a.state(), a.status()) {
            (Some(s), _) => s.as_str() == "ACTIVE",
            (None, Some(s)) => s.as_str() == "ACTIVE",
            (None, None) => false,
        };
        if let (true, Some(id)) = (active, a.id()) {
            // It names S3 keys and a role ARN: only an account id will do.
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "organizations:ListAccounts answered {id:?}, which is not an account id (12 digits): nothing is published; list the accounts in publish.accounts"
                ));
            }
            ids.push(id.to_string());
        }
    }
    if ids.is_empty() {
        return Err(format!(
            "organizations:ListAccounts gave no active account; {advice}"
        ));
    }
    ids.sort();
    ids.dedup();
    Ok((ids, calls))
}

/// Where Identity Center is, when configured rather than discovered.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    /// The instance ARN (`arn:aws:sso:::instance/ssoins-…`); empty: discover.
    pub arn: String,
    /// The identity store id (`d-…`); empty: the instance's.
    pub store_id: String,
}

/// Identity Center as read once per run: its attributes and its users; assignments are read
/// per account by [`IdentityCenter::read`].
pub struct IdentityCenter {
    sso: aws_sdk_ssoadmin::Client,
    store: aws_sdk_identitystore::Client,
    instance_arn: String,
    store_id: String,
    /// `None`: `SSMSessionRunAs` is not an attribute for access control.
    attrs: Option<Attributes>,
    users: BTreeMap<String, User>,
    /// Permission set ARN → name.
    set_names: BTreeMap<String, String>,
    /// Group id → its members' user ids.
    members: BTreeMap<String, Vec<String>>,
    /// Calls made so far.
    pub calls: u32,
    /// What every account's read should say (the attribute missing, users left out).
    pub notes: Vec<String>,
}

/// What one account's Identity Center read gave.
pub struct AccountRead {
    /// The claims.
    pub claims: Vec<Claim>,
    /// False when a listing failed: the account is then not published.
    pub complete: bool,
    /// Why, and users left out.
    pub problems: Vec<String>,
}

impl IdentityCenter {
    /// Finds the instance, reads its attributes and (when `SSMSessionRunAs` is one) every
    /// user. Any failure fails the run: without it every account's read would be partial.
    pub async fn load(conf: &SdkConfig, want: &Instance) -> Result<Self, String> {
        let mut ic = Self {
            sso: crate::aws::clients::sso_admin(conf),
            store: crate::aws::clients::identity_store(conf),
            instance_arn: want.arn.clone(),
            store_id: want.store_id.clone(),
            attrs: None,
            users: BTreeMap::new(),
            set_names: BTreeMap::new(),
            members: BTreeMap::new(),
            calls: 0,
            notes: Vec::new(),
        };
        if ic.instance_arn.is_empty() || ic.store_id.is_empty() {
            ic.discover().await?;
        }
        ic.calls += 1;
        let described = ic
            .sso
            .describe_instance_access_control_attribute_configuration()
            .instance_arn(&ic.instance_arn)
            .send()
            .await;
        let config: Vec<(String, Vec<String>)> = match described {
            Ok(out) => out
                .instance_access_control_attribute_configuration()
                .map(|c| {
                    c.access_control_attributes()
                        .iter()
                        .map(|a| {
                            let sources =
                                a.value().map(|v| v.source().to_vec()).unwrap_or_default();
                            (a.key().to_string(), sources)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Vec::new()
            }
            Err(e) => {
                return Err(format!(
                    "sso:DescribeInstanceAccessControlAttributeConfiguration of {} failed: {}",
                    ic.instance_arn,
                    sdk_error(&e)
                ));
            }
        };
        ic.attrs = identity_center::attributes(&config)
            .map_err(|e| format!("Identity Center instance {}: {e}", ic.instance_arn))?;
        if ic.attrs.is_none() {
            ic.notes.push(format!(
                "Identity Center has no attribute for access control named {TAG_RUN_AS}, so no Identity Center user is published: add one (Settings > Attributes for access control, e.g. ${{path:enterprise.employeeNumber}}); names that only your IdP sends in its SAML assertion cannot be read from AWS: give them to hosts with the file source or accounts.extra"
            ));
            return Ok(ic);
        }
        ic.load_users().await?;
        Ok(ic)
    }

    async fn discover(&mut self) -> Result<(), String> {
        self.calls += 1;
        let out = self.sso.list_instances().send().await.map_err(|e| {
            format!(
                "sso:ListInstances failed: {}; set publish.identity_center_instance and publish.identity_store_id, or run publish where Identity Center is administered",
                sdk_error(&e)
            )
        })?;
        let found: Vec<_> = out
            .instances()
            .iter()
            .filter(|i| {
                self.instance_arn.is_empty() || i.instance_arn() == Some(&self.instance_arn)
            })
            .collect();
        let [one] = found.as_slice() else {
            return Err(format!(
                "sso:ListInstances found {} matching Identity Center instances: set publish.identity_center_instance (and identity_store_id) to the one to read",
                found.len()
            ));
        };
        if self.instance_arn.is_empty() {
            self.instance_arn = one.instance_arn().unwrap_or_default().to_string();
        }
        if self.store_id.is_empty() {
            self.store_id = one.identity_store_id().unwrap_or_default().to_string();
        }
        if self.instance_arn.is_empty() || self.store_id.is_empty() {
            return Err("sso:ListInstances answered an instance without its ARN or identity store id: set publish.identity_center_instance and publish.identity_store_id".into());
        }
        Ok(())
    }

    async fn load_users(&mut self) -> Result<(), String> {
        let pages = self
            .store
            .list_users()
            .identity_store_id(&self.store_id)
            .extensions(identity_center::ENTERPRISE)
            .into_paginator()
            .send();
        let what = format!("identitystore:ListUsers in {}", self.store_id);
        for page in crate::aws::all_pages(pages, &mut self.calls, &what).await? {
            for u in page.users() {
                let Some(name) = u.user_name() else { continue };
                self.users.insert(
                    u.user_id().to_string(),
                    User {
                        user_name: name.to_string(),
                        enabled: u.user_status().is_none_or(|s| s.as_str() != "DISABLED"),
                        attributes: identity_center::user_json(u),
                    },
                );
            }
        }
        Ok(())
    }

    /// The claims of the Identity Center users with access to `account`.
    pub async fn read(&mut self, partition: &str, account: &str) -> AccountRead {
        let mut read = AccountRead {
            claims: Vec::new(),
            complete: true,
            problems: self.notes.clone(),
        };
        let Some(attrs) = self.attrs.clone() else {
            return read;
        };
        match self.access(account).await {
            Ok(access) => {
                let (claims, notes) =
                    identity_center::claims(partition, account, &attrs, &access, &self.users);
                read.claims = claims;
                read.problems.extend(notes);
            }
            Err(e) => {
                read.complete = false;
                read.problems.push(format!(
                    "Identity Center assignments of {account}: {e}; so this read is incomplete (nothing is published for the account)"
                ));
            }
        }
        read
    }

    /// Who has access to `account`: users assigned directly and the members of assigned groups.
    async fn access(&mut self, account: &str) -> Result<Vec<Access>, String> {
        let pages = self
            .sso
            .list_permission_sets_provisioned_to_account()
            .instance_arn(&self.instance_arn)
            .account_id(account)
            .into_paginator()
            .send();
        let sets: Vec<String> = crate::aws::all_pages(
            pages,
            &mut self.calls,
            "sso:ListPermissionSetsProvisionedToAccount",
        )
        .await?
        .iter()
        .flat_map(|p| p.permission_sets().iter().cloned())
        .collect();
        let mut access = Vec::new();
        for set in sets {
            let name = self.set_name(&set).await?;
            let pages = self
                .sso
                .list_account_assignments()
                .instance_arn(&self.instance_arn)
                .account_id(account)
                .permission_set_arn(&set)
                .into_paginator()
                .send();
            let what = format!("sso:ListAccountAssignments ({name})");
            let mut assigned = Vec::new();
            for page in crate::aws::all_pages(pages, &mut self.calls, &what).await? {
                for a in page.account_assignments() {
                    if let (Some(t), Some(id)) = (a.principal_type(), a.principal_id()) {
                        assigned.push((t.clone(), id.to_string()));
                    }
                }
            }
            for (kind, id) in assigned {
                let users = match kind {
                    PrincipalType::User => vec![id],
                    PrincipalType::Group => self.group_members(&id).await?,
                    _ => continue,
                };
                access.extend(users.into_iter().map(|user_id| Access {
                    permission_set: name.clone(),
                    user_id,
                }));
            }
        }
        Ok(access)
    }

    async fn set_name(&mut self, arn: &str) -> Result<String, String> {
        if let Some(n) = self.set_names.get(arn) {
            return Ok(n.clone());
        }
        self.calls += 1;
        let out = self
            .sso
            .describe_permission_set()
            .instance_arn(&self.instance_arn)
            .permission_set_arn(arn)
            .send()
            .await
            .map_err(|e| format!("sso:DescribePermissionSet {arn} failed: {}", sdk_error(&e)))?;
        let name = out
            .permission_set()
            .and_then(|p| p.name())
            .ok_or_else(|| format!("sso:DescribePermissionSet {arn} gave no name"))?
            .to_string();
        self.set_names.insert(arn.to_string(), name.clone());
        Ok(name)
    }

    async fn group_members(&mut self, group: &str) -> Result<Vec<String>, String> {
        if let Some(m) = self.members.get(group) {
            return Ok(m.clone());
        }
        let pages = self
            .store
            .list_group_memberships()
            .identity_store_id(&self.store_id)
            .group_id(group)
            .into_paginator()
            .send();
        let what = format!("identitystore:ListGroupMemberships of group {group}");
        let mut users = Vec::new();
        for page in crate::aws::all_pages(pages, &mut self.calls, &what).await? {
            for m in page.group_memberships() {
                if let Some(aws_sdk_identitystore::types::MemberId::UserId(u)) = m.member_id() {
                    users.push(u.clone());
                }
            }
        }
        self.members.insert(group.to_string(), users.clone());
        Ok(users)
    }
}
