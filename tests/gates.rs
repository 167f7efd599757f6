//! The project's own gates fail when they should: a unit with weak hardening fails
//! packaging/check-unit.sh (run by packaging/check.sh), a missing linter fails scripts/lint.sh
//! in CI, and the capabilities never name each other in the source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check_unit(unit: &Path) -> Output {
    Command::new(root().join("packaging/check-unit.sh"))
        .arg(unit)
        .output()
        .unwrap()
}

#[test]
fn a_unit_without_hardening_fails_the_security_gate() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("unsafe.service");
    let text_of_unit = "[Unit]\nDescription=no hardening\n[Service]\nExecStart=/usr/bin/true\n";
    std::fs::write(&unit, text_of_unit).unwrap();
    let out = check_unit(&unit);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("9.6 UNSAFE"), "the report is shown: {text}");
    assert!(text.contains("exposure above 2.8"), "{text}");
}

#[test]
fn our_unit_passes_the_security_gate() {
    let out = check_unit(&root().join("systemd/ssm-companion.service"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK"), "{}", text(&out));
}

/// Runs scripts/lint.sh with a `cargo` that has neither fmt nor clippy.
fn lint_without_rustfmt(ci: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let cargo = dir.path().join("cargo");
    let script = "#!/bin/sh\necho \"no such command: $1\" >&2\nexit 101\n";
    std::fs::write(&cargo, script).unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&cargo, executable).unwrap();
    let mut cmd = Command::new(root().join("scripts/lint.sh"));
    cmd.env(
        "PATH",
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", dir.path().display()),
    )
    .env_remove("CI");
    if let Some(ci) = ci {
        cmd.env("CI", ci);
    }
    cmd.output().unwrap()
}

#[test]
fn a_missing_linter_fails_in_ci_and_is_skipped_visibly_elsewhere() {
    let out = lint_without_rustfmt(Some("true"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not installed: rustfmt clippy"),
        "{}",
        text(&out)
    );
    let out = lint_without_rustfmt(None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("skipped"), "{}", text(&out));
}

/// The capabilities: each is `src/<name>/` (or `src/<name>.rs`) and names no other. Adding a
/// capability adds its name here (docs/development/README.md, "Adding a capability").
const CAPABILITIES: &[&str] = &["accounts", "health", "audit"];
/// The modules that wire capabilities together: they alone may name any of them.
const WIRING: &[&str] = &["cli", "daemon", "lib.rs"];

/// The top-level modules a source text names through `crate::` (or `ssm_companion::`), with
/// `use crate::{a, b::c}` groups expanded. Comments are skipped.
fn named_modules(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for root in ["crate::", "ssm_companion::"] {
        for (i, _) in code.match_indices(root) {
            let rest = &code[i + root.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Only the first segment of each top-level item of the group.
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.push(first_segment(&item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                out.push(first_segment(&item));
            } else {
                out.push(first_segment(rest));
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn first_segment(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Which module of `src/` a file belongs to: its first path component (`accounts`,
/// `health`, `config`, …), or the file name for the crate root.
fn owner(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    match first.strip_suffix(".rs") {
        Some(m) if rel.components().count() == 1 && m != "lib" => m.to_string(),
        _ => first.into_owned(),
    }
}

#[test]
fn capabilities_never_name_each_other() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        let owner = owner(&src, file);
        if WIRING.contains(&owner.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for named in named_modules(&text) {
            if CAPABILITIES.contains(&named.as_str()) && named != owner {
                violations.push(format!(
                    "{} names crate::{named}",
                    file.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "capabilities and shared modules must not name a capability (move what they share to a neutral module, see docs/development/README.md):\n{}",
        violations.join("\n")
    );
    // Every capability listed is there: a renamed one cannot slip out of the rule.
    for c in CAPABILITIES {
        assert!(src.join(c).is_dir(), "src/{c}/ is missing");
    }
}

#[test]
fn sdk_clients_are_built_only_in_aws() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let outside: Vec<String> = files
        .iter()
        .filter(|f| owner(&src, f) != "aws")
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .any(|l| l.contains("aws_sdk_") && l.contains("Client::new("))
        })
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "build SDK clients with crate::aws::clients, not in: {outside:?}"
    );
}

#[test]
fn the_module_scan_sees_every_form_of_naming() {
    let text = "use crate::{accounts::names, render::{clean, table}};\n// crate::health in a comment\nlet x = crate::health::run();\nuse ssm_companion::audit;\n";
    assert_eq!(
        named_modules(text),
        vec!["accounts", "render", "health", "audit"]
    );
}
