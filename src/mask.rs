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
    /// with the rules of [`Masker::mask_argument`] and more:
    /// - the argument after a flag whose name is secret (`--password X`,
    ///   `--api-key X`) becomes `****`;
    /// - a few well-known programs' own credential options, known by the
    ///   program's name (`argv[0]`'s file name): `redis-cli -a X`,
    ///   `curl -u user:X`, `curl -b name=X`, `curl -E cert:X`,
    ///   `mysql -pX`…; the SQL of `psql -c` and `mysql -e` has its literals
    ///   replaced with `?` and a `redis-cli` command its values (as the
    ///   database spans do);
    /// - a JSON document is masked as JSON (`curl -d '{"password": …}'`);
    /// - an argument holding a whole command (`sh -c '…'`) is split into
    ///   shell words, quotes respected, and each command in it is masked
    ///   the same way, in place;
    /// - an argument with blanks that reads `name=value…` is also masked as
    ///   a query, values running to the `&`.
    pub fn mask_args<'a>(&self, args: &[&'a str]) -> Vec<Cow<'a, str>> {
        if self.sources.is_empty() {
            return args.iter().map(|&a| Cow::Borrowed(a)).collect();
        }
        self.mask_command(args, 0)
    }

    /// [`Masker::mask_args`] on one command (`depth`: how many scripts it
    /// is inside).
    fn mask_command<'a>(&self, args: &[&'a str], depth: usize) -> Vec<Cow<'a, str>> {
        let mut out: Vec<Cow<'a, str>> = Vec::with_capacity(args.len());
        let at = program_index(args);
        let spec = args.get(at).map_or(&GENERIC, |p| Spec::of(p));
        let mut hide_next = false;
        let mut pending: Option<Rule> = None;
        let mut options_done = false;
        for (i, &arg) in args.iter().enumerate() {
            if i < at {
                // Environment assignments and wrappers (`env`, `exec`…).
                out.push(self.mask_assignment(arg));
                continue;
            }
            if i == at {
                out.push(self.mask_argument(arg));
                continue;
            }
            if let Some(rule) = pending.take() {
                out.push(self.apply(rule, arg, spec, depth));
                continue;
            }
            if std::mem::take(&mut hide_next) && !arg.is_empty() {
                out.push(Cow::Owned(MASK.to_owned()));
                continue;
            }
            if !options_done {
                if arg == "--" {
                    options_done = true;
                } else if spec.redis && !arg.starts_with('-') {
                    // The command, after redis-cli's options.
                    out.extend(redis_command(&args[i..]));
                    break;
                } else if let Some((shown, next)) = self.option(spec, arg, depth) {
                    out.push(shown);
                    pending = next;
                    continue;
                }
            }
            if let Some(name) = flag_name(arg) {
                hide_next = self.is_secret(name);
                out.push(Cow::Borrowed(arg));
                continue;
            }
            out.push(self.mask_value_arg(arg, spec, depth));
        }
        out
    }

    /// One argument that is a value (not an option), by the generic rules.
    fn mask_value_arg<'a>(&self, arg: &'a str, spec: &Spec, depth: usize) -> Cow<'a, str> {
        let blank = arg.contains(char::is_whitespace);
        if spec.shell && blank {
            // A script.
            return self.mask_words(arg, depth);
        }
        if is_json(arg) {
            // A JSON document (`curl --data '{"password": …}'`,
            // `--json={…}`), blanks or not; a command that happens to
            // start with `[` is masked as one too.
            let json = self.mask_argument(arg);
            if !blank {
                return json;
            }
            let words = match self.mask_words(&json, depth) {
                Cow::Owned(w) => Some(w),
                Cow::Borrowed(_) => None,
            };
            return words.map_or(json, Cow::Owned);
        }
        if !blank || is_one_value(arg) {
            return self.mask_argument(arg);
        }
        let words = self.mask_words(arg, depth);
        // `password=a b&c=d`: a query whose values have blanks.
        let body = arg.trim_start_matches('-');
        let looks_like_query = body.split_once('=').is_some_and(|(name, _)| is_name(name));
        if !looks_like_query {
            return words;
        }
        let query = match self.mask_query(&words) {
            Cow::Owned(q) => Some(q),
            Cow::Borrowed(_) => None,
        };
        query.map_or(words, Cow::Owned)
    }

    /// A word before the program: `NAME=value` (masked if the name is
    /// secret or one of [`SECRET_VARIABLES`]), or a wrapper.
    fn mask_assignment<'a>(&self, arg: &'a str) -> Cow<'a, str> {
        match arg.split_once('=') {
            Some((name, value))
                if !value.is_empty()
                    && SECRET_VARIABLES
                        .iter()
                        .any(|v| v.eq_ignore_ascii_case(name)) =>
            {
                Cow::Owned(format!("{name}={MASK}"))
            }
            _ => self.mask_argument(arg),
        }
    }

    /// `arg` as an option of `spec`'s program: what is shown, and the rule
    /// for the next argument if the option takes it. `None`: not an option
    /// the program is known to have.
    fn option<'a>(
        &self,
        spec: &Spec,
        arg: &'a str,
        depth: usize,
    ) -> Option<(Cow<'a, str>, Option<Rule>)> {
        if !arg.starts_with('-') || arg.len() < 2 {
            return None;
        }
        // Whole options (`--user`, redis-cli's `-a`), or `--name=value`.
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) if arg.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        if let Some(&(_, rule)) = spec.options.iter().find(|(o, _)| *o == name) {
            return Some(match (value, rule) {
                (_, Rule::NoValue) => (Cow::Borrowed(arg), None),
                (None, rule) => (Cow::Borrowed(arg), Some(rule)),
                (Some(v), rule) => match self.apply(rule, v, spec, depth) {
                    Cow::Borrowed(_) => (Cow::Borrowed(arg), None),
                    Cow::Owned(v) => (Cow::Owned(format!("{name}={v}")), None),
                },
            });
        }
        if arg.starts_with("--") || (spec.short.is_empty() && spec.attached_secret.is_empty()) {
            return None;
        }
        // A cluster of short options (`-sSu`, `-uroot`, `-pSECRET`): flags,
        // then perhaps one that takes a value, attached or next.
        for (j, &b) in arg.as_bytes().iter().enumerate().skip(1) {
            // (Option letters are ASCII: `j + 1` is a character boundary.)
            if spec.attached_secret.contains(&b) {
                let rest = &arg[j + 1..];
                // `mysql -pSECRET`; a bare `-p` asks for the password.
                if rest.is_empty() {
                    return Some((Cow::Borrowed(arg), None));
                }
                return Some((Cow::Owned(format!("{}{MASK}", &arg[..=j])), None));
            }
            if let Some(&(_, rule)) = spec.short.iter().find(|(c, _)| *c == b) {
                if rule == Rule::NoValue {
                    continue;
                }
                let rest = &arg[j + 1..];
                if rest.is_empty() {
                    return Some((Cow::Borrowed(arg), Some(rule)));
                }
                return Some(match self.apply(rule, rest, spec, depth) {
                    Cow::Borrowed(_) => (Cow::Borrowed(arg), None),
                    Cow::Owned(v) => (Cow::Owned(format!("{}{v}", &arg[..=j])), None),
                });
            }
            // Not a letter of this program: not read as options.
            return None;
        }
        Some((Cow::Borrowed(arg), None))
    }

    /// The value of an option, masked by `rule`.
    fn apply<'a>(&self, rule: Rule, value: &'a str, spec: &Spec, depth: usize) -> Cow<'a, str> {
        match rule {
            Rule::NoValue | Rule::Plain => self.mask_value_arg(value, spec, depth),
            Rule::Secret if value.is_empty() => Cow::Borrowed(value),
            Rule::Secret => Cow::Owned(MASK.to_owned()),
            Rule::AfterColon => match unescaped_colon(value) {
                Some(c) if c + 1 < value.len() => Cow::Owned(format!("{}{MASK}", &value[..=c])),
                _ => self.mask_value_arg(value, spec, depth),
            },
            Rule::Cookie => mask_cookies(value),
            Rule::UrlEncoded => match value.split_once('=') {
                // curl encodes the whole content, `&` and all.
                Some((name, content)) if !content.is_empty() && self.is_secret(name) => {
                    Cow::Owned(format!("{name}={MASK}"))
                }
                _ => self.mask_value_arg(value, spec, depth),
            },
            Rule::Sql(dialect) => {
                let clean = crate::sql::sanitize_with(value, dialect);
                // Only blanks told apart (the sanitizer makes each run one
                // space): nothing was taken out, the argument stays as
                // written.
                let unblanked =
                    |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
                if clean == value || unblanked(&clean) == unblanked(value) {
                    Cow::Borrowed(value)
                } else {
                    Cow::Owned(clean)
                }
            }
        }
    }

    /// Masks secrets in one argument:
    /// - `name=value` and `--name=value` whose name is secret: `name=****`;
    /// - query values in URLs and in `a=1&password=x` chains, as
    ///   [`Masker::mask_query`], and the password of a URL's user info
    ///   (`https://user:****@host/`);
    /// - header-like `Name: value` whose name is secret: `Name: ****`, and
    ///   any header's credentials after an authentication scheme
    ///   (`X-Custom: Bearer ****`).
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
                let masked = if value.trim_start().starts_with(['{', '[']) {
                    // `--data={"password": …}`.
                    crate::payload::mask_json(value, self)
                } else if looks_like_url(value) || header(value).is_some() {
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
            Some((_, sep)) => match auth_scheme_len(&value[sep..]) {
                // Credentials, whatever the header's name.
                Some(n) => Cow::Owned(format!("{}{MASK}", &value[..sep + n])),
                None => Cow::Borrowed(value),
            },
            None => Cow::Borrowed(value),
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

    /// The commands of a shell script held in one argument, each masked as
    /// [`Masker::mask_args`] masks a program's arguments (quotes and
    /// escapes read as the shell reads them); a masked word is written
    /// back quoted as it was, and the rest of the line stays as it was.
    /// Scripts nested deeper than [`MAX_SCRIPT_DEPTH`] are masked whole.
    fn mask_words<'a>(&self, line: &'a str, depth: usize) -> Cow<'a, str> {
        if depth >= MAX_SCRIPT_DEPTH {
            return Cow::Owned(MASK.to_owned());
        }
        let words = shell_tokens(line);
        let mut out = String::new();
        let mut copied = 0;
        let mut start = 0;
        while start < words.len() {
            let end = words[start + 1..]
                .iter()
                .position(|w| w.first)
                .map_or(words.len(), |n| start + 1 + n);
            let command = &words[start..end];
            let texts: Vec<&str> = command.iter().map(|w| w.value.as_str()).collect();
            let masked = self.mask_command(&texts, depth + 1);
            for (w, m) in command.iter().zip(&masked) {
                if let Cow::Owned(m) = m {
                    if *m != w.value {
                        out.push_str(&line[copied..w.start]);
                        out.push_str(&requote(&line[w.start..w.end], m));
                        copied = w.end;
                    }
                }
            }
            start = end;
        }
        if copied == 0 {
            return Cow::Borrowed(line);
        }
        out.push_str(&line[copied..]);
        Cow::Owned(out)
    }
}

