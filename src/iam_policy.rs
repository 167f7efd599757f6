//! `ssm-companion iam-policy`: the least-privilege IAM policies for the features a configuration
//! enables. Pure: settings in, policy documents out.
//!
//! Two principals call AWS: every host's instance profile (the daemon, `doctor`, `accounts
//! plan|apply`) and an operator (`fleet health`). The host policy lists everything ssm-companion
//! itself calls, even what AmazonSSMManagedInstanceCore already grants, so that it also works
//! where the agent's credentials come from Default Host Management and the instance role has no
//! other policy. `sts:GetCallerIdentity` needs no permission and is not listed.

use serde_json::{Value, json};

use crate::config::{Settings, SourceKind};

/// The Session Manager preferences document (`runAsEnabled`, `runAsDefaultUser`).
const PREFERENCES_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// Where the policies apply: partition, region and account, `*` when not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    /// A region, or `*`.
    pub region: String,
    /// A 12-digit account id, or `*`.
    pub account: String,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            partition: "aws".into(),
            region: "*".into(),
            account: "*".into(),
        }
    }
}

impl Scope {
    /// Checks the values; the error names the flag and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.partition.as_str(), "aws" | "aws-cn" | "aws-us-gov") {
            return Err(format!(
                "--partition {:?}: use aws, aws-cn or aws-us-gov",
                self.partition
            ));
        }
        let region_ok = self.region == "*"
            || (!self.region.is_empty()
                && self
                    .region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        if !region_ok {
            return Err(format!(
                "--region {:?}: a region name such as eu-west-1, or * for all",
                self.region
            ));
        }
        let account_ok = self.account == "*"
            || (self.account.len() == 12 && self.account.chars().all(|c| c.is_ascii_digit()));
        if !account_ok {
            return Err(format!(
                "--account {:?}: a 12-digit account id, or * for all",
                self.account
            ));
        }
        Ok(())
    }
}

/// The policies, with one line per statement saying which feature needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    /// For every host's instance profile; `None` when the configuration calls no AWS API.
    pub instance_profile: Option<Value>,
    /// Why each host statement is there.
    pub instance_profile_reasons: Vec<String>,
    /// For operators (`fleet health`).
    pub operator: Value,
    /// Why each operator statement is there.
    pub operator_reasons: Vec<String>,
    /// For whoever runs `ssm-companion publish` (from `[publish]`).
    pub publisher: Value,
    /// Why each publisher statement is there.
    pub publisher_reasons: Vec<String>,
}

