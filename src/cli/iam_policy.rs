//! `ssm-companion iam-policy`: the least-privilege policies for this configuration.

use super::{Cli, Error, ExitCode, IamPolicyArgs, PolicyFor, exit, load, note, out, outln};
use crate::iam_policy::{self as ip, Scope};

/// Prints both policies with their reasons, one of them ready for `aws iam put-role-policy`,
/// or the JSON document. Calls nothing.
pub(super) fn run(cli: &Cli, a: &IamPolicyArgs) -> Result<ExitCode, Error> {
    let settings = load(cli)?.settings;
    let scope = Scope {
        partition: a.partition.clone(),
        region: a.region.clone(),
        account: a.account.clone(),
    };
    scope.validate().map_err(Error::Usage)?;
    let p = ip::policies(&settings, &scope);
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match a.for_ {
        Some(PolicyFor::InstanceProfile) => match &p.instance_profile {
            Some(doc) => outln(pretty(doc))?,
            None => note(
                "this configuration needs no permission for the instance profile (no policy printed)",
            ),
        },
        Some(PolicyFor::Operator) => outln(pretty(&p.operator))?,
        Some(PolicyFor::Publisher) => outln(pretty(&p.publisher))?,
        None if a.json => outln(ip::json(&p))?,
        None => out(ip::text(&p))?,
    }
    Ok(exit::OK)
}