/// Most scripts inside scripts (`sh -c "bash -c '…'"`) read word by word;
/// one nested deeper is masked whole (bounded work on any input).
const MAX_SCRIPT_DEPTH: usize = 4;

/// Environment variables that hold a password whatever the patterns
/// (`PGPASSWORD=x psql …` at the start of a script).
const SECRET_VARIABLES: [&str; 3] = ["PGPASSWORD", "MYSQL_PWD", "REDISCLI_AUTH"];

/// Words that run the command after them (with their own options), or
/// shell keywords before a command.
const WRAPPERS: &[&str] = &[
    "exec", "command", "builtin", "nohup", "time", "env", "sudo", "nice", "timeout", "stdbuf",
    "setsid", "ionice", "!", "{", "then", "do", "else", "elif", "if", "while", "until",
];

/// Options of wrappers that take the next word (`sudo -u postgres`,
/// `nice -n 10`, `env -u NAME`).
const WRAPPER_VALUED: &[&str] = &["-u", "-g", "-n", "-s", "-k", "-c", "-C", "-U", "-D"];

/// Where the program is among a command's words: after `NAME=value`
/// assignments and wrappers (and the wrappers' options and numbers).
fn program_index(args: &[&str]) -> usize {
    let mut wrapped = false;
    let mut skip = false;
    for (i, &a) in args.iter().enumerate() {
        if std::mem::take(&mut skip) {
            continue;
        }
        let assignment = a
            .split_once('=')
            .is_some_and(|(n, _)| !n.is_empty() && is_name(n) && !n.starts_with('-'));
        let wrapper_arg = wrapped
            && (a.starts_with('-') || (!a.is_empty() && a.bytes().all(|b| b.is_ascii_digit())));
        if assignment || wrapper_arg {
            skip = wrapper_arg && WRAPPER_VALUED.contains(&a);
            continue;
        }
        if WRAPPERS.contains(&a) {
            wrapped = true;
            continue;
        }
        return i;
    }
    0
}