fn document(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The policies for `settings`.
pub fn policies(settings: &Settings, scope: &Scope) -> Policies {
    let a = &settings.accounts;
    let h = &settings.health;
    let mut statements = Vec::new();
    let mut reasons = Vec::new();
    if a.enabled && a.source == SourceKind::Iam {
        // GetAccountAuthorizationDetails has no resource-level permissions.
        statements.push(json!({
            "Sid": "AccountsReadRunAsTags",
            "Effect": "Allow",
            "Action": "iam:GetAccountAuthorizationDetails",
            "Resource": "*",
        }));
        reasons.push(
            "AccountsReadRunAsTags: accounts.source = \"iam\" reads the users' and roles' SSMSessionRunAs tags"
                .to_string(),
        );
    }
    if a.enabled && a.source == SourceKind::Mapping {
        // Its own account's manifest and document only; by version when the manifest pins one.
        let prefix = a.mapping.prefix.trim_matches('/');
        let sep = if prefix.is_empty() { "" } else { "/" };
        statements.push(json!({
            "Sid": "AccountsReadMapping",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": format!(
                "arn:{}:s3:::{}/{prefix}{sep}{}/*",
                scope.partition, a.mapping.bucket, scope.account
            ),
        }));
        reasons.push(format!(
            "AccountsReadMapping: accounts.source = \"mapping\" reads this account's signed mapping under s3://{}/{prefix} (no IAM call)",
            a.mapping.bucket
        ));
    }
    let prefs_for_accounts = a.enabled && a.read_session_preferences;
    if prefs_for_accounts || h.enabled {
        statements.push(json!({
            "Sid": "ReadSessionManagerPreferences",
            "Effect": "Allow",
            "Action": "ssm:GetDocument",
            "Resource": format!(
                "arn:{}:ssm:{}:{}:document/{PREFERENCES_DOCUMENT}",
                scope.partition, scope.region, scope.account
            ),
        }));
        let users = match (prefs_for_accounts, h.enabled) {
            (true, true) => {
                "accounts.read_session_preferences and the runas.preferences health check"
            }
            (true, false) => "accounts.read_session_preferences",
            _ => "the runas.preferences health check",
        };
        reasons.push(format!(
            "ReadSessionManagerPreferences: {users} read runAsEnabled/runAsDefaultUser"
        ));
    }
    if h.enabled && h.inventory {
        // Like AmazonSSMManagedInstanceCore, which grants it on "*".
        statements.push(json!({
            "Sid": "HealthInventory",
            "Effect": "Allow",
            "Action": "ssm:PutInventory",
            "Resource": "*",
        }));
        reasons.push(
            "HealthInventory: health.inventory = true sends Custom:SsmCompanionHealth".to_string(),
        );
    }
    let s3 = &settings.audit.s3;
    if settings.audit.enabled && !s3.bucket.is_empty() {
        // Only new objects under the prefix: no read, no list, no delete, no overwrite needed
        // (If-None-Match is a condition of PutObject itself).
        let prefix = s3.prefix.trim_matches('/');
        let objects = if prefix.is_empty() {
            "*".to_string()
        } else {
            format!("{prefix}/*")
        };
        statements.push(json!({
            "Sid": "AuditShipToS3",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": format!("arn:{}:s3:::{}/{objects}", scope.partition, s3.bucket),
        }));
        reasons.push(format!(
            "AuditShipToS3: audit.s3 writes the audit objects under s3://{}/{prefix}",
            s3.bucket
        ));
        if s3.sse == "aws:kms" {
            statements.push(json!({
                "Sid": "AuditKmsForS3",
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": if s3.kms_key_id.starts_with("arn:") {
                    s3.kms_key_id.clone()
                } else {
                    format!("arn:{}:kms:{}:{}:key/*", scope.partition, scope.region, scope.account)
                },
            }));
            reasons.push(
                "AuditKmsForS3: audit.s3.sse = \"aws:kms\" encrypts each object with a data key"
                    .into(),
            );
        }
    }
    let cw = &settings.audit.cloudwatch;
    if settings.audit.enabled && !cw.log_group.is_empty() {
        // The stream (the instance id) is made by the daemon; the group is the operator's.
        let region = if cw.region.is_empty() {
            scope.region.as_str()
        } else {
            cw.region.as_str()
        };
        statements.push(json!({
            "Sid": "AuditToCloudWatchLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": format!(
                "arn:{}:logs:{region}:{}:log-group:{}:*",
                scope.partition, scope.account, cw.log_group
            ),
        }));
        reasons.push(format!(
            "AuditToCloudWatchLogs: audit.cloudwatch sends events to a stream per instance in the log group {}",
            cw.log_group
        ));
    }
    let instance_profile = (!statements.is_empty()).then(|| document(statements));
    let operator = document(vec![json!({
        "Sid": "FleetHealth",
        "Effect": "Allow",
        "Action": "ssm:GetInventory",
        "Resource": "*",
    })]);
    let (publisher, publisher_reasons) = publisher(settings, scope);
    Policies {
        instance_profile,
        instance_profile_reasons: reasons,
        publisher,
        publisher_reasons,
        operator,
        operator_reasons: vec![
            "FleetHealth: `ssm-companion fleet health` reads Custom:SsmCompanionHealth fleet-wide"
                .into(),
        ],
    }
}

