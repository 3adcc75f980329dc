//! Prepared statements and portals, by name, so an `Execute` can be
//! reported with the SQL its `Parse` carried.
//!
//! A statement's SQL is sanitized and summarized once, when parsed, and
//! shared (an [`Arc`]) by the portals bound to it and the runs executing it.
//! Named entries are bounded by count and by bytes; past either bound the
//! oldest go first (a driver's statement cache re-parses what it needs).
//! The unnamed statement and unnamed portal, replaced by every unnamed
//! `Parse` / `Bind`, are kept apart and never evicted.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::sql::{sanitize, summarize, SqlSummary};

/// Most named prepared statements remembered per connection.
pub(super) const MAX_STATEMENTS: usize = 128;
/// Most bytes of sanitized SQL kept for named statements per connection.
pub(super) const MAX_STATEMENT_BYTES: usize = 256 * 1024;
/// Most named portals (cursors) remembered per connection.
pub(super) const MAX_PORTALS: usize = 16;

/// What is kept of a statement's SQL.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    /// `db.query.text`: the SQL with its literals replaced by `?`.
    pub text: String,
    pub summary: SqlSummary,
}

impl Statement {
    /// From the SQL as sent (possibly cut by the framing cap).
    pub(super) fn new(sql: &[u8]) -> Arc<Statement> {
        let sql = String::from_utf8_lossy(sql);
        Arc::new(Statement {
            text: sanitize(&sql),
            summary: summarize(&sql),
        })
    }

    fn cost(&self) -> usize {
        self.text.len()
            + self.summary.operation.as_ref().map_or(0, String::len)
            + self.summary.collection.as_ref().map_or(0, String::len)
    }
}

/// Statements or portals by name. See the module docs.
#[derive(Debug)]
pub(super) struct Named {
    unnamed: Option<Arc<Statement>>,
    named: VecDeque<(String, Arc<Statement>)>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl Named {
    pub(super) fn new(max_count: usize, max_bytes: usize) -> Named {
        Named {
            unnamed: None,
            named: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    pub(super) fn insert(&mut self, name: String, statement: Option<Arc<Statement>>) {
        if name.is_empty() {
            self.unnamed = statement;
            return;
        }
        self.remove(&name);
        let Some(statement) = statement else {
            return;
        };
        self.bytes += name.len() + statement.cost();
        self.named.push_back((name, statement));
        while self.named.len() > self.max_count || self.bytes > self.max_bytes {
            match self.named.pop_front() {
                Some((n, s)) => self.bytes = self.bytes.saturating_sub(n.len() + s.cost()),
                None => break,
            }
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<Statement>> {
        if name.is_empty() {
            return self.unnamed.clone();
        }
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| Arc::clone(s))
    }

    pub(super) fn remove(&mut self, name: &str) {
        if name.is_empty() {
            self.unnamed = None;
        } else if let Some(i) = self.named.iter().position(|(n, _)| n == name) {
            if let Some((n, s)) = self.named.remove(i) {
                self.bytes = self.bytes.saturating_sub(n.len() + s.cost());
            }
        }
    }

    /// Forgets the named entries (`DEALLOCATE ALL`).
    pub(super) fn clear_named(&mut self) {
        self.named.clear();
        self.bytes = 0;
    }

    pub(super) fn clear(&mut self) {
        self.clear_named();
        self.unnamed = None;
    }

    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.named.len() + usize::from(self.unnamed.is_some())
    }
}

/// `DEALLOCATE [PREPARE] name | ALL` and `DISCARD ALL` sent as a simple
/// query drop server-side statements: forget them too.
pub(super) fn forget_deallocated(sql: &[u8], statements: &mut Named, portals: &mut Named) {
    let sql = String::from_utf8_lossy(sql);
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or_default();
    if first.eq_ignore_ascii_case("DISCARD") {
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("ALL")) {
            statements.clear();
            portals.clear();
        }
        return;
    }
    if !first.eq_ignore_ascii_case("DEALLOCATE") {
        return;
    }
    let mut name = words.next().unwrap_or_default();
    if name.eq_ignore_ascii_case("PREPARE") {
        name = words.next().unwrap_or_default();
    }
    if name.eq_ignore_ascii_case("ALL") {
        statements.clear_named();
    } else if let Some(quoted) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        statements.remove(quoted);
    } else if !name.is_empty() {
        statements.remove(&name.to_ascii_lowercase());
        statements.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_entries_are_bounded_by_count_and_bytes() {
        let mut n = Named::new(3, 1000);
        for i in 0..10 {
            n.insert(format!("s{i}"), Some(Statement::new(b"SELECT 1")));
        }
        assert_eq!(n.len(), 3);
        assert!(n.get("s9").is_some() && n.get("s6").is_none());
        n.insert(String::new(), Some(Statement::new(b"SELECT 2")));
        assert_eq!(n.get("").unwrap().text, "SELECT ?");
        let big = vec![b'x'; 600];
        n.insert("big1".into(), Some(Statement::new(&big)));
        n.insert("big2".into(), Some(Statement::new(&big)));
        assert!(n.bytes() <= 1000);
        assert!(n.get("big2").is_some() && n.get("big1").is_none());
        n.remove("big2");
        n.remove("nope");
        assert_eq!(n.bytes(), 0);
        n.insert("s".into(), None);
        assert!(n.get("s").is_none());
    }

    #[test]
    fn deallocate_forgets() {
        let mut st = Named::new(10, 10_000);
        let mut portals = Named::new(10, 10_000);
        for name in ["a", "b", "_pg3_0", "Mixed"] {
            st.insert(name.into(), Some(Statement::new(b"SELECT 1")));
        }
        forget_deallocated(b"DEALLOCATE a", &mut st, &mut portals);
        assert!(st.get("a").is_none() && st.get("b").is_some());
        forget_deallocated(b"deallocate prepare \"Mixed\";", &mut st, &mut portals);
        assert!(st.get("Mixed").is_none());
        forget_deallocated(b"SELECT 1", &mut st, &mut portals);
        assert!(st.get("b").is_some());
        forget_deallocated(b"DEALLOCATE ALL", &mut st, &mut portals);
        assert_eq!(st.len(), 0);
        st.insert(String::new(), Some(Statement::new(b"SELECT 1")));
        forget_deallocated(b"DISCARD ALL", &mut st, &mut portals);
        assert_eq!(st.len(), 0);
    }
}