/// How the value of a program's option is masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// The option takes no value.
    NoValue,
    /// A value masked by the generic rules.
    Plain,
    /// A password, token…: `****`.
    Secret,
    /// `user:password`, `certificate:passphrase`: masked after the first
    /// `:` (without one, by the generic rules).
    AfterColon,
    /// Cookies (`name=value; …` or a file): always masked.
    Cookie,
    /// curl's `--data-urlencode name=content`: the whole content is the
    /// value.
    UrlEncoded,
    /// SQL: literals become `?`, as in the database spans.
    Sql(crate::sql::Dialect),
}

/// What is known of a program's options.
struct Spec {
    /// Whole options (`--user`, redis-cli's `-a`).
    options: &'static [(&'static str, Rule)],
    /// Short options that may be clustered (`-sSu x`, `-ux`); a letter not
    /// listed ends the reading.
    short: &'static [(u8, Rule)],
    /// Short options whose value can only be attached (`mysql -pSECRET`).
    attached_secret: &'static [u8],
    /// A shell: an argument with blanks is a script.
    shell: bool,
    /// redis-cli: the arguments after the options are a command.
    redis: bool,
}

const GENERIC: Spec = Spec {
    options: &[],
    short: &[],
    attached_secret: &[],
    shell: false,
    redis: false,
};

const SHELL: Spec = Spec {
    shell: true,
    ..GENERIC
};

const CURL: Spec = Spec {
    options: &[
        ("--user", Rule::AfterColon),
        ("--proxy-user", Rule::AfterColon),
        ("--cert", Rule::AfterColon),
        ("--proxy-cert", Rule::AfterColon),
        ("--cookie", Rule::Cookie),
        ("--oauth2-bearer", Rule::Secret),
        ("--data-urlencode", Rule::UrlEncoded),
    ],
    short: &CURL_SHORT,
    attached_secret: &[],
    shell: false,
    redis: false,
};

const CURL_SHORT: [(u8, Rule); 64] = curl_short();

/// curl's short options: those that take a value, the rest are flags.
const fn curl_short() -> [(u8, Rule); 64] {
    let valued = b"AbcCdDeEFHKmoPQrTtuUwxXyYz";
    let flags = b"012346aBfgGhiIjJklLMnNOpqRsSvVZ#:";
    let mut out = [(0u8, Rule::NoValue); 64];
    let mut i = 0;
    while i < valued.len() {
        let rule = match valued[i] {
            b'u' | b'U' | b'E' => Rule::AfterColon,
            b'b' => Rule::Cookie,
            _ => Rule::Plain,
        };
        out[i] = (valued[i], rule);
        i += 1;
    }
    let mut j = 0;
    while j < flags.len() && i + j < out.len() {
        out[i + j] = (flags[j], Rule::NoValue);
        j += 1;
    }
    out
}

