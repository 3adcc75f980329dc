//! [`PgConnection`]: both directions of one PostgreSQL client connection,
//! turned into operations.
//!
//! The server answers client messages strictly in order, so every client
//! message that gets a reply pushes what it waits for onto a FIFO
//! ([`Pending`]); server messages complete the front. A simple `Query` ends
//! at ReadyForQuery; an `Execute` at its CommandComplete, EmptyQueryResponse,
//! PortalSuspended or ErrorResponse. Pipelined groups of
//! Parse/Bind/Describe/Execute/Sync are matched the same way.
//!
//! After an ErrorResponse to an extended-protocol message, the server
//! discards client messages until the next Sync: the error ends the group's
//! first Execute (or, in a group without one, a span for the failed
//! statement's Parse or Bind), the group's other entries are dropped (they
//! never ran: no span), and client messages sent before that Sync are
//! ignored.
//!
//! Authentication, ParameterStatus, BackendKeyData, notices, notifications
//! and COPY data are framed and skipped. Whenever tracing stops early (bytes
//! that are not PostgreSQL framing, a reply no message asked for, too much in
//! flight) or the connection closes, every unfinished run is reported with
//! the reason as its `error.type`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use super::frame::{Framer, Mode, Next, Side};
use super::message::{decode_backend, decode_frontend, Backend, Frontend, ServerError};
use super::report::{ConnectionInfo, Run};
use super::statements::{
    forget_deallocated, Named, Statement, MAX_PORTALS, MAX_STATEMENTS, MAX_STATEMENT_BYTES,
};
use super::{errors, CloseReason, Flow, MAX_PENDING};
use crate::protocol::Operation;

/// What a client message waits for.
#[derive(Debug)]
enum Pending {
    /// The startup packet: authentication ends at the first ReadyForQuery.
    Startup,
    /// A simple query: ends at ReadyForQuery.
    Query(Box<Run>),
    /// ParseComplete; the statement and the group's start, for a span if
    /// the Parse fails in a group without an Execute.
    Parse(Option<Arc<Statement>>, SystemTime),
    /// BindComplete; as for Parse.
    Bind(Option<Arc<Statement>>, SystemTime),
    /// ParameterDescription, then RowDescription or NoData.
    Describe,
    Execute(Box<Run>),
    /// CloseComplete.
    Close,
    /// ReadyForQuery.
    Sync,
    /// FunctionCallResponse, then ReadyForQuery.
    FunctionCall,
}

/// Which one-byte answer the server owes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Ssl,
    GssEnc,
}

/// One PostgreSQL client connection: feed it the bytes of both directions
/// in order; it reports each finished operation. See the module docs.
#[derive(Debug)]
pub struct PgConnection {
    front: Framer,
    back: Framer,
    stopped: bool,
    tls: bool,
    awaiting: Option<Awaiting>,
    info: ConnectionInfo,
    pending: VecDeque<Pending>,
    statements: Named,
    portals: Named,
    /// Start of the first extended-protocol message since the last Execute
    /// or Sync: when the statement the next Execute runs was sent.
    group_start: Option<SystemTime>,
    /// The server is discarding client messages until the next Sync.
    skipping: bool,
}

impl Default for PgConnection {
    fn default() -> Self {
        PgConnection::new()
    }
}

impl PgConnection {
    pub fn new() -> Self {
        PgConnection {
            front: Framer::new(Side::Frontend, Mode::Untyped),
            back: Framer::new(Side::Backend, Mode::Typed),
            stopped: false,
            tls: false,
            awaiting: None,
            info: ConnectionInfo::default(),
            pending: VecDeque::new(),
            statements: Named::new(MAX_STATEMENTS, MAX_STATEMENT_BYTES),
            portals: Named::new(MAX_PORTALS, MAX_STATEMENT_BYTES),
            group_start: None,
            skipping: false,
        }
    }

    /// What follows this protocol on the app's thread when the parser runs
    /// on the capture thread.
    pub fn compactor() -> super::PgCompactor {
        super::PgCompactor::new()
    }

    /// The bytes fed from now on are what [`super::PgCompactor`] hands on:
    /// valid messages (their lengths rewritten), so nothing changes here.
    pub fn read_compacted(&mut self) {}

    /// Bytes the client sent.
    pub fn on_outbound(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        loop {
            let (msg, started) = match self.front.next(&mut data, now) {
                Next::Frame(f) => (decode_frontend(&f), f.started),
                Next::NeedMore => return Flow::Continue,
                Next::Invalid => return self.stop(now, errors::PROTOCOL_ERROR, done),
            };
            if let Flow::Stop = self.on_frontend(msg, started, now, done) {
                return Flow::Stop;
            }
        }
    }

    /// Bytes the client received.
    pub fn on_inbound(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        loop {
            let answer = self.back.mode() == Mode::AnswerByte;
            let msg = match self.back.next(&mut data, now) {
                Next::Frame(f) => decode_backend(&f, answer),
                Next::NeedMore => return Flow::Continue,
                Next::Invalid => return self.stop(now, errors::PROTOCOL_ERROR, done),
            };
            if let Flow::Stop = self.on_backend(msg, now, done) {
                return Flow::Stop;
            }
        }
    }

