//! Who the agent is and with which credentials: IMDSv2 (EC2), the hybrid registration, the
//! agent's `runtimeconfig/identity_config.json`, and the instance profile. Verdicts are pure.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::model::{CheckResult, Status};
use crate::state::LoadError;

/// What IMDS says (filled by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ec2 {
    /// Instance id, when IMDSv2 answered.
    pub instance_id: Option<String>,
    /// Region, when IMDSv2 answered.
    pub region: Option<String>,
    /// Why IMDS did not answer.
    pub problem: Option<String>,
}

/// The agent's `identity_config.json` (agent > 3.1.282.0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentIdentity {
    /// `InstanceId`.
    #[serde(default)]
    pub instance_id: String,
    /// `IdentityType` (`EC2`, `OnPrem`, …).
    #[serde(default)]
    pub identity_type: String,
    /// `CredentialSource` (`EC2`, `SSM`, `None`, …).
    #[serde(default)]
    pub credential_source: String,
    /// `CredentialsExpiresAt` (RFC 3339).
    #[serde(default)]
    pub credentials_expires_at: String,
    /// `ShareFile`: where the agent shares its credentials (hybrid: the agent user's
    /// `~/.aws/credentials`; Default Host Management: its own file).
    #[serde(default)]
    pub share_file: String,
    /// `ShareProfile`: the profile in it.
    #[serde(default)]
    pub share_profile: String,
}

impl AgentIdentity {
    /// The agent runs on Default Host Management credentials (`CredentialSource` `SSM`): only
    /// the agent can use them, not other processes of the host.
    pub fn default_host_management(&self) -> bool {
        // A hybrid agent's source is `SSM` too (its registration's credentials): not DHM.
        self.credential_source.eq_ignore_ascii_case("SSM") && !self.hybrid()
    }

    /// A hybrid (on-premises) registration (`IdentityType` `OnPrem`).
    pub fn hybrid(&self) -> bool {
        self.identity_type.eq_ignore_ascii_case("OnPrem")
    }
}

/// The hybrid registration file (`registration`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Registration {
    /// `ManagedInstanceID` (`mi-…`).
    #[serde(rename = "ManagedInstanceID", default)]
    pub managed_instance_id: String,
    /// `Region`.
    #[serde(rename = "Region", default)]
    pub region: String,
}

pub use crate::state::read_json;

/// The `identity` check: EC2 through IMDSv2, or a hybrid registration.
pub fn identity_verdict(
    ec2: &Ec2,
    registration: &Result<Option<Registration>, LoadError>,
    agent: Option<&AgentIdentity>,
) -> CheckResult {
    const ID: &str = "identity";
    if let (Some(id), Some(region)) = (&ec2.instance_id, &ec2.region) {
        if let Some(a) = agent
            && !a.instance_id.is_empty()
            && a.instance_id != *id
        {
            return CheckResult::new(
                ID,
                Status::Warning,
                format!(
                    "EC2 instance {id} in {region}, but the agent's identity_config.json says {} (a copied disk or image?)",
                    a.instance_id
                ),
                "restart the agent so it takes the instance's identity (systemctl restart amazon-ssm-agent)",
            );
        }
        return CheckResult::ok(ID, format!("EC2 instance {id} in {region} (IMDSv2)"));
    }
    match registration {
        Ok(Some(r)) if !r.managed_instance_id.is_empty() => CheckResult::ok(
            ID,
            format!(
                "hybrid managed instance {} in {} (registered with an activation)",
                r.managed_instance_id, r.region
            ),
        ),
        Ok(_) => CheckResult::new(
            ID,
            Status::Critical,
            format!(
                "no identity: IMDSv2 did not answer ({}) and the instance is not registered as a hybrid managed instance",
                ec2.problem.as_deref().unwrap_or("no instance id")
            ),
            "on EC2: allow IMDSv2 (hop limit, HttpTokens); elsewhere: `amazon-ssm-agent -register -code … -id … -region …`",
        ),
        Err(e) => CheckResult::new(ID, Status::Unknown, e.to_string(), ""),
    }
}

/// Parses an RFC 3339 time as the agent writes it (`2026-11-29T18:00:00Z`, with or without
/// fractions or an offset).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(SystemTime::from)
}

/// Credentials expiring within this are a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(10 * 60);