const MYSQL_OPTIONS: &[(&str, Rule)] = &[("--execute", Rule::Sql(crate::sql::Dialect::MySql))];
const MYSQL_SHORT: &[(u8, Rule)] = &[
    (b'e', Rule::Sql(crate::sql::Dialect::MySql)),
    (b'D', Rule::Plain),
    (b'h', Rule::Plain),
    (b'P', Rule::Plain),
    (b'u', Rule::Plain),
    (b'S', Rule::Plain),
    (b'A', Rule::NoValue),
    (b'B', Rule::NoValue),
    (b'C', Rule::NoValue),
    (b'E', Rule::NoValue),
    (b'f', Rule::NoValue),
    (b'G', Rule::NoValue),
    (b'H', Rule::NoValue),
    (b'i', Rule::NoValue),
    (b'n', Rule::NoValue),
    (b'N', Rule::NoValue),
    (b'q', Rule::NoValue),
    (b'r', Rule::NoValue),
    (b's', Rule::NoValue),
    (b't', Rule::NoValue),
    (b'v', Rule::NoValue),
    (b'V', Rule::NoValue),
    (b'w', Rule::NoValue),
    (b'X', Rule::NoValue),
];

const MYSQL: Spec = Spec {
    options: MYSQL_OPTIONS,
    short: MYSQL_SHORT,
    attached_secret: b"p",
    shell: false,
    redis: false,
};

/// mysqldump, mysqladmin…: the password options, no SQL.
const MYSQL_TOOL: Spec = Spec {
    options: &[],
    short: &[],
    ..MYSQL
};

const PSQL: Spec = Spec {
    options: &[
        ("--command", Rule::Sql(crate::sql::Dialect::Postgres)),
        ("--password", Rule::NoValue),
    ],
    short: &[
        (b'c', Rule::Sql(crate::sql::Dialect::Postgres)),
        (b'd', Rule::Plain),
        (b'f', Rule::Plain),
        (b'F', Rule::Plain),
        (b'h', Rule::Plain),
        (b'L', Rule::Plain),
        (b'o', Rule::Plain),
        (b'p', Rule::Plain),
        (b'P', Rule::Plain),
        (b'R', Rule::Plain),
        (b'T', Rule::Plain),
        (b'U', Rule::Plain),
        (b'v', Rule::Plain),
        (b'a', Rule::NoValue),
        (b'A', Rule::NoValue),
        (b'b', Rule::NoValue),
        (b'e', Rule::NoValue),
        (b'E', Rule::NoValue),
        (b'l', Rule::NoValue),
        (b'n', Rule::NoValue),
        (b'q', Rule::NoValue),
        (b's', Rule::NoValue),
        (b'S', Rule::NoValue),
        (b't', Rule::NoValue),
        (b'w', Rule::NoValue),
        (b'W', Rule::NoValue),
        (b'x', Rule::NoValue),
        (b'X', Rule::NoValue),
        (b'z', Rule::NoValue),
        (b'0', Rule::NoValue),
        (b'1', Rule::NoValue),
    ],
    attached_secret: &[],
    shell: false,
    redis: false,
};

/// redis-cli's options (it takes them whole, never clustered); one not
/// listed is taken as a flag.
const REDIS: Spec = Spec {
    options: &[
        ("-a", Rule::Secret),
        ("--pass", Rule::Secret),
        ("--askpass", Rule::NoValue),
        ("--key", Rule::Secret),
        ("-h", Rule::Plain),
        ("-p", Rule::Plain),
        ("-s", Rule::Plain),
        ("-u", Rule::Plain),
        ("-r", Rule::Plain),
        ("-i", Rule::Plain),
        ("-n", Rule::Plain),
        ("-d", Rule::Plain),
        ("-D", Rule::Plain),
        ("-X", Rule::Plain),
        ("-t", Rule::Plain),
        ("--user", Rule::Plain),
        ("--sni", Rule::Plain),
        ("--cacert", Rule::Plain),
        ("--cacertdir", Rule::Plain),
        ("--cert", Rule::Plain),
        ("--tls-ciphers", Rule::Plain),
        ("--tls-ciphersuites", Rule::Plain),
        ("--show-pushes", Rule::Plain),
        ("--lru-test", Rule::Plain),
        ("--pattern", Rule::Plain),
        ("--quoted-pattern", Rule::Plain),
        ("--count", Rule::Plain),
        ("--rdb", Rule::Plain),
        ("--functions-rdb", Rule::Plain),
        ("--pipe-timeout", Rule::Plain),
        ("--memkeys-samples", Rule::Plain),
        ("--intrinsic-latency", Rule::Plain),
        ("--eval", Rule::Plain),
        ("--cluster", Rule::Plain),
        ("--cluster-only-masters", Rule::NoValue),
    ],
    short: &[],
    attached_secret: &[],
    shell: false,
    redis: true,
};

impl Spec {
    /// The options of the program `argv0` names (its file name).
    fn of(argv0: &str) -> &'static Spec {
        let name = argv0.rsplit('/').next().unwrap_or(argv0);
        match name.trim_start_matches('-') {
            "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "mksh" | "busybox" => &SHELL,
            "curl" => &CURL,
            "mysql" | "mariadb" => &MYSQL,
            "mysqldump" | "mysqladmin" | "mysqlimport" | "mysqlcheck" | "mysqlshow"
            | "mysqlslap" | "mariadb-dump" | "mariadb-admin" | "mariadb-import"
            | "mariadb-check" | "mariadb-show" | "mariadb-slap" => &MYSQL_TOOL,
            "psql" => &PSQL,
            "redis-cli" | "valkey-cli" | "keydb-cli" => &REDIS,
            _ => &GENERIC,
        }
    }
}

