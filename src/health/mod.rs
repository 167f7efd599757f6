//! The health capability: is amazon-ssm-agent installed, running and able to reach AWS, and can
//! Session Manager's Run As work here?
//!
//! Checks come in two kinds, run on their own schedules by the daemon and together by `doctor`:
//! **local** ones (files, processes, systemd, the agent's log, disk) and **network** ones (IMDS,
//! DNS/TCP/TLS per endpoint, a signed STS call and the clock, the Session Manager preferences and
//! Run As users). Every probe has a deadline and the network ones run in parallel, so a `doctor`
//! where everything times out ends within one `health.timeout` of its network phase. Verdicts are pure functions
//! of what was read; each check has a stable id documented in docs/usage/health.md.

pub mod agent;
pub mod agent_log;
pub mod disk;
pub mod exec_capture;
pub mod fix;
pub mod fleet;
pub mod hibernate;
pub mod identity;
pub mod inventory;
pub mod model;
pub mod network;
pub mod proxy;
pub mod release;
pub mod remedy;
pub mod report;
pub mod runas;
pub mod shipping;
pub mod systemd;

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use crate::aws::fault::{CallError, Fault};
use crate::aws::{self, Aws};
use crate::config::Settings;
use crate::exec;
pub use model::{CheckResult, Status};
pub use report::Report;

/// How much of the agent's log the daemon's follower reads at most per file and run (the
/// first run reads backwards to [`log_horizon`] instead).
pub const LOG_READ_LIMIT: u64 = 8 << 20;

