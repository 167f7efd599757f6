//! The command line: parsing, dispatch and exit codes.
//!
//! Each command is one file with `run(…) -> Result<ExitCode, Error>`; [`main_entry`] maps an
//! [`Error`] to its exit status and prints it with each of its causes, in one place.
//!
//! Commands that need no AWS call (`version`, `config check`, `accounts list`) start no async
//! runtime and no thread, so they also run under qemu-user for cross-built binaries.

mod accounts;
mod audit;
mod config_check;
mod doctor;
mod fleet;
mod iam_policy;
mod publish;
mod run;
mod version;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tracing::level_filters::LevelFilter;

use crate::accounts::Mode;
use crate::config::{self, LoadOptions};

/// An exit status (see [`exit`]).
pub type ExitCode = i32;

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

/// Why a command failed. Each maps to one exit status ([`Error::exit_code`]), and
/// [`main_entry`] prints it with each of its causes once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Standard output was closed early (`| head -1`): nothing more is printed.
    #[error("standard output was closed")]
    Pipe,
    /// Standard output failed otherwise.
    #[error("cannot write to standard output: {0}")]
    Stdout(std::io::Error),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The command needs root.
    #[error("{what} must run as root ({why}); use sudo or the systemd service")]
    NotRoot {
        /// The command.
        what: &'static str,
        /// What it touches that needs root.
        why: &'static str,
        /// Its exit status (3, UNKNOWN, for `doctor`; else 1).
        code: ExitCode,
    },
    /// Bad arguments that clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// An accounts sync or listing failed.
    #[error(transparent)]
    Accounts(#[from] crate::accounts::SyncError),
    /// The daemon could not start.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// The fleet's reports could not be read.
    #[error("cannot read the fleet's health: {0}")]
    Fleet(String),
    /// The audit spool could not be read.
    #[error("audit: {0}")]
    Audit(String),
    /// `publish` could not start (no bucket, no key, no credentials).
    #[error("publish: {0}")]
    Publish(String),
}

impl Error {
    /// The exit status (docs/usage/cli.md).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Pipe => exit::PIPE,
            Error::Config(_) => exit::CONFIG,
            Error::Usage(_) => exit::USAGE,
            Error::NotRoot { code, .. } => *code,
            Error::Stdout(_)
            | Error::Runtime(_)
            | Error::Accounts(_)
            | Error::Daemon(_)
            | Error::Fleet(_)
            | Error::Audit(_)
            | Error::Publish(_) => exit::FAILURE,
        }
    }
}

/// Writes to standard output. A reader that went away (`| head -1`, `| grep -q`) ends the
/// command quietly with [`exit::PIPE`], as command-line tools do; any other write error is
/// reported and is a failure. (`print!` would panic on a closed pipe: Rust ignores SIGPIPE.)
fn out(text: impl std::fmt::Display) -> Result<(), Error> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Error::Pipe),
        Err(e) => Err(Error::Stdout(e)),
    }
}

/// A line on standard error. Unlike `eprintln!`, a closed stderr (`2>&1 | head -1`) is not a
/// panic: the line is dropped.
fn note(text: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "ssm-companion: {text}");
}

/// [`out`] with a newline.
fn outln(text: impl std::fmt::Display) -> Result<(), Error> {
    out(format_args!("{text}\n"))
}

/// Loads the configuration (the daemon's rules: unknown keys are warnings).
fn load(cli: &Cli) -> Result<config::Loaded, Error> {
    let loaded = config::load(&LoadOptions::new(cli.config.as_deref(), false))?;
    for w in &loaded.warnings {
        tracing::warn!("config: {w} (ignored; `ssm-companion config check` treats it as an error)");
    }
    Ok(loaded)
}

/// A current-thread runtime, for the commands that call AWS.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Runs `f` to completion on a [`runtime`], then leaves without waiting for blocking threads
/// still inside a call that outlived its deadline (dropping the runtime would wait for them:
/// a `doctor` bounded by its timeouts must not end only when a hung lookup does).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Error> {
    let rt = runtime()?;
    let out = rt.block_on(f);
    rt.shutdown_background();
    Ok(out)
}

/// Refuses to go on unless running as root.
fn require_root(what: &'static str, why: &'static str, code: ExitCode) -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot { what, why, code })
    }
}

/// [`require_root`] for the commands that read the ledger or change accounts.
fn must_be_root(what: &'static str) -> Result<(), Error> {
    require_root(
        what,
        "it reads the ledger and /etc/sudoers.d, and changes accounts with useradd/usermod/userdel",
        exit::FAILURE,
    )
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
    /// Session audit on this host: the spool's state and its events.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the least-privilege IAM policies for the features this configuration enables.
    #[command(
        long_about = "Print the least-privilege IAM policies for the features the configuration \
enables: one for every host's instance profile (what the daemon, doctor and accounts plan/apply \
call: iam:GetAccountAuthorizationDetails for the iam source, ssm:GetDocument on the Session \
Manager preferences, ssm:PutInventory with health.inventory, s3:GetObject on the mapping), one for \
operators (fleet health) and one for whoever runs `publish` ([publish]). Each statement says which \
setting needs it. Calls nothing and starts no thread.\n\n\
Example: ssm-companion iam-policy --for instance-profile --account 123456789012 > host-policy.json \
&& aws iam put-role-policy --role-name MyHostRole --policy-name ssm-companion \
--policy-document file://host-policy.json"
    )]
    IamPolicy(IamPolicyArgs),
    /// Publish the fleet's signed mapping to S3 (run by an operator, CI or a schedule; hosts
    /// read it with accounts.source = "mapping").
    #[command(
        long_about = "Read SSMSessionRunAs once per account — this account, the ones in \
publish.accounts (through publish.role_name, with publish.external_id), and with \
publish.organizations every active account of the organization — plus, with \
publish.identity_center, the IAM Identity Center users assigned to each account (their \
SSMSessionRunAs attribute for access control), and write each account's \
mapping to s3://<publish.bucket>/<publish.prefix>/<account>/: the document, and a manifest signed \
by the KMS key publish.kms_key_id (ECDSA P-256) pinning it, written only if no other publisher \
wrote meanwhile. An account whose read is incomplete keeps its published mapping; one that \
answers with nobody, where its mapping had principals, needs --allow-empty. An unchanged \
account is re-signed after a quarter of publish.validity: run publish at least that often. \
Prints each account's outcome and what changes for hosts (+ added, - removed, ~ changed), and \
the public key hosts verify with. Exit 0 when every account is published or current, 1 when \
one was skipped or failed.\n\n\
Example: ssm-companion publish --dry-run && ssm-companion publish"
    )]
    Publish(PublishArgs),
    /// Print version, target and commit.
    Version(JsonFlag),
}

