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

use std::sync::{Mutex, OnceLock};

use regex_lite::{Regex, RegexBuilder};

use crate::config::DEFAULT_SECRET_PATTERNS;

/// What a secret value is replaced with.
pub const MASK: &str = "****";

/// Header fields whose values are always masked, whatever the patterns
/// (lower case).
pub const ALWAYS_SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// A set of secret-name patterns, compiled on first use: every traced
/// process builds one at start-up, and most never mask anything.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    sources: Vec<String>,
    compiled: OnceLock<Compiled>,
}

/// The patterns, compiled. The `.*word.*` ones (up to 64) are found
/// together in one pass over the name: `first[b]` has bit `i` set when
/// `words[i]` starts with byte `b`, so each byte of the name is one table
/// load and a word is compared only where its first byte is.
#[derive(Debug)]
struct Compiled {
    words: Vec<Box<[u8]>>,
    first: Box<[u64; 256]>,
    /// The other patterns (and words past the 64th).
    others: Vec<Matcher>,
    /// Verdicts on recent names (the same few header names come in every
    /// message).
    memo: Memo,
}

impl Clone for Compiled {
    fn clone(&self) -> Compiled {
        Compiled {
            words: self.words.clone(),
            first: self.first.clone(),
            others: self.others.clone(),
            memo: Memo::default(),
        }
    }
}

/// Longest name [`Memo`] keeps.
const MEMO_NAME: usize = 30;
/// Slots of a [`Memo`] (a power of two).
const MEMO_SLOTS: usize = 64;

/// A direct-mapped cache of names' verdicts: a name's hash picks its one
/// slot, and a new name there replaces the old one. Fixed size (no
/// allocation, whatever names a peer sends), constant time, and never
/// waited for: a name whose slot table is busy on another thread is
/// judged afresh.
#[derive(Debug)]
struct Memo(Mutex<[MemoSlot; MEMO_SLOTS]>);

/// A name's bytes, its length (0: empty slot), its verdict.
#[derive(Clone, Copy, Debug)]
struct MemoSlot {
    name: [u8; MEMO_NAME],
    len: u8,
    secret: bool,
}

impl Default for Memo {
    fn default() -> Memo {
        let empty = MemoSlot {
            name: [0; MEMO_NAME],
            len: 0,
            secret: false,
        };
        Memo(Mutex::new([empty; MEMO_SLOTS]))
    }
}

impl Memo {
    /// The slot of a name of 1 to [`MEMO_NAME`] bytes: from its length and
    /// its first and last eight bytes (the whole name when shorter).
    fn slot(name: &[u8]) -> usize {
        let word = |b: &[u8]| b.iter().fold(0u64, |w, &x| (w << 8) | u64::from(x));
        // Eight bytes read as one big-endian word: what `word` makes of them.
        let eight = |b: &[u8], at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(w)
        };
        let n = name.len();
        let (head, tail) = if n > 8 {
            (eight(name, 0), eight(name, n - 8))
        } else {
            (word(name), 0)
        };
        let h = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 58) as usize % MEMO_SLOTS
    }

    /// `name`'s verdict, from the cache or from `judge` (then kept).
    fn get_or(&self, name: &[u8], judge: impl FnOnce() -> bool) -> bool {
        if name.is_empty() || name.len() > MEMO_NAME {
            return judge();
        }
        let i = Self::slot(name);
        if let Ok(slots) = self.0.try_lock() {
            let s = &slots[i];
            if usize::from(s.len) == name.len() && &s.name[..name.len()] == name {
                return s.secret;
            }
        }
        let secret = judge();
        if let Ok(mut slots) = self.0.try_lock() {
            let s = &mut slots[i];
            s.name[..name.len()].copy_from_slice(name);
            s.len = name.len() as u8;
            s.secret = secret;
        }
        secret
    }
}

