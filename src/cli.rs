//! The command line: parsing, dispatch and exit codes.
//!
//! Commands that need no AWS call (`version`, `config check`, `accounts list`) start no async
//! runtime and no thread, so they also run under qemu-user for cross-built binaries.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tracing::level_filters::LevelFilter;

use crate::accounts::{self, Mode, report};
use crate::aws::Aws;
use crate::clock::SystemClock;
use crate::config::{self, LoadOptions};

/// Exit statuses (documented in `docs/usage/cli.md`).
pub mod exit {
    /// Success / converged / healthy.
    pub const OK: i32 = 0;
    /// A failure (a step failed, a sync could not run).
    pub const FAILURE: i32 = 1;
    /// `accounts plan --detailed-exitcode`: changes are pending.
    pub const CHANGES: i32 = 2;
    /// Bad command line (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// Invalid configuration (EX_CONFIG).
    pub const CONFIG: i32 = 78;
    /// Standard output was closed early (`| head -1`): 128 + SIGPIPE, what a shell tool killed
    /// by SIGPIPE reports. Nothing is printed.
    pub const PIPE: i32 = 141;
}

/// Writes to standard output. A reader that went away (`| head -1`, `| grep -q`) ends the
/// command quietly with [`exit::PIPE`], as command-line tools do; any other write error is
/// reported and is a failure. (`print!` would panic on a closed pipe: Rust ignores SIGPIPE.)
fn out(text: impl std::fmt::Display) -> Result<(), i32> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(exit::PIPE),
        Err(e) => Err(fail(format!("cannot write to standard output: {e}"))),
    }
}

/// A line on standard error. Unlike `eprintln!`, a closed stderr (`2>&1 | head -1`) is not a
/// panic: the line is dropped.
fn note(text: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "ssm-companion: {text}");
}

/// [`out`] with a newline.
fn outln(text: impl std::fmt::Display) -> Result<(), i32> {
    out(format_args!("{text}\n"))
}

