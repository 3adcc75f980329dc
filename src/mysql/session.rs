//! [`MysqlConnection`]: both directions of one MySQL / MariaDB client
//! connection, turned into operations.
//!
//! The connection goes through phases: the server's greeting, the client's
//! login (HandshakeResponse, or an SSLRequest after which the bytes on the
//! wire are TLS), authentication (switches and extra rounds, never spans),
//! then commands. Each command packet the client sends (sequence id 0)
//! joins a FIFO of pending commands; the server answers in order, and the
//! [`Response`] at the front frames its answer packet by packet. When the
//! front's response is complete, its span (if the command has one) is
//! reported. Commands without a response (COM_STMT_CLOSE,
//! COM_STMT_SEND_LONG_DATA, COM_QUIT) never join the FIFO.
//!
//! Which commands make spans: COM_QUERY, COM_STMT_PREPARE,
//! COM_STMT_EXECUTE and MariaDB's COM_STMT_BULK_EXECUTE, COM_INIT_DB and
//! COM_PING. Housekeeping that drivers do on their own (COM_STMT_RESET,
//! COM_STMT_FETCH, COM_SET_OPTION, COM_RESET_CONNECTION, COM_CHANGE_USER,
//! COM_STATISTICS, …) is framed but not reported; COM_STMT_CLOSE has no
//! response and no span.
//!
//! Tracing stops ([`Flow::Stop`]) when the protocol leaves what can be
//! followed: compression negotiated, replication streams, a failed login,
//! packets that do not fit (a response with no command, a command with a
//! sequence id other than 0), too many commands in flight. Pending
//! commands are then reported with an `error.type` saying why.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::handshake::{
    caps, database_name, parse_change_user, parse_greeting, parse_login, query_text,
    MAX_DATABASE_BYTES,
};
use super::packet::{Cursor, Event, Packet, PacketReader};
use super::response::{Expect, Framing, Response, Step, Then};
use super::span::{operation, Finished, Outcome, Report, Statement};
use super::{
    errors, lossy_prefix, CloseReason, Flow, Operation, MAX_IN_FLIGHT, MAX_QUERY_BYTES,
    MAX_STATEMENTS, MAX_STATEMENT_BYTES,
};

/// Command bytes.
pub(super) mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const CONNECT_OUT: u8 = 0x14;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB.
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// Statement id meaning "the statement prepared last" (MariaDB, which lets
/// a driver send a prepare and its execute without waiting in between).
const LAST_PREPARED: u32 = u32::MAX;

/// Most bytes kept of a login, an authentication or a COM_CHANGE_USER
/// packet, and of any server packet but rows.
pub(super) const MAX_CONTROL_BYTES: usize = 2048;

/// Kept of a COM_QUERY beyond its text: room for MySQL's query attributes.
pub(super) const QUERY_ATTRIBUTES_ROOM: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Awaiting the server's greeting.
    Greeting,
    /// Awaiting the client's HandshakeResponse (again, after an SSLRequest).
    Login,
    /// Authentication rounds, until the server's OK.
    Auth,
    Commands,
    /// Not (or no longer) followable; nothing more is reported.
    Stopped,
}

/// What the client's packets are, in the command phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outbound {
    Commands,
    /// Authentication data after COM_CHANGE_USER.
    AuthData,
    /// LOCAL INFILE contents, up to an empty packet.
    Infile,
}

/// What a successful response changes in the session.
#[derive(Debug)]
enum OnOk {
    Nothing,
    /// COM_INIT_DB: the current database.
    Namespace(Option<String>),
    /// COM_CHANGE_USER: a new session with this database (if it could be
    /// read), and no prepared statements.
    ChangeUser(Option<Option<String>>),
    /// COM_RESET_CONNECTION: no prepared statements.
    ForgetStatements,
}