/// A redis-cli command (`args[0]` its name), shown as the Redis spans show
/// it in `db.query.text`: its name and keys kept, every other argument
/// `?`. Read by the Redis spans' own parser.
fn redis_command<'a>(args: &[&'a str]) -> Vec<Cow<'a, str>> {
    use crate::protocol::CloseReason;
    let hidden = || Cow::Owned("?".to_owned());
    let mut resp = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        resp.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        resp.extend_from_slice(a.as_bytes());
        resp.extend_from_slice(b"\r\n");
    }
    let now = std::time::SystemTime::UNIX_EPOCH;
    let mut conn = crate::redis::RedisConnection::new();
    let mut done = Vec::new();
    let _ = conn.on_outbound(&resp, now, &mut done);
    conn.on_close(now, CloseReason::Closed, &mut done);
    let text = done.iter().find_map(|op| {
        op.attributes.iter().find_map(|(k, v)| match v {
            crate::span::AttrValue::Str(t) if *k == "db.query.text" => Some((&op.name, &**t)),
            _ => None,
        })
    });
    let mut out: Vec<Cow<'a, str>> = Vec::with_capacity(args.len());
    let Some((name, text)) = text.filter(|(name, text)| text.starts_with(name.as_str())) else {
        // Not read as a command with a text (PUBLISH): its name only.
        out.extend(args.iter().take(1).map(|&a| Cow::Borrowed(a)));
        out.extend(args.iter().skip(1).map(|_| hidden()));
        return out;
    };
    // The name (and subcommand) as typed, then each argument as the text
    // shows it: itself (a key) or `?`; from the first doubt on, `?`.
    let named = 1 + name.matches(' ').count();
    out.extend(args.iter().take(named).map(|&a| Cow::Borrowed(a)));
    let mut rest = &text[name.len()..];
    for &a in args.iter().skip(named) {
        if let Some(after) = rest.strip_prefix(" ?") {
            if after.is_empty() || after.starts_with(' ') {
                rest = after;
                out.push(if a == "?" { Cow::Borrowed(a) } else { hidden() });
                continue;
            }
        }
        let shown = rest
            .strip_prefix(' ')
            .filter(|r| !a.is_empty() && r.starts_with(a));
        match shown {
            Some(r) => {
                rest = &r[a.len()..];
                out.push(Cow::Borrowed(a));
            }
            None => {
                rest = "";
                out.push(hidden());
            }
        }
    }
    out
}

/// The length of an authentication scheme and its blank at the start of a
/// header's value (`Bearer `, `Basic `…), if credentials follow.
pub(crate) fn auth_scheme_len(value: &str) -> Option<usize> {
    const SCHEMES: [&str; 6] = ["bearer", "basic", "token", "digest", "negotiate", "ntlm"];
    let (scheme, rest) = value.split_once(' ')?;
    let blanks = rest.len() - rest.trim_start().len();
    (SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) && rest.len() > blanks)
        .then_some(scheme.len() + 1 + blanks)
}

/// The first `:` not escaped with a backslash.
fn unescaped_colon(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| b[i] == b':' && (i == 0 || b[i - 1] != b'\\'))
}

/// Cookies (`a=1; b=2`): every value masked (a part without `=` too);
/// text without any `=` is a cookie file's name, kept.
fn mask_cookies(value: &str) -> Cow<'_, str> {
    if !value.contains('=') {
        // curl reads a cookie file: its name is no secret.
        return Cow::Borrowed(value);
    }
    let parts: Vec<String> = value
        .split(';')
        .map(|p| match p.split_once('=') {
            Some((name, v)) if !v.is_empty() => format!("{name}={MASK}"),
            Some(_) => p.to_owned(),
            None if p.trim().is_empty() => p.to_owned(),
            None => MASK.to_owned(),
        })
        .collect();
    Cow::Owned(parts.join(";"))
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