/// The policy of `ssm-companion publish`, from `[publish]` (what `packaging/cloudformation/
/// fleet-publisher.yaml` grants its role).
fn publisher(settings: &Settings, scope: &Scope) -> (Value, Vec<String>) {
    let p = &settings.publish;
    let bucket = if p.bucket.is_empty() {
        "BUCKET"
    } else {
        p.bucket.as_str()
    };
    let prefix = p.prefix.trim_matches('/');
    let objects = if prefix.is_empty() {
        "*".to_string()
    } else {
        format!("{prefix}/*")
    };
    let key = if p.kms_key_id.starts_with("arn:") && !p.kms_key_id.contains(":alias/") {
        p.kms_key_id.clone()
    } else {
        format!(
            "arn:{}:kms:{}:{}:key/*",
            scope.partition, scope.region, scope.account
        )
    };
    let mut statements = vec![
        json!({
            "Sid": "PublishMapping",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": format!("arn:{}:s3:::{bucket}/{objects}", scope.partition),
        }),
        json!({
            "Sid": "PublishMappingList",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": format!("arn:{}:s3:::{bucket}", scope.partition),
            "Condition": {"StringLike": {"s3:prefix": [objects.clone()]}},
        }),
        json!({
            "Sid": "PublishSign",
            "Effect": "Allow",
            "Action": ["kms:Sign", "kms:GetPublicKey"],
            "Resource": key,
        }),
        json!({
            "Sid": "PublishReadRunAsTags",
            "Effect": "Allow",
            "Action": "iam:GetAccountAuthorizationDetails",
            "Resource": "*",
        }),
    ];
    let mut reasons = vec![
        format!("PublishMapping: reads the published manifest and document, writes new ones under s3://{bucket}/{prefix}"),
        "PublishMappingList: without it S3 answers 403, not 404, for an account's first, absent manifest".to_string(),
        "PublishSign: signs each manifest (ECDSA_SHA_256, RAW) and reads the public key hosts verify with".to_string(),
        "PublishReadRunAsTags: reads SSMSessionRunAs in the account publish runs in".to_string(),
    ];
    if !p.accounts.is_empty() || p.organizations {
        statements.push(json!({
            "Sid": "PublishAssumeReadRole",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": format!("arn:{}:iam::*:role/{}", scope.partition, p.role_name),
        }));
        reasons.push(format!(
            "PublishAssumeReadRole: reads the other accounts through their {} role",
            p.role_name
        ));
    }
    if p.organizations {
        statements.push(json!({
            "Sid": "PublishListAccounts",
            "Effect": "Allow",
            "Action": "organizations:ListAccounts",
            "Resource": "*",
        }));
        reasons.push(
            "PublishListAccounts: publish.organizations lists the organization's active accounts"
                .into(),
        );
    }
    if p.identity_center {
        statements.push(json!({
            "Sid": "PublishIdentityCenter",
            "Effect": "Allow",
            "Action": [
                "sso:ListInstances",
                "sso:DescribeInstanceAccessControlAttributeConfiguration",
                "sso:ListPermissionSetsProvisionedToAccount",
                "sso:DescribePermissionSet",
                "sso:ListAccountAssignments",
                "identitystore:ListUsers",
                "identitystore:ListGroupMemberships",
            ],
            "Resource": "*",
        }));
        reasons.push("PublishIdentityCenter: publish.identity_center evaluates the SSMSessionRunAs attribute for access control of assigned users".into());
    }
    (document(statements), reasons)
}

