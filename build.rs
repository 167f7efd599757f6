//! Bakes the version into the binary: `SSM_COMPANION_VERSION` from the environment if set
//! (release builds, packages), else the crate version plus `git describe` when building from a
//! git checkout.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SSM_COMPANION_VERSION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let pkg = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let version = std::env::var("SSM_COMPANION_VERSION").unwrap_or_else(|_| {
        #[allow(clippy::disallowed_methods)] // build script: not the daemon's runner.
        let described = Command::new("git")
            .args(["describe", "--always", "--dirty", "--tags"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        match described {
            Some(d) => format!("{pkg} ({d})"),
            None => pkg.clone(),
        }
    });
    println!("cargo:rustc-env=SSM_COMPANION_VERSION={version}");
    println!(
        "cargo:rustc-env=SSM_COMPANION_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
