//! Writes the man pages (`ssm-companion.1` and one per subcommand, `ssm-companion-doctor.1`, …)
//! from the command-line definition, so they never disagree with `--help`:
//!
//!     cargo run --example man -- OUT_DIR
//!
//! The packages ship them (packaging/build.sh).
use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target/man".into());
    std::fs::create_dir_all(&out)?;
    let cmd = ssm_companion::cli::Cli::command().version(env!("CARGO_PKG_VERSION"));
    clap_mangen::generate_to(cmd, &out)?;
    println!("{}", out.display());
    Ok(())
}
