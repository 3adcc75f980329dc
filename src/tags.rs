//! Execution tags without code: `LUMIGO_EXECUTION_TAG_HEADERS`.
//!
//! The value of each named header of an inbound request becomes the
//! attribute `lumigo.execution_tags.<name>` on its SERVER span and on every
//! span made while serving it (children of that SERVER span). Lumigo's
//! limits hold: at most 50 names, each at most 50 characters and without
//! `.`, values cut to 70 characters.
//!
//! The names are installed once per process ([`install`]) so the request
//! parser, which knows no configuration, keeps those headers too; the
//! attribute keys are made once and live for the process.

use std::sync::OnceLock;

/// Most tag headers.
pub const MAX_TAGS: usize = 50;
/// Longest tag name.
pub const MAX_KEY: usize = 50;
/// Longest tag value kept, in characters.
pub const MAX_VALUE: usize = 70;
/// What a tag's attribute key starts with.
pub const KEY_PREFIX: &str = "lumigo.execution_tags.";

struct Installed {
    /// Lower-case header names.
    names: Vec<&'static [u8]>,
    /// `lumigo.execution_tags.<name>`, by the same index.
    keys: Vec<&'static str>,
    /// The request parser's header names, then these.
    wanted: &'static [&'static [u8]],
    /// Their first bytes (`crate::http::initials`).
    initials: u64,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The names of `LUMIGO_EXECUTION_TAG_HEADERS` (a JSON array of header
/// names), lower case; invalid ones are warned about and left out.
pub fn parse_names(raw: Option<&str>, warnings: &mut Vec<String>) -> Vec<String> {
    const NAME: &str = "LUMIGO_EXECUTION_TAG_HEADERS";
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Vec::new();
    };
    let Ok(list) = serde_json::from_str::<Vec<String>>(raw) else {
        warnings.push(format!(
            "{NAME}={raw:?} is not a JSON array of strings; ignored"
        ));
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for n in list {
        let token = !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-^_`|~".contains(&b));
        if !token || n.len() > MAX_KEY {
            warnings.push(format!(
                "{NAME}: ignoring {n:?} (a header name of at most {MAX_KEY} characters, without '.')"
            ));
            continue;
        }
        let n = n.to_ascii_lowercase();
        if names.contains(&n) {
            continue;
        }
        if names.len() == MAX_TAGS {
            warnings.push(format!(
                "{NAME}: more than {MAX_TAGS} names; ignoring {n:?}"
            ));
            continue;
        }
        names.push(n);
    }
    names
}

/// Makes `names` the process's tag headers (the first call wins; a forked
/// child has the same configuration).
pub fn install(names: &[String]) {
    let parser_wanted = crate::http::REQUEST_HEADERS;
    if names.is_empty() || INSTALLED.get().is_some() {
        return;
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let names: Vec<&'static [u8]> = names
        .iter()
        .map(|n| leak(n.to_ascii_lowercase()).as_bytes())
        .collect();
    let keys = names
        .iter()
        .map(|n| leak(format!("{KEY_PREFIX}{}", String::from_utf8_lossy(n))))
        .collect();
    let mut wanted: Vec<&'static [u8]> = parser_wanted.to_vec();
    wanted.extend(names.iter().copied());
    let _ = INSTALLED.set(Installed {
        names,
        keys,
        initials: crate::http::initials(&wanted),
        wanted: Box::leak(wanted.into_boxed_slice()),
    });
}

/// The request parser's header names with the tag headers, if installed.
pub fn wanted(parser_wanted: &'static [&'static [u8]]) -> &'static [&'static [u8]] {
    INSTALLED.get().map_or(parser_wanted, |i| i.wanted)
}

/// The first bytes of [`wanted`]'s names: `parser_initials`, those of
/// the request parser's, with the tag headers' if installed.
pub fn wanted_initials(parser_initials: u64) -> u64 {
    INSTALLED.get().map_or(parser_initials, |i| i.initials)
}

/// The index of tag header `name` (any case), if it is one.
pub fn index(name: &[u8]) -> Option<u8> {
    let i = INSTALLED.get()?;
    i.names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .and_then(|p| u8::try_from(p).ok())
}

/// The attribute key of tag `index`.
pub fn key(index: u8) -> Option<&'static str> {
    INSTALLED.get()?.keys.get(usize::from(index)).copied()
}

/// A tag value: trimmed, at most [`MAX_VALUE`] characters.
pub fn value(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw.trim_ascii());
    match s.char_indices().nth(MAX_VALUE) {
        Some((cut, _)) => s[..cut].to_owned(),
        None => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_lumigos_limits() {
        let mut w = Vec::new();
        let long = "a".repeat(51);
        let raw = format!(r#"["X-Tenant", "x-tenant", "a.b", "", "{long}", "ok"]"#);
        assert_eq!(parse_names(Some(&raw), &mut w), vec!["x-tenant", "ok"]);
        assert_eq!(w.len(), 3, "{w:?}");
        let many: Vec<String> = (0..60).map(|i| format!("\"h{i}\"")).collect();
        let mut w = Vec::new();
        let names = parse_names(Some(&format!("[{}]", many.join(","))), &mut w);
        assert_eq!(names.len(), MAX_TAGS);
        assert_eq!(w.len(), 10);
        assert!(parse_names(Some("x-tenant"), &mut w).is_empty());
        assert!(parse_names(None, &mut w).is_empty());
    }

    #[test]
    fn values_are_cut_to_70_characters() {
        assert_eq!(value(b" acme "), "acme");
        let long = "é".repeat(80);
        assert_eq!(value(long.as_bytes()).chars().count(), MAX_VALUE);
    }

    #[test]
    fn installed_names_are_found_by_any_case() {
        install(&["x-tenant".to_owned(), "x-user".to_owned()]);
        assert_eq!(index(b"X-User"), Some(1));
        assert_eq!(index(b"host"), None);
        assert_eq!(key(0), Some("lumigo.execution_tags.x-tenant"));
        let all = wanted(crate::http::REQUEST_HEADERS);
        assert_eq!(&all[all.len() - 2..], &[&b"x-tenant"[..], b"x-user"]);
        assert!(all.contains(&&b"content-length"[..]));
    }
}