impl Compiled {
    fn new(patterns: Vec<Matcher>) -> Compiled {
        let mut words: Vec<Box<[u8]>> = Vec::new();
        let mut first = Box::new([0u64; 256]);
        let mut others = Vec::new();
        for m in patterns {
            match m {
                Matcher::Contains(f) if words.len() < 64 => {
                    let w: Box<[u8]> = f.needle().into();
                    if let Some(&b) = w.first() {
                        first[usize::from(b)] |= 1 << words.len();
                        words.push(w);
                    }
                }
                m => others.push(m),
            }
        }
        Compiled {
            words,
            first,
            others,
            memo: Memo::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.others.is_empty()
    }

    /// Whether one of the words occurs in `lower`.
    fn any_word_in(&self, lower: &[u8]) -> bool {
        if self.words.is_empty() {
            return false;
        }
        for (i, &b) in lower.iter().enumerate() {
            let mut bits = self.first[usize::from(b)];
            while bits != 0 {
                let w = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if lower[i..].starts_with(&self.words[w]) {
                    return true;
                }
            }
        }
        false
    }

    /// Whether a pattern matches `name` (not remembered).
    fn judge(&self, name: &str) -> bool {
        let mut buf = [0u8; 128];
        let owned;
        let lower: &[u8] = if name.len() <= buf.len() {
            let b = &mut buf[..name.len()];
            b.copy_from_slice(name.as_bytes());
            b.make_ascii_lowercase();
            b
        } else {
            owned = name.to_ascii_lowercase();
            owned.as_bytes()
        };
        self.any_word_in(lower) || self.others.iter().any(|m| m.matches(name, lower))
    }
}

/// One compiled pattern. The common shapes (Lumigo's defaults are all
/// `.*word.*` or a plain name) are matched without the regex engine,
/// which costs tens of thousands of instructions per name for `.*x.*`.
#[derive(Clone, Debug)]
enum Matcher {
    /// `.*word.*`: the lower-case word anywhere in the name (its searcher
    /// built once).
    Contains(Box<memchr::memmem::Finder<'static>>),
    /// A plain name: the whole name, ignoring case (lower-case here).
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    fn new(p: &str) -> Option<Matcher> {
        let plain = |w: &str| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if let Some(word) = p.strip_prefix(".*").and_then(|w| w.strip_suffix(".*")) {
            if plain(word) {
                let word = word.to_ascii_lowercase();
                return Some(Matcher::Contains(Box::new(
                    memchr::memmem::Finder::new(word.as_bytes()).into_owned(),
                )));
            }
        }
        if plain(p) {
            return Some(Matcher::Exact(p.to_ascii_lowercase()));
        }
        RegexBuilder::new(&format!("^(?:{p})$"))
            .case_insensitive(true)
            .build()
            .ok()
            .map(Matcher::Regex)
    }

    /// `lower`: `name` in lower case (ASCII).
    fn matches(&self, name: &str, lower: &[u8]) -> bool {
        match self {
            Matcher::Contains(w) => lower.len() >= w.needle().len() && w.find(lower).is_some(),
            Matcher::Exact(w) => lower == w.as_bytes(),
            Matcher::Regex(re) => re.is_match(name),
        }
    }
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

    fn patterns(&self) -> &Compiled {
        self.compiled.get_or_init(|| {
            Compiled::new(
                self.sources
                    .iter()
                    .filter_map(|p| Matcher::new(p))
                    .collect(),
            )
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

    /// Whether every name is secret (the setting was `all`, or a pattern
    /// is `.*`): text that has no names is masked whole.
    pub fn masks_everything(&self) -> bool {
        self.sources.iter().any(|p| p == ".*")
    }

    /// Whether the value of header field `name` is secret: one of
    /// [`ALWAYS_SECRET_HEADERS`] or a secret name.
    pub fn is_secret_header(&self, name: &str) -> bool {
        ALWAYS_SECRET_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
            || self.is_secret(name)
    }

    /// Whether a value named `name` is secret.
    pub fn is_secret(&self, name: &str) -> bool {
        let patterns = self.patterns();
        if patterns.is_empty() {
            return false;
        }
        patterns
            .memo
            .get_or(name.as_bytes(), || patterns.judge(name))
    }

    /// Masks the values of secret parameters in a query string
    /// (`a=1&password=x` → `a=1&password=****`). Names are percent-decoded
    /// (and `+` read as a space) before matching. Order, separators and
    /// every other byte are kept; parameters without `=` or with an empty
    /// value have nothing to hide and are kept too. Borrows when nothing
    /// changed.
    pub fn mask_query<'q>(&self, query: &'q str) -> Cow<'q, str> {
        // A body is often the text searched: the memchr crate's vector
        // search, not `str::contains`'s byte-wise one (214 instructions on
        // a 139-byte body, against about 50).
        if self.sources.is_empty() || memchr::memchr(b'=', query.as_bytes()).is_none() {
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

/// Command lines: the same secret names, in the places programs take them.
impl Masker {
    /// Masks secrets in a program's arguments (`argv`, one element each),
    /// with the rules of [`Masker::mask_argument`] and one more: the
    /// argument after a flag whose name is secret (`--password X`,
    /// `--api-key X`) becomes `****`. An argument holding a whole command
    /// (`sh -c '…'`) is split into shell words, quotes respected, and its
    /// words are masked the same way.
    pub fn mask_args<'a>(&self, args: &[&'a str]) -> Vec<Cow<'a, str>> {
        let mut out = Vec::with_capacity(args.len());
        let mut hide_next = false;
        for (i, &arg) in args.iter().enumerate() {
            if std::mem::take(&mut hide_next) && !arg.is_empty() {
                out.push(Cow::Owned(MASK.to_owned()));
                continue;
            }
            if let Some(name) = flag_name(arg) {
                hide_next = self.is_secret(name);
                out.push(Cow::Borrowed(arg));
                continue;
            }
            if i > 0 && arg.contains(char::is_whitespace) && !is_one_value(arg) {
                out.push(self.mask_words(arg));
            } else {
                out.push(self.mask_argument(arg));
            }
        }
        out
    }

    /// Masks secrets in one argument:
    /// - `name=value` and `--name=value` whose name is secret: `name=****`;
    /// - query values in URLs and in `a=1&password=x` chains, as
    ///   [`Masker::mask_query`], and the password of a URL's user info
    ///   (`https://user:****@host/`);
    /// - header-like `Name: value` whose name is secret: `Name: ****`.
    pub fn mask_argument<'a>(&self, arg: &'a str) -> Cow<'a, str> {
        if self.sources.is_empty() {
            return Cow::Borrowed(arg);
        }
        // A JSON document (`curl --data '{"password": …}'`).
        if arg.trim_start().starts_with(['{', '[']) {
            return crate::payload::mask_json(arg, self);
        }
        let body = arg.trim_start_matches('-');
        let dashes = &arg[..arg.len() - body.len()];
        if let Some((name, value)) = body.split_once('=') {
            if is_name(name) {
                if self.is_secret(name) {
                    return if value.is_empty() {
                        Cow::Borrowed(arg)
                    } else {
                        Cow::Owned(format!("{dashes}{name}={MASK}"))
                    };
                }
                let masked = if looks_like_url(value) || header(value).is_some() {
                    self.mask_value(value)
                } else {
                    // `a=1&password=x`, `data=user=a&token=b`.
                    return match self.mask_query(body) {
                        Cow::Borrowed(_) => Cow::Borrowed(arg),
                        Cow::Owned(q) => Cow::Owned(format!("{dashes}{q}")),
                    };
                };
                return match masked {
                    Cow::Borrowed(_) => Cow::Borrowed(arg),
                    Cow::Owned(v) => Cow::Owned(format!("{dashes}{name}={v}")),
                };
            }
        }
        self.mask_value(arg)
    }

