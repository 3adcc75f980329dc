//! SQL text helpers shared by the database parsers (PostgreSQL, MySQL):
//! literal obfuscation for `db.query.text` and a cheap summary (operation
//! and single table) for `db.operation.name`, `db.collection.name` and the
//! span name.
//!
//! Neither function parses SQL properly: both run a small lexer that knows
//! where literals, quoted identifiers and comments begin and end, which is
//! all that obfuscation needs, and look at the tokens around a few keywords
//! for the summary. Both are linear in the input and never panic;
//! [`sanitize`] never returns more bytes than it was given. Callers cap the
//! text they hand in.
//!
//! ```
//! use lumigo_core::sql::{sanitize, summarize};
//! let q = "SELECT * FROM users WHERE name = 'bob' AND age > 42";
//! assert_eq!(sanitize(q), "SELECT * FROM users WHERE name = ? AND age > ?");
//! let s = summarize(q);
//! assert_eq!(s.operation.as_deref(), Some("SELECT"));
//! assert_eq!(s.collection.as_deref(), Some("users"));
//! assert_eq!(s.span_name("postgresql"), "SELECT users");
//! ```

/// Which lexical rules apply. They differ in what double quotes mean, in
/// backslash escapes, and in a few comment and quoting forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Standard SQL as PostgreSQL speaks it (`standard_conforming_strings`
    /// on): `"…"` is an identifier, `'…'` doubles its quotes and escapes
    /// nothing else, `E'…'` honours backslashes, `$tag$…$tag$` is a string,
    /// block comments nest. (Backquoted names are taken as identifiers in
    /// both dialects.)
    Postgres,
    /// MySQL / MariaDB defaults: `"…"` is a string too, backslashes escape
    /// in both, `` `…` `` is an identifier, `#` starts a comment, block
    /// comments do not nest, no dollar quoting.
    MySql,
}

/// Replaces every string, numeric, hex, bit and dollar-quoted literal with
/// `?`, PostgreSQL rules ([`Dialect::Postgres`]). See [`sanitize_with`].
pub fn sanitize(query: &str) -> String {
    sanitize_with(query, Dialect::Postgres)
}

/// [`sanitize`] with MySQL / MariaDB rules ([`Dialect::MySql`]): there
/// `"bob"` is a string literal and is replaced too.
pub fn sanitize_mysql(query: &str) -> String {
    sanitize_with(query, Dialect::MySql)
}

