//! User and group name rules.
//!
//! A `SSMSessionRunAs` value is used verbatim as the OS user name: the agent passes it to
//! `sh -c "id <user>"` unquoted and sets `HOME=/home/<user>`. So we never map or "fix" a name: a
//! value is either a safe, portable name or it is rejected with a reason. The rule is the
//! conservative intersection of shadow-utils, Debian's `NAME_REGEX` and systemd's user-name
//! guidance: `^[a-z_][a-z0-9_-]{0,31}$`: no uppercase, no leading digit or `-`, no dots, no `$`,
//! no shell metacharacters, at most 32 characters.

use std::fmt;

/// The longest accepted name (`useradd`'s limit on Linux).
pub const MAX_LEN: usize = 32;

/// Names that are never managed, whatever the host has.
pub const RESERVED: &[&str] = &["root", "ssm-user"];

/// Why a name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The value is empty.
    Empty,
    /// The value has leading or trailing whitespace (the agent would use it verbatim).
    Whitespace,
    /// Longer than [`MAX_LEN`] characters.
    TooLong(usize),
    /// The first character is not a lowercase letter or `_`.
    BadStart(char),
    /// A character outside `a-z 0-9 _ -`.
    BadChar(char),
    /// An uppercase ASCII letter.
    Uppercase(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "names must match ^[a-z_][a-z0-9_-]{0,31}$";
        match self {
            NameError::Empty => write!(f, "the value is empty; {RULE}"),
            NameError::Whitespace => write!(
                f,
                "the value has leading or trailing whitespace; remove it from the tag ({RULE})"
            ),
            NameError::TooLong(n) => {
                write!(
                    f,
                    "the value is {n} characters long; at most {MAX_LEN} are allowed"
                )
            }
            NameError::BadStart(c) if c.is_ascii_digit() => write!(
                f,
                "the value starts with the digit `{c}` (ambiguous with a UID); {RULE}"
            ),
            NameError::BadStart(c) => write!(f, "the value starts with {}; {RULE}", show(*c)),
            NameError::Uppercase(c) => write!(
                f,
                "the value contains the uppercase letter `{c}`; user names are lowercase and the tag is used verbatim, so change the tag ({RULE})"
            ),
            NameError::BadChar(c) => write!(f, "the value contains {}; {RULE}", show(*c)),
        }
    }
}

fn show(c: char) -> String {
    if c == '`' {
        "a backtick".to_string()
    } else if c.is_ascii_graphic() {
        format!("`{c}`")
    } else {
        format!("the character U+{:04X}", u32::from(c))
    }
}

/// Checks the syntax of a user or group name.
pub fn check_syntax(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.trim() != name {
        return Err(NameError::Whitespace);
    }
    let len = name.chars().count();
    if len > MAX_LEN {
        return Err(NameError::TooLong(len));
    }
    if let Some(c) = name.chars().find(char::is_ascii_uppercase) {
        return Err(NameError::Uppercase(c));
    }
    let mut chars = name.chars();
    if let Some(first) = chars.next()
        && !(first.is_ascii_lowercase() || first == '_')
    {
        return Err(NameError::BadStart(first));
    }
    match chars.find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')) {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

/// True for names that are never managed ([`RESERVED`]).
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hostile values of accounts-lessons.md §6, each with its expected verdict.
    #[test]
    fn hostile_values_are_rejected_one_by_one() {
        let long33 = "a".repeat(33);
        let long256 = "b".repeat(256);
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("empty")),
            ("   ", Some("whitespace")),
            (" alice", Some("whitespace")),
            ("alice ", Some("whitespace")),
            ("Alice", Some("uppercase")),
            ("jöhn", Some("U+00F6")),
            ("\u{0430}lice", Some("starts with the character U+0430")), // Cyrillic а
            ("1234", Some("digit")),
            ("0day", Some("digit")),
            ("-g", Some("starts with `-`")),
            ("--help", Some("starts with `-`")),
            ("-o", Some("starts with `-`")),
            (".hidden", Some("starts with `.`")),
            (".", Some("starts with `.`")),
            ("..", Some("starts with `.`")),
            ("../root", Some("starts with `.`")),
            ("a/b", Some("`/`")),
            ("a:b", Some("`:`")),
            ("a,b", Some("`,`")),
            ("a=b", Some("`=`")),
            ("a+b", Some("`+`")),
            ("user@example.com", Some("`@`")),
            ("machine$", Some("`$`")),
            ("a;b", Some("`;`")),
            ("$(id)", Some("starts with `$`")),
            ("`id`", Some("starts with a backtick")),
            ("a b", Some("U+0020")),
            ("a\tb", Some("U+0009")),
            ("a\nb", Some("U+000A")),
            (long33.as_str(), Some("33 characters")),
            (long256.as_str(), Some("256 characters")),
            ("alice", None),
            ("_svc", None),
            ("ops-team_2", None),
        ];
        for (value, expect) in cases {
            let got = check_syntax(value);
            match (expect, &got) {
                (None, Ok(())) => {}
                (Some(needle), Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{value:?}: {msg:?} lacks {needle:?}");
                }
                _ => panic!("{value:?}: expected {expect:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn exactly_32_characters_is_fine() {
        let name = format!("a{}", "b".repeat(31));
        assert_eq!(name.len(), 32);
        assert_eq!(check_syntax(&name), Ok(()));
    }

    #[test]
    fn reserved_names() {
        assert!(is_reserved("root"));
        assert!(is_reserved("ssm-user"));
        assert!(!is_reserved("alice"));
    }
}