    /// A URL, or a header-like `Name: value`.
    fn mask_value<'a>(&self, value: &'a str) -> Cow<'a, str> {
        if looks_like_url(value) {
            return self.mask_url(value);
        }
        match header(value) {
            Some((name, sep)) if self.is_secret_header(name) && value.len() > sep => {
                Cow::Owned(format!("{}{MASK}", &value[..sep]))
            }
            _ => Cow::Borrowed(value),
        }
    }

    /// The user-info password and the query values of a URL.
    fn mask_url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(url);
        if let Some(scheme_end) = url.find("://") {
            let start = scheme_end + 3;
            let authority_end = url[start..]
                .find(['/', '?', '#'])
                .map_or(url.len(), |i| start + i);
            if let Some(at) = url[start..authority_end].rfind('@') {
                if let Some(colon) = url[start..start + at].find(':') {
                    let (pw_start, pw_end) = (start + colon + 1, start + at);
                    if pw_end > pw_start {
                        out = Cow::Owned(format!("{}{MASK}{}", &url[..pw_start], &url[pw_end..]));
                    }
                }
            }
        }
        let Some(q) = out.find('?') else { return out };
        let end = out[q..].find('#').map_or(out.len(), |i| q + i);
        match self.mask_query(&out[q + 1..end]) {
            Cow::Borrowed(_) => out,
            Cow::Owned(query) => Cow::Owned(format!("{}{query}{}", &out[..=q], &out[end..])),
        }
    }

    /// The shell words of a command held in one argument, masked as
    /// arguments are; quotes stay where they were.
    fn mask_words<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let words = shell_words(line);
        let texts: Vec<&str> = words.iter().map(|&(s, e)| &line[s..e]).collect();
        let masked = self.mask_args(&texts);
        if masked.iter().all(|m| matches!(m, Cow::Borrowed(_))) {
            return Cow::Borrowed(line);
        }
        let mut out = String::with_capacity(line.len());
        let mut copied = 0;
        for (&(s, e), m) in words.iter().zip(&masked) {
            if let Cow::Owned(m) = m {
                out.push_str(&line[copied..s]);
                out.push_str(m);
                copied = e;
            }
        }
        out.push_str(&line[copied..]);
        Cow::Owned(out)
    }
}

