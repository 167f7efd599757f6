//! Alert rules: events that match a rule get the rule's severity (`severity_id`, raised, never
//! lowered) and the label `alert:<name>` in `metadata.labels`; the daemon writes each marked
//! event to the journal with `MESSAGE_ID` [`crate::events::AUDIT_ALERT`].
//!
//! A rule matches when every `match` field has exactly its value and every `regex` field matches
//! its pattern; fields are dotted paths into the event as spooled (`actor.user.name`,
//! `unmapped.ssm.run_as_elevated`); numbers and booleans compare as written (`3002`, `true`).
//! A field the event does not have matches nothing.

use regex::Regex;

use super::ocsf;
use crate::config::{AlertRule, AuditSettings};

/// The built-in rules (`audit.default_alerts`), by name; a rule of the operator's with the same
/// name replaces one, `enabled = false` switches it off.
pub fn builtins() -> Vec<AlertRule> {
    let rule = |name: &str, severity_id: u32, equals: &[(&str, &str)]| AlertRule {
        name: name.into(),
        enabled: true,
        severity_id,
        equals: equals
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        regex: Default::default(),
    };
    vec![
        rule(
            "sudo",
            3,
            &[("class_uid", "1007"), ("actor.process.name", "sudo")],
        ),
        rule(
            "su-to-root",
            4,
            &[
                ("class_uid", "3002"),
                ("activity_id", "7"),
                ("user.name", "root"),
            ],
        ),
        rule(
            "root-shell",
            4,
            &[
                ("class_uid", "3002"),
                ("activity_id", "1"),
                ("status_id", "1"),
                ("metadata.log_name", "sessions"),
                ("user.name", "root"),
            ],
        ),
        rule(
            "run-as-elevated",
            4,
            &[
                ("class_uid", "3002"),
                ("activity_id", "1"),
                ("unmapped.ssm.run_as_elevated", "true"),
            ],
        ),
        rule(
            "run-as-failure",
            3,
            &[
                ("class_uid", "3002"),
                ("status_id", "2"),
                ("metadata.log_name", "agent-log"),
            ],
        ),
        rule(
            "sudo-granted",
            4,
            &[("class_uid", "3001"), ("activity_id", "7")],
        ),
        // Commands (the exec capture): a download piped into a shell, when the pipe is in one
        // command line (`sh -c '…'`, a NonInteractiveCommands session); a setuid or setgid bit
        // set; the sudoers files written.
        exec_rule("pipe-to-shell", PIPE_TO_SHELL),
        exec_rule("setuid-chmod", SETUID_CHMOD),
        exec_rule("sudoers-write", SUDOERS_WRITE),
    ]
}

/// `curl …| sh`, `wget -O- … | sudo bash`.
const PIPE_TO_SHELL: &str =
    r"\b(?:curl|wget|fetch)\b[^|;&]*\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:ba|da|z|k|c|tc)?sh\b";
/// `chmod u+s`, `chmod g+s`, `chmod 4755`, `chmod 2755`.
const SETUID_CHMOD: &str =
    r"(?:^|/)chmod\s(?:.*\s)?(?:[ugoa]*[+=][rwxXt]*s[rwxXt]*|[0-7]?[2-7][0-7]{3})(?:\s|$)";
/// An editor, a copy or a redirection onto `/etc/sudoers` or a file in `/etc/sudoers.d`.
const SUDOERS_WRITE: &str = r"(?:(?:^|/)(?:vi|vim|nvim|nano|emacs|ed|tee|cp|mv|install|ln|visudo|sed|perl|dd)\s(?:.*\s)?(?:of=)?|>>?\s*)/etc/sudoers(?:\.d(?:/|\s|$)|\s|$)";

fn exec_rule(name: &str, cmd_line: &str) -> AlertRule {
    AlertRule {
        name: name.into(),
        enabled: true,
        severity_id: 4,
        equals: [("metadata.log_name".to_string(), "exec".to_string())].into(),
        regex: [("process.cmd_line".to_string(), cmd_line.to_string())].into(),
    }
}