/// For people: both policies with what each statement is for.
pub fn text(p: &Policies) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let mut out = String::from(
        "# Instance profile: attach to the role of every host (next to AmazonSSMManagedInstanceCore,\n# which the agent needs). Print it alone with `--for instance-profile`.\n",
    );
    match &p.instance_profile {
        Some(doc) => {
            for r in &p.instance_profile_reasons {
                out.push_str(&format!("#   {r}\n"));
            }
            out.push_str(&pretty(doc));
            out.push('\n');
        }
        None => out.push_str(
            "#   nothing: with this configuration ssm-companion calls no AWS API that needs a permission\n",
        ),
    }
    out.push_str("\n# Operator: for the people or pipelines that run `ssm-companion fleet health`.\n# Print it alone with `--for operator`.\n");
    for r in &p.operator_reasons {
        out.push_str(&format!("#   {r}\n"));
    }
    out.push_str(&pretty(&p.operator));
    out.push('\n');
    out.push_str("\n# Publisher: for whoever runs `ssm-companion publish` ([publish]; the role\n# packaging/cloudformation/fleet-publisher.yaml creates). Print it alone with `--for publisher`.\n");
    for r in &p.publisher_reasons {
        out.push_str(&format!("#   {r}\n"));
    }
    out.push_str(&pretty(&p.publisher));
    out.push('\n');
    out
}

