//! The SQL lexer behind [`sanitize`](super::sanitize) and
//! [`summarize`](super::summarize): just enough to know where literals,
//! quoted identifiers, comments and words begin and end.

use super::Dialect;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Space,
    Comment,
    /// A keyword or an unquoted identifier.
    Word,
    /// A quoted identifier, quotes included.
    Ident,
    /// A string literal of any form, prefix and quotes included.
    Str,
    Num,
    /// A placeholder: `$1`, `?`, `:name`, `@var`.
    Param,
    /// Any other byte (or a multi-byte operator's first byte).
    Punct(u8),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Token<'a> {
    pub(super) kind: Kind,
    pub(super) text: &'a str,
}

impl Token<'_> {
    pub(super) fn is_word(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword)
    }
}

/// Splits SQL text into tokens. Every byte belongs to exactly one token, so
/// concatenating the tokens gives the input back; token boundaries fall on
/// ASCII bytes, hence on character boundaries.
#[derive(Clone, Debug)]
pub(super) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    dialect: Dialect,
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str, dialect: Dialect) -> Self {
        Lexer {
            text,
            pos: 0,
            dialect,
        }
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    /// The next token that is neither whitespace nor a comment.
    pub(super) fn next_significant(&mut self) -> Option<Token<'a>> {
        loop {
            let t = self.next_token()?;
            if !matches!(t.kind, Kind::Space | Kind::Comment) {
                return Some(t);
            }
        }
    }

    pub(super) fn next_token(&mut self) -> Option<Token<'a>> {
        let start = self.pos;
        let b = self.byte(start)?;
        let next = self.byte(start + 1);
        let mysql = self.dialect == Dialect::MySql;
        let (kind, end) = match b {
            _ if b.is_ascii_whitespace() => {
                (Kind::Space, self.run(start, |b| b.is_ascii_whitespace()))
            }
            b'-' if next == Some(b'-')
                && (!mysql
                    || self
                        .byte(start + 2)
                        .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control())) =>
            {
                (Kind::Comment, self.line_end(start))
            }
            b'#' if mysql => (Kind::Comment, self.line_end(start)),
            b'/' if next == Some(b'*') => (Kind::Comment, self.block_comment_end(start)),
            b'\'' => (Kind::Str, self.quoted_end(start, b'\'', mysql)),
            b'"' if mysql => (Kind::Str, self.quoted_end(start, b'"', true)),
            b'"' => (Kind::Ident, self.quoted_end(start, b'"', false)),
            // MySQL's identifier quote; PostgreSQL has no use for it.
            b'`' => (Kind::Ident, self.quoted_end(start, b'`', false)),
            b'$' => self.dollar(start),
            b'0'..=b'9' => (Kind::Num, self.number_end(start)),
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) => (Kind::Num, self.number_end(start)),
            b'?' => (Kind::Param, start + 1),
            b':' if next.is_some_and(is_word_start)
                && start.checked_sub(1).and_then(|p| self.byte(p)) != Some(b':') =>
            {
                (Kind::Param, self.run(start + 1, is_word_byte))
            }
            b'@' if mysql && next.is_some_and(|c| is_word_start(c) || c == b'@') => (
                Kind::Param,
                self.run(start + 1, |c| is_word_byte(c) || c == b'@' || c == b'.'),
            ),
            _ if is_word_start(b) => self.word(start),
            _ => (Kind::Punct(b), start + 1),
        };
        let end = end.clamp(start + 1, self.text.len());
        self.pos = end;
        Some(Token {
            kind,
            text: self.text.get(start..end).unwrap_or_default(),
        })
    }

    /// End of the run of bytes matching `f` from `from`.
    fn run(&self, from: usize, f: impl Fn(u8) -> bool) -> usize {
        let bytes = self.text.as_bytes();
        let mut i = from;
        while bytes.get(i).is_some_and(|&b| f(b)) {
            i += 1;
        }
        i
    }

    fn line_end(&self, from: usize) -> usize {
        self.run(from, |b| b != b'\n')
    }

    fn block_comment_end(&self, start: usize) -> usize {
        let bytes = self.text.as_bytes();
        let nests = self.dialect == Dialect::Postgres;
        let mut depth = 0usize;
        let mut i = start;
        while i < bytes.len() {
            match (bytes.get(i), bytes.get(i + 1)) {
                (Some(b'/'), Some(b'*')) if nests || depth == 0 => {
                    depth += 1;
                    i += 2;
                }
                (Some(b'*'), Some(b'/')) => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => i += 1,
            }
        }
        bytes.len()
    }

    /// End of a literal or identifier quoted by `q` opening at `start`;
    /// `q` doubled is a quote; with `backslash`, `\` escapes the next byte.
    fn quoted_end(&self, start: usize, q: u8, backslash: bool) -> usize {
        let bytes = self.text.as_bytes();
        let mut i = start + 1;
        while let Some(&b) = bytes.get(i) {
            if backslash && b == b'\\' {
                i += 2;
            } else if b == q {
                if bytes.get(i + 1) == Some(&q) {
                    i += 2;
                } else {
                    return i + 1;
                }
            } else {
                i += 1;
            }
        }
        bytes.len()
    }

    fn number_end(&self, start: usize) -> usize {
        let bytes = self.text.as_bytes();
        if bytes.get(start) == Some(&b'0')
            && matches!(
                bytes.get(start + 1),
                Some(b'x' | b'X' | b'b' | b'B' | b'o' | b'O')
            )
        {
            return self.run(start + 2, |b| b.is_ascii_alphanumeric() || b == b'_');
        }
        let mut i = self.run(start, |b| b.is_ascii_digit() || b == b'_');
        if bytes.get(i) == Some(&b'.') && bytes.get(i + 1) != Some(&b'.') {
            i = self.run(i + 1, |b| b.is_ascii_digit() || b == b'_');
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(bytes.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if bytes.get(j).is_some_and(|b| b.is_ascii_digit()) {
                i = self.run(j, |b| b.is_ascii_digit());
            }
        }
        // Trailing identifier bytes (`1abc`) belong to the number token, so
        // they are never taken for a word.
        self.run(i, is_word_byte)
    }

    /// `$1` (a parameter), `$tag$…$tag$` / `$$…$$` (a string), or a lone `$`.
    fn dollar(&self, start: usize) -> (Kind, usize) {
        let bytes = self.text.as_bytes();
        match bytes.get(start + 1) {
            Some(b) if b.is_ascii_digit() => {
                (Kind::Param, self.run(start + 1, |b| b.is_ascii_digit()))
            }
            _ if self.dialect == Dialect::MySql => (Kind::Punct(b'$'), start + 1),
            _ => {
                let tag_end = self.run(start + 1, |b| is_word_byte(b) && b != b'$');
                if bytes.get(tag_end) != Some(&b'$') {
                    return (Kind::Punct(b'$'), start + 1);
                }
                let tag = bytes.get(start..=tag_end).unwrap_or_default();
                let body = tag_end + 1;
                let end = bytes
                    .get(body..)
                    .unwrap_or_default()
                    .windows(tag.len())
                    .position(|w| w == tag)
                    .map_or(bytes.len(), |p| body + p + tag.len());
                (Kind::Str, end)
            }
        }
    }

    /// A word, or a prefixed string literal (`E'…'`, `B'…'`, `X'…'`,
    /// `N'…'`, `U&'…'`, MySQL's `_utf8'…'` is left to the quote).
    fn word(&self, start: usize) -> (Kind, usize) {
        let end = self.run(start, is_word_byte);
        let word = self.text.as_bytes().get(start..end).unwrap_or_default();
        let prefix = matches!(
            word,
            [b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N']
        );
        if prefix && self.byte(end) == Some(b'\'') {
            let backslash = matches!(word, [b'e' | b'E']) || self.dialect == Dialect::MySql;
            return (Kind::Str, self.quoted_end(end, b'\'', backslash));
        }
        if matches!(word, [b'u' | b'U'])
            && self.byte(end) == Some(b'&')
            && self.byte(end + 1) == Some(b'\'')
        {
            return (Kind::Str, self.quoted_end(end + 1, b'\'', false));
        }
        (Kind::Word, end)
    }
}