/// The name of a flag that takes its value in the next argument: `--name`
/// or `-name` (no `=`).
fn flag_name(arg: &str) -> Option<&str> {
    let name = arg.strip_prefix('-')?;
    let name = name.strip_prefix('-').unwrap_or(name);
    is_name(name).then_some(name)
}

/// A parameter or flag name: letters, digits, `_`, `-`, `.`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// An argument that is one value even with blanks in it: a header-like
/// `Name: value`, bare or as `--flag=Name: value`.
fn is_one_value(arg: &str) -> bool {
    let body = arg.trim_start_matches('-');
    let value = match body.split_once('=') {
        Some((name, value)) if is_name(name) => value,
        _ => body,
    };
    header(value).is_some()
}

fn looks_like_url(s: &str) -> bool {
    s.contains("://") || s.contains('?')
}

/// A header-like `Name: value` (or `Name:value`): the name, and where the
/// value starts.
fn header(s: &str) -> Option<(&str, usize)> {
    let (name, rest) = s.split_once(':')?;
    if !is_name(name) {
        return None;
    }
    let blanks = rest.len() - rest.trim_start().len();
    Some((name, name.len() + 1 + blanks))
}

/// Byte ranges of the words of a shell command line: split on unquoted
/// blanks; a word wholly inside one pair of quotes is given without them.
fn shell_words(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) if b == q => quote = None,
                Some(b'"') if b == b'\\' => i += 1,
                Some(_) => {}
                None if b == b'\'' || b == b'"' => quote = Some(b),
                None if b == b'\\' => i += 1,
                None if b.is_ascii_whitespace() => break,
                None => {}
            }
            i += 1;
        }
        let end = i.min(bytes.len());
        let word = &bytes[start..end];
        let quoted = word.len() >= 2
            && matches!(word[0], b'\'' | b'"')
            && word[word.len() - 1] == word[0]
            && !word[1..word.len() - 1].contains(&word[0]);
        words.push(if quoted {
            (start + 1, end - 1)
        } else {
            (start, end)
        });
    }
    words
}

