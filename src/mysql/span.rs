//! A finished command as an [`Operation`], per the stable database semantic
//! conventions for MySQL and MariaDB.
//!
//! - `db.system.name`: `mysql` or `mariadb`, from the server's greeting.
//! - `db.namespace`: the connection's database when the command was sent
//!   (from the login, then `USE`, COM_INIT_DB, COM_CHANGE_USER or the
//!   server's session tracking); for COM_INIT_DB, the database it selects.
//! - `db.query.text`: the statement with its literals replaced by `?`
//!   ([`crate::sql::sanitize_mysql`]); for an execute, the prepared text.
//! - `db.operation.name`, `db.collection.name`: from
//!   [`crate::sql::summarize`]; `PREPARE` for a prepare (its collection is
//!   the statement's), `USE` for COM_INIT_DB, `PING` for COM_PING.
//! - Span name `{operation} {collection}`, `{operation}`, or the system name
//!   (an execute whose prepare was not seen).
//! - A server ERR: `db.response.status_code` and `error.type` are the error
//!   code (`1146`), the status is Error with the SQL state and message. A
//!   command cut short by a close: `error.type` says why
//!   ([`errors`](super::errors)).

use std::sync::Arc;
use std::time::SystemTime;

use super::response::ServerError;
use super::{Operation, MAX_QUERY_BYTES};
use crate::span::{AttrValue, SpanKind, SpanStatus};
use crate::sql::{sanitize_mysql, summarize, SqlSummary};

/// A statement's text, sanitized, and its summary: computed once, shared by
/// every execute of a prepared statement.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Statement {
    pub text: String,
    pub summary: SqlSummary,
}

impl Statement {
    pub(super) fn new(raw: &str) -> Statement {
        let mut text = sanitize_mysql(raw);
        if text.len() > MAX_QUERY_BYTES {
            // Sanitizing never lengthens much, but keep the bound exact.
            text = super::lossy_prefix(text.as_bytes(), MAX_QUERY_BYTES);
        }
        Statement {
            text,
            summary: summarize(raw),
        }
    }

    /// Bytes held, counted against [`MAX_STATEMENT_BYTES`](super::MAX_STATEMENT_BYTES).
    pub(super) fn size(&self) -> usize {
        let name = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.text.len() + name(&self.summary.operation) + name(&self.summary.collection)
    }
}

/// What a command's span says, decided when the command is sent.
#[derive(Debug)]
pub(super) enum Report {
    /// COM_QUERY, with its text (`None` if it could not be read).
    Query(Option<String>),
    /// COM_STMT_PREPARE.
    Prepare(Arc<Statement>),
    /// COM_STMT_EXECUTE or COM_STMT_BULK_EXECUTE, with the statement if its
    /// prepare was seen.
    Execute(Option<Arc<Statement>>),
    /// COM_INIT_DB (the database goes in `db.namespace`).
    Use,
    Ping,
}

/// How a command ended.
#[derive(Clone, Copy, Debug)]
pub(super) enum Outcome<'a> {
    Ok,
    Server(&'a ServerError),
    /// No response: one of [`errors`](super::errors).
    Aborted(&'static str),
}

/// Everything an operation is built from.
pub(super) struct Finished<'a> {
    pub report: Report,
    pub system: &'static str,
    pub namespace: Option<&'a str>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub outcome: Outcome<'a>,
}

/// The span of a finished command.
pub(super) fn operation(f: Finished<'_>) -> Operation {
    let named = |op: &str| SqlSummary {
        operation: Some(op.to_owned()),
        collection: None,
    };
    let query;
    let (summary, text): (SqlSummary, Option<&str>) = match &f.report {
        Report::Query(Some(raw)) => {
            query = Statement::new(raw);
            (query.summary.clone(), Some(&query.text))
        }
        Report::Query(None) | Report::Execute(None) => (SqlSummary::default(), None),
        Report::Execute(Some(s)) => (s.summary.clone(), Some(&s.text)),
        Report::Prepare(s) => (
            SqlSummary {
                operation: Some("PREPARE".to_owned()),
                collection: s.summary.collection.clone(),
            },
            Some(&s.text),
        ),
        Report::Use => (named("USE"), None),
        Report::Ping => (named("PING"), None),
    };
    let name = summary.span_name(f.system);
    let mut attributes: Vec<(&'static str, AttrValue)> = Vec::with_capacity(7);
    attributes.push(("db.system.name", f.system.into()));
    if let Some(ns) = f.namespace {
        attributes.push(("db.namespace", ns.into()));
    }
    if let Some(op) = summary.operation {
        attributes.push(("db.operation.name", op.into()));
    }
    if let Some(coll) = summary.collection {
        attributes.push(("db.collection.name", coll.into()));
    }
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        attributes.push(("db.query.text", text.into()));
    }
    let status = match f.outcome {
        Outcome::Ok => SpanStatus::Unset,
        Outcome::Server(e) => {
            let code = e.code.to_string();
            attributes.push(("db.response.status_code", code.as_str().into()));
            attributes.push(("error.type", code.into()));
            SpanStatus::Error(describe(e))
        }
        Outcome::Aborted(why) => {
            attributes.push(("error.type", why.into()));
            SpanStatus::Error(why.to_owned())
        }
    };
    Operation {
        name,
        kind: SpanKind::Client,
        start: f.start,
        end: f.end,
        status,
        attributes,
        carried: None,
    }
}