/// How far back the agent's log matters: the start of the failure window, and the horizon
/// beyond which nothing can change a verdict (a health report older than four periods is
/// critical whatever came before), with a minute's margin.
pub fn log_horizon(
    now: SystemTime,
    window: Duration,
    frequency_minutes: u32,
) -> (SystemTime, SystemTime) {
    let period = Duration::from_secs(60 * u64::from(frequency_minutes.max(5)));
    let back = |d: Duration| {
        now.checked_sub(d + Duration::from_secs(60))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    (back(window), back(window.max(period * 4)))
}

/// Every check id, in report order.
pub const CHECK_ORDER: [&str; 20] = [
    "agent.installed",
    "agent.version",
    "agent.latest",
    "agent.service",
    "agent.worker",
    "agent.config",
    "agent.proxy",
    "agent.log.health",
    "agent.log.errors",
    "identity",
    "credentials.agent",
    "credentials.instance_profile",
    "sts.identity",
    "clock.skew",
    "disk.agent",
    "accounts.sync",
    "audit.shipping",
    "audit.exec",
    "runas.preferences",
    "runas.users",
];

fn rank(id: &str) -> usize {
    CHECK_ORDER
        .iter()
        .position(|x| *x == id)
        .unwrap_or_else(|| {
            // endpoint.* after the identity checks, in their configured order.
            CHECK_ORDER
                .iter()
                .position(|x| *x == "sts.identity")
                .unwrap_or(0)
        })
}

/// Sorts results into the report order (stable within a rank).
pub fn sort(results: &mut [CheckResult]) {
    results.sort_by_key(|r| rank(&r.id));
}

/// What the local checks learned that the network checks and the report need.
#[derive(Debug, Clone, Default)]
pub struct LocalFacts {
    /// The agent's version.
    pub agent_version: Option<String>,
    /// The agent's config (endpoints, health frequency).
    pub agent_config: agent::AgentConfig,
    /// The proxy the agent uses.
    pub proxy: Option<proxy::Proxy>,
    /// The agent's identity file.
    pub agent_identity: Option<identity::AgentIdentity>,
    /// The agent's service unit and install, for `--fix`.
    pub unit: Option<systemd::UnitState>,
    /// Whether systemd runs this host.
    pub systemd: bool,
}

fn systemctl_show(settings: &Settings, unit: &str) -> Option<systemd::UnitState> {
    let args = [
        OsStr::new("show"),
        OsStr::new("--no-pager"),
        OsStr::new("-p"),
        OsStr::new(systemd::PROPERTIES),
        OsStr::new(unit),
    ];
    exec::run_ok(
        &settings.paths.systemctl,
        &args,
        None,
        settings.health.timeout,
    )
    .ok()
    .map(|o| systemd::parse_show(&o.stdout))
}

/// The environment systemd gives `unit` (see [`proxy::unit_environ`]).
fn unit_environment(settings: &Settings, unit: &str) -> Option<Vec<u8>> {
    let args = [
        OsStr::new("show"),
        OsStr::new("--no-pager"),
        OsStr::new("-p"),
        OsStr::new("Environment"),
        OsStr::new("-p"),
        OsStr::new("EnvironmentFiles"),
        OsStr::new(unit),
    ];
    let out = exec::run_ok(
        &settings.paths.systemctl,
        &args,
        None,
        settings.health.timeout,
    )
    .ok()?;
    Some(proxy::unit_environ(&out.stdout, &|p| {
        std::fs::read_to_string(p).ok()
    }))
}

/// The local checks (blocking: files, processes, `systemctl`, `-version`). `digest` is the
/// agent log as the caller followed it (the daemon), or `None` to read its recent tail (doctor).
pub fn local_checks(
    settings: &Settings,
    now: SystemTime,
    digest: Option<(&agent_log::Digest, bool)>,
) -> (Vec<CheckResult>, LocalFacts) {
    let h = &settings.health;
    let paths = settings.paths.health();
    let mut facts = LocalFacts::default();
    let mut out = Vec::new();

    let (install, installed) = agent::installed(&paths);
    out.push(installed);
    let (version, v) = agent::version(install.as_ref(), &h.min_agent_version, h.timeout);
    facts.agent_version = version;
    out.push(v);

    facts.systemd = paths.systemd_run_dir.exists();
    let procs = agent::processes(&paths.proc);
    if facts.systemd {
        let units: Vec<systemd::UnitState> = systemd::UNITS
            .iter()
            .filter_map(|u| systemctl_show(settings, u))
            .collect();
        if units.is_empty() {
            out.push(CheckResult::new(
                "agent.service",
                Status::Unknown,
                "systemctl gave no answer",
                "",
            ));
        } else {
            out.push(agent::with_root_check(
                systemd::service_verdict(&units),
                install.as_ref(),
                &procs,
            ));
            facts.unit = units.into_iter().find(|u| u.load_state == "loaded");
        }
    }
    out.extend(agent::processes_verdict(
        install.as_ref(),
        &procs,
        facts.systemd,
    ));

    let (cfg, c) = agent::config(&paths.config_dir);
    facts.agent_config = cfg;
    out.push(c);

    if let Some(i) = &install {
        let core = procs.iter().find(|p| p.exe == i.bin("amazon-ssm-agent"));
        facts.proxy = core.and_then(|p| {
            match std::fs::read(paths.proc.join(p.pid.to_string()).join("environ")) {
                Ok(e) => Some(proxy::parse_proxy(&e)),
                // Not readable without CAP_SYS_PTRACE (the hardened unit): what systemd gives
                // the agent's unit is the same environment, short of what the agent sets itself.
                Err(_) => facts.unit.as_ref().and_then(|u| {
                    unit_environment(settings, &u.id).map(|env| proxy::Proxy {
                        source: Some(format!("{}'s Environment=/EnvironmentFile=", u.id)),
                        ..proxy::parse_proxy(&env)
                    })
                }),
            }
        });
    }
    out.push(proxy::proxy_verdict(facts.proxy.as_ref()));

    let log_dir = &paths.log_dir;
    let owned;
    let (d, present) = match digest {
        Some((d, present)) => (d, present),
        None => {
            let (window_start, horizon) = log_horizon(
                now,
                h.log_window,
                facts.agent_config.health_frequency_minutes,
            );
            let recent = agent_log::read_back(log_dir, window_start, horizon);
            let present = recent.present;
            let mut d = agent_log::Digest::default();
            d.add(&recent.records);
            d.started = recent.started;
            d.prune(now, h.log_window);
            owned = d;
            (&owned, present)
        }
    };
    // Why a silent agent is silent: hibernate.log, or the last failure remembered across log
    // windows and restarts.
    let cause = hibernate::cause(
        hibernate::read(log_dir).as_ref(),
        hibernate::remember(&paths.own_state_dir, d).as_ref(),
        d.last_health,
    );
    out.push(agent_log::freshness_verdict(
        d,
        now,
        facts.agent_config.health_frequency_minutes,
        present,
        cause.as_ref(),
    ));
    out.push(agent_log::errors_verdict(d, h.log_window));

    let agent_identity = identity::read_json::<identity::AgentIdentity>(
        &paths.state_dir.join("runtimeconfig/identity_config.json"),
    );
    out.push(identity::agent_credentials_verdict(&agent_identity, now));
    facts.agent_identity = agent_identity.ok().flatten();

    out.push(disk::verdict(
        &[&paths.state_dir, log_dir],
        h.disk_warning_mib,
        h.disk_critical_mib,
    ));
    out.push(runas::sync_verdict(
        &crate::state::accounts_status::load(&paths.own_state_dir),
        settings.accounts.enabled,
        settings.accounts.interval,
        now,
    ));
    let limits = |enabled| shipping::Limits {
        enabled: settings.audit.enabled && enabled,
        warning: h.shipping_lag_warning,
        critical: h.shipping_lag_critical,
    };
    let s3 = !settings.audit.s3.bucket.is_empty();
    let cloudwatch = !settings.audit.cloudwatch.log_group.is_empty();
    let mut sinks = Vec::new();
    if s3 || !cloudwatch {
        sinks.push(shipping::verdict(
            &crate::state::shipping_status::load(&paths.own_state_dir),
            limits(s3),
            now,
        ));
    }
    if cloudwatch {
        sinks.push(shipping::verdict(
            &crate::state::shipping_status::load_from(
                &paths.own_state_dir,
                crate::state::shipping_status::CLOUDWATCH_FILE,
            ),
            limits(true),
            now,
        ));
    }
    out.push(shipping::combine(sinks));
    out.push(exec_capture::verdict(
        &crate::state::exec_status::load(&paths.own_state_dir),
        settings.audit.enabled && settings.audit.exec_backend != crate::config::ExecBackend::Off,
    ));
    (out, facts)
}

fn user_exists(name: &str) -> Result<bool, String> {
    nix::unistd::User::from_name(name)
        .map(|u| u.is_some())
        .map_err(|e| format!("looking up `{name}` failed: {e}"))
}

/// Looks the users up through NSS on a blocking thread, within `timeout`: a hung LDAP or SSSD
/// backend makes the answer unknown instead of stalling the health loop. Users without an answer
/// map to an error naming the deadline.
async fn lookup_users(
    names: Vec<String>,
    timeout: Duration,
) -> std::collections::HashMap<String, Result<bool, String>> {
    if names.is_empty() {
        return std::collections::HashMap::new();
    }
    let task = crate::lookup::run(timeout, move || {
        names
            .into_iter()
            .map(|n| {
                let r = user_exists(&n);
                (n, r)
            })
            .collect::<std::collections::HashMap<_, _>>()
    });
    // On expiry the pool's thread finishes (or hangs) on its own; nothing waits for it.
    task.await.unwrap_or_default()
}

/// The least a late Run As user lookup is given, when the preferences that name the user came
/// back at the end of the budget.
const MIN_LOOKUP: Duration = Duration::from_millis(250);

/// The network checks (async, in parallel, all ended by `health.timeout` from their start).
pub async fn network_checks(
    settings: &Settings,
    aws: &Aws,
    facts: &LocalFacts,
    now: SystemTime,
) -> Vec<CheckResult> {
    let h = &settings.health;
    let paths = settings.paths.health();
    let mut out = Vec::new();
    // One budget for the whole phase: every probe, call and lookup runs in parallel and ends by
    // this deadline, so a run takes `health.timeout` however DNS, NSS or the network misbehave.
    let deadline = tokio::time::Instant::now() + h.timeout;
    let waited = || {
        format!(
            "no answer within health.timeout ({})",
            humantime::format_duration(h.timeout)
        )
    };

    let ec2 = identity::Ec2 {
        instance_id: aws.identity.instance_id.clone(),
        region: aws.identity.region.clone(),
        problem: aws.imds_problem.clone(),
    };
    let registration =
        identity::read_json::<identity::Registration>(&paths.state_dir.join("registration"));
    out.push(identity::identity_verdict(
        &ec2,
        &registration,
        facts.agent_identity.as_ref(),
    ));
    let region = Some(settings.aws.region.clone())
        .filter(|r| !r.is_empty())
        .or_else(aws::env_region)
        .or_else(|| ec2.region.clone())
        .or_else(|| facts.agent_config.region.clone())
        .or_else(|| {
            registration
                .as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(|r| r.region.clone())
                .filter(|r| !r.is_empty())
        });

    let profile = async {
        if ec2.instance_id.is_none() {
            return Ok(identity::InstanceProfile::default());
        }
        let client = aws::imds_client(&settings.aws).map_err(|e| e.to_string())?;
        match tokio::time::timeout_at(deadline, aws::instance_profile(&client)).await {
            Ok(r) => r.map(|(role, expiration)| identity::InstanceProfile { role, expiration }),
            Err(_) => Err(format!("IMDS: {}", waited())),
        }
    };

    let endpoints = async {
        let Some(region) = &region else {
            return h
                .services
                .iter()
                .map(|s| {
                    CheckResult::new(
                        format!("endpoint.{s}"),
                        Status::Unknown,
                        "no region known: cannot name the endpoint",
                        "set aws.region",
                    )
                })
                .collect::<Vec<_>>();
        };
        let tls = match network::tls_config(&h.extra_ca_file) {
            Ok(t) => t,
            Err(e) => {
                return h
                    .services
                    .iter()
                    .map(|s| {
                        CheckResult::new(format!("endpoint.{s}"), Status::Unknown, e.clone(), "")
                    })
                    .collect();
            }
        };
        let probes = h.services.iter().map(|svc| {
            let host = network::host(svc, region, &facts.agent_config);
            let tls = tls.clone();
            let proxy = facts.proxy.clone();
            async move {
                let p =
                    network::probe(&host, h.endpoint_port, h.timeout, tls, proxy.as_ref()).await;
                network::verdict(svc, &p, h.required_services.contains(svc))
            }
        });
        futures_util::future::join_all(probes).await
    };

    let sts = async {
        let outcome = match aws.sdk() {
            None => StsOutcome::NoConfig(
                aws.sdk
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            Some(sdk) => {
                let client = aws::clients::sts(sdk);
                match tokio::time::timeout_at(deadline, aws::sts::caller_identity(&client)).await {
                    Ok(Ok(id)) => StsOutcome::Answer(id),
                    Ok(Err(failure)) => StsOutcome::Failed(failure),
                    Err(_) => StsOutcome::TimedOut(h.timeout),
                }
            }
        };
        sts_verdicts(
            &outcome,
            facts.agent_identity.as_ref(),
            now,
            h.max_clock_skew,
        )
    };

    let prefs = async {
        let Some(sdk) = aws.sdk() else {
            return Err(CallError {
                fault: Fault::NoConfig,
                message: "no AWS configuration".into(),
            });
        };
        let client = aws::clients::ssm(sdk);
        match tokio::time::timeout_at(deadline, aws::ssm::session_preferences(&client)).await {
            Ok(r) => r,
            Err(_) => Err(CallError {
                fault: Fault::Timeout,
                message: format!("SSM: {}", waited()),
            }),
        }
    };
    // The Run As users: the mapped ones at once, the preferences' default user as soon as the
    // preferences answer (with what is left of the budget, and never less than a moment).
    let map = crate::state::run_as::load(&paths.own_state_dir);
    let mapped: Vec<String> = map
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(|m| m.mapped.iter().map(|u| u.user.clone()).collect())
        .unwrap_or_default();
    let mapped_found = lookup_users(mapped, h.timeout);
    let prefs = async {
        let prefs = prefs.await;
        let default_user = match &prefs {
            Ok(Some(p)) => p.default_user.clone(),
            _ => None,
        };
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(MIN_LOOKUP);
        let found = lookup_users(default_user.into_iter().collect(), left).await;
        (prefs, found)
    };

    let latest = async {
        if !h.latest_agent_check {
            return CheckResult::ok(
                release::ID,
                "not checked (health.latest_agent_check = false)",
            );
        }
        let url = match (&region, h.latest_agent_url.as_str()) {
            (_, u) if !u.is_empty() => u.to_string(),
            (Some(r), _) => release::url(r),
            (None, _) => {
                return CheckResult::ok(
                    release::ID,
                    "no region known: cannot name the release bucket",
                );
            }
        };
        let found = match network::tls_config(&h.extra_ca_file) {
            Ok(tls) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                release::latest(
                    &url,
                    &paths.own_state_dir,
                    now,
                    left,
                    tls,
                    facts.proxy.as_ref(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        release::verdict(
            facts.agent_version.as_deref(),
            &found,
            region.as_deref().unwrap_or("this region"),
            h.max_minor_versions_behind,
        )
    };

    let (profile, endpoints, (sts_id, skew), (prefs, mut found), mapped_found, latest) =
        tokio::join!(profile, endpoints, sts, prefs, mapped_found, latest);
    found.extend(mapped_found);
    out.push(latest);
    let hybrid = matches!(&registration, Ok(Some(r)) if !r.managed_instance_id.is_empty())
        || facts
            .agent_identity
            .as_ref()
            .is_some_and(identity::AgentIdentity::hybrid);
    out.push(identity::instance_profile_verdict(
        &ec2,
        &profile,
        facts.agent_identity.as_ref(),
        hybrid,
        now,
    ));
    out.extend(endpoints);
    out.push(sts_id);
    out.push(skew);
    let exists = |u: &str| {
        found.get(u).cloned().unwrap_or_else(|| {
            Err(format!(
                "looking up `{u}` gave no answer within {} (a hung NSS source?)",
                humantime::format_duration(h.timeout)
            ))
        })
    };
    out.push(runas::preferences_verdict(&prefs, &exists));
    let run_as_on = prefs
        .as_ref()
        .ok()
        .map(|p| p.as_ref().is_some_and(|p| p.enabled));
    out.push(runas::users_verdict(&map, run_as_on, &exists));
    let own_endpoints =
        settings.aws.endpoint_url.is_empty() && std::env::var_os("AWS_ENDPOINT_URL").is_none();
    attribute_timeouts(&mut out, own_endpoints);
    out
}

/// A signed call that ran out of time while the probes found why: its name did not resolve, or
/// nothing connected. The call's cause and remedy become the probe's — the one of its own
/// service's endpoint when the SDK calls the standard endpoint (`own_endpoints`), or the one
/// every endpoint shares — so the remedy is the network's, not "nothing answered in time".
pub fn attribute_timeouts(out: &mut [CheckResult], own_endpoints: bool) {
    /// A network cause, its remedy, and whose it is.
    type Explained = (String, String, String);
    const NETWORK: [&str; 4] = ["dns", "tcp", "proxy", "tls"];
    let network_cause = |c: &CheckResult| {
        c.cause
            .as_deref()
            .filter(|l| NETWORK.contains(l))
            .map(str::to_string)
    };
    let endpoints: Vec<&CheckResult> = out
        .iter()
        .filter(|c| c.id.starts_with("endpoint."))
        .collect();
    let shared = endpoints.first().and_then(|first| {
        let cause = network_cause(first)?;
        endpoints
            .iter()
            .all(|c| network_cause(c).as_ref() == Some(&cause))
            .then(|| (cause, first.remedy.clone(), "every endpoint".to_string()))
    });
    let found: Vec<(&str, Option<Explained>)> =
        [("sts.identity", "sts"), ("runas.preferences", "ssm")]
            .into_iter()
            .map(|(call, service)| {
                let id = format!("endpoint.{service}");
                let own = endpoints
                    .iter()
                    .find(|c| own_endpoints && c.id == id)
                    .and_then(|c| network_cause(c).map(|l| (l, c.remedy.clone(), id)));
                (call, own.or_else(|| shared.clone()))
            })
            .collect();
    for (call, source) in found {
        let Some((cause, remedy, whose)) = source else {
            continue;
        };
        if let Some(c) = out
            .iter_mut()
            .find(|c| c.id == call && c.cause.as_deref() == Some("timeout"))
        {
            c.detail = format!(
                "{}: the {} failure {whose} has",
                c.detail,
                cause.to_uppercase()
            );
            c.remedy = remedy;
            c.cause = Some(cause);
        }
    }
}

/// What the signed STS call (`GetCallerIdentity`) gave.
#[derive(Debug)]
pub enum StsOutcome {
    /// No SDK configuration (why).
    NoConfig(String),
    /// An answer.
    Answer(aws::sts::CallerIdentity),
    /// A failed call.
    Failed(aws::sts::Failure),
    /// No answer within this long.
    TimedOut(Duration),
}

/// `GetCallerIdentity` needs no permission.
const STS_CALL: remedy::Call<'static> = remedy::Call {
    service: "sts",
    permission: None,
    proxy: None,
};

/// The `sts.identity` and `clock.skew` verdicts of an STS call. `agent`: the agent's identity —
/// with Default Host Management its credentials are its own, so our having none says nothing
/// about the agent (credentials.agent checks the agent's own); on a hybrid host ours are the
/// ones the agent shares.
pub fn sts_verdicts(
    outcome: &StsOutcome,
    agent: Option<&identity::AgentIdentity>,
    now: SystemTime,
    max_skew: Duration,
) -> (CheckResult, CheckResult) {
    const ID: &str = "sts.identity";
    const SKEW: &str = "clock.skew";
    let no_signed = || {
        CheckResult::new(
            SKEW,
            Status::Unknown,
            "no signed response to compare with",
            "",
        )
    };
    match outcome {
        StsOutcome::NoConfig(why) => (
            CheckResult::new(
                ID,
                Status::Unknown,
                format!("no AWS configuration: {why}"),
                "set aws.region",
            ),
            CheckResult::new(
                SKEW,
                Status::Unknown,
                "no AWS configuration: nothing to compare with",
                "",
            ),
        ),
        StsOutcome::Failed(e) if e.fault == Fault::NoCredentials => {
            if let Some(a) = agent.filter(|a| a.hybrid()) {
                let shared = if a.share_file.is_empty() {
                    "it shares none (Profile.ShareCreds is off)".to_string()
                } else {
                    format!("shared in {}", a.share_file)
                };
                return (
                    CheckResult::new(
                        ID,
                        Status::Unknown,
                        format!(
                            "this hybrid instance's AWS credentials are the agent's ({shared}) and ssm-companion could not use them: {}",
                            e.message
                        ),
                        "keep Profile.ShareCreds = true in amazon-ssm-agent.json (the default) so the agent shares its credentials, or set AWS credentials for ssm-companion",
                    )
                    .caused_by(&e.fault),
                    no_signed(),
                );
            }
            let dhm = agent.is_some_and(identity::AgentIdentity::default_host_management);
            let detail = if dhm {
                format!(
                    "ssm-companion has no AWS credentials of its own (the agent uses Default Host Management credentials, which other processes cannot use): {}",
                    e.message
                )
            } else {
                format!("ssm-companion has no AWS credentials: {}", e.message)
            };
            (
                CheckResult::new(
                    ID,
                    Status::Unknown,
                    detail,
                    "attach an instance profile (or set AWS credentials for the service) so the AWS-side checks can run",
                ),
                no_signed(),
            )
        }
        StsOutcome::Failed(e) => {
            let skew = if e.fault == Fault::RequestTime {
                CheckResult::new(
                    SKEW,
                    Status::Critical,
                    format!("AWS rejected the request's time: {}", e.message),
                    remedy::remedy(&e.fault, &STS_CALL),
                )
                .caused_by(&e.fault)
            } else {
                no_signed()
            };
            (
                CheckResult::new(
                    ID,
                    remedy::status(&e.fault, Status::Critical),
                    format!("a signed STS call failed: {}", e.message),
                    remedy::remedy(&e.fault, &STS_CALL),
                )
                .caused_by(&e.fault),
                skew,
            )
        }
        StsOutcome::TimedOut(wait) => (
            CheckResult::new(
                ID,
                Status::Critical,
                format!(
                    "no answer from STS within {}",
                    humantime::format_duration(*wait)
                ),
                remedy::remedy(&Fault::Timeout, &STS_CALL),
            )
            .caused_by(&Fault::Timeout),
            no_signed(),
        ),
        StsOutcome::Answer(id) => {
            let identity = CheckResult::ok(
                ID,
                format!("signed requests work: {} (account {})", id.arn, id.account),
            );
            let skew = match id.server_date {
                None => {
                    CheckResult::new(SKEW, Status::Unknown, "the response had no Date header", "")
                }
                Some(server) => clock_verdict(id.local_date.unwrap_or(now), server, max_skew),
            };
            (identity, skew)
        }
    }
}

/// The `clock.skew` verdict.
pub fn clock_verdict(now: SystemTime, server: SystemTime, max: Duration) -> CheckResult {
    let (skew, ahead) = match now.duration_since(server) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    // The Date header has one-second resolution.
    let secs = skew.as_secs();
    let dir = if ahead { "ahead of" } else { "behind" };
    if skew >= Duration::from_secs(240) {
        CheckResult::new(
            "clock.skew",
            Status::Critical,
            format!(
                "this host's clock is {secs}s {dir} AWS: at 5 minutes AWS rejects every signed request"
            ),
            "fix time synchronisation (chrony/systemd-timesyncd; on EC2 169.254.169.123)",
        )
    } else if skew > max {
        CheckResult::new(
            "clock.skew",
            Status::Warning,
            format!("this host's clock is {secs}s {dir} AWS (more than health.max_clock_skew)"),
            "check time synchronisation (chronyc tracking / timedatectl)",
        )
    } else {
        CheckResult::ok("clock.skew", format!("{secs}s {dir} AWS"))
    }
}

/// The region amazon-ssm-agent uses when nothing else names one: its config's `Agent.Region`,
/// else the hybrid registration's (blocking: two small files).
pub fn agent_region(settings: &Settings) -> Option<String> {
    let paths = settings.paths.health();
    agent::config(&paths.config_dir)
        .0
        .region
        .filter(|r| !r.is_empty())
        .or_else(|| {
            identity::read_json::<identity::Registration>(&paths.state_dir.join("registration"))
                .ok()
                .flatten()
                .map(|r| r.region)
                .filter(|r| !r.is_empty())
        })
}

/// The credentials a hybrid agent shares (`Profile.ShareCreds`, default on): the file and
/// profile its `identity_config.json` names, for an `OnPrem` identity (blocking: one small file).
pub fn agent_shared_credentials(settings: &Settings) -> Option<aws::SharedCredentials> {
    let paths = settings.paths.health();
    let id = identity::read_json::<identity::AgentIdentity>(
        &paths.state_dir.join("runtimeconfig/identity_config.json"),
    )
    .ok()
    .flatten()?;
    (id.hybrid() && !id.share_file.is_empty()).then(|| aws::SharedCredentials {
        file: id.share_file.into(),
        profile: Some(id.share_profile)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "default".into()),
    })
}

/// The AWS plumbing for the health checks (and the daemon): [`Aws::load`] with what the agent
/// knows — its region as the last resort, and on a hybrid host the credentials it shares.
pub async fn load_aws(settings: &Settings) -> Aws {
    let s = settings.clone();
    let hints = tokio::task::spawn_blocking(move || aws::AgentHints {
        region: agent_region(&s),
        shared_credentials: agent_shared_credentials(&s),
    })
    .await
    .unwrap_or_default();
    Aws::load_with_agent_hints(&settings.aws, hints).await
}

/// Runs every check once (`doctor`).
pub async fn doctor(settings: &Settings, aws: &Aws, now: SystemTime) -> Report {
    let s = settings.clone();
    let local = tokio::task::spawn_blocking(move || local_checks(&s, now, None)).await;
    let (mut checks, facts) = match local {
        Ok(x) => x,
        Err(e) => (
            vec![CheckResult::new(
                "agent.installed",
                Status::Unknown,
                format!("the local checks failed: {e}"),
                "",
            )],
            LocalFacts::default(),
        ),
    };
    checks.extend(network_checks(settings, aws, &facts, now).await);
    make_report(checks, &facts, aws, now)
}

/// Assembles a report.
pub fn make_report(
    mut checks: Vec<CheckResult>,
    facts: &LocalFacts,
    aws: &Aws,
    now: SystemTime,
) -> Report {
    sort(&mut checks);
    Report {
        schema: report::SCHEMA.into(),
        generated_at: crate::clock::rfc3339(now),
        instance_id: aws.identity.instance_id.clone().or_else(|| {
            facts
                .agent_identity
                .as_ref()
                .map(|a| a.instance_id.clone())
                .filter(|i| !i.is_empty())
        }),
        region: aws.identity.region.clone(),
        agent_version: facts.agent_version.clone(),
        overall: model::overall(&checks),
        partial: false,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(id: &str, cause: &str, remedy: &str) -> CheckResult {
        let mut c = CheckResult::new(id, Status::Critical, "x", remedy);
        c.cause = Some(cause.into());
        c
    }

    #[test]
    fn a_timed_out_call_takes_the_network_cause_the_probes_found() {
        let calls = || {
            vec![
                failed("sts.identity", "timeout", "nothing answered in time"),
                failed("runas.preferences", "timeout", "nothing answered in time"),
            ]
        };
        // Its own endpoint's cause, when the SDK calls the standard endpoint.
        let mut out = vec![
            failed("endpoint.sts", "dns", "check the VPC's DNS"),
            failed("endpoint.ssm", "tcp", "check the security group"),
            CheckResult::ok("endpoint.s3", ""),
        ];
        out.extend(calls());
        attribute_timeouts(&mut out, true);
        assert_eq!(out[3].cause.as_deref(), Some("dns"));
        assert_eq!(out[3].remedy, "check the VPC's DNS");
        assert!(out[3].detail.ends_with("the DNS failure endpoint.sts has"));
        assert_eq!(out[4].cause.as_deref(), Some("tcp"));
        // A custom endpoint was not probed: only a cause every endpoint shares counts.
        let mut custom = out[..3].to_vec();
        custom.extend(calls());
        attribute_timeouts(&mut custom, false);
        assert_eq!(custom[3].cause.as_deref(), Some("timeout"));
        let mut all = vec![
            failed("endpoint.sts", "dns", "check the VPC's DNS"),
            failed("endpoint.ssm", "dns", "check the VPC's DNS"),
        ];
        all.extend(calls());
        attribute_timeouts(&mut all, false);
        assert_eq!(all[2].cause.as_deref(), Some("dns"));
        assert!(
            all[2]
                .detail
                .ends_with("the DNS failure every endpoint has")
        );
        // An AWS answer is never re-labelled; an endpoint that timed out explains nothing.
        let mut answered = vec![
            failed("endpoint.sts", "timeout", "r"),
            failed("sts.identity", "aws:AccessDenied", "grant"),
            failed("runas.preferences", "timeout", "nothing answered in time"),
        ];
        attribute_timeouts(&mut answered, true);
        assert_eq!(answered[1].cause.as_deref(), Some("aws:AccessDenied"));
        assert_eq!(answered[2].cause.as_deref(), Some("timeout"));
    }

    #[test]
    fn clock() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let max = Duration::from_secs(60);
        assert_eq!(clock_verdict(t, t, max).status, Status::Ok);
        assert_eq!(
            clock_verdict(t + Duration::from_secs(90), t, max).status,
            Status::Warning
        );
        let v = clock_verdict(t, t + Duration::from_secs(300), max);
        assert_eq!(v.status, Status::Critical);
        assert!(v.detail.contains("behind"), "{v:?}");
    }

    #[test]
    fn sts_verdicts_for_every_outcome() {
        use aws::sts::{CallerIdentity, Failure};
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let max = Duration::from_secs(60);
        let failed = |fault, message: &str| {
            StsOutcome::Failed(Failure {
                fault,
                message: message.into(),
            })
        };
        let (id, skew) = sts_verdicts(&StsOutcome::NoConfig("no region".into()), None, t, max);
        assert_eq!((id.status, skew.status), (Status::Unknown, Status::Unknown));
        assert!(id.detail.contains("no region") && id.remedy.contains("aws.region"));
        // No credentials of our own: unknown, never critical; with Default Host Management
        // the detail says why the agent's credentials do not help.
        let none = failed(Fault::NoCredentials, "no provider");
        let (id, _) = sts_verdicts(&none, None, t, max);
        assert_eq!(id.status, Status::Unknown);
        assert!(!id.detail.contains("Default Host Management"));
        let dhm = identity::AgentIdentity {
            credential_source: "SSM".into(),
            identity_type: "EC2".into(),
            ..Default::default()
        };
        let (id, _) = sts_verdicts(&none, Some(&dhm), t, max);
        assert!(id.detail.contains("Default Host Management"), "{id:?}");
        // A hybrid agent's source is SSM too, but it shares its credentials: say that.
        let hybrid = identity::AgentIdentity {
            credential_source: "SSM".into(),
            identity_type: "OnPrem".into(),
            share_file: "/root/.aws/credentials".into(),
            ..Default::default()
        };
        let (id, _) = sts_verdicts(&none, Some(&hybrid), t, max);
        assert!(!id.detail.contains("Default Host Management"), "{id:?}");
        assert!(
            id.detail.contains("shared in /root/.aws/credentials"),
            "{id:?}"
        );
        assert!(id.remedy.contains("ShareCreds"), "{id:?}");
        // The request's time rejected: the clock is critical too.
        let (id, skew) = sts_verdicts(
            &failed(Fault::RequestTime, "Signature expired"),
            None,
            t,
            max,
        );
        assert_eq!(
            (id.status, skew.status),
            (Status::Critical, Status::Critical)
        );
        assert!(skew.detail.contains("Signature expired"));
        let denied = Fault::Aws {
            code: "AccessDenied".into(),
            status: 403,
        };
        let (id, skew) = sts_verdicts(&failed(denied, "AccessDenied"), None, t, max);
        assert_eq!(
            (id.status, skew.status),
            (Status::Critical, Status::Unknown)
        );
        assert_eq!(id.cause.as_deref(), Some("aws:AccessDenied"));
        // Throttled: it passes by itself — a warning with a retry remedy, not critical.
        let throttled = Fault::Aws {
            code: "Throttling".into(),
            status: 400,
        };
        let (id, _) = sts_verdicts(
            &failed(throttled, "Throttling: Rate exceeded"),
            None,
            t,
            max,
        );
        assert_eq!(id.status, Status::Warning, "{id:?}");
        assert!(id.remedy.contains("throttled"), "{id:?}");
        // DNS on the way to STS: the DNS remedy, not the credentials one.
        let (id, _) = sts_verdicts(&failed(Fault::Dns, "dns error"), None, t, max);
        assert!(
            id.remedy.contains("DNS") && !id.remedy.contains("credentials"),
            "{id:?}"
        );
        let (id, _) = sts_verdicts(&StsOutcome::TimedOut(Duration::from_secs(10)), None, t, max);
        assert!(
            id.status == Status::Critical && id.detail.contains("10s"),
            "{id:?}"
        );
        let answer = |server_date| {
            StsOutcome::Answer(CallerIdentity {
                arn: "arn:aws:sts::123456789012:assumed-role/r/i-1".into(),
                account: "123456789012".into(),
                server_date,
                local_date: None,
            })
        };
        let (id, skew) = sts_verdicts(&answer(Some(t)), None, t, max);
        assert_eq!((id.status, skew.status), (Status::Ok, Status::Ok));
        assert!(id.detail.contains("123456789012"));
        let (_, skew) = sts_verdicts(&answer(Some(t + Duration::from_secs(300))), None, t, max);
        assert_eq!(skew.status, Status::Critical);
        let (_, skew) = sts_verdicts(&answer(None), None, t, max);
        assert_eq!(skew.status, Status::Unknown);
    }

    #[test]
    fn report_order_is_stable() {
        let mut r = vec![
            CheckResult::ok("runas.users", ""),
            CheckResult::ok("endpoint.ssm", ""),
            CheckResult::ok("agent.installed", ""),
            CheckResult::ok("endpoint.kms", ""),
        ];
        sort(&mut r);
        let ids: Vec<&str> = r.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "agent.installed",
                "endpoint.ssm",
                "endpoint.kms",
                "runas.users"
            ]
        );
    }
}
