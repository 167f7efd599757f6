//! The one subprocess runner.
//!
//! Every program the daemon runs goes through [`run`]: an absolute path, a fixed argv (callers
//! put `--` before user-controlled values), a cleared environment (`PATH` of system dirs,
//! `LC_ALL=C` so messages are stable), a timeout after which the child is killed, and a typed
//! error that carries the argv and the program's stderr. Never a shell.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What a finished program left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A program that could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The path is relative; we never search `PATH`.
    #[error("refusing to run `{0}`: the program path must be absolute")]
    NotAbsolute(PathBuf),
    /// `fork`/`exec` failed (missing binary, permissions).
    #[error("cannot start `{argv}`: {source}")]
    Spawn {
        /// The command line.
        argv: Argv,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("lost track of `{argv}`: {source}")]
    Wait {
        /// The command line.
        argv: Argv,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program ran longer than allowed and was killed.
    #[error("`{argv}` did not finish within {}s and was killed", timeout.as_secs_f32())]
    Timeout {
        /// The command line.
        argv: Argv,
        /// The limit.
        timeout: Duration,
    },
    /// The program exited non-zero (only from [`run_ok`]).
    #[error("`{argv}` failed ({}){}", describe_code(*code), stderr_suffix(stderr))]
    Failed {
        /// The command line.
        argv: Argv,
        /// Its exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// Its standard error.
        stderr: String,
    },
}

impl ExecError {
    /// The exit code when the program ran and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ExecError::Failed { code, .. } => *code,
            _ => None,
        }
    }
}

fn describe_code(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// A command line, kept for error messages and logs; displays with shell-style quoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<OsString>);

impl fmt::Display for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let s = a.to_string_lossy();
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                f.write_str(&s)?;
            } else {
                write!(f, "'{}'", s.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// Runs `program args…` with `stdin` (if any) and waits at most `timeout`.
///
/// A non-zero exit is *not* an error here: callers that give meaning to exit codes (useradd's 9,
/// userdel's 8) inspect [`Output::code`]. Use [`run_ok`] otherwise.
pub fn run(
    program: &Path,
    args: &[&OsStr],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, ExecError> {
    if !program.is_absolute() {
        return Err(ExecError::NotAbsolute(program.to_path_buf()));
    }
    let argv = Argv(
        std::iter::once(program.as_os_str().to_os_string())
            .chain(args.iter().map(|a| a.to_os_string()))
            .collect(),
    );
    let _span = tracing::debug_span!("exec", argv = %argv).entered();

    #[allow(clippy::disallowed_methods)] // NOTE: the one sanctioned call site.
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever it started too (nscd -i,
        // sss_cache, USERDEL_CMD scripts), and those cannot keep our pipes open.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        argv: argv.clone(),
        source,
    })?;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let input = stdin.map(<[u8]>::to_vec);
    let pipe = child.stdin.take();

    // The waiter thread owns the child, so its PID (= the group id) stays ours, unreaped, until
    // it returns: a SIGKILL on timeout can never hit a recycled PID.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let (Some(input), Some(mut pipe)) = (input, pipe) {
            // A child that exits without reading gives EPIPE; its exit status tells the story.
            let _ = pipe.write_all(&input);
        }
        let _ = tx.send(child.wait_with_output());
    });
    let result = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            // Give the waiter a moment to reap it; never wait without bound.
            let _ = rx.recv_timeout(Duration::from_secs(5));
            return Err(ExecError::Timeout { argv, timeout });
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(std::io::Error::other("waiter vanished")),
    };
    let out = result.map_err(|source| ExecError::Wait {
        argv: argv.clone(),
        source,
    })?;
    let output = Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    tracing::debug!(code = ?output.code, "exec finished");
    Ok(output)
}

/// Like [`run`], but a non-zero exit is [`ExecError::Failed`].
pub fn run_ok(
    program: &Path,
    args: &[&OsStr],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, ExecError> {
    let out = run(program, args, stdin, timeout)?;
    if out.success() {
        Ok(out)
    } else {
        Err(ExecError::Failed {
            argv: Argv(
                std::iter::once(program.as_os_str().to_os_string())
                    .chain(args.iter().map(|a| a.to_os_string()))
                    .collect(),
            ),
            code: out.code,
            stderr: out.stderr,
        })
    }
}

/// Starts `program args…` to run beside the daemon (a follower: `journalctl --follow`) under the
/// rules of [`run`] — an absolute path, a cleared environment, its own process group, never a
/// shell — with stdout and stderr piped. The child is killed when the handle is dropped.
pub fn spawn(program: &Path, args: &[String]) -> Result<tokio::process::Child, ExecError> {
    let argv = Argv(
        std::iter::once(program.as_os_str().to_os_string())
            .chain(args.iter().map(OsString::from))
            .collect(),
    );
    if !program.is_absolute() {
        return Err(ExecError::NotAbsolute(program.to_path_buf()));
    }
    tracing::debug!(argv = %argv, "exec: starting");
    tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ExecError::Spawn { argv, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&'static str]) -> Vec<&'static OsStr> {
        v.iter().map(|s| OsStr::new(*s)).collect()
    }

    #[test]
    fn runs_with_fixed_argv_and_no_shell() {
        let out = run(
            Path::new("/bin/echo"),
            &os(&["--", "$(id)", "a;b"]),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(out.success());
        // No shell: metacharacters arrive verbatim.
        assert_eq!(out.stdout, "-- $(id) a;b\n");
    }

    #[test]
    fn environment_is_cleared() {
        let out = run(Path::new("/usr/bin/env"), &[], None, Duration::from_secs(5)).unwrap();
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort();
        assert_eq!(lines, ["LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    }

    #[test]
    fn relative_paths_are_refused() {
        let err = run(Path::new("echo"), &[], None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ExecError::NotAbsolute(_)), "{err}");
    }

    #[test]
    fn missing_program_names_the_argv() {
        let err = run(
            Path::new("/nonexistent/useradd"),
            &os(&["--", "alice"]),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/useradd -- alice"), "{msg}");
    }

    #[test]
    fn slow_programs_are_killed_at_the_deadline() {
        let err = run(
            Path::new("/bin/sleep"),
            &os(&["30"]),
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        // The child starts a grandchild that keeps stdout open; the deadline must still hold.
        let start = std::time::Instant::now();
        let err = run(
            Path::new("/bin/sh"),
            &os(&["-c", "sleep 60 & sleep 60"]),
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn failures_carry_code_and_stderr() {
        let err = run_ok(
            Path::new("/bin/ls"),
            &os(&["/nonexistent-dir"]),
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), Some(2));
        assert!(err.to_string().contains("No such file"), "{err}");
    }

    #[test]
    fn stdin_is_fed() {
        let out = run(
            Path::new("/bin/cat"),
            &[],
            Some(b"hello"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, "hello");
    }

    #[test]
    fn argv_display_quotes_what_a_shell_would_split() {
        let a = Argv(vec![
            "/usr/sbin/useradd".into(),
            "--".into(),
            "a b".into(),
            "it's".into(),
        ]);
        assert_eq!(a.to_string(), r"/usr/sbin/useradd -- 'a b' 'it'\''s'");
    }
}
