//! A statement execution in flight ([`Run`]) and the [`Operation`] it
//! becomes: name, status and attributes per the stable database semantic
//! conventions.
//!
//! - Name: `{operation} {table}`, `{operation}`, or `postgresql`, from the
//!   SQL ([`crate::sql::summarize`]); the CommandComplete tag's command when
//!   the SQL is unknown.
//! - `db.query.text`: the SQL with literals replaced by `?`
//!   ([`crate::sql::sanitize`]); parameters (`$1`) are never read.
//! - A simple `Query` may hold several statements: it is one span (one
//!   round trip), and when more than one statement completed it is a batch:
//!   `db.operation.batch.size` = the number of statements, and
//!   `db.operation.name` = `BATCH {command}` when they all ran the same
//!   command, else `BATCH`.
//! - `db.response.returned_rows`: the DataRows received, set for statements
//!   that return rows (SELECT, FETCH, `… RETURNING`). Rows changed by
//!   INSERT / UPDATE / DELETE / MERGE / COPY come from the CommandComplete
//!   tag as `lumigo.db.affected_rows` (the conventions have no attribute
//!   for them).
//! - An ErrorResponse: `error.type` and `db.response.status_code` = its
//!   SQLSTATE, status Error with the server's message. A run cut short by a
//!   close or by tracing giving up: `error.type` = the reason.

use std::sync::Arc;
use std::time::SystemTime;

use super::message::{CommandTag, ServerError};
use super::Statement;
use crate::protocol::Operation;
use crate::span::{AttrValue, SpanKind, SpanStatus};

/// `db.system.name`, and the span name when nothing better is known.
pub(super) const SYSTEM: &str = "postgresql";

/// One execution awaiting its end: a simple `Query` (until ReadyForQuery)
/// or an extended-protocol `Execute` (until CommandComplete,
/// EmptyQueryResponse, PortalSuspended or ErrorResponse).
#[derive(Debug)]
pub(super) struct Run {
    pub statement: Option<Arc<Statement>>,
    pub start: SystemTime,
    /// Statements completed (CommandComplete or EmptyQueryResponse).
    statements: u32,
    /// The first CommandComplete's command, and whether others differed.
    command: Option<String>,
    mixed: bool,
    data_rows: u64,
    returns_rows: bool,
    affected: Option<u64>,
    pub error: Option<ServerError>,
}

impl Run {
    pub(super) fn new(statement: Option<Arc<Statement>>, start: SystemTime) -> Box<Run> {
        Box::new(Run {
            statement,
            start,
            statements: 0,
            command: None,
            mixed: false,
            data_rows: 0,
            returns_rows: false,
            affected: None,
            error: None,
        })
    }

    pub(super) fn data_row(&mut self) {
        self.data_rows += 1;
        self.returns_rows = true;
    }

    pub(super) fn empty_query(&mut self) {
        self.statements += 1;
    }

    /// A statement of the run completed with `tag`.
    pub(super) fn complete(&mut self, tag: CommandTag) {
        self.statements += 1;
        match tag.command.as_str() {
            "SELECT" | "FETCH" => self.returns_rows = true,
            "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" => {
                let n = tag.rows.unwrap_or(0);
                self.affected = Some(self.affected.unwrap_or(0).saturating_add(n));
            }
            _ => {}
        }
        match &self.command {
            None => self.command = Some(tag.command),
            Some(c) if *c != tag.command => self.mixed = true,
            Some(_) => {}
        }
    }