#[derive(Debug)]
struct Compiled {
    name: String,
    severity_id: u32,
    equals: Vec<(Vec<String>, String)>,
    regex: Vec<(Vec<String>, Regex)>,
}

/// The rules in force.
#[derive(Debug, Default)]
pub struct Alerts {
    rules: Vec<Compiled>,
}

fn path(p: &str) -> Vec<String> {
    p.split('.').map(String::from).collect()
}

/// The value at `path` as text: strings as they are, numbers and booleans as JSON writes them;
/// `None` for a missing field, `null`, arrays and objects.
fn text<'a>(v: &'a serde_json::Value, path: &[String]) -> Option<std::borrow::Cow<'a, str>> {
    let v = path.iter().try_fold(v, |v, k| v.get(k))?;
    match v {
        serde_json::Value::String(s) => Some(s.as_str().into()),
        serde_json::Value::Number(n) => Some(n.to_string().into()),
        serde_json::Value::Bool(b) => Some(b.to_string().into()),
        _ => None,
    }
}

impl Alerts {
    /// The rules of `settings` (checked by the configuration: a pattern that does not compile
    /// here is left out, logged).
    pub fn new(settings: &AuditSettings) -> Self {
        let mut rules: Vec<AlertRule> = if settings.default_alerts {
            builtins()
        } else {
            Vec::new()
        };
        for r in &settings.alert {
            rules.retain(|b| b.name != r.name);
            rules.push(r.clone());
        }
        let rules = rules
            .into_iter()
            .filter(|r| r.enabled)
            .filter_map(|r| {
                let regex = r
                    .regex
                    .iter()
                    .map(|(k, p)| Regex::new(p).map(|re| (path(k), re)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| tracing::error!("audit: alert rule `{}` is off: {e}", r.name))
                    .ok()?;
                Some(Compiled {
                    name: r.name.clone(),
                    severity_id: r.severity_id,
                    equals: r.equals.iter().map(|(k, v)| (path(k), v.clone())).collect(),
                    regex,
                })
            })
            .collect();
        Self { rules }
    }

    /// Marks `event` with every rule it matches; the names of those rules.
    pub fn mark(&self, event: &mut ocsf::Event) -> Vec<String> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let Ok(v) = serde_json::to_value(&*event) else {
            return Vec::new();
        };
        let mut matched = Vec::new();
        for r in &self.rules {
            let equal = r
                .equals
                .iter()
                .all(|(p, want)| text(&v, p).is_some_and(|t| t == want.as_str()));
            if equal
                && r.regex
                    .iter()
                    .all(|(p, re)| text(&v, p).is_some_and(|t| re.is_match(&t)))
            {
                event.raise_severity(r.severity_id);
                event.metadata.labels.push(format!("alert:{}", r.name));
                matched.push(r.name.clone());
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: Vec<AlertRule>, defaults: bool) -> AuditSettings {
        AuditSettings {
            default_alerts: defaults,
            alert: extra,
            ..AuditSettings::default()
        }
    }

    fn kinds() -> Vec<ocsf::Event> {
        crate::audit::examples()
    }

    /// Which rules each example event matches, by its message's first words.
    fn marks(a: &Alerts) -> Vec<(String, Vec<String>)> {
        kinds()
            .into_iter()
            .map(|mut e| {
                let m = a.mark(&mut e);
                (e.message.chars().take(24).collect(), m)
            })
            .filter(|(_, m)| !m.is_empty())
            .collect()
    }

    #[test]
    fn the_built_in_rules_mark_what_they_name_and_nothing_else() {
        let a = Alerts::new(&settings(Vec::new(), true));
        let got = marks(&a);
        let names: Vec<&str> = got
            .iter()
            .flat_map(|(_, m)| m)
            .map(String::as_str)
            .collect();
        // Two sudo lines (one refused), su to root, the elevated root session (both rules),
        // the Run As failure, no account change of the examples grants sudo.
        assert_eq!(
            names,
            [
                "sudo",
                "sudo",
                "su-to-root",
                "root-shell",
                "run-as-elevated",
                "run-as-failure"
            ],
            "{got:?}"
        );
        let mut e = kinds().remove(0);
        a.mark(&mut e);
        assert_eq!(e.severity_id, 3);
        assert_eq!(e.metadata.labels, ["alert:sudo"]);
    }

    #[test]
    fn the_command_rules_mark_what_they_name_and_nothing_else() {
        let a = Alerts::new(&settings(Vec::new(), true));
        let cases: [(&str, Option<&str>); 17] = [
            (
                "sh -c 'curl -fsSL https://x.example/install.sh | sh'",
                Some("pipe-to-shell"),
            ),
            (
                "bash -c 'wget -qO- http://x.example/i | sudo -E bash -s'",
                Some("pipe-to-shell"),
            ),
            ("curl -o /tmp/install.sh https://x.example/install.sh", None),
            ("sh -c 'curl https://x.example | grep sh'", None),
            ("chmod u+s /tmp/x", Some("setuid-chmod")),
            ("/bin/chmod 4755 /tmp/x", Some("setuid-chmod")),
            ("chmod -R g+s /srv/shared", Some("setuid-chmod")),
            ("chmod 755 /tmp/x", None),
            ("chmod +x s", None),
            ("chmod 0644 /etc/motd", None),
            ("vi /etc/sudoers", Some("sudoers-write")),
            ("tee -a /etc/sudoers.d/ops", Some("sudoers-write")),
            (
                "sh -c 'echo \"ops ALL=(ALL) NOPASSWD:ALL\" >> /etc/sudoers.d/ops'",
                Some("sudoers-write"),
            ),
            ("cp /tmp/x /etc/sudoers", Some("sudoers-write")),
            ("cat /etc/sudoers", None),
            ("visudo -c", None),
            ("grep -r alice /etc/sudoers.d", None),
        ];
        for (cmd, want) in cases {
            let c = crate::audit::exec::Command {
                time_ms: 0,
                session: Some("alice-0a1b2c3d4e5f60718".into()),
                exec: crate::audit::exec::Exec {
                    pid: 7,
                    argv: vec![cmd.to_string()],
                    ..Default::default()
                },
            };
            let mut e = crate::audit::exec::event(
                &c,
                None,
                &mut Default::default(),
                "1:1".into(),
                &Default::default(),
            );
            // One argument holding the whole line: cmd_line quotes it; the rules see the text.
            e.process.as_mut().unwrap().cmd_line = Some(cmd.to_string());
            let got = a.mark(&mut e);
            assert_eq!(
                got,
                want.into_iter().map(String::from).collect::<Vec<_>>(),
                "{cmd}"
            );
            if want.is_some() {
                assert_eq!(e.severity_id, 4, "{cmd}");
            }
        }
    }

    #[test]
    fn operator_rules_replace_switch_off_and_add() {
        let off = AlertRule {
            name: "sudo".into(),
            enabled: false,
            severity_id: 3,
            equals: Default::default(),
            regex: Default::default(),
        };
        let restart = AlertRule {
            name: "restarts".into(),
            enabled: true,
            severity_id: 5,
            equals: [("class_uid".to_string(), "1007".to_string())].into(),
            regex: [(
                "process.cmd_line".to_string(),
                r"systemctl\s+restart".to_string(),
            )]
            .into(),
        };
        let a = Alerts::new(&settings(vec![off, restart], true));
        let mut e = kinds().remove(0);
        assert_eq!(a.mark(&mut e), ["restarts"]);
        assert_eq!((e.severity_id, e.severity.as_str()), (5, "Critical"));
        let none = Alerts::new(&settings(Vec::new(), false));
        assert!(marks(&none).is_empty());
    }
}