/// A JSON document, bare or as `--name=…`.
fn is_json(arg: &str) -> bool {
    let json = |v: &str| v.trim_start().starts_with(['{', '[']);
    let body = arg.trim_start_matches('-');
    json(arg)
        || body
            .split_once('=')
            .is_some_and(|(n, v)| is_name(n) && json(v))
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

/// One word of a shell script: where it is, what the shell makes of it
/// (quotes and escapes removed), and whether a command starts with it.
#[derive(Debug)]
struct ShellWord {
    start: usize,
    end: usize,
    value: String,
    first: bool,
}

/// The words of a shell script: split on unquoted blanks and control
/// operators (`;`, `&`, `|`, `(`, `)`, a newline, a backquote), which also
/// start a new command. Quotes (`'…'`, `"…"`) and backslashes are read as
/// the shell reads them; an unterminated quote runs to the end. Linear.
fn shell_tokens(line: &str) -> Vec<ShellWord> {
    let bytes = line.as_bytes();
    let is_operator = |b: u8| matches!(b, b';' | b'&' | b'|' | b'(' | b')' | b'`');
    let mut words = Vec::new();
    let mut first = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' || is_operator(b) {
            first = true;
            i += 1;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut value = String::new();
        // Start of the text not yet copied into `value`.
        let mut plain = i;
        while i < bytes.len() {
            let b = bytes[i];
            // `2>&1`: not a separator.
            let redirect = b == b'&' && i > start && matches!(bytes[i - 1], b'>' | b'<');
            if b.is_ascii_whitespace() || (is_operator(b) && !redirect) {
                break;
            }
            match b {
                b'\\' => {
                    value.push_str(&line[plain..i]);
                    i += 1;
                    if let Some(c) = line[i..].chars().next() {
                        if c != '\n' {
                            value.push(c);
                        }
                        i += c.len_utf8();
                    }
                    plain = i;
                }
                b'\'' => {
                    value.push_str(&line[plain..i]);
                    let close = line[i + 1..].find('\'').map_or(line.len(), |n| i + 1 + n);
                    value.push_str(&line[i + 1..close]);
                    i = (close + 1).min(line.len());
                    plain = i;
                }
                b'"' => {
                    value.push_str(&line[plain..i]);
                    i += 1;
                    let mut from = i;
                    while i < bytes.len() && bytes[i] != b'"' {
                        if bytes[i] == b'\\' {
                            if let Some(&next) = bytes.get(i + 1) {
                                if matches!(next, b'$' | b'`' | b'"' | b'\\' | b'\n') {
                                    value.push_str(&line[from..i]);
                                    if next != b'\n' {
                                        value.push(char::from(next));
                                    }
                                    i += 2;
                                    from = i;
                                    continue;
                                }
                            }
                        }
                        i += 1;
                    }
                    value.push_str(&line[from..i.min(line.len())]);
                    i = (i + 1).min(line.len());
                    plain = i;
                }
                _ => i += 1,
            }
        }
        value.push_str(&line[plain..i]);
        words.push(ShellWord {
            start,
            end: i,
            value,
            first: std::mem::take(&mut first),
        });
    }
    words
}