/// Replaces literals with `?` under `dialect`'s lexical rules, so no value
/// written into the query text leaves the process:
///
/// - string literals (`'a'`, `E'a\'b'`, `$$a$$`, `$f$a$f$`, and prefixed
///   forms `B'01'`, `X'ff'`, `N'a'`, `U&'a'`), numbers (`42`, `-1.5e3`
///   keeps its `-`, `0x1F`);
/// - a list of literals after `IN` collapses: `IN (1, 2, 3)` → `IN (?)`;
/// - comments are dropped (they can carry values too), and every run of
///   whitespace becomes one space;
/// - identifiers (quoted or not), keywords, operators and placeholders
///   (`$1`, `?`, `:name`) are kept as written.
///
/// An unterminated literal or quoted identifier runs to the end of the
/// text: an unterminated literal becomes a single `?`, so text cut short by
/// a cap leaks nothing.
pub fn sanitize_with(query: &str, dialect: Dialect) -> String {
    let mut out = String::with_capacity(query.len());
    let mut lexer = Lexer::new(query, dialect);
    // A space is owed before the next token (whitespace or a comment was
    // skipped since the last one written).
    let mut space = false;
    let mut after_in = false;
    while let Some(tok) = lexer.next_token() {
        match tok.kind {
            Kind::Space | Kind::Comment => {
                space = true;
                continue;
            }
            _ => {}
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        match tok.kind {
            Kind::Str | Kind::Num => out.push('?'),
            Kind::Punct(b'(') if after_in => {
                if let Some(rest) = literal_list_end(lexer.clone()) {
                    out.push_str("(?)");
                    lexer = rest;
                } else {
                    out.push('(');
                }
            }
            _ => out.push_str(tok.text),
        }
        after_in = tok.kind == Kind::Word && tok.text.eq_ignore_ascii_case("IN");
    }
    out
}

/// After `IN (`: if only literals (optionally signed) separated by commas
/// follow, up to `)`, the lexer positioned after that `)`.
fn literal_list_end(mut lexer: Lexer<'_>) -> Option<Lexer<'_>> {
    let mut want_literal = true;
    loop {
        let tok = lexer.next_significant()?;
        match (want_literal, tok.kind) {
            (true, Kind::Punct(b'-' | b'+')) => {
                let next = lexer.next_significant()?;
                if !matches!(next.kind, Kind::Num) {
                    return None;
                }
                want_literal = false;
            }
            (true, Kind::Str | Kind::Num) => want_literal = false,
            (false, Kind::Punct(b',')) => want_literal = true,
            (false, Kind::Punct(b')')) => return Some(lexer),
            _ => return None,
        }
    }
}

/// What [`summarize`] found in a statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqlSummary {
    /// The statement's first keyword, upper-cased (`SELECT`, `INSERT`,
    /// `CREATE`, `BEGIN`…); for `WITH …` the main statement's keyword.
    pub operation: Option<String>,
    /// The one table the statement names plainly (`FROM t`, `INTO t`,
    /// `UPDATE t`, `TABLE t`, `TRUNCATE t`, `COPY t`), with any schema
    /// prefix as written (`public.users`) and quotes removed. `None` for
    /// joins, subqueries, CTEs, several tables or several statements.
    pub collection: Option<String>,
}

impl SqlSummary {
    /// The span name per the database semantic conventions:
    /// `{operation} {collection}`, else `{operation}`, else `fallback`
    /// (the `db.system.name`).
    pub fn span_name(&self, fallback: &str) -> String {
        match (&self.operation, &self.collection) {
            (Some(op), Some(coll)) => format!("{op} {coll}"),
            (Some(op), None) => op.clone(),
            _ => fallback.to_owned(),
        }
    }
}

/// Most bytes kept of an operation keyword or a collection name.
const MAX_NAME_BYTES: usize = 256;

/// Operations whose table positions are looked at; for others (`GRANT`,
/// `EXPLAIN`, `CREATE INDEX` …) the collection stays unknown.
const TABLE_OPERATIONS: &[&str] = &[
    "SELECT", "INSERT", "REPLACE", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER",
    "TRUNCATE", "TABLE", "COPY", "LOCK",
];

/// Words that end a table reference rather than alias it.
const CLAUSE_WORDS: &[&str] = &[
    "WHERE",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "STRAIGHT_JOIN",
    "ON",
    "USING",
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "HAVING",
    "WINDOW",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "FOR",
    "FETCH",
    "SET",
    "VALUES",
    "VALUE",
    "SELECT",
    "RETURNING",
    "DEFAULT",
    "OVERRIDING",
    "PARTITION",
    "FROM",
    "TO",
    "WITH",
    "USE",
    "IGNORE",
    "FORCE",
    "TABLESAMPLE",
];

/// Finds the operation and the single table of a statement. See
/// [`SqlSummary`] for what counts; the rules are deliberately simple and
/// say "unknown" (`None`) rather than guess.
///
/// ```
/// use lumigo_core::sql::summarize;
/// let s = summarize("with t as (select 1) update accounts set x = 1");
/// assert_eq!(s.operation.as_deref(), Some("UPDATE"));
/// assert_eq!(s.collection, None);
/// assert_eq!(summarize("INSERT INTO public.\"Orders\" VALUES ($1)").collection.as_deref(),
///            Some("public.Orders"));
/// ```
pub fn summarize(query: &str) -> SqlSummary {
    // Quoting differences do not matter here: table names are identifiers
    // in both dialects, and literal ends only need to be found.
    let mut lexer = Lexer::new(query, Dialect::Postgres);
    let mut first = lexer.next_significant();
    while first.is_some_and(|t| t.kind == Kind::Punct(b'(')) {
        first = lexer.next_significant();
    }
    let Some(first) = first.filter(|t| t.kind == Kind::Word) else {
        return SqlSummary::default();
    };
    let mut op = first.text;
    if op.eq_ignore_ascii_case("WITH") {
        // The main statement follows the common table expressions; the
        // CTEs are subqueries, so no single table.
        return SqlSummary {
            operation: main_after_ctes(&mut lexer).map(upper),
            collection: None,
        };
    }
    let operation = Some(upper(op));
    let known = TABLE_OPERATIONS.iter().any(|k| op.eq_ignore_ascii_case(k));
    let collection = if known {
        if op.eq_ignore_ascii_case("REPLACE") {
            op = "INSERT"; // MySQL's REPLACE [INTO] t is shaped as INSERT.
        }
        single_table(op, lexer)
    } else {
        None
    };
    SqlSummary {
        operation,
        collection,
    }
}

fn upper(word: &str) -> String {
    cut(word, MAX_NAME_BYTES).to_ascii_uppercase()
}

/// Cuts at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Skips `[RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] (…) [, …]` and
/// returns the main statement's keyword.
fn main_after_ctes<'a>(lexer: &mut Lexer<'a>) -> Option<&'a str> {
    loop {
        let mut tok = lexer.next_significant()?;
        if tok.is_word("RECURSIVE") {
            tok = lexer.next_significant()?;
        }
        if !matches!(tok.kind, Kind::Word | Kind::Ident) {
            return None;
        }
        // Up to the CTE body's opening parenthesis (after AS).
        let mut seen_as = false;
        loop {
            let t = lexer.next_significant()?;
            match t.kind {
                Kind::Punct(b'(') if seen_as => break,
                Kind::Punct(b'(') => skip_group(lexer)?,
                Kind::Word if t.is_word("AS") => seen_as = true,
                _ => {}
            }
        }
        skip_group(lexer)?;
        let next = lexer.next_significant()?;
        if next.kind != Kind::Punct(b',') {
            // Further CTE-level words (SEARCH / CYCLE clauses) are rare;
            // the main statement starts here.
            return (next.kind == Kind::Word).then_some(next.text);
        }
    }
}