/// `publish` options.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Read and show what would change; write and sign nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish an account that answered with no principal even where its published mapping
    /// has some (a broken read looks like that).
    #[arg(long)]
    pub allow_empty: bool,
    /// Only these accounts (12 digits; repeatable) instead of publish.accounts and
    /// Organizations discovery.
    #[arg(long = "account", value_name = "ACCOUNT_ID")]
    pub accounts: Vec<String>,
    /// Machine-readable output (ssm-companion/publish/v1).
    #[arg(long)]
    pub json: bool,
}

/// `audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The spool: its depth in events and bytes, the oldest unshipped event, the sources and
    /// their last positions, gaps, the last seal, and the sessions open now.
    Status(JsonFlag),
    /// What is happening on this host: the last events in the spool, one line each (or OCSF
    /// JSON Lines with --json), and with --follow the new ones as they come.
    #[command(
        long_about = "Print the last events in the audit spool, oldest first: time, spool \
sequence number, OCSF class and activity, and a one-line message (`!` marks high severity). With \
--json each event is printed whole, one OCSF JSON object per line (what is shipped to S3). With \
--follow, new events are printed as the daemon spools them, until interrupted. Damaged records \
show as gap events. Reads the spool's files: no daemon is needed.\n\n\
Example: ssm-companion audit tail -n 50 --follow"
    )]
    Tail(AuditTailArgs),
    /// Ship everything spooled so far to S3 now (audit.s3.bucket), and wait until S3 has it:
    /// exit 0 when it does, 1 with the reason when it does not within --timeout.
    #[command(
        long_about = "Ask the running daemon to ship every event spooled before this call to S3 now, without waiting for audit.s3.max_delay or a full object, and wait until the shipping ledger says S3 has them all. Exit 0 when it does; exit 1 with the reason (the daemon is not running, shipping is off, or the last upload error, such as AccessDenied) when it does not within --timeout. Useful before stopping an instance for good, and in scripts and tests.\n\n\
Example: ssm-companion audit flush --timeout 2m"
    )]
    Flush(AuditFlushArgs),
}

/// `audit flush` options.
#[derive(Debug, Args)]
pub struct AuditFlushArgs {
    /// How long to wait for S3 to have everything.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// The outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `audit tail` options.
#[derive(Debug, Args)]
pub struct AuditTailArgs {
    /// How many of the last events to print first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
    /// Keep printing new events as they are spooled.
    #[arg(short, long)]
    pub follow: bool,
    /// One OCSF event per line (JSON Lines).
    #[arg(long)]
    pub json: bool,
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
    /// Whoever runs `publish` (an operator, CI, a schedule).
    Publisher,
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
    let done = match &cli.command {
        Command::Version(f) => version::run(f.json),
        Command::Config(ConfigCommand::Check(f)) => config_check::run(&cli, f.json),
        Command::Accounts(AccountsCommand::List(f)) => accounts::list(&cli, f.json),
        Command::Accounts(AccountsCommand::Plan {
            json,
            detailed_exitcode,
        }) => accounts::sync(&cli, Mode::Plan, *json, *detailed_exitcode),
        Command::Accounts(AccountsCommand::Apply {
            json,
            allow_mass_retire,
            trust_inherited,
        }) => accounts::sync(
            &cli,
            Mode::Apply {
                unchanged_is_done: false,
                allow_mass_retire: *allow_mass_retire,
                trust_inherited: *trust_inherited,
            },
            *json,
            false,
        ),
        Command::Run => run::run(&cli),
        Command::Doctor { json, fix } => doctor::run(&cli, *json, *fix),
        Command::Fleet(FleetCommand::Health(f)) => fleet::health(&cli, f.json, f.stale_after),
        Command::IamPolicy(a) => iam_policy::run(&cli, a),
        Command::Publish(a) => publish::run(&cli, a),
        Command::Audit(AuditCommand::Status(f)) => audit::status(&cli, f.json),
        Command::Audit(AuditCommand::Tail(a)) => audit::tail(&cli, a.lines, a.follow, a.json),
        Command::Audit(AuditCommand::Flush(a)) => audit::flush(&cli, a.timeout, a.json),
    };
    match done {
        Ok(code) => code,
        Err(e) => {
            if !matches!(e, Error::Pipe) {
                note(crate::render::chain(&e));
            }
            e.exit_code()
        }
    }
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
