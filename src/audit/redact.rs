//! Redaction (`audit.redact`): every match of the configured patterns becomes `***` in the
//! command lines of an event (`process.cmd_line`, `actor.process.cmd_line`) and in its message,
//! before it is spooled — the secret never reaches the disk. The patterns are checked by the
//! configuration; one that does not compile here is left out, logged.

use regex::Regex;

use super::ocsf;

/// The replacement of every match.
pub const MASK: &str = "***";

/// The patterns in force.
#[derive(Debug, Default)]
pub struct Redactor {
    patterns: Vec<Regex>,
}

impl Redactor {
    /// Compiles `patterns` (those of `audit.redact`).
    pub fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns
                .iter()
                .filter_map(|p| {
                    Regex::new(p)
                        .map_err(|e| tracing::error!("audit: redact pattern `{p}` is off: {e}"))
                        .ok()
                })
                .collect(),
        }
    }

    /// `text` with every match masked.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for p in &self.patterns {
            if p.is_match(&out) {
                out = p.replace_all(&out, MASK).into_owned();
            }
        }
        out
    }

    /// Masks a sudo/su use's command and invocation before its event (and message) is built.
    pub fn privilege_use(&self, u: &mut super::privilege::Use) {
        if self.patterns.is_empty() {
            return;
        }
        if let Some(c) = u.command.as_mut() {
            *c = self.text(c);
        }
        u.invocation = self.text(&u.invocation);
    }

    /// Masks the command lines and the message of `e` (what a source did not mask before).
    pub fn event(&self, e: &mut ocsf::Event) {
        if self.patterns.is_empty() {
            return;
        }
        let mask = |c: &mut Option<String>| {
            if let Some(c) = c.as_mut() {
                *c = self.text(c);
            }
        };
        if let Some(p) = e.process.as_mut() {
            mask(&mut p.cmd_line);
        }
        if let Some(p) = e.actor.as_mut().and_then(|a| a.process.as_mut()) {
            mask(&mut p.cmd_line);
        }
        e.message = self.text(&e.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_command_lines_and_messages_are_masked() {
        let r = Redactor::new(&[r"(?i)password=\S+".into(), r"AKIA[0-9A-Z]{16}".into()]);
        let mut e = crate::audit::examples().remove(0);
        let cmd = "/usr/bin/mysql --password=hunter2 -e 'select 1' AKIAABCDEFGHIJKLMNOP";
        e.process.as_mut().unwrap().cmd_line = Some(cmd.into());
        e.actor.as_mut().unwrap().process.as_mut().unwrap().cmd_line = Some(format!("sudo {cmd}"));
        e.message = format!("sudo: alice ran `{cmd}` as root");
        r.event(&mut e);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            !json.contains("hunter2") && !json.contains("AKIAABCD"),
            "{json}"
        );
        assert_eq!(
            e.process.unwrap().cmd_line.as_deref(),
            Some("/usr/bin/mysql --*** -e 'select 1' ***")
        );
        // No patterns: nothing changes.
        let mut e = crate::audit::examples().remove(0);
        let before = serde_json::to_string(&e).unwrap();
        Redactor::default().event(&mut e);
        assert_eq!(serde_json::to_string(&e).unwrap(), before);
    }
}
