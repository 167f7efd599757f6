//! Free space and inodes where the agent writes (its state and log directories).

use std::path::Path;

use super::model::{CheckResult, Status};

/// Free bytes and free-inode share of the file system holding `path`.
pub fn usage(path: &Path) -> Result<(u64, f64), String> {
    let s =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let free = s.blocks_available().saturating_mul(s.fragment_size());
    let files = s.files();
    #[allow(clippy::cast_precision_loss)]
    let inodes = if files == 0 {
        1.0
    } else {
        s.files_available() as f64 / files as f64
    };
    Ok((free, inodes))
}

/// The `disk.agent` verdict over the agent's directories (missing ones are skipped).
pub fn verdict(dirs: &[&Path], warn_mib: u64, crit_mib: u64) -> CheckResult {
    const ID: &str = "disk.agent";
    let mut worst = Status::Ok;
    let mut parts = Vec::new();
    for d in dirs.iter().filter(|d| d.exists()) {
        match usage(d) {
            Ok((free, inodes)) => {
                let mib = free / (1 << 20);
                let status = if mib < crit_mib || inodes < 0.01 {
                    Status::Critical
                } else if mib < warn_mib || inodes < 0.05 {
                    Status::Warning
                } else {
                    Status::Ok
                };
                worst = worst.worst(status);
                parts.push(format!(
                    "{}: {mib} MiB free, {:.0} % inodes free",
                    d.display(),
                    inodes * 100.0
                ));
            }
            Err(e) => {
                worst = worst.worst(Status::Unknown);
                parts.push(e);
            }
        }
    }
    if parts.is_empty() {
        return CheckResult::new(
            ID,
            Status::Unknown,
            "none of the agent's directories exists",
            "",
        );
    }
    let remedy = if worst == Status::Ok {
        ""
    } else {
        "free space: old session logs under /var/lib/amazon/ssm/*/session, rotated logs, packages; a full disk makes sessions fail to start"
    };
    CheckResult::new(ID, worst, parts.join("; "), remedy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let d = tempfile::tempdir().unwrap();
        let (free, _) = usage(d.path()).unwrap();
        let mib = free / (1 << 20);
        assert_eq!(verdict(&[d.path()], 0, 0).status, Status::Ok);
        assert_eq!(verdict(&[d.path()], mib + 1, 0).status, Status::Warning);
        assert_eq!(
            verdict(&[d.path()], mib + 2, mib + 1).status,
            Status::Critical
        );
        assert_eq!(
            verdict(&[Path::new("/nonexistent")], 1, 1).status,
            Status::Unknown
        );
    }
}