/// `42S02: Table 'test.t' doesn't exist`.
/// The status message of a server error; quoted values left out
/// ([`redact_error_message`](crate::sql::redact_error_message)).
fn describe(e: &ServerError) -> String {
    let message = crate::sql::redact_error_message(&e.message);
    match (&e.state, e.message.is_empty()) {
        (Some(state), false) => format!("{state}: {message}"),
        (Some(state), true) => state.clone(),
        (None, false) => message.into_owned(),
        (None, true) => format!("error {}", e.code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SystemTime = SystemTime::UNIX_EPOCH;

    fn finished(report: Report, outcome: Outcome<'_>) -> Operation {
        operation(Finished {
            report,
            system: "mariadb",
            namespace: Some("shop"),
            start: T,
            end: T,
            outcome,
        })
    }

    fn attrs(op: &Operation) -> Vec<String> {
        op.attributes
            .iter()
            .map(|(k, v)| match v {
                AttrValue::Str(s) => format!("{k}={s}"),
                other => format!("{k}={other:?}"),
            })
            .collect()
    }

    #[test]
    fn query_spans() {
        let op = finished(
            Report::Query(Some("SELECT * FROM users WHERE name = 'bob'".into())),
            Outcome::Ok,
        );
        assert_eq!(op.name, "SELECT users");
        assert_eq!(op.kind, SpanKind::Client);
        assert_eq!(op.status, SpanStatus::Unset);
        assert_eq!(
            attrs(&op),
            [
                "db.system.name=mariadb",
                "db.namespace=shop",
                "db.operation.name=SELECT",
                "db.collection.name=users",
                "db.query.text=SELECT * FROM users WHERE name = ?",
            ]
        );
    }

    #[test]
    fn errors_name_the_code() {
        let e = ServerError {
            code: 1146,
            state: Some("42S02".into()),
            message: "Table 'shop.nope' doesn't exist".into(),
        };
        let op = finished(
            Report::Query(Some("SELECT 1 FROM nope".into())),
            Outcome::Server(&e),
        );
        assert_eq!(
            op.status,
            SpanStatus::Error("42S02: Table 'shop.nope' doesn't exist".into())
        );
        let a = attrs(&op);
        assert!(a.contains(&"db.response.status_code=1146".to_owned()));
        assert!(a.contains(&"error.type=1146".to_owned()));
        let op = finished(
            Report::Ping,
            Outcome::Aborted(super::super::errors::CONNECTION_CLOSED),
        );
        assert_eq!(op.name, "PING");
        assert_eq!(op.status, SpanStatus::Error("connection_closed".into()));
        let bare = ServerError {
            code: 1045,
            state: None,
            message: String::new(),
        };
        assert_eq!(describe(&bare), "error 1045");
    }

    #[test]
    fn statement_spans() {
        let s = Arc::new(Statement::new("INSERT INTO orders VALUES (?, 'x')"));
        let prepare = finished(Report::Prepare(s.clone()), Outcome::Ok);
        assert_eq!(prepare.name, "PREPARE orders");
        let execute = finished(Report::Execute(Some(s)), Outcome::Ok);
        assert_eq!(execute.name, "INSERT orders");
        assert!(
            attrs(&execute).contains(&"db.query.text=INSERT INTO orders VALUES (?, ?)".to_owned())
        );
        let unknown = finished(Report::Execute(None), Outcome::Ok);
        assert_eq!(unknown.name, "mariadb");
        assert_eq!(
            attrs(&unknown),
            ["db.system.name=mariadb", "db.namespace=shop"]
        );
        let use_db = finished(Report::Use, Outcome::Ok);
        assert_eq!(
            (use_db.name.as_str(), attrs(&use_db)[2].as_str()),
            ("USE", "db.operation.name=USE")
        );
    }
}