    /// The finished span. `cut_short` is why the run ended without its
    /// reply (a close, tracing giving up).
    pub(super) fn into_operation(
        self,
        end: SystemTime,
        conn: &ConnectionInfo,
        cut_short: Option<&'static str>,
    ) -> Operation {
        let mut attributes: Vec<(&'static str, AttrValue)> = Vec::with_capacity(10);
        attributes.push(("db.system.name", SYSTEM.into()));
        if let Some(ns) = &conn.namespace {
            attributes.push(("db.namespace", ns.as_str().into()));
        }
        if let Some(user) = &conn.user {
            attributes.push(("db.user", user.as_str().into()));
        }
        let summary = self.statement.as_ref().map(|s| &s.summary);
        if let Some(st) = self.statement.as_ref().filter(|s| !s.text.is_empty()) {
            attributes.push(("db.query.text", st.text.as_str().into()));
        }
        let batch = self.statements > 1;
        let operation = if batch {
            match (&self.command, self.mixed) {
                (Some(c), false) if !c.is_empty() => Some(format!("BATCH {c}")),
                _ => Some("BATCH".to_owned()),
            }
        } else {
            summary
                .and_then(|s| s.operation.clone())
                .or_else(|| self.command.clone().filter(|c| !c.is_empty()))
        };
        let collection = summary
            .and_then(|s| s.collection.clone())
            .filter(|_| !batch);
        let name = match (&operation, &collection) {
            (Some(op), Some(coll)) => format!("{op} {coll}"),
            (Some(op), None) => op.clone(),
            _ => SYSTEM.to_owned(),
        };
        if let Some(op) = operation {
            attributes.push(("db.operation.name", op.into()));
        }
        if let Some(coll) = collection {
            attributes.push(("db.collection.name", coll.into()));
        }
        if batch {
            attributes.push(("db.operation.batch.size", i64::from(self.statements).into()));
        }
        if self.returns_rows {
            attributes.push(("db.response.returned_rows", self.data_rows.into()));
        }
        if let Some(n) = self.affected {
            attributes.push(("lumigo.db.affected_rows", n.into()));
        }
        let status = match (self.error, cut_short) {
            (Some(err), _) => {
                let code = err.code.unwrap_or_default();
                if !code.is_empty() {
                    attributes.push(("db.response.status_code", code.as_str().into()));
                }
                let kind = if code.is_empty() {
                    "_OTHER".to_owned()
                } else {
                    code
                };
                attributes.push(("error.type", kind.into()));
                SpanStatus::Error(
                    crate::sql::redact_error_message(&err.message.unwrap_or_default()).into_owned(),
                )
            }
            (None, Some(reason)) => {
                attributes.push(("error.type", reason.into()));
                SpanStatus::Error(reason.to_owned())
            }
            (None, None) => SpanStatus::Unset,
        };
        Operation {
            name,
            kind: SpanKind::Client,
            start: self.start,
            end,
            status,
            attributes,
            carried: None,
        }
    }
}

/// What the startup packet said, shared by every span of the connection.
#[derive(Clone, Debug, Default)]
pub(super) struct ConnectionInfo {
    /// `db.namespace`: the `database` parameter, which defaults to the user
    /// name on the server.
    pub namespace: Option<String>,
    /// `db.user`.
    pub user: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(op: &'a Operation, key: &str) -> Option<&'a AttrValue> {
        op.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    fn tag(command: &str, rows: Option<u64>) -> CommandTag {
        CommandTag {
            command: command.into(),
            rows,
        }
    }

    #[test]
    fn select_with_rows() {
        let t = SystemTime::UNIX_EPOCH;
        let mut run = Run::new(Some(Statement::new(b"SELECT * FROM users WHERE id = 7")), t);
        run.data_row();
        run.data_row();
        run.complete(tag("SELECT", Some(2)));
        let info = ConnectionInfo {
            namespace: Some("shop".into()),
            user: Some("bob".into()),
        };
        let op = run.into_operation(t, &info, None);
        assert_eq!(op.name, "SELECT users");
        assert_eq!(op.status, SpanStatus::Unset);
        assert_eq!(op.kind, SpanKind::Client);
        assert_eq!(attr(&op, "db.system.name"), Some(&"postgresql".into()));
        assert_eq!(attr(&op, "db.namespace"), Some(&"shop".into()));
        assert_eq!(attr(&op, "db.user"), Some(&"bob".into()));
        assert_eq!(
            attr(&op, "db.query.text"),
            Some(&"SELECT * FROM users WHERE id = ?".into())
        );
        assert_eq!(attr(&op, "db.operation.name"), Some(&"SELECT".into()));
        assert_eq!(attr(&op, "db.collection.name"), Some(&"users".into()));
        assert_eq!(attr(&op, "db.response.returned_rows"), Some(&2i64.into()));
        assert_eq!(attr(&op, "lumigo.db.affected_rows"), None);
    }

    #[test]
    fn batch_and_error_and_unknown_sql() {
        let t = SystemTime::UNIX_EPOCH;
        let info = ConnectionInfo::default();
        let mut run = Run::new(
            Some(Statement::new(
                b"INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
            )),
            t,
        );
        run.complete(tag("INSERT", Some(1)));
        run.complete(tag("INSERT", Some(1)));
        let op = run.into_operation(t, &info, None);
        assert_eq!(op.name, "BATCH INSERT");
        assert_eq!(attr(&op, "db.operation.batch.size"), Some(&2i64.into()));
        assert_eq!(attr(&op, "lumigo.db.affected_rows"), Some(&2i64.into()));
        assert_eq!(attr(&op, "db.response.returned_rows"), None);

        let mut run = Run::new(Some(Statement::new(b"SELECT 1; UPDATE t SET a = 1")), t);
        run.data_row();
        run.complete(tag("SELECT", Some(1)));
        run.complete(tag("UPDATE", Some(3)));
        assert_eq!(run.into_operation(t, &info, None).name, "BATCH");

        let mut run = Run::new(Some(Statement::new(b"SELECT * FROM missing")), t);
        run.error = Some(ServerError {
            code: Some("42P01".into()),
            message: Some("relation \"missing\" does not exist".into()),
        });
        let op = run.into_operation(t, &info, None);
        assert_eq!(
            op.status,
            SpanStatus::Error("relation \"missing\" does not exist".into())
        );
        assert_eq!(attr(&op, "error.type"), Some(&"42P01".into()));
        assert_eq!(attr(&op, "db.response.status_code"), Some(&"42P01".into()));

        let mut run = Run::new(None, t);
        run.complete(tag("CREATE TABLE", None));
        let op = run.into_operation(t, &info, None);
        assert_eq!(op.name, "CREATE TABLE");
        assert_eq!(attr(&op, "db.query.text"), None);

        let op = Run::new(None, t).into_operation(t, &info, Some("connection_closed"));
        assert_eq!(op.name, "postgresql");
        assert_eq!(attr(&op, "error.type"), Some(&"connection_closed".into()));
        assert!(matches!(op.status, SpanStatus::Error(_)));
    }
}
