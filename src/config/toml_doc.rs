//! Reading one TOML file into a fragment, with every problem located at file:line:column.
//!
//! A file is parsed into toml's spanned document tree first, then deserialized into the fragment
//! type. When deserialization fails, the offending key is found by its span, recorded as an
//! [`Issue`], removed, and deserialization is retried, so one run reports every bad key at once
//! instead of one per edit-and-retry.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` in `text` of `file`.
    pub fn at(file: &Path, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// How bad an [`Issue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// Ignored by the daemon (an unknown key from a newer version), an error for `config check`.
    Warning,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Error or warning.
    pub severity: Severity,
    /// Where.
    pub location: Location,
    /// The dotted key (`accounts.interval`), or empty for syntax errors.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Parses `text` (the content of `file`) into `T`, collecting every problem.
///
/// Unknown keys are [`Severity::Warning`] issues when `strict` is false and errors otherwise; all
/// other problems are errors. Keys with problems are dropped, so the returned value holds every
/// key that was fine (callers must not use it when there is any error).
pub fn parse_fragment<T: DeserializeOwned + Default>(
    file: &Path,
    text: &str,
    strict: bool,
) -> (T, Vec<Issue>) {
    let mut issues = Vec::new();
    let mut table = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            issues.push(Issue {
                severity: Severity::Error,
                location: Location::at(file, text, offset),
                key: String::new(),
                message: format!("TOML syntax error: {}", e.message()),
            });
            return (T::default(), issues);
        }
    };
    // Every retry removes one key, so this terminates; the bound is a backstop.
    for _ in 0..256 {
        let attempt = T::deserialize(toml::de::Deserializer::from(table.clone()));
        let err = match attempt {
            Ok(v) => return (v, issues),
            Err(e) => e,
        };
        let span = err.span().unwrap_or(0..0);
        let unknown = err.message().starts_with("unknown field");
        let found = remove_key_at(table.get_mut(), &span, &mut Vec::new());
        let key = found.clone().unwrap_or_default();
        issues.push(Issue {
            severity: if unknown && !strict {
                Severity::Warning
            } else {
                Severity::Error
            },
            location: Location::at(file, text, span.start),
            key,
            message: describe(err.message(), unknown),
        });
        if found.is_none() {
            break;
        }
    }
    (T::default(), issues)
}

fn describe(message: &str, unknown: bool) -> String {
    if unknown {
        // toml says "unknown field `x`, expected one of `a`, `b`": say "key" as the docs do.
        message
            .replacen("unknown field", "unknown key", 1)
            .replacen(", expected", "; allowed keys here:", 1)
    } else {
        message.to_string()
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// Removes the innermost table entry whose key or value span contains `span`; returns its
/// dotted path.
fn remove_key_at(
    table: &mut DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<String>,
) -> Option<String> {
    let mut hit: Option<String> = None;
    for (k, v) in table.iter_mut() {
        path.push(k.get_ref().to_string());
        if contains(&k.span(), span) {
            hit = Some(k.get_ref().to_string());
            break;
        }
        // A `[section]` table's span need not cover its body: always look inside.
        if let Some(inner) = remove_in_value(v, span, path) {
            return Some(inner);
        }
        if contains(&v.span(), span) {
            hit = Some(k.get_ref().to_string());
            break;
        }
        path.pop();
    }
    let name = hit?;
    let dotted = path.join(".");
    table.remove(name.as_str());
    Some(dotted)
}

fn remove_in_value(
    v: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut Vec<String>,
) -> Option<String> {
    match v.get_mut() {
        DeValue::Table(t) => remove_key_at(t, span, path),
        DeValue::Array(a) => a.iter_mut().find_map(|item| match item.get_mut() {
            DeValue::Table(t) => remove_key_at(t, span, path),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        section: Option<Section>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        n: Option<Spanned<u32>>,
        s: Option<Spanned<String>>,
    }

    fn p(text: &str, strict: bool) -> (Doc, Vec<Issue>) {
        parse_fragment(Path::new("/etc/x.toml"), text, strict)
    }

    #[test]
    fn every_bad_key_is_reported_with_file_line_and_key() {
        let (doc, issues) = p("[section]\nn = \"x\"\nbogus = 1\ns = \"ok\"\n", true);
        assert_eq!(issues.len(), 2, "{issues:#?}");
        let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("/etc/x.toml:2:5: key `section.n`: invalid type")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with(
                "/etc/x.toml:3:1: key `section.bogus`: unknown key `bogus`; allowed keys here:"
            ) && t.contains("`n`")
                && t.contains("`s`")),
            "{text:?}"
        );
        // The good key survives.
        assert_eq!(doc.section.unwrap().s.unwrap().into_inner(), "ok");
    }

    #[test]
    fn unknown_keys_are_warnings_when_lenient() {
        let (doc, issues) = p("[section]\nn = 3\nfuture = true\n", false);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].severity, Severity::Warning);
        assert_eq!(*doc.section.unwrap().n.unwrap().get_ref(), 3);
    }

    #[test]
    fn unknown_sections_are_named() {
        let (_, issues) = p("[sectoin]\nn = 3\n", true);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "sectoin");
        assert_eq!(issues[0].location.line, 1);
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let (_, issues) = p("[section]\nn = [\n", true);
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0].message.starts_with("TOML syntax error"),
            "{:?}",
            issues[0]
        );
        assert_eq!(issues[0].location.line, 2);
    }

    #[test]
    fn location_counts_characters_not_bytes() {
        let l = Location::at(Path::new("f"), "a = \"é\"\nb = 1", 12);
        assert_eq!((l.line, l.column), (2, 4));
    }
}