/// A command awaiting its response.
#[derive(Debug)]
struct Pending {
    start: SystemTime,
    /// `db.namespace` of its span.
    namespace: Option<Arc<str>>,
    report: Option<Report>,
    response: Response,
    on_ok: OnOk,
    /// A prepare's statement, remembered under the id its response gives.
    prepared: Option<Arc<Statement>>,
}

/// One MySQL / MariaDB client connection: feed it the bytes of both
/// directions in order, starting with the greeting; it reports each
/// finished command. See the module docs.
#[derive(Debug)]
pub struct MysqlConnection {
    phase: Phase,
    /// `db.system.name`.
    system: &'static str,
    /// Over TLS, with no greeting seen: the login tells the server's kind.
    system_from_login: bool,
    server_caps: u32,
    server_ext_caps: u32,
    /// Capabilities both sides agreed on.
    caps: u32,
    framing: Framing,
    /// The current database.
    namespace: Option<Arc<str>>,
    tls: bool,
    inbound: PacketReader,
    outbound: PacketReader,
    outbound_is: Outbound,
    pending: VecDeque<Pending>,
    /// Prepared statements by id.
    statements: BTreeMap<u32, Arc<Statement>>,
    statement_bytes: usize,
    /// The statement of the last prepare sent.
    last_prepared: Option<Arc<Statement>>,
}

impl Default for MysqlConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl MysqlConnection {
    /// A connection whose first inbound bytes [`super::detect_greeting`]
    /// accepted; those bytes go to [`on_inbound`](Self::on_inbound) first.
    pub fn new() -> Self {
        MysqlConnection {
            phase: Phase::Greeting,
            system: "mysql",
            system_from_login: false,
            server_caps: 0,
            server_ext_caps: 0,
            caps: 0,
            framing: Framing::default(),
            namespace: None,
            tls: false,
            inbound: PacketReader::new(),
            outbound: PacketReader::new(),
            outbound_is: Outbound::Commands,
            pending: VecDeque::new(),
            statements: BTreeMap::new(),
            statement_bytes: 0,
            last_prepared: None,
        }
    }

    /// A connection whose plaintext, through TLS, starts with the client's
    /// login ([`super::detect_tls_login`]): the greeting and the TLS request
    /// went before, on the socket. Its capabilities are the client's (a
    /// client asks only for what the server offered), and the server is
    /// MariaDB when the client cleared `CLIENT_MYSQL` (MariaDB clients do,
    /// for a MariaDB server, to send its extended capabilities).
    pub fn after_tls() -> Self {
        MysqlConnection {
            phase: Phase::Login,
            system_from_login: true,
            server_caps: u32::MAX,
            server_ext_caps: u32::MAX,
            ..Self::new()
        }
    }

    /// What follows this protocol on the app's thread when the parser runs
    /// on the capture thread.
    pub fn compactor() -> super::MysqlCompactor {
        super::MysqlCompactor::new()
    }

    /// The bytes fed from now on are what [`super::MysqlCompactor`] hands
    /// on: packets carry part of their payloads.
    pub fn read_compacted(&mut self) {
        self.inbound = PacketReader::compacted(super::capture::carried_inbound);
        self.outbound = PacketReader::compacted(super::capture::carried_outbound);
    }