/// Skips to the `)` closing a `(` already read.
fn skip_group(lexer: &mut Lexer<'_>) -> Option<()> {
    let mut depth = 1usize;
    while depth > 0 {
        match lexer.next_significant()?.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth -= 1,
            _ => {}
        }
    }
    Some(())
}

/// Where the table references are, after the operation keyword `op`.
fn single_table(op: &str, mut lexer: Lexer<'_>) -> Option<String> {
    let is = |k: &str| op.eq_ignore_ascii_case(k);
    let mut found: Option<String> = None;
    let mut depth = 0usize;
    let mut prev: Option<Token<'_>> = None;
    // The table follows the operation itself (after modifiers, `INTO`,
    // `TABLE`, `ONLY`): `UPDATE t`, `INSERT [INTO] t`, `TRUNCATE t`, …
    let mut expect = ["UPDATE", "INSERT", "TABLE", "TRUNCATE", "COPY", "LOCK"]
        .iter()
        .any(|k| is(k));
    let mut after_from = false;
    loop {
        if expect {
            expect = false;
            let mut ahead = lexer.clone();
            match read_table_name(&mut ahead) {
                Some((name, next)) => {
                    let call = matches!(next, Some(Kind::Punct(b'(')));
                    if found.is_some() || next == Some(Kind::Punct(b',')) || (after_from && call) {
                        return None; // several tables, or FROM func(…)
                    }
                    found = Some(name);
                    lexer = ahead;
                    prev = None;
                    continue;
                }
                // FROM (subquery), FROM 'literal'…
                None if after_from => return None,
                None => {}
            }
        }
        let Some(tok) = lexer.next_significant() else {
            return found;
        };
        let tok_is_table_keyword = match tok.kind {
            Kind::Punct(b'(') => {
                depth += 1;
                false
            }
            Kind::Punct(b')') => {
                depth = depth.saturating_sub(1);
                false
            }
            Kind::Punct(b';') => {
                if lexer.clone().next_significant().is_some() {
                    return None; // a second statement
                }
                false
            }
            Kind::Word => {
                if tok.is_word("SELECT") || tok.is_word("JOIN") || tok.is_word("UNION") {
                    return None; // subquery, join or several selects
                }
                if tok.is_word("USING") && (is("DELETE") || is("MERGE")) {
                    return None; // a second table
                }
                // FROM inside EXTRACT(… FROM …), SUBSTRING, TRIM is no table;
                // nor in `IS [NOT] DISTINCT FROM`, nor COPY t FROM 'file'.
                let from = depth == 0
                    && tok.is_word("FROM")
                    && !prev.is_some_and(|p| p.is_word("DISTINCT"))
                    && !is("COPY");
                after_from = from;
                from || (depth == 0 && (tok.is_word("INTO") || tok.is_word("TABLE")))
            }
            _ => false,
        };
        expect = tok_is_table_keyword;
        prev = Some(tok);
    }
}