/// `application/x-www-form-urlencoded` decoding of a name: `%XX` escapes
/// and `+` for space; malformed escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> Cow<'_, str> {
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

    #[test]
    fn plain_patterns_match_as_their_regex_does() {
        let names = [
            "password",
            "PASSWORD",
            "x-api-key",
            "Keyboard",
            "monkey",
            "secret_sauce",
            "SessionToken",
            "sessiontoken",
            "x-sessiontoken",
            "Signature",
            "x-signature",
            "credential",
            "Credentials",
            "authorization",
            "",
            "k",
            "pass",
            "PaSs-phrase",
            "x-amz-security-token",
            "X-AMZ-SECURITY-TOKEN",
            "tok en",
            "tokenizer",
        ];
        for p in crate::config::DEFAULT_SECRET_PATTERNS {
            let fast = Matcher::new(p).unwrap();
            assert!(
                !matches!(fast, Matcher::Regex(_)),
                "{p} is matched without the engine"
            );
            let slow = RegexBuilder::new(&format!("^(?:{p})$"))
                .case_insensitive(true)
                .build()
                .unwrap();
            for n in names {
                let lower = n.to_ascii_lowercase();
                assert_eq!(
                    fast.matches(n, lower.as_bytes()),
                    slow.is_match(n),
                    "{p} on {n:?}"
                );
            }
        }
        assert!(matches!(Matcher::new("a|b").unwrap(), Matcher::Regex(_)));
        assert!(matches!(
            Matcher::new(".*a.b.*").unwrap(),
            Matcher::Regex(_)
        ));
    }

    #[test]
    fn words_found_in_one_pass_match_as_their_regexes_do() {
        // 70 `.*word.*` patterns (past the table's 64, the rest go the
        // slow way), words sharing first bytes and overlapping, plus a
        // regex and a plain name.
        let mut patterns: Vec<String> = (0..70).map(|i| format!(".*w{i}x.*")).collect();
        patterns.extend(
            ["pass", "passphrase", "key", "ke", "token", "aa"]
                .iter()
                .map(|w| format!(".*{w}.*")),
        );
        patterns.push("sig(nature)?".into());
        patterns.push("Authorization".into());
        let m = Masker::new(&patterns);
        let regexes: Vec<Regex> = patterns
            .iter()
            .map(|p| {
                RegexBuilder::new(&format!("^(?:{p})$"))
                    .case_insensitive(true)
                    .build()
                    .unwrap()
            })
            .collect();
        let names = [
            "w0x",
            "W69X",
            "aw65x-",
            "w64",
            "w6x",
            "w7",
            "pas",
            "PASS",
            "x-pass",
            "kk",
            "monKey",
            "k",
            "tok",
            "tokEN",
            "a",
            "aa",
            "baaa",
            "sig",
            "signature",
            "x-sig",
            "authorization",
            "authorization2",
            "",
            "\u{e9}key",
        ];
        for n in names {
            let expected = regexes.iter().any(|r| r.is_match(n));
            assert_eq!(m.is_secret(n), expected, "{n:?}");
        }
    }

    use super::*;

    fn masker(patterns: &[&str]) -> Masker {
        Masker::new(&patterns.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
    }

    /// Remembered verdicts are the verdicts: names asked again and again,
    /// names that share a slot (many more names than slots), names too
    /// long to remember, from several threads at once, with custom
    /// patterns whose verdict differs by name.
    #[test]
    fn remembered_verdicts_equal_fresh_ones() {
        let m = masker(&[".*token.*", "sig", "x-[0-9]+"]);
        let names: Vec<String> = (0..400)
            .map(|i| match i % 5 {
                0 => format!("h{i}"),
                1 => format!("my_token_{i}"),
                2 => format!("x-{i}"),
                3 => "Sig".to_owned(),
                _ => format!("{}{i}", "n".repeat(40)),
            })
            .collect();
        let fresh: Vec<bool> = names.iter().map(|n| m.patterns().judge(n)).collect();
        assert!(fresh.iter().any(|&s| s) && fresh.iter().any(|&s| !s));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..3 {
                        for (n, &want) in names.iter().zip(&fresh) {
                            assert_eq!(m.is_secret(n), want, "{n}");
                        }
                    }
                });
            }
        });
        // Same slot, different names: the later one is judged, not taken
        // from the earlier one's entry.
        let slot = Memo::slot(b"my_token");
        let other = (0..10_000)
            .map(|i| format!("plain{i}"))
            .find(|n| Memo::slot(n.as_bytes()) == slot)
            .expect("a name in the same slot");
        assert!(m.is_secret("my_token"));
        assert!(!m.is_secret(&other));
        assert!(m.is_secret("my_token"));
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

    fn mask_args(m: &Masker, args: &[&str]) -> Vec<String> {
        m.mask_args(args).into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn command_line_secrets_are_masked() {
        let m = Masker::lumigo_defaults();
        let cases: &[(&[&str], &[&str])] = &[
            (
                &[
                    "curl",
                    "-H",
                    "Authorization: Bearer X",
                    "http://h/?password=Y&api_key=Z&q=1",
                ],
                &[
                    "curl",
                    "-H",
                    "Authorization: ****",
                    "http://h/?password=****&api_key=****&q=1",
                ],
            ),
            (
                &["app", "--password", "X", "--user", "bob", "--api-key", "Y", "-v"],
                &["app", "--password", "****", "--user", "bob", "--api-key", "****", "-v"],
            ),
            (
                &["app", "--password=X", "token=Y", "-Dsecret.key=Z", "--name=x=1"],
                &["app", "--password=****", "token=****", "-Dsecret.key=****", "--name=x=1"],
            ),
            (
                &["curl", "-d", "user=a&password=b", "--data=q=1&token=t#x"],
                &["curl", "-d", "user=a&password=****", "--data=q=1&token=****"],
            ),
            (
                &["curl", "https://bob:hunter2@h:8/p?x=1#frag", "ftp://anon@h/"],
                &["curl", "https://bob:****@h:8/p?x=1#frag", "ftp://anon@h/"],
            ),
            (
                &["curl", "-H", "Cookie: sid=S", "-b", "x", "--data", r#"{"a":{"password":"P"},"b":1}"#],
                &["curl", "-H", "Cookie: ****", "-b", "x", "--data", r#"{"a":{"password":"****"},"b":1}"#],
            ),
            (
                &["x", "--url=http://h/?token=T", "--header=X-Api-Key: K", "x-token:T"],
                &["x", "--url=http://h/?token=****", "--header=X-Api-Key: ****", "x-token:****"],
            ),
            (
                &[
                    "sh",
                    "-c",
                    "curl -H 'Authorization: Bearer X' \"http://h/?password=Y&api_key=Z\" --token T",
                ],
                &[
                    "sh",
                    "-c",
                    "curl -H 'Authorization: ****' \"http://h/?password=****&api_key=****\" --token ****",
                ],
            ),
            // Nothing secret: unchanged, including look-alikes.
            (
                &["python3", "-m", "http.server", "8080", "--bind", "127.0.0.1"],
                &["python3", "-m", "http.server", "8080", "--bind", "127.0.0.1"],
            ),
            (
                &["curl", "-s", "http://h/a?b=1", "Host: x", "--password"],
                &["curl", "-s", "http://h/a?b=1", "Host: x", "--password"],
            ),
        ];
        for (args, want) in cases {
            assert_eq!(mask_args(&m, args), *want, "{args:?}");
        }
        // The configured patterns are the ones used.
        let custom = masker(&["sid"]);
        assert_eq!(
            mask_args(&custom, &["a", "--sid", "1", "--password", "2", "u?sid=3"]),
            ["a", "--sid", "****", "--password", "2", "u?sid=****"]
        );
        assert_eq!(
            mask_args(&Masker::default(), &["--password", "2"]),
            ["--password", "2"]
        );
    }

    #[test]
    fn shell_words_respect_quotes() {
        let line = r#"a 'b c' "d \" e" f\ g h'i j'"#;
        let words: Vec<&str> = shell_words(line)
            .iter()
            .map(|&(s, e)| &line[s..e])
            .collect();
        // (A quoted word with an escaped quote inside keeps its quotes.)
        assert_eq!(words, ["a", "b c", r#""d \" e""#, r"f\ g", "h'i j'"]);
        assert!(shell_words("  ").is_empty());
        assert_eq!(shell_words("'unterminated x"), [(0, 15)]);
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