    /// The peer closed, the process closed the socket, or the process exits:
    /// every unfinished run is reported.
    pub fn on_close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Operation>) {
        if self.stopped {
            return;
        }
        let why = match reason {
            CloseReason::PeerClosed | CloseReason::Closed => errors::CONNECTION_CLOSED,
            CloseReason::ProcessExit => errors::PROCESS_EXIT,
        };
        let _ = self.stop(now, why, done);
    }

    /// Queries and executes sent and not yet reported.
    pub fn in_flight(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| matches!(p, Pending::Query(_) | Pending::Execute(_)))
            .count()
    }

    /// After an SSLRequest the server answered `S`: the connection now
    /// carries TLS. The caller stops feeding the raw (cipher) bytes and may
    /// feed the plaintext from the TLS hooks instead, to this same parser,
    /// which then expects the StartupMessage. (Raw TLS records fed by
    /// mistake are skipped, not parsed.)
    pub fn tls_accepted(&self) -> bool {
        self.tls
    }

    fn on_frontend(
        &mut self,
        msg: Frontend,
        started: SystemTime,
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Flow {
        if self.skipping && !matches!(msg, Frontend::Sync | Frontend::Terminate) {
            return Flow::Continue; // the server discards it too
        }
        let pushed = match msg {
            Frontend::Startup { user, database } => {
                self.front.set_mode(Mode::Typed);
                self.info.namespace = database.filter(|d| !d.is_empty()).or_else(|| user.clone());
                self.info.user = user;
                Pending::Startup
            }
            Frontend::SslRequest | Frontend::GssEncRequest => {
                self.awaiting = Some(if msg == Frontend::SslRequest {
                    Awaiting::Ssl
                } else {
                    Awaiting::GssEnc
                });
                self.back.set_mode(Mode::AnswerByte);
                return Flow::Continue;
            }
            // A cancel connection carries nothing else; an unknown protocol
            // is not ours.
            Frontend::CancelRequest | Frontend::UnknownStartup => {
                return self.stop(now, errors::PROTOCOL_ERROR, done)
            }
            Frontend::Query(sql) => {
                forget_deallocated(&sql, &mut self.statements, &mut self.portals);
                Pending::Query(Run::new(Some(Statement::new(&sql)), started))
            }
            Frontend::Parse { statement, sql } => {
                let st = Statement::new(&sql);
                self.statements.insert(statement, Some(Arc::clone(&st)));
                Pending::Parse(Some(st), *self.group_start.get_or_insert(started))
            }
            Frontend::Bind { portal, statement } => {
                let st = self.statements.get(&statement);
                self.portals.insert(portal, st.clone());
                Pending::Bind(st, *self.group_start.get_or_insert(started))
            }
            Frontend::Describe => {
                self.group_start.get_or_insert(started);
                Pending::Describe
            }
            Frontend::Execute { portal } => {
                let start = self.group_start.take().unwrap_or(started);
                Pending::Execute(Run::new(self.portals.get(&portal), start))
            }
            Frontend::Close { statement, name } => {
                self.group_start.get_or_insert(started);
                if statement {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                Pending::Close
            }
            Frontend::Sync => {
                self.group_start = None;
                self.skipping = false;
                Pending::Sync
            }
            Frontend::Terminate if self.pending.is_empty() => {
                // The clean end: nothing left to report.
                return self.stop(now, errors::CONNECTION_CLOSED, done);
            }
            Frontend::FunctionCall => Pending::FunctionCall,
            Frontend::Flush | Frontend::Terminate | Frontend::Other => return Flow::Continue,
        };
        self.pending.push_back(pushed);
        if self.pending.len() > MAX_PENDING {
            return self.stop(now, errors::PIPELINE_OVERFLOW, done);
        }
        Flow::Continue
    }

    fn on_backend(&mut self, msg: Backend, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        match msg {
            Backend::Answer(byte) => self.on_answer(byte, now, done),
            Backend::ParseComplete => self.expect(|p| matches!(p, Pending::Parse(..)), now, done),
            Backend::BindComplete => self.expect(|p| matches!(p, Pending::Bind(..)), now, done),
            Backend::CloseComplete => self.expect(|p| matches!(p, Pending::Close), now, done),
            Backend::ParameterDescription => Flow::Continue,
            Backend::RowShape => {
                if matches!(self.pending.front(), Some(Pending::Describe)) {
                    self.pending.pop_front();
                }
                Flow::Continue
            }
            Backend::DataRow => {
                if let Some(Pending::Query(run) | Pending::Execute(run)) = self.pending.front_mut()
                {
                    run.data_row();
                }
                Flow::Continue
            }
            Backend::CommandComplete(tag) => {
                match self.pending.front_mut() {
                    Some(Pending::Query(run)) => run.complete(tag),
                    Some(Pending::Execute(run)) => {
                        run.complete(tag);
                        self.finish_front(now, done);
                    }
                    _ => {}
                }
                Flow::Continue
            }
            Backend::EmptyQuery => {
                match self.pending.front_mut() {
                    Some(Pending::Query(run)) => run.empty_query(),
                    Some(Pending::Execute(run)) => {
                        run.empty_query();
                        self.finish_front(now, done);
                    }
                    _ => {}
                }
                Flow::Continue
            }
            Backend::PortalSuspended => {
                if matches!(self.pending.front(), Some(Pending::Execute(_))) {
                    self.finish_front(now, done);
                }
                Flow::Continue
            }
            Backend::Error(err) => {
                self.on_error(err, now, done);
                Flow::Continue
            }
            Backend::ReadyForQuery => {
                self.on_ready(now, done);
                Flow::Continue
            }
            Backend::Other => Flow::Continue,
        }
    }

    /// The one-byte answer to an SSLRequest or GSSENCRequest.
    fn on_answer(&mut self, byte: u8, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        match (self.awaiting.take(), byte) {
            // Refused: the startup packet follows in plain text.
            (Some(_), b'N') => Flow::Continue,
            // Accepted: TLS records follow (skipped whole if fed to us), then,
            // from the TLS hooks, the plaintext startup packet.
            (Some(Awaiting::Ssl), b'S') => {
                self.tls = true;
                self.front.skip_tls_records();
                self.back.skip_tls_records();
                Flow::Continue
            }
            // GSSAPI encryption (no plaintext hooks), or not an answer.
            _ => self.stop(now, errors::PROTOCOL_ERROR, done),
        }
    }

    /// A reply that must complete the front entry; anything else means the
    /// two streams no longer line up.
    fn expect(
        &mut self,
        is: impl Fn(&Pending) -> bool,
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Flow {
        match self.pending.front() {
            Some(p) if is(p) => {
                self.pending.pop_front();
                Flow::Continue
            }
            _ => self.stop(now, errors::PROTOCOL_ERROR, done),
        }
    }

    /// Reports the front run as finished.
    fn finish_front(&mut self, now: SystemTime, done: &mut Vec<Operation>) {
        if let Some(Pending::Query(run) | Pending::Execute(run)) = self.pending.pop_front() {
            done.push(run.into_operation(now, &self.info, None));
        }
    }

    fn on_error(&mut self, err: ServerError, now: SystemTime, done: &mut Vec<Operation>) {
        match self.pending.front_mut() {
            Some(Pending::Query(run)) => {
                // The rest of the query is skipped; ReadyForQuery ends it.
                if run.error.is_none() {
                    run.error = Some(err);
                }
            }
            Some(Pending::Parse(..) | Pending::Bind(..) | Pending::Describe)
            | Some(Pending::Execute(_) | Pending::Close) => {
                let sync = self.pending.iter().position(|p| matches!(p, Pending::Sync));
                self.skipping = sync.is_none();
                let group: Vec<Pending> = self
                    .pending
                    .drain(..sync.unwrap_or(self.pending.len()))
                    .collect();
                let mut failed = None;
                for p in group {
                    match p {
                        Pending::Execute(run) => {
                            failed = Some(run);
                            break;
                        }
                        Pending::Parse(st, start) | Pending::Bind(st, start)
                            if failed.is_none() =>
                        {
                            failed = st.map(|st| Run::new(Some(st), start));
                        }
                        _ => {}
                    }
                }
                if let Some(mut run) = failed {
                    run.error = Some(err);
                    done.push(run.into_operation(now, &self.info, None));
                }
            }
            // Startup errors are FATAL (the connection ends, no span); an
            // error at Sync (a deferred constraint in the implicit commit)
            // comes after its Execute was reported.
            Some(Pending::Startup | Pending::Sync | Pending::FunctionCall) | None => {}
        }
    }

    /// ReadyForQuery ends the front Query, Sync, FunctionCall or Startup.
    /// Entries before it never got their replies (the server skipped
    /// them): they are dropped.
    fn on_ready(&mut self, now: SystemTime, done: &mut Vec<Operation>) {
        while let Some(p) = self.pending.pop_front() {
            match p {
                Pending::Query(run) => {
                    done.push(run.into_operation(now, &self.info, None));
                    break;
                }
                Pending::Sync | Pending::Startup | Pending::FunctionCall => break,
                _ => {}
            }
        }
    }

    /// Ends tracing: every unfinished run is reported with `why`.
    fn stop(&mut self, now: SystemTime, why: &'static str, done: &mut Vec<Operation>) -> Flow {
        for p in self.pending.drain(..) {
            if let Pending::Query(run) | Pending::Execute(run) = p {
                done.push(run.into_operation(now, &self.info, Some(why)));
            }
        }
        self.stopped = true;
        self.pending = VecDeque::new();
        self.statements.clear();
        self.portals.clear();
        self.front.release();
        self.back.release();
        Flow::Stop
    }

    /// Bytes held by the framers, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        self.front.buffered() + self.back.buffered()
    }

    #[doc(hidden)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of SQL kept for named statements, for bounds checks in tests.
    #[cfg(test)]
    pub(super) fn statement_bytes(&self) -> usize {
        self.statements.bytes()
    }
}