/// Words between an operation and its table that modify the statement.
const MODIFIERS: &[&str] = &[
    "INTO",
    "TABLE",
    "ONLY",
    "IF",
    "NOT",
    "EXISTS",
    "LOW_PRIORITY",
    "DELAYED",
    "HIGH_PRIORITY",
    "IGNORE",
    "QUICK",
];

/// Reads `[modifiers] part[.part…] [*] [[AS] alias]`: the name with quotes
/// removed, and the kind of the token after it. `None` if no name is there.
fn read_table_name(lexer: &mut Lexer<'_>) -> Option<(String, Option<Kind>)> {
    let mut tok = lexer.next_significant()?;
    while tok.kind == Kind::Word && MODIFIERS.iter().any(|k| tok.is_word(k)) {
        tok = lexer.next_significant()?;
    }
    let clause = |t: &Token<'_>| t.kind == Kind::Word && CLAUSE_WORDS.iter().any(|k| t.is_word(k));
    if !matches!(tok.kind, Kind::Word | Kind::Ident) || clause(&tok) {
        return None;
    }
    let mut name = String::new();
    push_part(&mut name, &tok);
    let mut next = lexer.clone().next_significant();
    while next.is_some_and(|t| t.kind == Kind::Punct(b'.')) {
        let _ = lexer.next_significant();
        let part = lexer.next_significant()?;
        if !matches!(part.kind, Kind::Word | Kind::Ident) {
            return None;
        }
        name.push('.');
        push_part(&mut name, &part);
        next = lexer.clone().next_significant();
    }
    if next.is_some_and(|t| t.kind == Kind::Punct(b'*')) {
        let _ = lexer.next_significant();
        next = lexer.clone().next_significant();
    }
    // An alias: `AS a`, or a bare word that is not a clause keyword.
    if let Some(t) = next {
        if t.is_word("AS") || t.kind == Kind::Ident || (t.kind == Kind::Word && !clause(&t)) {
            let _ = lexer.next_significant();
            if t.is_word("AS") {
                let _ = lexer.next_significant();
            }
            next = lexer.clone().next_significant();
        }
    }
    Some((cut(&name, MAX_NAME_BYTES).to_owned(), next.map(|t| t.kind)))
}

/// Appends an identifier without its quotes (doubled quotes undoubled).
fn push_part(name: &mut String, tok: &Token<'_>) {
    if name.len() > MAX_NAME_BYTES {
        return;
    }
    match tok.kind {
        Kind::Ident => {
            let q = tok.text.chars().next().unwrap_or('"');
            let inner = tok.text.get(1..).unwrap_or_default();
            let inner = inner.strip_suffix(q).unwrap_or(inner);
            let mut prev_quote = false;
            for c in inner.chars() {
                if c == q && prev_quote {
                    prev_quote = false;
                    continue;
                }
                prev_quote = c == q;
                name.push(c);
            }
        }
        _ => name.push_str(tok.text),
    }
}

mod lexer;
mod message;

use lexer::{Kind, Lexer, Token};
pub use message::redact_error_message;

#[cfg(test)]
mod tests;