/// For scripts (`ssm-companion/iam-policy/v1`).
pub fn json(p: &Policies) -> String {
    serde_json::to_string_pretty(&json!({
        "schema": "ssm-companion/iam-policy/v1",
        "instance_profile": p.instance_profile,
        "instance_profile_reasons": p.instance_profile_reasons,
        "operator": p.operator,
        "operator_reasons": p.operator_reasons,
        "publisher": p.publisher,
        "publisher_reasons": p.publisher_reasons,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(doc: &Value) -> Vec<String> {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| match &s["Action"] {
                Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                one => vec![one.as_str().unwrap().to_string()],
            })
            .collect()
    }

    #[test]
    fn defaults_need_iam_tags_and_the_preferences() {
        let p = policies(&Settings::default(), &Scope::default());
        let host = p.instance_profile.as_ref().unwrap();
        assert_eq!(
            actions(host),
            ["iam:GetAccountAuthorizationDetails", "ssm:GetDocument"]
        );
        assert_eq!(
            host["Statement"][1]["Resource"],
            "arn:aws:ssm:*:*:document/SSM-SessionManagerRunShell"
        );
        assert_eq!(actions(&p.operator), ["ssm:GetInventory"]);
        assert_eq!(p.instance_profile_reasons.len(), 2);
    }

    #[test]
    fn follows_the_features() {
        let mut s = Settings::default();
        s.accounts.source = SourceKind::File;
        s.accounts.read_session_preferences = false;
        s.health.inventory = true;
        let scope = Scope {
            partition: "aws-cn".into(),
            region: "cn-north-1".into(),
            account: "123456789012".into(),
        };
        let p = policies(&s, &scope);
        let host = p.instance_profile.unwrap();
        assert_eq!(actions(&host), ["ssm:GetDocument", "ssm:PutInventory"]);
        assert_eq!(
            host["Statement"][0]["Resource"],
            "arn:aws-cn:ssm:cn-north-1:123456789012:document/SSM-SessionManagerRunShell"
        );
        s.health.enabled = false;
        s.accounts.enabled = false;
        let p = policies(&s, &Scope::default());
        assert!(p.instance_profile.is_none());
        assert!(text(&p).contains("nothing: with this configuration"));
    }

    #[test]
    fn the_publisher_gets_what_publish_calls_and_the_options_add() {
        let mut s = Settings::default();
        s.publish.bucket = "fleet-mapping".into();
        s.publish.kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/k".into();
        let p = policies(&s, &Scope::default());
        assert_eq!(
            actions(&p.publisher),
            [
                "s3:GetObject",
                "s3:PutObject",
                "s3:ListBucket",
                "kms:Sign",
                "kms:GetPublicKey",
                "iam:GetAccountAuthorizationDetails"
            ]
        );
        assert_eq!(
            p.publisher["Statement"][2]["Resource"],
            "arn:aws:kms:us-east-1:123456789012:key/k"
        );
        s.publish.accounts = vec!["111111111111".into()];
        s.publish.organizations = true;
        s.publish.identity_center = true;
        let all = actions(&policies(&s, &Scope::default()).publisher);
        assert!(all.contains(&"sts:AssumeRole".to_string()));
        assert!(all.contains(&"organizations:ListAccounts".to_string()));
        assert!(all.contains(&"identitystore:ListGroupMemberships".to_string()));
        assert!(
            !all.iter().any(|a| a.ends_with('*') || a.contains("Delete")),
            "{all:?}"
        );
    }

    #[test]
    fn the_mapping_source_reads_its_accounts_objects_only() {
        let mut s = Settings::default();
        s.accounts.source = SourceKind::Mapping;
        s.accounts.read_session_preferences = false;
        s.health.enabled = false;
        s.accounts.mapping.bucket = "fleet-mapping".into();
        let scope = Scope {
            account: "123456789012".into(),
            ..Scope::default()
        };
        let host = policies(&s, &scope).instance_profile.unwrap();
        assert_eq!(actions(&host), ["s3:GetObject", "s3:GetObjectVersion"]);
        assert_eq!(
            host["Statement"][0]["Resource"],
            "arn:aws:s3:::fleet-mapping/ssm-companion/mapping/123456789012/*"
        );
    }

    #[test]
    fn shipping_grants_put_object_on_the_prefix_only() {
        let mut s = Settings::default();
        s.accounts.enabled = false;
        s.health.enabled = false;
        s.audit.enabled = true;
        s.audit.s3.bucket = "audit-bucket".into();
        s.audit.s3.prefix = "/audit/v1/".into();
        let p = policies(&s, &Scope::default());
        let host = p.instance_profile.unwrap();
        assert_eq!(actions(&host), ["s3:PutObject"]);
        assert_eq!(
            host["Statement"][0]["Resource"],
            "arn:aws:s3:::audit-bucket/audit/v1/*"
        );
        s.audit.s3.sse = "aws:kms".into();
        let host = policies(&s, &Scope::default()).instance_profile.unwrap();
        assert_eq!(actions(&host), ["s3:PutObject", "kms:GenerateDataKey"]);
        s.audit.enabled = false;
        assert!(policies(&s, &Scope::default()).instance_profile.is_none());
    }

    #[test]
    fn the_cloudwatch_sink_may_create_its_stream_and_put_in_its_group_only() {
        let mut s = Settings::default();
        s.accounts.enabled = false;
        s.health.enabled = false;
        s.audit.enabled = true;
        s.audit.cloudwatch.log_group = "/ssm-companion/audit".into();
        let scope = Scope {
            region: "eu-west-1".into(),
            account: "123456789012".into(),
            ..Scope::default()
        };
        let host = policies(&s, &scope).instance_profile.unwrap();
        assert_eq!(
            host["Statement"][0]["Action"],
            json!(["logs:CreateLogStream", "logs:PutLogEvents"])
        );
        assert_eq!(
            host["Statement"][0]["Resource"],
            "arn:aws:logs:eu-west-1:123456789012:log-group:/ssm-companion/audit:*"
        );
        s.audit.cloudwatch.region = "us-east-2".into();
        let host = policies(&s, &scope).instance_profile.unwrap();
        assert!(
            host["Statement"][0]["Resource"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:logs:us-east-2:")
        );
    }

    #[test]
    fn bad_scopes_name_the_flag() {
        let bad = |f: fn(&mut Scope)| {
            let mut s = Scope::default();
            f(&mut s);
            s.validate().unwrap_err()
        };
        assert!(bad(|s| s.partition = "aws-moon".into()).starts_with("--partition"));
        assert!(bad(|s| s.region = "EU West".into()).starts_with("--region"));
        assert!(bad(|s| s.account = "12345".into()).starts_with("--account"));
        assert!(Scope::default().validate().is_ok());
    }
}