/// The `credentials.agent` check: the agent's own credential state.
pub fn agent_credentials_verdict(
    agent: &Result<Option<AgentIdentity>, LoadError>,
    now: SystemTime,
) -> CheckResult {
    const ID: &str = "credentials.agent";
    let a = match agent {
        Ok(Some(a)) => a,
        Ok(None) => {
            return CheckResult::new(
                ID,
                Status::Unknown,
                "no runtimeconfig/identity_config.json (agent older than 3.1.282.0, or not started yet)",
                "",
            );
        }
        Err(e) => {
            return CheckResult::new(
                ID,
                Status::Warning,
                e.to_string(),
                "restart the agent; it rewrites the file",
            );
        }
    };
    if a.credential_source.is_empty() || a.credential_source.eq_ignore_ascii_case("none") {
        // Say what the file holds: an empty value is not the agent's literal `None`.
        let shown = if a.credential_source.is_empty() {
            "empty"
        } else {
            a.credential_source.as_str()
        };
        return CheckResult::new(
            ID,
            Status::Critical,
            format!("the agent has no credentials (CredentialSource {shown})"),
            "attach an instance profile with AmazonSSMManagedInstanceCore, or enable Default Host Management",
        );
    }
    let Some(expires) = parse_time(&a.credentials_expires_at) else {
        return CheckResult::ok(ID, format!("credentials from {}", a.credential_source));
    };
    match expires.duration_since(now) {
        Err(_) => CheckResult::new(
            ID,
            Status::Critical,
            format!(
                "the agent's credentials from {} expired at {}",
                a.credential_source, a.credentials_expires_at
            ),
            "look for CredentialRefresher errors in amazon-ssm-agent.log; check the instance profile",
        ),
        Ok(left) if left < EXPIRY_WARNING => CheckResult::new(
            ID,
            Status::Warning,
            format!(
                "the agent's credentials expire in {}s and have not been refreshed",
                left.as_secs()
            ),
            "look for CredentialRefresher errors in amazon-ssm-agent.log",
        ),
        Ok(left) => CheckResult::ok(
            ID,
            format!(
                "credentials from {}, valid for {}",
                a.credential_source,
                humantime::format_duration(Duration::from_secs(left.as_secs() / 60 * 60))
            ),
        ),
    }
}

/// The instance profile as IMDS shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceProfile {
    /// Role name, when one is attached.
    pub role: Option<String>,
    /// `Expiration` of the current credentials.
    pub expiration: Option<String>,
}

