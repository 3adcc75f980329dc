//! Database server error messages without the values they quote.
//!
//! Servers quote both names and values in their messages: MySQL's
//! `Duplicate entry 'alice@example.com' for key 'users.email'`,
//! PostgreSQL's `invalid input syntax for type integer: "hunter2"`. A
//! value can be a secret, and the message becomes the span's status, so
//! every quoted text is replaced by `?` unless the word before it says it
//! is a name (`relation "t"`, `column 'c'`, `key 'users.email'`). Unknown
//! words count as values: a name lost costs less than a secret shown.

use std::borrow::Cow;

/// Words that introduce a quoted *name* in PostgreSQL and MySQL messages.
const NAME_WORDS: &[&str] = &[
    "aggregate",
    "channel",
    "collation",
    "column",
    "constraint",
    "cursor",
    "database",
    "domain",
    "event",
    "extension",
    "field",
    "function",
    "index",
    "key",
    "language",
    "operator",
    "parameter",
    "policy",
    "portal",
    "procedure",
    "publication",
    "relation",
    "role",
    "routine",
    "rule",
    "savepoint",
    "schema",
    "sequence",
    "server",
    "statement",
    "subscription",
    "table",
    "tablespace",
    "trigger",
    "type",
    "user",
    "variable",
    "view",
];

/// `msg` with every quoted value (`'…'`, `"…"`, and PostgreSQL's
/// `(…)=(…)` key detail) replaced by `?`, quotes kept; quoted names stay.
/// A quote left open (a message cut short) hides the rest.
pub fn redact_error_message(msg: &str) -> Cow<'_, str> {
    if !msg.contains(['\'', '"', '=']) {
        return Cow::Borrowed(msg);
    }
    let b = msg.as_bytes();
    let mut out = String::with_capacity(msg.len());
    let mut copied = 0;
    let mut i = 0;
    let mut changed = false;
    while let Some(&c) = b.get(i) {
        // An apostrophe inside a word (`doesn't`) opens nothing.
        let in_word = i > 0 && b.get(i - 1).is_some_and(u8::is_ascii_alphanumeric);
        let (open, close) = match c {
            b'\'' | b'"' if !in_word => (i, c),
            b'=' if b.get(i + 1) == Some(&b'(') && i > 0 && b.get(i - 1) == Some(&b')') => {
                (i + 1, b')')
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let end = closing(b, open + 1, close);
        let is_name = c != b'='
            && NAME_WORDS
                .iter()
                .any(|w| word_before(msg, i).eq_ignore_ascii_case(w));
        if !is_name && end > open + 1 {
            out.push_str(msg.get(copied..=open).unwrap_or_default());
            out.push('?');
            copied = end;
            changed = true;
        }
        i = end + 1;
    }
    if !changed {
        return Cow::Borrowed(msg);
    }
    out.push_str(msg.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Where the quoted text from `from` ends: the first `close` followed by
/// the end or by something that cannot go on a word or a quote (servers
/// quote values without escaping them: `near 'SELECT 'x'' at line 1`); the
/// end of the message if there is none.
fn closing(b: &[u8], from: usize, close: u8) -> usize {
    let mut i = from;
    while let Some(p) = memchr::memchr(close, b.get(i..).unwrap_or_default()) {
        let at = i + p;
        match b.get(at + 1) {
            None => return at,
            Some(&n)
                if close == b')' || !(n.is_ascii_alphanumeric() || n == b'\'' || n == b'"') =>
            {
                return at
            }
            Some(_) => i = at + 1,
        }
    }
    b.len()
}

/// The word just before byte `at`, over one blank: `key` in `key 'k'`;
/// empty when something else comes first (`type integer: "x"`).
fn word_before(msg: &str, at: usize) -> &str {
    let before = msg.get(..at).unwrap_or_default();
    let trimmed = before.trim_end_matches(' ');
    if trimmed.len() == before.len() {
        return "";
    }
    let start = trimmed
        .rfind(|c: char| !c.is_ascii_alphabetic())
        .map_or(0, |i| i + 1);
    trimmed.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_go_quoted_names_stay() {
        let cases = [
            (
                "Duplicate entry 'alice@example.com' for key 'users.email'",
                "Duplicate entry '?' for key 'users.email'",
            ),
            (
                "invalid input syntax for type integer: \"hunter2\"",
                "invalid input syntax for type integer: \"?\"",
            ),
            (
                "relation \"missing\" does not exist",
                "relation \"missing\" does not exist",
            ),
            (
                "duplicate key value violates unique constraint \"users_email_key\"",
                "duplicate key value violates unique constraint \"users_email_key\"",
            ),
            (
                "Key (email)=(alice@example.com) already exists.",
                "Key (email)=(?) already exists.",
            ),
            (
                "Incorrect integer value: 'abc' for column 'n' at row 1",
                "Incorrect integer value: '?' for column 'n' at row 1",
            ),
            (
                "Access denied for user 'bob'@'localhost' (using password: YES)",
                "Access denied for user 'bob'@'?' (using password: YES)",
            ),
            (
                "Table 'shop.nope' doesn't exist",
                "Table 'shop.nope' doesn't exist",
            ),
            ("value 'cut sh", "value '?"),
            ("empty '' stays", "empty '' stays"),
            ("no quotes at all", "no quotes at all"),
            ("a = b", "a = b"),
        ];
        for (msg, want) in cases {
            assert_eq!(redact_error_message(msg), want, "{msg}");
        }
        assert!(matches!(
            redact_error_message("relation \"t\""),
            Cow::Borrowed(_)
        ));
    }
}