/// `value` written as a shell word, quoted as `raw`, the word it replaces,
/// was (`'…'`, `"…"`), or bare if it needs no quotes.
fn requote(raw: &str, value: &str) -> String {
    let bare = |b: u8| b.is_ascii_alphanumeric() || b"-_./:=@,+%*?^~".contains(&b);
    match raw.as_bytes().first() {
        Some(b'"') => {
            let mut out = String::with_capacity(value.len() + 2);
            out.push('"');
            for c in value.chars() {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        }
        Some(b'\'') => format!("'{}'", value.replace('\'', r"'\''")),
        _ if !value.is_empty() && value.bytes().all(bare) => value.to_owned(),
        _ => format!("'{}'", value.replace('\'', r"'\''")),
    }
}

/// Byte ranges of the words of a shell command line: split on unquoted
/// blanks; a word wholly inside one pair of quotes is given without them.
#[cfg(test)]
fn shell_words(line: &str) -> Vec<(usize, usize)> {
    shell_tokens(line)
        .iter()
        .map(|w| {
            let word = &line.as_bytes()[w.start..w.end];
            let quoted = word.len() >= 2
                && matches!(word[0], b'\'' | b'"')
                && word[word.len() - 1] == word[0]
                && !word[1..word.len() - 1].contains(&word[0]);
            if quoted {
                (w.start + 1, w.end - 1)
            } else {
                (w.start, w.end)
            }
        })
        .collect()
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

    /// Masks `args` with the defaults and checks that none of `secrets`
    /// is left, and that the result is `want`.
    fn check(args: &[&str], want: &[&str], secrets: &[&str]) {
        let got = mask_args(&Masker::lumigo_defaults(), args);
        let line = got.join(" ");
        for s in secrets {
            assert!(!line.contains(s), "{s} left in {line:?}");
        }
        assert_eq!(got, want, "{args:?}");
    }

    #[test]
    fn redis_cli_password_flags_are_masked() {
        check(
            &[
                "redis-cli",
                "-a",
                "redispw6666",
                "--no-auth-warning",
                "PING",
            ],
            &["redis-cli", "-a", "****", "--no-auth-warning", "PING"],
            &["redispw6666"],
        );
        check(
            &[
                "/usr/bin/valkey-cli",
                "-h",
                "db",
                "--pass",
                "p1",
                "--askpass",
                "GET",
                "k",
            ],
            &[
                "/usr/bin/valkey-cli",
                "-h",
                "db",
                "--pass",
                "****",
                "--askpass",
                "GET",
                "k",
            ],
            &["p1"],
        );
        // `-a` is nothing for other programs.
        check(&["ls", "-a", "dir"], &["ls", "-a", "dir"], &[]);
    }

    #[test]
    fn curl_user_cert_and_proxy_user_are_masked_after_the_colon() {
        check(
            &[
                "curl",
                "-u",
                "eve:curlpw1212",
                "--user",
                "bob:pw2",
                "http://h/",
            ],
            &["curl", "-u", "eve:****", "--user", "bob:****", "http://h/"],
            &["curlpw1212", "pw2"],
        );
        check(
            &[
                "curl",
                "-sSueve:attpw1",
                "-E",
                "c.pem:certpw1",
                "--cert",
                "x.p12:certpw2",
            ],
            &[
                "curl",
                "-sSueve:****",
                "-E",
                "c.pem:****",
                "--cert",
                "x.p12:****",
            ],
            &["attpw1", "certpw1", "certpw2"],
        );
        check(
            &[
                "curl",
                "--proxy-user",
                "p:proxpw1",
                "-U",
                "q:proxpw2",
                "-x",
                "http://px/",
            ],
            &[
                "curl",
                "--proxy-user",
                "p:****",
                "-U",
                "q:****",
                "-x",
                "http://px/",
            ],
            &["proxpw1", "proxpw2"],
        );
        // A user without a password, `-p` (proxytunnel, no value), a URL
        // without secrets: unchanged.
        check(
            &[
                "curl",
                "-u",
                "eve",
                "-p",
                "-x",
                "http://px:3128",
                "http://h/a?b=1",
            ],
            &[
                "curl",
                "-u",
                "eve",
                "-p",
                "-x",
                "http://px:3128",
                "http://h/a?b=1",
            ],
            &[],
        );
        check(
            &["curl", "--oauth2-bearer", "oauthtok1", "http://h/"],
            &["curl", "--oauth2-bearer", "****", "http://h/"],
            &["oauthtok1"],
        );
    }

    #[test]
    fn mysql_attached_password_and_psql_port() {
        check(
            &["mysql", "-uroot", "-pmysqlpw4242", "-h", "db", "shop"],
            &["mysql", "-uroot", "-p****", "-h", "db", "shop"],
            &["mysqlpw4242"],
        );
        check(
            &["mariadb", "--password=mariapw1", "-p", "shop"],
            &["mariadb", "--password=****", "-p", "shop"],
            &["mariapw1"],
        );
        check(
            &["mysqldump", "-pdumppw1", "shop"],
            &["mysqldump", "-p****", "shop"],
            &["dumppw1"],
        );
        // `-p` is a port or a flag elsewhere.
        check(
            &["psql", "-h", "db", "-p", "5432", "-U", "app"],
            &["psql", "-h", "db", "-p", "5432", "-U", "app"],
            &[],
        );
        check(
            &["curl", "-p", "http://h/"],
            &["curl", "-p", "http://h/"],
            &[],
        );
        check(&["app", "-pvalue"], &["app", "-pvalue"], &[]);
    }

    #[test]
    fn json_documents_with_blanks_are_masked_as_json() {
        check(
            &[
                "curl",
                "-d",
                r#"{"password" : "spacedpw3333"}"#,
                "http://h/",
            ],
            &["curl", "-d", r#"{"password" : "****"}"#, "http://h/"],
            &["spacedpw3333"],
        );
        check(
            &[
                "curl",
                "--data",
                r#"{"user": "a", "password": "jsonsp5757"}"#,
            ],
            &["curl", "--data", r#"{"user": "a", "password": "****"}"#],
            &["jsonsp5757"],
        );
        check(
            &[
                "app",
                r#"[{"token": "arrtok1"}]"#,
                r#"--json={"api_key": "k 1"}"#,
            ],
            &[
                "app",
                r#"[{"token": "****"}]"#,
                r#"--json={"api_key": "****"}"#,
            ],
            &["arrtok1", "k 1"],
        );
    }

    #[test]
    fn query_values_with_blanks_are_masked_whole() {
        check(
            &[
                "curl",
                "--data-urlencode",
                "password=enc pw&4444",
                "http://h/",
            ],
            &["curl", "--data-urlencode", "password=****", "http://h/"],
            &["enc pw", "4444"],
        );
        check(
            &["app", "a=1&password=two words&b=2"],
            &["app", "a=1&password=****&b=2"],
            &["two", "words"],
        );
        check(
            &["curl", "--data-urlencode", "q=plain text"],
            &["curl", "--data-urlencode", "q=plain text"],
            &[],
        );
    }

    #[test]
    fn shell_scripts_are_masked_word_by_word_in_place() {
        check(
            &["sh", "-c", "curl -u eve:shpw1111 http://h/; true"],
            &["sh", "-c", "curl -u eve:**** http://h/; true"],
            &["shpw1111"],
        );
        check(
            &["bash", "-c", "curl --user eve:bashpw5555 http://h/ && true"],
            &["bash", "-c", "curl --user eve:**** http://h/ && true"],
            &["bashpw5555"],
        );
        check(
            &[
                "sh",
                "-c",
                r#"curl -d "{\"password\":\"shjson7777\"}" http://h/; true"#,
            ],
            &[
                "sh",
                "-c",
                r#"curl -d "{\"password\":\"****\"}" http://h/; true"#,
            ],
            &["shjson7777"],
        );
        // Each command of the script by its own program; assignments and
        // wrappers before it.
        check(
            &[
                "sh",
                "-c",
                "cd /tmp && PGPASSWORD=pgpw8181 exec psql -p 5432 -c \"select 'sqlpw1'\" | redis-cli -a 'rpw 2' SET k v",
            ],
            &[
                "sh",
                "-c",
                "cd /tmp && PGPASSWORD=**** exec psql -p 5432 -c \"select ?\" | redis-cli -a '****' SET k ?",
            ],
            &["pgpw8181", "sqlpw1", "rpw 2"],
        );
        // A script inside a script.
        check(
            &["sh", "-c", "bash -c 'curl -u a:nestpw1 h'"],
            &["sh", "-c", "bash -c 'curl -u a:**** h'"],
            &["nestpw1"],
        );
        // Custom patterns: the programs' own credentials still go.
        let custom = masker(&["sid"]);
        assert_eq!(
            mask_args(
                &custom,
                &["sh", "-c", "MYSQL_PWD=x1 mysql -pq2 -e 'select 1'"]
            ),
            ["sh", "-c", "MYSQL_PWD=**** mysql -p**** -e 'select ?'"]
        );
    }

    #[test]
    fn cookies_are_always_masked() {
        check(
            &[
                "curl",
                "-b",
                "session=cookieval8765",
                "--cookie",
                "a=1; b=cookie2",
                "-b",
                "jar.txt",
            ],
            &[
                "curl",
                "-b",
                "session=****",
                "--cookie",
                "a=****; b=****",
                "-b",
                "jar.txt",
            ],
            &["cookieval8765", "cookie2"],
        );
    }

    #[test]
    fn credentials_after_an_auth_scheme_are_masked_in_any_header() {
        check(
            &[
                "curl",
                "-H",
                "X-Custom: Bearer bearer5454",
                "-H",
                "X-B: basic YmFzaWM1",
                "-H",
                "X-T:Token tok 7",
            ],
            &[
                "curl",
                "-H",
                "X-Custom: Bearer ****",
                "-H",
                "X-B: basic ****",
                "-H",
                "X-T:Token ****",
            ],
            &["bearer5454", "YmFzaWM1", "tok 7"],
        );
        check(
            &["curl", "-H", "Accept: text/plain", "-H", "X-Note: Bearer"],
            &["curl", "-H", "Accept: text/plain", "-H", "X-Note: Bearer"],
            &[],
        );
    }

    #[test]
    fn sql_and_redis_commands_are_sanitized_as_the_database_spans_do() {
        // Found by the masking fuzz target: SQL with nothing to take out
        // stays as written, blanks and all.
        check(
            &[
                "mysql",
                "-se",
                "select\tx \u{b} from t",
                "-e",
                "x -- note 5",
            ],
            &["mysql", "-se", "select\tx \u{b} from t", "-e", "x"],
            &["note"],
        );
        check(
            &[
                "psql",
                "-h",
                "db",
                "-c",
                "create role tmprole password 'rolepw2222'",
            ],
            &["psql", "-h", "db", "-c", "create role tmprole password ?"],
            &["rolepw2222"],
        );
        check(
            &[
                "psql",
                "--command=alter user u password 'p2'",
                "-qc",
                "select 42",
            ],
            &[
                "psql",
                "--command=alter user u password ?",
                "-qc",
                "select ?",
            ],
            &["'p2'", "42"],
        );
        check(
            &[
                "mysql",
                "-e",
                "SET PASSWORD = \"mypw3\"",
                "--execute",
                "select 'x'",
                "-eselect 7",
            ],
            &[
                "mysql",
                "-e",
                "SET PASSWORD = ?",
                "--execute",
                "select ?",
                "-eselect ?",
            ],
            &["mypw3", "'x'", "7"],
        );
        check(
            &["redis-cli", "HSET", "hk", "password", "hsetpw1010"],
            &["redis-cli", "HSET", "hk", "?", "?"],
            &["hsetpw1010"],
        );
        check(
            &[
                "redis-cli",
                "-h",
                "db",
                "-n",
                "2",
                "CONFIG",
                "SET",
                "masterauth",
                "cfgpw0909",
            ],
            &[
                "redis-cli",
                "-h",
                "db",
                "-n",
                "2",
                "CONFIG",
                "SET",
                "?",
                "?",
            ],
            &["cfgpw0909"],
        );
        check(
            &["redis-cli", "auth", "user", "authpw1"],
            &["redis-cli", "auth", "?", "?"],
            &["authpw1"],
        );
        check(
            &["redis-cli", "get", "my key", "?"],
            &["redis-cli", "get", "my key", "?"],
            &[],
        );
        check(
            &["redis-cli", "PUBLISH", "ch", "pubmsg1"],
            &["redis-cli", "PUBLISH", "?", "?"],
            &["pubmsg1"],
        );
        check(&["redis-cli"], &["redis-cli"], &[]);
    }

    /// Arbitrary text never panics, and the work stays bounded: quotes
    /// left open, escapes at the end, scripts nested deep, huge arguments.
    #[test]
    fn odd_command_lines_never_panic() {
        let m = Masker::lumigo_defaults();
        // Scripts in scripts, quoted as a shell needs: past the depth
        // read, masked whole.
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut nested = "curl -u a:deep1 h".to_owned();
        for depth in 0..8 {
            let line = mask_args(&m, &["sh", "-c", &nested]).join(" ");
            assert!(!line.contains("deep1"), "{depth}: {line}");
            nested = format!("sh -c {}", quote(&nested));
        }
        let naive = format!("{}curl{}", "sh -c '".repeat(60), "'".repeat(60));
        let _ = mask_args(&m, &["sh", "-c", &naive]);
        let big = "x\"'\\ ;&|(){[é".repeat(2000);
        let programs = ["sh", "curl", "mysql", "psql", "redis-cli", "app", "env"];
        let odd = [
            "\"unclosed password=x",
            "'",
            "\\",
            "-",
            "--",
            "-é",
            "-pé",
            "-uéé:x",
            "=",
            "a\\",
            "2>&1",
            "`",
            "$(curl -u a:b x",
            big.as_str(),
        ];
        for p in programs {
            for a in odd {
                for b in odd {
                    let _ = mask_args(&m, &[p, a, b]);
                    let _ = mask_args(&m, &[p, "-c", &format!("{a} {b}")]);
                    let _ = mask_args(&m, &["sh", "-c", &format!("{p} {a} {b}")]);
                }
            }
        }
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