const AFTER_HELP: &str = "\
Files:
  /etc/ssm-companion/config.toml         main configuration (--config to use another)
  /etc/ssm-companion/config.d/*.toml     drop-ins (cloud-init writes here), applied in name order
  /usr/lib/ssm-companion/config.d/*.toml packaged defaults (masked by a same-named /etc drop-in)
  /var/lib/ssm-companion/                state: the accounts ledger, health.json

Exit status: 0 success, 1 failure, 2 changes pending (accounts plan --detailed-exitcode),
64 bad usage, 78 invalid configuration, 141 output pipe closed early (nothing printed). `doctor` and `fleet health`: 0 ok, 1 warning,
2 critical, 3 unknown (the monitoring-plugin convention).

Docs: /usr/share/doc/ssm-companion/ (README, docs/usage/accounts.md, docs/usage/health.md,
docs/usage/configuration.md, docs/usage/cli.md, docs/usage/packaging.md); man ssm-companion";

/// ssm-companion: the companion daemon of amazon-ssm-agent.
#[derive(Debug, Parser)]
#[command(
    name = "ssm-companion",
    version = crate::VERSION,
    about = "Companion daemon of amazon-ssm-agent: local accounts for SSMSessionRunAs tags, and the agent's health",
    long_about = "Companion daemon of amazon-ssm-agent.\n\n\
Session Manager's Run As starts a session as the OS user named by the SSMSessionRunAs tag of the IAM \
user or role, and fails if that user is missing. ssm-companion creates, repairs and retires those \
accounts on every host, safely: it never touches an account it did not create. It also checks, \
continuously, that amazon-ssm-agent is installed, running and able to reach AWS.\n\n\
Start with `ssm-companion config check`, `ssm-companion doctor` and `ssm-companion accounts plan` \
(what a sync would do); `ssm-companion run` is the systemd service.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Main configuration file [default: /etc/ssm-companion/config.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (repeat for less).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the systemd service): every enabled capability on its schedule.
    #[command(
        long_about = "Run the daemon: syncs accounts every accounts.interval (with a random \
start offset up to accounts.splay and ±10 % jitter). Sends READY/STATUS/WATCHDOG to systemd \
(Type=notify). SIGHUP reloads the configuration (an invalid one is refused and the old one kept); \
SIGTERM stops after the current sync."
    )]
    Run,
    /// Local accounts for SSMSessionRunAs.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check amazon-ssm-agent's health once: status, detail and remedy for every check.
    #[command(
        long_about = "Run every health check once: the agent's install, version, service, \
worker, config, proxy and log; the instance's identity and credentials; DNS, TCP and TLS to each \
endpoint (a private address means a VPC endpoint); a signed STS call and the clock; disk space; the \
Session Manager preferences and whether every Run As user exists. Problems come first, each with \
its fix. Exit 0 ok, 1 warning, 2 critical, 3 unknown (the monitoring-plugin convention), so it \
works as a Nagios/Icinga/Sensu check. Check ids are documented in docs/usage/health.md."
    )]
    Doctor {
        /// Machine-readable output (the same document as /var/lib/ssm-companion/health.json).
        #[arg(long)]
        json: bool,
        /// Start a stopped agent service (or restart one whose worker is missing), then check again.
        #[arg(long)]
        fix: bool,
    },
    /// Fleet-wide views, for an operator's machine.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Print the least-privilege IAM policies for the features this configuration enables.
    #[command(
        long_about = "Print the least-privilege IAM policies for the features the configuration \
enables: one for every host's instance profile (what the daemon, doctor and accounts plan/apply \
call: iam:GetAccountAuthorizationDetails for the iam source, ssm:GetDocument on the Session \
Manager preferences, ssm:PutInventory with health.inventory), and one for operators (fleet \
health). Each statement says which setting needs it. Calls nothing and starts no thread.\n\n\
Example: ssm-companion iam-policy --for instance-profile --account 123456789012 > host-policy.json \
&& aws iam put-role-policy --role-name MyHostRole --policy-name ssm-companion \
--policy-document file://host-policy.json"
    )]
    IamPolicy(IamPolicyArgs),
    /// Print version, target and commit.
    Version(JsonFlag),
}

/// `fleet …`
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Unhealthy instances, failing checks by count and agent versions by count, from the
    /// Custom:SsmCompanionHealth inventory type (needs ssm:GetInventory).
    Health(FleetHealthArgs),
}

/// `iam-policy` options.
#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// Both policies and their reasons as one document (ssm-companion/iam-policy/v1).
    #[arg(long, conflicts_with = "for_")]
    pub json: bool,
    /// Print only this policy document, ready for `aws iam put-role-policy`.
    #[arg(long = "for", id = "for_", value_enum, value_name = "WHO")]
    pub for_: Option<PolicyFor>,
    /// The partition in resource ARNs.
    #[arg(long, default_value = "aws", value_name = "PARTITION")]
    pub partition: String,
    /// Limit resources to one region [default: every region, *].
    #[arg(
        long,
        default_value = "*",
        value_name = "REGION",
        hide_default_value = true
    )]
    pub region: String,
    /// Limit resources to one account [default: every account, *].
    #[arg(
        long,
        default_value = "*",
        value_name = "ACCOUNT_ID",
        hide_default_value = true
    )]
    pub account: String,
}

/// Whose policy `iam-policy --for` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyFor {
    /// Every host's instance profile.
    InstanceProfile,
    /// Operators running `fleet health`.
    Operator,
}

/// `fleet health` options.
#[derive(Debug, Args)]
pub struct FleetHealthArgs {
    /// Machine-readable output (a stable, documented JSON document).
    #[arg(long)]
    pub json: bool,
    /// Reports older than this count as unknown (`report.stale`): daemons refresh theirs at
    /// least every health.inventory_max_age (24h by default).
    #[arg(long, value_name = "DURATION", default_value = "26h", value_parser = humantime::parse_duration)]
    pub stale_after: std::time::Duration,
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Machine-readable output (a stable, documented JSON document).
    #[arg(long)]
    pub json: bool,
}

/// `accounts …`
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Show what a sync would change, and every rejected identity with its reason. Changes nothing.
    #[command(
        long_about = "Show what a sync would change: accounts to create, repair, start \
retiring and delete, names left alone (e.g. exists-unmanaged) and every rejected tag value with the \
principal and the reason. Changes nothing, not even the ledger.\n\n\
Example: ssm-companion accounts plan --detailed-exitcode || echo \"changes pending (2) or error (1)\""
    )]
    Plan {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Exit 2 when changes are pending (0 when none, 1 on error).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Sync now: create, repair and retire accounts. Exit 0 when converged, 1 when a step failed.
    Apply {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Allow retiring more than accounts.max_retire_fraction of the managed accounts in this run.
        #[arg(long)]
        allow_mass_retire: bool,
        /// Trust accounts inherited with a ledger from another machine (a baked image), so that
        /// they can be deleted when they lose their tag.
        #[arg(long)]
        trust_inherited: bool,
    },
    /// List the accounts ssm-companion manages (from its ledger).
    List(JsonFlag),
}

/// `config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate the merged configuration and print it. Exit 78 when invalid.
    #[command(
        long_about = "Parse the configuration files and drop-ins, validate every key, and \
print the merged result. Unknown keys and bad values are errors naming the file, line, key and what \
is allowed (exit 78). The daemon itself only warns about unknown keys, so an older binary survives a \
drop-in written for a newer one."
    )]
    Check(JsonFlag),
}

/// Parses the command line and runs; returns the exit status.
pub fn main_entry() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
        }
    };
    let verbosity = i8::try_from(i16::from(cli.verbose) - i16::from(cli.quiet)).unwrap_or(0);
    let base = if matches!(cli.command, Command::Run) {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    };
    crate::logging::init(base, verbosity);
    let done: Exit = match &cli.command {
        Command::Version(f) => version(f.json),
        Command::Config(ConfigCommand::Check(f)) => config_check(&cli, f.json),
        Command::Accounts(AccountsCommand::List(f)) => accounts_list(&cli, f.json),
        Command::Accounts(AccountsCommand::Plan {
            json,
            detailed_exitcode,
        }) => accounts_sync(&cli, Mode::Plan, *json, *detailed_exitcode),
        Command::Accounts(AccountsCommand::Apply {
            json,
            allow_mass_retire,
            trust_inherited,
        }) => accounts_sync(
            &cli,
            Mode::Apply {
                allow_mass_retire: *allow_mass_retire,
                trust_inherited: *trust_inherited,
            },
            *json,
            false,
        ),
        Command::Run => run_daemon(&cli),
        Command::Doctor { json, fix } => doctor(&cli, *json, *fix),
        Command::Fleet(FleetCommand::Health(f)) => fleet_health(&cli, f.json, f.stale_after),
        Command::IamPolicy(a) => iam_policy(&cli, a),
    };
    done.unwrap_or_else(|code| code)
}

fn version(json: bool) -> Exit {
    let target = env!("SSM_COMPANION_TARGET");
    if json {
        outln(serde_json::json!({
            "schema": "ssm-companion/version/v1",
            "version": env!("CARGO_PKG_VERSION"),
            "full": crate::VERSION,
            "target": target,
        }))?;
    } else {
        outln(format_args!(
            "ssm-companion {}\ntarget: {target}",
            crate::VERSION
        ))?;
    }
    Ok(exit::OK)
}

fn load(cli: &Cli, strict: bool) -> Result<config::Loaded, i32> {
    match config::load(&LoadOptions::new(cli.config.as_deref(), strict)) {
        Ok(l) => {
            for w in &l.warnings {
                tracing::warn!(
                    "config: {w} (ignored; `ssm-companion config check` treats it as an error)"
                );
            }
            Ok(l)
        }
        Err(e) => {
            note(&e);
            Err(exit::CONFIG)
        }
    }
}

fn config_check(cli: &Cli, json: bool) -> Exit {
    let opts = LoadOptions::new(cli.config.as_deref(), true);
    let result = config::load(&opts);
    if json {
        let (valid, files, settings, issues) = match &result {
            Ok(l) => (
                true,
                l.files.clone(),
                serde_json::to_value(&l.settings).ok(),
                l.warnings.clone(),
            ),
            Err(e) => (
                false,
                config::config_files(&opts).unwrap_or_default(),
                None,
                e.issues.clone(),
            ),
        };
        let issues: Vec<_> = issues
            .iter()
            .map(|i| {
                serde_json::json!({
                    "severity": match i.severity {
                        config::Severity::Error => "error",
                        config::Severity::Warning => "warning",
                    },
                    "file": i.location.file, "line": i.location.line, "column": i.location.column,
                    "key": i.key, "message": i.message,
                })
            })
            .collect();
        outln(
            serde_json::to_string_pretty(&serde_json::json!({
                "schema": "ssm-companion/config-check/v1",
                "valid": valid,
                "files": files,
                "issues": issues,
                "settings": settings,
            }))
            .unwrap_or_default(),
        )?;
        return Ok(if valid { exit::OK } else { exit::CONFIG });
    }
    match result {
        Ok(l) => {
            for w in &l.warnings {
                note(format_args!("warning: {w}"));
            }
            let mut text = String::from("# Configuration is valid. Files read, in order:\n");
            if l.files.is_empty() {
                text.push_str("#   (none: built-in defaults)\n");
            }
            for f in &l.files {
                text.push_str(&format!("#   {}\n", f.display()));
            }
            text.push_str("# Effective settings:\n\n");
            text.push_str(&l.settings.to_toml());
            out(text)?;
            Ok(exit::OK)
        }
        Err(e) => {
            note(&e);
            Ok(exit::CONFIG)
        }
    }
}

/// The commands below return `Err(code)` for a failure already reported on stderr, so `?`
/// carries it to the exit status.
type Exit = Result<i32, i32>;

/// `Err(FAILURE)` after printing `e`.
fn fail(e: impl std::fmt::Display) -> i32 {
    note(&e);
    exit::FAILURE
}

/// `Err(FAILURE)` after printing the error and each of its causes once.
fn fail_chain(e: impl std::error::Error) -> i32 {
    note(crate::render::chain(&e));
    exit::FAILURE
}

fn accounts_list(cli: &Cli, json: bool) -> Exit {
    let loaded = load(cli, false)?;
    let rows = accounts::list(&loaded.settings).map_err(fail_chain)?;
    if json {
        outln(report::list_json(&rows))?;
    } else {
        out(report::list_text(&rows))?;
    }
    Ok(exit::OK)
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))
}

fn must_be_root(what: &str) -> Result<(), i32> {
    require_root(
        what,
        "it reads the ledger and /etc/sudoers.d, and changes accounts with useradd/usermod/userdel",
        exit::FAILURE,
    )
}

fn require_root(what: &str, why: &str, code: i32) -> Result<(), i32> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        note(format_args!(
            "{what} must run as root ({why}); use sudo or the systemd service"
        ));
        Err(code)
    }
}

fn accounts_sync(cli: &Cli, mode: Mode, json: bool, detailed: bool) -> Exit {
    let settings = load(cli, false)?.settings;
    // Both read the ledger (0600) and the sudoers drop-in (0440); apply runs shadow-utils.
    must_be_root(match mode {
        Mode::Plan => "`accounts plan`",
        Mode::Apply { .. } => "`accounts apply`",
    })?;
    let report = runtime()?
        .block_on(async {
            let aws = Aws::load(&settings.aws).await;
            accounts::sync(&settings, Some(&aws), &SystemClock, mode).await
        })
        .map_err(fail_chain)?;
    if json {
        outln(report::sync_json(&report))?;
    } else {
        out(report::sync_text(&report))?;
    }
    Ok(match mode {
        Mode::Plan if detailed && report.plan.pending() => exit::CHANGES,
        Mode::Plan => exit::OK,
        Mode::Apply { .. } if report.converged() => exit::OK,
        Mode::Apply { .. } => exit::FAILURE,
    })
}

fn doctor(cli: &Cli, json: bool, fix: bool) -> Exit {
    let settings = load(cli, false)?.settings;
    // As another user most checks could only say "permission denied": refuse, as UNKNOWN.
    require_root(
        "`doctor`",
        "the agent's state (/var/lib/amazon/ssm, mode 0700) and its process environment are root's",
        crate::health::Status::Unknown.exit_code(),
    )?;
    let report = runtime()?.block_on(async {
        let aws = crate::health::load_aws(&settings).await;
        let clock = SystemClock;
        let mut report =
            crate::health::doctor(&settings, &aws, crate::clock::Clock::now(&clock)).await;
        if fix {
            let notes = crate::health::fix::remediate(&settings, &report, &clock, true).await;
            for n in &notes {
                note(n);
            }
            if !notes.is_empty() {
                report =
                    crate::health::doctor(&settings, &aws, crate::clock::Clock::now(&clock)).await;
            }
        }
        report
    });
    if json {
        outln(crate::health::report::json(&report))?;
    } else {
        out(crate::health::report::text(&report))?;
    }
    Ok(report.overall.exit_code())
}

fn fleet_health(cli: &Cli, json: bool, stale_after: std::time::Duration) -> Exit {
    let settings = load(cli, false)?.settings;
    let mut view = runtime()?
        .block_on(async {
            let aws = Aws::load(&settings.aws).await;
            match aws.sdk() {
                Some(sdk) => crate::health::fleet::read(&aws_sdk_ssm::Client::new(sdk)).await,
                None => Err(aws.sdk.err().unwrap_or_default()),
            }
        })
        .map_err(|e| fail(format!("cannot read the fleet's health: {e}")))?;
    crate::health::fleet::mark_stale(
        &mut view,
        crate::clock::Clock::now(&SystemClock),
        stale_after,
    );
    if json {
        outln(crate::health::fleet::json(&view))?;
    } else {
        out(crate::health::fleet::text(&view))?;
    }
    Ok(view.worst().exit_code())
}

fn iam_policy(cli: &Cli, a: &IamPolicyArgs) -> Exit {
    use crate::iam_policy::{self as ip, Scope};
    let settings = load(cli, false)?.settings;
    let scope = Scope {
        partition: a.partition.clone(),
        region: a.region.clone(),
        account: a.account.clone(),
    };
    if let Err(e) = scope.validate() {
        note(&e);
        return Err(exit::USAGE);
    }
    let p = ip::policies(&settings, &scope);
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match a.for_ {
        Some(PolicyFor::InstanceProfile) => match &p.instance_profile {
            Some(doc) => outln(pretty(doc))?,
            None => {
                note(
                    "this configuration needs no permission for the instance profile (no policy printed)",
                );
            }
        },
        Some(PolicyFor::Operator) => outln(pretty(&p.operator))?,
        None if a.json => outln(ip::json(&p))?,
        None => out(ip::text(&p))?,
    }
    Ok(exit::OK)
}

fn run_daemon(cli: &Cli) -> Exit {
    let opts = LoadOptions::new(cli.config.as_deref(), false);
    let loaded = load(cli, false)?;
    must_be_root("`run`")?;
    runtime()?
        .block_on(crate::daemon::run(opts, loaded, Arc::new(SystemClock)))
        .map_err(fail_chain)?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_config_after_subcommand() {
        let c = Cli::try_parse_from(["ssm-companion", "config", "check", "--config", "/x.toml"])
            .unwrap();
        assert_eq!(c.config, Some(PathBuf::from("/x.toml")));
        let c = Cli::try_parse_from([
            "ssm-companion",
            "accounts",
            "plan",
            "--json",
            "--detailed-exitcode",
        ])
        .unwrap();
        assert!(matches!(
            c.command,
            Command::Accounts(AccountsCommand::Plan {
                json: true,
                detailed_exitcode: true
            })
        ));
    }
}
