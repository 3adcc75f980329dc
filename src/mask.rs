//! Secret masking: values whose names look secret become `****`.
//!
//! As in the Lumigo distributions, a name is secret when one of the
//! configured regular expressions matches the *whole* name, ignoring case
//! (`.*token.*` matches `access_token`; `Signature` matches `signature` but
//! not `x-signature`). Patterns come from [`Config::query_secret_patterns`]
//! (Lumigo's defaults unless configured); patterns that do not compile are
//! skipped (the configuration already warned about them).
//!
//! ```
//! use lumigo_core::mask::Masker;
//! let masker = Masker::lumigo_defaults();
//! assert_eq!(masker.mask_query("a=1&password=x&api_key=y&flag"), "a=1&password=****&api_key=****&flag");
//! ```
//!
//! [`Config::query_secret_patterns`]: crate::config::Config::query_secret_patterns

use std::borrow::Cow;

use std::sync::OnceLock;

use regex_lite::{Regex, RegexBuilder};

use crate::config::DEFAULT_SECRET_PATTERNS;

/// What a secret value is replaced with.
pub const MASK: &str = "****";

/// A set of secret-name patterns, compiled on first use: every traced
/// process builds one at start-up, and most never mask anything.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    sources: Vec<String>,
    compiled: OnceLock<Vec<Regex>>,
}

impl Masker {
    /// Keeps `patterns`, each to be anchored to match a whole name, ignoring
    /// case. Invalid patterns are skipped when compiled.
    pub fn new(patterns: &[String]) -> Masker {
        Masker {
            sources: patterns.to_vec(),
            compiled: OnceLock::new(),
        }
    }

    fn patterns(&self) -> &[Regex] {
        self.compiled.get_or_init(|| {
            self.sources
                .iter()
                .filter_map(|p| {
                    RegexBuilder::new(&format!("^(?:{p})$"))
                        .case_insensitive(true)
                        .build()
                        .ok()
                })
                .collect()
        })
    }

    /// Lumigo's default patterns ([`DEFAULT_SECRET_PATTERNS`]).
    pub fn lumigo_defaults() -> Masker {
        let patterns: Vec<String> = DEFAULT_SECRET_PATTERNS
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        Masker::new(&patterns)
    }

    /// Whether a value named `name` is secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.patterns().iter().any(|re| re.is_match(name))
    }

    /// Masks the values of secret parameters in a query string
    /// (`a=1&password=x` → `a=1&password=****`). Names are percent-decoded
    /// (and `+` read as a space) before matching. Order, separators and
    /// every other byte are kept; parameters without `=` or with an empty
    /// value have nothing to hide and are kept too. Borrows when nothing
    /// changed.
    pub fn mask_query<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if self.sources.is_empty() || !query.contains('=') {
            return Cow::Borrowed(query);
        }
        let mut out: Option<String> = None;
        // `copied` is how much of `query` is already in `out`.
        let mut copied = 0;
        let mut offset = 0;
        for param in query.split('&') {
            if let Some((name, value)) = param.split_once('=') {
                if !value.is_empty() && self.is_secret(&percent_decode(name)) {
                    let value_start = offset + name.len() + 1;
                    let out = out.get_or_insert_with(|| String::with_capacity(query.len()));
                    out.push_str(query.get(copied..value_start).unwrap_or_default());
                    out.push_str(MASK);
                    copied = value_start + value.len();
                }
            }
            offset += param.len() + 1;
        }
        match out {
            Some(mut out) => {
                out.push_str(query.get(copied..).unwrap_or_default());
                Cow::Owned(out)
            }
            None => Cow::Borrowed(query),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of a name: `%XX` escapes
/// and `+` for space; malformed escapes are kept as they are.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (
            b,
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => Some((hi * 16 + lo) as u8),
            _ => None,
        };
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(if b == b'+' { b' ' } else { b });
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(patterns: &[&str]) -> Masker {
        Masker::new(&patterns.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn default_patterns_match_whole_names_ignoring_case() {
        let m = Masker::lumigo_defaults();
        let cases = [
            ("password", true),
            ("PassWord", true),
            ("user_pass", true),
            ("passphrase", true),
            ("api_key", true),
            ("KEY", true),
            ("monkey", true),
            ("client_secret", true),
            ("aws_credential", true),
            ("access_token", true),
            ("SessionToken", true),
            ("x-amz-security-token", true),
            ("X-Amz-Signature", false),
            ("signature", true),
            ("Credential", true),
            ("authorization", true),
            ("Authorization2", false),
            ("my-authorization", false),
            ("user", false),
            ("q", false),
            ("", false),
        ];
        for (name, secret) in cases {
            assert_eq!(m.is_secret(name), secret, "{name}");
        }
    }

    #[test]
    fn masking_queries() {
        let m = Masker::lumigo_defaults();
        let cases = [
            ("", ""),
            ("a=1&b=2", "a=1&b=2"),
            (
                "a=1&password=x&api_key=y&flag",
                "a=1&password=****&api_key=****&flag",
            ),
            ("token=abc", "token=****"),
            ("token=", "token="),
            ("token", "token"),
            ("token=a=b&c=d", "token=****&c=d"),
            ("&&password=x&&", "&&password=****&&"),
            ("pass%77ord=x", "pass%77ord=****"),
            ("api%5Fkey=x&x%3D=1", "api%5Fkey=****&x%3D=1"),
            ("my+token=x", "my+token=****"),
            ("bad%zzkey=x", "bad%zzkey=****"),
            ("%=1&%4=2&key%=3", "%=1&%4=2&key%=****"),
            ("é=1&clé_secret=ü", "é=1&clé_secret=****"),
            ("a=1;password=x", "a=1;password=x"),
        ];
        for (query, want) in cases {
            assert_eq!(m.mask_query(query), want, "{query}");
        }
    }

    #[test]
    fn unchanged_queries_are_borrowed() {
        let m = Masker::lumigo_defaults();
        for query in ["", "a=1", "token=", "x=password"] {
            assert!(matches!(m.mask_query(query), Cow::Borrowed(_)), "{query}");
        }
        assert!(matches!(m.mask_query("token=1"), Cow::Owned(_)));
    }

    #[test]
    fn custom_and_invalid_patterns() {
        let m = masker(&["sid", "(unclosed", "a|b"]);
        let cases = [
            ("sid=1&SID=2&sidx=3", "sid=****&SID=****&sidx=3"),
            ("a=1&b=2&ab=3", "a=****&b=****&ab=3"),
            ("password=x", "password=x"),
        ];
        for (query, want) in cases {
            assert_eq!(m.mask_query(query), want, "{query}");
        }
        assert_eq!(masker(&[".*"]).mask_query("x=1&y"), "x=****&y");
        assert_eq!(masker(&[]).mask_query("password=1"), "password=1");
        assert_eq!(Masker::default().mask_query("password=1"), "password=1");
    }

    #[test]
    fn percent_decoding_names() {
        let cases = [
            ("plain", "plain"),
            ("a%20b", "a b"),
            ("a+b", "a b"),
            ("%4", "%4"),
            ("%C3%A9", "é"),
            ("%ff", "\u{fffd}"),
        ];
        for (input, want) in cases {
            assert_eq!(percent_decode(input), want, "{input}");
        }
    }
}