    /// Bytes the process sent (client to server).
    pub fn on_outbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        let mut data = data;
        while self.phase != Phase::Stopped {
            match self.outbound.next(&mut data, now) {
                None => return Flow::Continue,
                Some(Event::Begin { first, .. }) => {
                    let keep = self.outbound_keep(first);
                    self.outbound.keep(keep);
                }
                Some(Event::End) => {
                    let packet = self.outbound.take(now);
                    if let Flow::Stop = self.on_client_packet(packet, now, done) {
                        return Flow::Stop;
                    }
                }
            }
        }
        Flow::Stop
    }

    /// Bytes the process received (server to client).
    pub fn on_inbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        let mut data = data;
        while self.phase != Phase::Stopped {
            match self.inbound.next(&mut data, now) {
                None => return Flow::Continue,
                Some(Event::Begin { first, .. }) => {
                    let keep = match (self.phase, self.pending.front()) {
                        (Phase::Commands, Some(front)) if !front.response.keeps(first) => 0,
                        _ => MAX_CONTROL_BYTES,
                    };
                    self.inbound.keep(keep);
                }
                Some(Event::End) => {
                    let packet = self.inbound.take(now);
                    if let Flow::Stop = self.on_server_packet(packet, now, done) {
                        return Flow::Stop;
                    }
                }
            }
        }
        Flow::Stop
    }

    /// The connection ended: every command still awaiting its response is
    /// reported with `error.type` `connection_closed` (or `process_exit`).
    pub fn on_close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Operation>) {
        let why = match reason {
            CloseReason::PeerClosed | CloseReason::Closed => errors::CONNECTION_CLOSED,
            CloseReason::ProcessExit => errors::PROCESS_EXIT,
        };
        let _ = self.stop(now, why, done);
    }

    /// Commands sent and awaiting their response (including those that make
    /// no span, such as COM_STMT_RESET).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The client sent an SSLRequest: the rest of the connection is TLS, so
    /// the caller stops feeding raw bytes. Should it feed the plaintext
    /// instead (TLS hooks), parsing carries on with the login that follows.
    pub fn tls_requested(&self) -> bool {
        self.tls
    }

    /// How much of a client packet starting with `first` to keep.
    fn outbound_keep(&self, first: u8) -> usize {
        match (self.phase, self.outbound_is) {
            (Phase::Login, _) => MAX_CONTROL_BYTES,
            (Phase::Commands, Outbound::Commands) => match first {
                com::QUERY => 1 + QUERY_ATTRIBUTES_ROOM + MAX_QUERY_BYTES,
                com::STMT_PREPARE => 1 + MAX_QUERY_BYTES,
                com::INIT_DB => 1 + MAX_DATABASE_BYTES,
                com::CHANGE_USER => MAX_CONTROL_BYTES,
                _ => 16, // A statement id is all that is read.
            },
            _ => 0,
        }
    }

    fn on_client_packet(&mut self, p: Packet, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        match self.phase {
            Phase::Greeting => self.stop(now, errors::PROTOCOL_ERROR, done),
            Phase::Login => {
                let Some(login) = parse_login(&p.data, p.len) else {
                    return self.stop(now, errors::PROTOCOL_ERROR, done);
                };
                if std::mem::take(&mut self.system_from_login) {
                    self.system = if login.caps & caps::CLIENT_MYSQL == 0 {
                        "mariadb"
                    } else {
                        "mysql"
                    };
                }
                self.caps = login.caps & self.server_caps;
                let ext_caps = login.ext_caps & self.server_ext_caps;
                self.framing = Framing::new(self.caps, ext_caps);
                if login.ssl_request {
                    self.tls = true;
                    return Flow::Continue;
                }
                if self.caps & (caps::COMPRESS | caps::ZSTD_COMPRESSION) != 0 {
                    // Packets are compressed from the server's OK on.
                    return self.stop(now, errors::PROTOCOL_ERROR, done);
                }
                self.namespace = login.database.map(Arc::from);
                self.phase = Phase::Auth;
                Flow::Continue
            }
            Phase::Auth | Phase::Stopped => Flow::Continue,
            Phase::Commands => match self.outbound_is {
                Outbound::AuthData => Flow::Continue,
                Outbound::Infile => {
                    if p.len == 0 {
                        self.outbound_is = Outbound::Commands;
                    }
                    Flow::Continue
                }
                Outbound::Commands => self.on_command(p, now, done),
            },
        }
    }

    fn on_command(&mut self, p: Packet, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        let (Some(command), 0) = (p.first(), p.seq) else {
            return self.stop(now, errors::PROTOCOL_ERROR, done);
        };
        let body = p.data.get(1..).unwrap_or_default();
        let statement_id = Cursor(body).u32();
        let mut namespace = self.namespace.clone();
        let mut prepared = None;
        let mut on_ok = OnOk::Nothing;
        let (report, expect) = match command {
            com::QUIT | com::STMT_SEND_LONG_DATA => return Flow::Continue,
            com::STMT_CLOSE => {
                if let Some(id) = statement_id {
                    self.forget(id);
                }
                return Flow::Continue;
            }
            com::BINLOG_DUMP
            | com::BINLOG_DUMP_GTID
            | com::TABLE_DUMP
            | com::CONNECT_OUT
            | com::REGISTER_SLAVE => return self.stop(now, errors::PROTOCOL_ERROR, done),
            com::QUERY => (
                Some(Report::Query(query_text(body, self.caps))),
                Expect::ResultStart,
            ),
            com::INIT_DB => {
                let db = database_name(body);
                namespace = db.as_deref().map(Arc::from);
                on_ok = OnOk::Namespace(db);
                (Some(Report::Use), Expect::OnePacket)
            }
            com::STMT_PREPARE => {
                let statement = Arc::new(Statement::new(&lossy_prefix(body, MAX_QUERY_BYTES)));
                self.last_prepared = Some(statement.clone());
                prepared = Some(statement.clone());
                (Some(Report::Prepare(statement)), Expect::PrepareStart)
            }
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE => {
                let statement = statement_id.and_then(|id| self.statement(id));
                (Some(Report::Execute(statement)), Expect::ResultStart)
            }
            com::PING => (Some(Report::Ping), Expect::OnePacket),
            com::STMT_FETCH => (None, Expect::Rows),
            com::PROCESS_INFO => (None, Expect::ResultStart),
            com::FIELD_LIST => (
                None,
                Expect::Definitions {
                    left: u64::MAX,
                    eof: true,
                    then: Then::Done,
                },
            ),
            com::CHANGE_USER => {
                on_ok = OnOk::ChangeUser(parse_change_user(body, self.caps));
                self.outbound_is = Outbound::AuthData;
                (None, Expect::Reauthentication)
            }
            com::RESET_CONNECTION => {
                on_ok = OnOk::ForgetStatements;
                (None, Expect::OnePacket)
            }
            com::STMT_RESET => (None, Expect::OnePacket),
            // COM_SET_OPTION, COM_STATISTICS, COM_DEBUG, COM_REFRESH, …, and
            // commands the server refuses: one packet answers.
            _ => (None, Expect::OnePacket),
        };
        self.pending.push_back(Pending {
            start: p.start,
            namespace,
            report,
            response: Response::new(expect),
            on_ok,
            prepared,
        });
        if self.pending.len() > MAX_IN_FLIGHT {
            return self.stop(now, errors::PIPELINE_OVERFLOW, done);
        }
        Flow::Continue
    }

    fn on_server_packet(&mut self, p: Packet, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        match self.phase {
            Phase::Greeting => match parse_greeting(&p.data) {
                Some(g) => {
                    self.system = g.system;
                    self.server_caps = g.caps;
                    self.server_ext_caps = g.ext_caps;
                    self.phase = Phase::Login;
                    Flow::Continue
                }
                // The server refused the connection (or is not MySQL).
                None => self.stop(now, errors::PROTOCOL_ERROR, done),
            },
            // The server spoke out of turn, or the login failed.
            Phase::Login => self.stop(now, errors::PROTOCOL_ERROR, done),
            Phase::Auth => match p.first() {
                Some(0x00) => {
                    self.phase = Phase::Commands;
                    Flow::Continue
                }
                Some(0xff) => self.stop(now, errors::PROTOCOL_ERROR, done),
                _ => Flow::Continue, // Auth switch, more data.
            },
            Phase::Commands => {
                let framing = self.framing;
                let Some(front) = self.pending.front_mut() else {
                    // An ERR with no command: the server closes the
                    // connection (idle timeout, shutdown). Anything else
                    // means the stream is not understood.
                    if p.first() == Some(0xff) {
                        return Flow::Continue;
                    }
                    return self.stop(now, errors::PROTOCOL_ERROR, done);
                };
                match front.response.on_packet(&p, framing) {
                    Step::Continue => {}
                    Step::Infile => self.outbound_is = Outbound::Infile,
                    Step::Done => self.finish_front(now, done),
                }
                Flow::Continue
            }
            Phase::Stopped => Flow::Stop,
        }
    }

    /// The front command's response is complete.
    fn finish_front(&mut self, now: SystemTime, done: &mut Vec<Operation>) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        if matches!(p.on_ok, OnOk::ChangeUser(_)) || self.outbound_is == Outbound::Infile {
            self.outbound_is = Outbound::Commands;
        }
        let response = p.response;
        if response.error.is_none() {
            match p.on_ok {
                OnOk::Nothing => {}
                OnOk::Namespace(db) => self.namespace = db.as_deref().map(Arc::from),
                OnOk::ChangeUser(db) => {
                    if let Some(db) = db {
                        self.namespace = db.as_deref().map(Arc::from);
                    }
                    self.forget_all();
                }
                OnOk::ForgetStatements => self.forget_all(),
            }
            if let (Some(id), Some(statement)) = (response.statement_id, p.prepared) {
                self.remember(id, statement);
            }
        }
        // The server's own word on the schema comes last.
        if let Some(schema) = response.schema {
            self.namespace = schema.as_deref().map(Arc::from);
        }
        if let Some(report) = p.report {
            let outcome = match &response.error {
                Some(e) => Outcome::Server(e),
                None => Outcome::Ok,
            };
            done.push(operation(Finished {
                report,
                system: self.system,
                namespace: p.namespace.as_deref(),
                start: p.start,
                end: now,
                outcome,
            }));
        }
    }

    fn statement(&self, id: u32) -> Option<Arc<Statement>> {
        if id == LAST_PREPARED {
            return self.last_prepared.clone();
        }
        self.statements.get(&id).cloned()
    }

    /// Remembers a prepared statement, forgetting the oldest past the caps.
    fn remember(&mut self, id: u32, statement: Arc<Statement>) {
        self.statement_bytes += statement.size();
        if let Some(old) = self.statements.insert(id, statement) {
            self.statement_bytes -= old.size();
        }
        while self.statements.len() > MAX_STATEMENTS || self.statement_bytes > MAX_STATEMENT_BYTES {
            match self.statements.pop_first() {
                Some((_, old)) => self.statement_bytes -= old.size(),
                None => break,
            }
        }
    }

    fn forget(&mut self, id: u32) {
        if let Some(old) = self.statements.remove(&id) {
            self.statement_bytes -= old.size();
        }
    }

    fn forget_all(&mut self) {
        self.statements.clear();
        self.statement_bytes = 0;
        self.last_prepared = None;
    }

    /// Ends tracing: every pending command that makes a span is reported
    /// with `why` as its `error.type`.
    fn stop(&mut self, now: SystemTime, why: &'static str, done: &mut Vec<Operation>) -> Flow {
        for p in std::mem::take(&mut self.pending) {
            if let Some(report) = p.report {
                done.push(operation(Finished {
                    report,
                    system: self.system,
                    namespace: p.namespace.as_deref(),
                    start: p.start,
                    end: now,
                    outcome: Outcome::Aborted(why),
                }));
            }
        }
        self.phase = Phase::Stopped;
        self.inbound.release();
        self.outbound.release();
        self.forget_all();
        self.outbound_is = Outbound::Commands;
        Flow::Stop
    }

    /// Bytes held by the connection, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        self.inbound.buffered() + self.outbound.buffered() + self.statement_bytes
    }

    #[cfg(test)]
    pub(super) fn statement_count(&self) -> usize {
        self.statements.len()
    }
}
