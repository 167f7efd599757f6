//! System files that both the configuration and the accounts capability read: parsers for
//! `login.defs` and the subordinate ID files `/etc/subuid`, `/etc/subgid` (pure), and the
//! listing of a drop-in directory (`config.d`, `sysusers.d`).

use std::path::{Path, PathBuf};

/// The files directly in `dir` whose names end in `.<ext>`, in name order; none when `dir` does
/// not exist.
pub fn files_in(dir: &Path, ext: &str) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// What login.defs says about account IDs and homes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginDefs {
    /// `UID_MIN` (default 1000).
    pub uid_min: u32,
    /// `GID_MIN` (default 1000).
    pub gid_min: u32,
    /// `UID_MAX` (default 60000).
    pub uid_max: u32,
    /// `GID_MAX` (default 60000).
    pub gid_max: u32,
    /// `UMASK` (default 022), octal.
    pub umask: u32,
}

impl Default for LoginDefs {
    /// shadow-utils' own defaults, used for keys a host's file leaves out.
    fn default() -> Self {
        Self {
            uid_min: 1000,
            gid_min: 1000,
            uid_max: 60000,
            gid_max: 60000,
            umask: 0o022,
        }
    }
}

/// Reads login.defs text; absent or unparsable keys keep shadow's defaults.
pub fn parse_login_defs(text: &str) -> LoginDefs {
    let mut d = LoginDefs::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let number = value.parse::<u32>().ok();
        match (key, number) {
            ("UID_MIN", Some(v)) => d.uid_min = v,
            ("GID_MIN", Some(v)) => d.gid_min = v,
            ("UID_MAX", Some(v)) => d.uid_max = v,
            ("GID_MAX", Some(v)) => d.gid_max = v,
            ("UMASK", _) => {
                if let Ok(v) = u32::from_str_radix(value, 8)
                    && v <= 0o777
                {
                    d.umask = v;
                }
            }
            _ => {}
        }
    }
    d
}

/// One line of `/etc/subuid` or `/etc/subgid`: `owner:first:count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubordinateRange {
    /// The user (name or UID) the range belongs to.
    pub owner: String,
    /// First ID.
    pub first: u64,
    /// Number of IDs.
    pub count: u64,
}

impl SubordinateRange {
    /// The last ID of the range (inclusive).
    pub fn last(&self) -> u64 {
        self.first + self.count.saturating_sub(1)
    }

    /// True when the range shares an ID with `[lo, hi]`.
    pub fn overlaps(&self, lo: u64, hi: u64) -> bool {
        self.count > 0 && self.first <= hi && lo <= self.last()
    }
}

/// Parses subuid/subgid text; comments, blank and malformed lines are skipped.
pub fn parse_subordinate(text: &str) -> Vec<SubordinateRange> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (owner, first, count) = (f.next()?, f.next()?, f.next()?);
            Some(SubordinateRange {
                owner: owner.to_string(),
                first: first.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_defs() {
        assert_eq!(
            parse_login_defs(
                "# x\nUID_MIN\t\t 1500\nGID_MIN 2000\nUID_MAX 70000\nGID_MAX 80000\nUMASK\t\t077\n"
            ),
            LoginDefs {
                uid_min: 1500,
                gid_min: 2000,
                uid_max: 70000,
                gid_max: 80000,
                umask: 0o077,
            }
        );
        assert_eq!(parse_login_defs(""), LoginDefs::default());
        assert_eq!(
            parse_login_defs("UMASK 999\nUID_MAX x\n"),
            LoginDefs::default()
        );
    }

    #[test]
    fn drop_in_files_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        for f in ["50-b.conf", "10-a.conf", "x.toml", "c.conf.bak"] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        let names: Vec<_> = files_in(d.path(), "conf")
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a.conf", "50-b.conf"]);
        assert!(files_in(&d.path().join("none"), "conf").unwrap().is_empty());
    }

    #[test]
    fn subordinate_ranges() {
        let r = parse_subordinate(
            "# c\nalice:100000:65536\n\nbroken\nbob:165536:x\n1001:231072:65536\n",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].owner, "alice");
        assert_eq!(r[0].last(), 165_535);
        assert!(r[0].overlaps(160_000, 170_000));
        assert!(r[0].overlaps(100_000, 100_000));
        assert!(!r[0].overlaps(20_000, 59_999));
        assert!(!r[0].overlaps(165_536, 200_000));
        assert_eq!(r[1].owner, "1001");
    }
}
