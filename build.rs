//! Bakes the version into the binary: `SSM_COMPANION_VERSION` from the environment if set
//! (release builds, packages), else the crate version plus `git describe` when building from a
//! git checkout.

use std::env;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The eBPF exec-capture program (`bpf/exec.bpf.c`), compiled to `$OUT_DIR/exec.bpf.o` and
/// embedded by `src/audit/exec/ebpf.rs`. The object is BPF bytecode with CO-RE relocations: one
/// build serves every architecture and kernel with BTF. Compiler: `$SSM_COMPANION_BPF_CC` (a
/// command line, e.g. "python3 -m ziglang cc"), else the first of `clang`, `clang-14` ..
/// `clang-19` found. Headers: libbpf's `bpf/*.h` and `linux/bpf.h` (Debian/Ubuntu:
/// `apt-get install clang libbpf-dev`). `$SSM_COMPANION_BPF_OBJECT` names an object built
/// already, embedded as it is (cross/build.sh builds it once for both architectures).
const SOURCE: &str = "bpf/exec.bpf.c";
const CC_ENV: &str = "SSM_COMPANION_BPF_CC";
const OBJECT_ENV: &str = "SSM_COMPANION_BPF_OBJECT";
const INSTALL: &str = "install clang and the libbpf headers (Debian/Ubuntu: `apt-get install clang libbpf-dev`; \
                       Fedora/AL2023: `dnf install clang libbpf-devel`), or set SSM_COMPANION_BPF_CC to a \
                       BPF-capable C compiler command such as \"python3 -m ziglang cc\"";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed={CC_ENV}");
    if let Err(message) = build() {
        fail(&message);
    }
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

#[allow(clippy::panic, reason = "a build script reports failure by panicking")]
fn fail(message: &str) -> ! {
    panic!("\n\nbuilding the eBPF program {SOURCE} failed:\n{message}\n");
}

#[allow(clippy::disallowed_methods)] // build script: runs the BPF compiler.
fn build() -> Result<(), String> {
    let out_dir = env::var_os("OUT_DIR").ok_or("OUT_DIR is not set (not run by cargo?)")?;
    let object = PathBuf::from(out_dir).join("exec.bpf.o");
    // An object built once for every target (cross/build.sh: it is architecture-independent).
    println!("cargo:rerun-if-env-changed={OBJECT_ENV}");
    if let Some(built) = env::var_os(OBJECT_ENV).filter(|v| !v.is_empty()) {
        println!("cargo:rerun-if-changed={}", Path::new(&built).display());
        return std::fs::copy(&built, &object)
            .map(|_| ())
            .map_err(|e| format!("{OBJECT_ENV}={}: {e}", Path::new(&built).display()));
    }
    let manifest = env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let source = Path::new(&manifest).join(SOURCE);

    let candidates: Vec<Vec<String>> = match env::var(CC_ENV) {
        Ok(command) if !command.trim().is_empty() => {
            vec![command.split_whitespace().map(str::to_owned).collect()]
        }
        _ => std::iter::once("clang".to_owned())
            .chain((14..=19).map(|v| format!("clang-{v}")))
            .map(|c| vec![c])
            .collect(),
    };

    let includes = include_dirs();
    let mut tried = Vec::new();
    for command in &candidates {
        let Some((program, pre_args)) = command.split_first() else {
            continue;
        };
        // zig cc spells the target as a zig triple; clang takes the generic "bpf" (host endian).
        let target = if command.iter().any(|a| a.contains("zig")) {
            "bpfel-freestanding-none"
        } else {
            "bpf"
        };
        let mut cmd = Command::new(program);
        cmd.args(pre_args)
            .args(["-O2", "-g", "-Wall", "-target", target])
            .args(includes.iter().map(|d| format!("-I{}", d.display())))
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&object);
        match cmd.output() {
            Err(e) if e.kind() == ErrorKind::NotFound => tried.push(command.join(" ")),
            Err(e) => {
                return Err(format!(
                    "running `{}` failed: {e}\n{INSTALL}",
                    command.join(" ")
                ));
            }
            Ok(out) if out.status.success() => {
                let warnings = String::from_utf8_lossy(&out.stderr);
                for line in warnings.lines().filter(|l| !l.trim().is_empty()) {
                    println!("cargo:warning={line}");
                }
                return Ok(());
            }
            Ok(out) => {
                return Err(format!(
                    "`{}` exited with {}:\n{}\n{INSTALL}",
                    command.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    Err(format!(
        "no C compiler for BPF found (tried: {}).\n{INSTALL}",
        tried.join(", ")
    ))
}

/// /usr/include plus the multiarch directory that holds asm/types.h (linux-libc-dev).
#[allow(clippy::disallowed_methods)] // build script: asks gcc for the multiarch directory.
fn include_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/include")];
    let multiarch = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            // x86_64-unknown-linux-gnu -> x86_64-linux-gnu
            let host = env::var("HOST").ok()?;
            let mut parts = host.split('-');
            let arch = parts.next()?;
            let rest: Vec<&str> = parts.filter(|p| *p != "unknown").collect();
            Some(format!("{arch}-{}", rest.join("-")))
        });
    if let Some(dir) = multiarch.map(|m| Path::new("/usr/include").join(m))
        && dir.join("asm/types.h").exists()
    {
        dirs.push(dir);
    }
    dirs
}
