//! Crash points for tests, compiled only with `--features failpoints`.
//!
//! `SSM_COMPANION_FAILPOINT=create:alice:after,write-atomic:ssm-companion:before-rename` makes the process kill
//! itself with SIGKILL (no destructors, no flush: a real crash) when it reaches a named point.

/// Environment variable listing the points to crash at (comma-separated).
pub const ENV: &str = "SSM_COMPANION_FAILPOINT";

/// Crashes the process if `name` is listed in [`ENV`].
pub fn hit(name: &str) {
    if let Ok(list) = std::env::var(ENV)
        && list.split(',').any(|p| p.trim() == name)
    {
        eprintln!("failpoint {name}: killing this process with SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
