//! tracing setup.
//!
//! - Human logs go to stderr. Under systemd (`JOURNAL_STREAM` set) they carry no timestamp and
//!   no module path, since journald adds both.
//! - Structured events (target [`crate::events::TARGET`]) also go to the journal as native
//!   entries, fields upper-cased without prefix (`MESSAGE_ID`, `SSM_COMPANION_USER`, …), when the
//!   journal socket is there; under systemd they are then not repeated on stderr.
//! - Verbosity: `-v`/`-q`, or `SSM_COMPANION_LOG` with tracing's target syntax
//!   (`info,ssm_companion::accounts=debug`).

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterFn, Targets};
use tracing_subscriber::prelude::*;

use crate::events;

/// Environment variable with a tracing filter that overrides `-v`/`-q`.
pub const ENV_FILTER: &str = "SSM_COMPANION_LOG";

/// Installs the global subscriber. `base` is the level without `-v`/`-q`; `verbosity` is the
/// count of `-v` minus the count of `-q`.
pub fn init(base: LevelFilter, verbosity: i8) {
    let levels = [
        LevelFilter::OFF,
        LevelFilter::ERROR,
        LevelFilter::WARN,
        LevelFilter::INFO,
        LevelFilter::DEBUG,
        LevelFilter::TRACE,
    ];
    let base_idx = levels.iter().position(|l| *l == base).unwrap_or(3);
    let idx = (i64::try_from(base_idx).unwrap_or(3) + i64::from(verbosity)).clamp(0, 5);
    let level = levels[usize::try_from(idx).unwrap_or(3)];
    // Events always pass the global filter (they are the audit trail in the journal); whether
    // they are also printed is decided per layer below.
    let mut filter = Targets::new()
        .with_default(level)
        .with_target(events::TARGET, LevelFilter::INFO);
    if let Ok(spec) = std::env::var(ENV_FILTER) {
        match spec.parse::<Targets>() {
            // Whatever the filter says, account changes still reach the journal.
            Ok(t) => filter = t.with_target(events::TARGET, LevelFilter::INFO),
            Err(e) => eprintln!("ignoring {ENV_FILTER}={spec:?}: {e}"),
        }
    }
    // Quiet the SDK's own chatter unless asked for.
    let filter = filter
        .clone()
        .with_target("aws_smithy_runtime", level.min(LevelFilter::WARN))
        .with_target("aws_config", level.min(LevelFilter::WARN))
        .with_target("hyper", level.min(LevelFilter::WARN));

    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let journal = tracing_journald::layer().ok().map(|l| {
        l.with_field_prefix(None)
            .with_syslog_identifier("ssm-companion".into())
    });
    let events_to_journal = journal.is_some();
    // Event fields (`message_id`, `ssm_companion_*`) are for the journal; on stderr the message
    // says it all.
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let name = field.name();
        if name == "message" {
            write!(w, "{value:?}")
        } else if name == "message_id" || name.starts_with("ssm_companion_") {
            Ok(())
        } else {
            write!(w, "{name}={value:?}")
        }
    })
    .delimited(" ");
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .fmt_fields(fields);
    // Under systemd the journal already has them; a quiet CLI run shows only its own output.
    let events_on_stderr = !(under_systemd && events_to_journal) && level >= LevelFilter::INFO;
    let stderr_filter = FilterFn::new(move |m| events_on_stderr || m.target() != events::TARGET);
    let journal = journal.map(|j| j.with_filter(FilterFn::new(|m| m.target() == events::TARGET)));
    let registry = tracing_subscriber::registry().with(filter).with(journal);
    if under_systemd {
        let _ = registry
            .with(stderr.without_time().with_filter(stderr_filter))
            .try_init();
    } else {
        let _ = registry.with(stderr.with_filter(stderr_filter)).try_init();
    }
}
