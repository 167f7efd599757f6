//! Text for terminals and logs: values from outside (tag values, file contents, agent logs)
//! made safe to print, and aligned tables. Shared by every capability's reports.

use std::fmt::Write as _;

/// Escapes control characters (a tag value or a log line cannot move the cursor or fake a
/// line of output).
pub fn clean(s: &str) -> String {
    if s.chars().all(|c| !c.is_control()) {
        return s.to_string();
    }
    s.escape_debug().to_string()
}

/// Renders rows as an aligned table (the last column is not padded), every cell escaped with
/// [`clean`].
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    // Every cell is escaped here: values may come from other hosts (Inventory) or tags.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(n.saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < n {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            } else {
                l.push_str(c);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in &rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// An error and its causes, one per line (`caused by: …`), each said once: a cause whose text
/// the message already holds (an error that prints its source) is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            let _ = write!(out, "\n  caused by: {text}");
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("alice"), "alice");
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("a\nb"), "a\\nb");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "LONGER", "C"],
            &[vec!["xx".into(), "y".into(), "last".into()]],
        );
        assert_eq!(t, "A   LONGER  C\nxx  y       last\n");
    }

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_chain_says_each_cause_once() {
        let io = E("permission denied", None);
        // The top message already holds its source: not repeated.
        let e = E("cannot read /x: permission denied", Some(Box::new(io)));
        assert_eq!(chain(&e), "cannot read /x: permission denied");
        let e = E(
            "the sync failed",
            Some(Box::new(E(
                "cannot read /x",
                Some(Box::new(E("permission denied", None))),
            ))),
        );
        assert_eq!(
            chain(&e),
            "the sync failed\n  caused by: cannot read /x\n  caused by: permission denied"
        );
    }
}