/// The `credentials.instance_profile` check (EC2 only).
/// `hybrid`: a hybrid registration is known (its credentials come from the registration, not an
/// instance profile).
pub fn instance_profile_verdict(
    ec2: &Ec2,
    profile: &Result<InstanceProfile, String>,
    agent: Option<&AgentIdentity>,
    hybrid: bool,
    now: SystemTime,
) -> CheckResult {
    const ID: &str = "credentials.instance_profile";
    if ec2.instance_id.is_none() {
        if hybrid {
            return CheckResult::ok(
                ID,
                "a hybrid (on-premises) instance: its credentials come from its registration, not an instance profile",
            );
        }
        // No answer is not "not on EC2": IMDS may be off, blocked or out of hops.
        return match &ec2.problem {
            Some(why) => CheckResult::new(
                ID,
                Status::Unknown,
                format!("IMDS did not answer ({why}): the instance profile cannot be checked"),
                "on EC2: enable IMDS (HttpEndpoint), allow IMDSv2 tokens with a hop limit that reaches this host (containers need 2), and let 169.254.169.254 through host firewalls; off EC2: register the instance (hybrid activation)",
            ),
            None => CheckResult::ok(ID, "not on EC2 (no instance profile to check)"),
        };
    }
    let p = match profile {
        Ok(p) => p,
        Err(e) => return CheckResult::new(ID, Status::Unknown, e.clone(), ""),
    };
    let Some(role) = &p.role else {
        if agent.is_some_and(|a| a.credential_source.eq_ignore_ascii_case("SSM")) {
            return CheckResult::ok(
                ID,
                "no instance profile role; the agent uses Default Host Management credentials (CredentialSource SSM)",
            );
        }
        return CheckResult::new(
            ID,
            Status::Warning,
            "no instance profile role is attached (IMDS iam/security-credentials is empty)",
            "attach a role with AmazonSSMManagedInstanceCore, unless Default Host Management provides credentials",
        );
    };
    match p
        .expiration
        .as_deref()
        .and_then(parse_time)
        .map(|e| e.duration_since(now))
    {
        Some(Err(_)) => CheckResult::new(
            ID,
            Status::Critical,
            format!("role {role}: IMDS serves expired credentials"),
            "stop and start the instance; contact AWS support if it persists",
        ),
        Some(Ok(left)) if left < EXPIRY_WARNING => CheckResult::new(
            ID,
            Status::Warning,
            format!("role {role}: credentials expire in {}s", left.as_secs()),
            "",
        ),
        _ => CheckResult::ok(ID, format!("role {role}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agent-state")
            .join(name)
    }

    fn agent(dir: &str) -> Result<Option<AgentIdentity>, LoadError> {
        read_json(&fixture(dir).join("runtimeconfig/identity_config.json"))
    }

    fn at(s: &str) -> SystemTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn agent_credentials_from_fixtures() {
        // The fixtures' README: evaluate at this fixed time.
        let now = at("2026-11-30T00:00:00Z");
        for dir in ["ec2-healthy", "ec2-dhmc", "onprem"] {
            let a = agent(dir);
            assert_eq!(
                agent_credentials_verdict(&a, now).status,
                Status::Ok,
                "{dir}: {a:?}"
            );
        }
        assert_eq!(
            agent_credentials_verdict(&agent("ec2-expired"), now).status,
            Status::Critical
        );
        for dir in ["ec2-source-none", "ec2-initial"] {
            let v = agent_credentials_verdict(&agent(dir), now);
            assert_eq!(v.status, Status::Critical, "{dir}: {v:?}");
            assert!(v.detail.contains("no credentials"), "{dir}: {v:?}");
        }
        // An empty CredentialSource is reported as empty, not as the literal `None`.
        let v = agent_credentials_verdict(&agent("ec2-initial"), now);
        assert!(v.detail.contains("CredentialSource empty"), "{v:?}");
        let v = agent_credentials_verdict(&agent("ec2-source-none"), now);
        assert!(v.detail.contains("CredentialSource None"), "{v:?}");
        assert_eq!(
            agent_credentials_verdict(&Ok(None), now).status,
            Status::Unknown
        );
    }

    #[test]
    fn identity_ec2_hybrid_none() {
        let ec2 = Ec2 {
            instance_id: Some("i-0123456789abcdef0".into()),
            region: Some("us-east-1".into()),
            problem: None,
        };
        assert_eq!(identity_verdict(&ec2, &Ok(None), None).status, Status::Ok);
        let other = AgentIdentity {
            instance_id: "i-0fedcba9876543210".into(),
            ..Default::default()
        };
        assert_eq!(
            identity_verdict(&ec2, &Ok(None), Some(&other)).status,
            Status::Warning
        );
        let off = Ec2 {
            problem: Some("connection refused".into()),
            ..Default::default()
        };
        let reg: Result<Option<Registration>, LoadError> =
            read_json(&fixture("onprem/registration"));
        let v = identity_verdict(&off, &reg, None);
        assert_eq!(v.status, Status::Ok, "{v:?}");
        assert!(v.detail.contains("mi-"), "{v:?}");
        let v = identity_verdict(&off, &Ok(None), None);
        assert_eq!(v.status, Status::Critical);
        assert!(v.detail.contains("connection refused"));
    }

    #[test]
    fn instance_profile() {
        let ec2 = Ec2 {
            instance_id: Some("i-1".into()),
            region: Some("r".into()),
            problem: None,
        };
        let now = at("2026-11-29T12:00:00Z");
        let p = |role: Option<&str>, exp: Option<&str>| {
            Ok(InstanceProfile {
                role: role.map(String::from),
                expiration: exp.map(String::from),
            })
        };
        assert_eq!(
            instance_profile_verdict(
                &ec2,
                &p(Some("r"), Some("2026-11-29T18:00:00Z")),
                None,
                false,
                now
            )
            .status,
            Status::Ok
        );
        assert_eq!(
            instance_profile_verdict(
                &ec2,
                &p(Some("r"), Some("2026-11-29T12:05:00Z")),
                None,
                false,
                now
            )
            .status,
            Status::Warning
        );
        assert_eq!(
            instance_profile_verdict(
                &ec2,
                &p(Some("r"), Some("2026-11-29T11:00:00Z")),
                None,
                false,
                now
            )
            .status,
            Status::Critical
        );
        assert_eq!(
            instance_profile_verdict(&ec2, &p(None, None), None, false, now).status,
            Status::Warning
        );
        let dhmc = AgentIdentity {
            credential_source: "SSM".into(),
            ..Default::default()
        };
        let v = instance_profile_verdict(&ec2, &p(None, None), Some(&dhmc), false, now);
        assert_eq!(v.status, Status::Ok, "{v:?}");
        assert!(v.detail.contains("Default Host Management"), "{v:?}");
        assert_eq!(
            instance_profile_verdict(&Ec2::default(), &p(None, None), None, false, now).status,
            Status::Ok
        );
        // IMDS only down is not "not on EC2"; a hybrid instance needs no profile.
        let down = Ec2 {
            problem: Some("connect timeout to 169.254.169.254".into()),
            ..Ec2::default()
        };
        let v = instance_profile_verdict(&down, &p(None, None), None, false, now);
        assert_eq!(v.status, Status::Unknown, "{v:?}");
        assert!(!v.detail.contains("not on EC2"), "{v:?}");
        assert!(v.remedy.contains("hop limit"), "{v:?}");
        let v = instance_profile_verdict(&down, &p(None, None), None, true, now);
        assert_eq!(v.status, Status::Ok, "{v:?}");
        assert!(v.detail.contains("hybrid"), "{v:?}");
    }
}
