//! The `ssm-companion` binary: everything lives in the library.

fn main() {
    std::process::exit(ssm_companion::cli::main_entry());
}
