//! [`RedisConnection`]: both directions of one Redis connection, from the
//! client's side, turned into operations.
//!
//! Commands go out, and each gets exactly one reply, in order (pipelining
//! is a FIFO). What breaks the one-to-one rule is handled here:
//! - RESP3 pushes (`>`) are never replies: pub/sub messages become
//!   CONSUMER spans, subscription confirmations end their SUBSCRIBE, and
//!   anything else (client-tracking invalidations) is ignored.
//! - In RESP2 a subscribed connection gets messages and confirmations as
//!   plain arrays; they are told from replies by their first element, but
//!   only while subscribed or while a (un)subscribe awaits confirmation.
//! - A (un)subscribe is answered by one confirmation per channel; an
//!   unsubscribe naming none by one per subscription held (or one).
//! - `CLIENT REPLY OFF|SKIP` silences replies: such commands end when sent.
//! - Inside MULTI each command is answered `+QUEUED`, which ends its span;
//!   EXEC's span ends with the array of results.
//! - MONITOR and SYNC/PSYNC turn the connection into a stream that is not
//!   replies: once accepted, tracing stops.
//!
//! The connection also follows what later spans depend on: the database
//! index (SELECT once answered OK, or at EXEC when queued, back to 0 on
//! RESET) and the protocol version (HELLO).
//!
//! Whenever tracing stops early (bytes that are not RESP, a reply with no
//! command, too many commands in flight), every command still waiting is
//! reported at once with the reason as `error.type`; closes report the
//! same way. After that every call returns [`Flow::Stop`].

use std::collections::VecDeque;
use std::time::SystemTime;

use super::command::{self, Class, Command, CommandReader, Kind, ReplyMode};
use super::operation::{self, Outcome};
use super::reply::{self, Reply, ReplyReader};
use super::{errors, parse_int, MAX_IN_FLIGHT};
use crate::protocol::{CloseReason, Flow, Operation};

/// A command awaiting its reply.
#[derive(Debug)]
struct Pending {
    cmd: Command,
    /// For a (un)subscribe: confirmations still to come, once known.
    confirmations: Option<u64>,
}

/// Subscriptions held, per class, as the server's confirmations count them.
#[derive(Clone, Copy, Debug, Default)]
struct Subscriptions {
    channels: u64,
    patterns: u64,
    shards: u64,
}

impl Subscriptions {
    fn held(&self, class: Class) -> u64 {
        match class {
            Class::Channel => self.channels,
            Class::Pattern => self.patterns,
            Class::Shard => self.shards,
        }
    }

    fn any(&self) -> bool {
        self.channels > 0 || self.patterns > 0 || self.shards > 0
    }

    /// A confirmation says `count` subscriptions remain. For channels and
    /// patterns the count is of both together, so the change tells which.
    fn update(&mut self, class: Class, subscribe: bool, count: u64) {
        let total = self.channels.saturating_add(self.patterns);
        let field = match class {
            Class::Shard => {
                self.shards = count;
                return;
            }
            Class::Channel => &mut self.channels,
            Class::Pattern => &mut self.patterns,
        };
        if subscribe && count > total {
            *field = field.saturating_add(count - total);
        } else if !subscribe && count < total {
            *field = field.saturating_sub(total - count);
        }
    }
}

/// One Redis connection, client side: feed it the bytes of both directions
/// in order; it reports each finished operation. See the module docs.
#[derive(Debug)]
pub struct RedisConnection {
    stopped: bool,
    commands: CommandReader,
    replies: ReplyReader,
    /// Commands awaiting replies, oldest first.
    pending: VecDeque<Pending>,
    /// `db.namespace`: the database index in use.
    namespace: String,
    /// A SELECT queued inside MULTI, applied when EXEC succeeds.
    queued_select: Option<String>,
    /// HELLO 3 was accepted: pub/sub data comes as pushes only.
    resp3: bool,
    reply_mode: ReplyMode,
    subscriptions: Subscriptions,
}

impl Default for RedisConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisConnection {
    pub fn new() -> Self {
        RedisConnection {
            stopped: false,
            commands: CommandReader::new(),
            replies: ReplyReader::new(),
            pending: VecDeque::new(),
            namespace: "0".to_owned(),
            queued_select: None,
            resp3: false,
            reply_mode: ReplyMode::On,
            subscriptions: Subscriptions::default(),
        }
    }

    /// What follows this protocol on the app's thread when the parser runs
    /// on the capture thread.
    pub fn compactor() -> super::RedisCompactor {
        super::RedisCompactor::new()
    }

    /// The bytes fed from now on are what [`super::RedisCompactor`] hands
    /// on: strings carry at most [`super::CARRIED`] bytes of content.
    pub fn read_compacted(&mut self) {
        self.commands = CommandReader::compacted();
        self.replies = ReplyReader::compacted();
    }

    /// Bytes the process sent: commands.
    pub fn on_outbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        let mut rest = data;
        while !rest.is_empty() {
            match self.commands.feed(rest, now) {
                command::Step::Partial => break,
                command::Step::Malformed => return self.stop(now, errors::PROTOCOL_ERROR, done),
                command::Step::Command(cmd, n) => {
                    rest = rest.get(n..).unwrap_or_default();
                    if let Flow::Stop = self.sent(cmd, now, done) {
                        return Flow::Stop;
                    }
                }
            }
        }
        Flow::Continue
    }

    /// Bytes the process received: replies and pushes.
    pub fn on_inbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        let mut rest = data;
        while !rest.is_empty() {
            match self.replies.feed(rest) {
                reply::Step::Partial => break,
                reply::Step::Malformed => return self.stop(now, errors::PROTOCOL_ERROR, done),
                reply::Step::Reply(reply, n) => {
                    rest = rest.get(n..).unwrap_or_default();
                    if let Flow::Stop = self.received(reply, now, done) {
                        return Flow::Stop;
                    }
                }
            }
        }
        Flow::Continue
    }

    /// The connection ended: every command still waiting is reported.
    pub fn on_close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Operation>) {
        let why = match reason {
            CloseReason::ProcessExit => errors::PROCESS_EXIT,
            CloseReason::PeerClosed | CloseReason::Closed => errors::CONNECTION_CLOSED,
        };
        let _ = self.stop(now, why, done);
    }

    /// Commands started and not yet reported: those awaiting a reply plus
    /// one still being sent.
    pub fn in_flight(&self) -> usize {
        if self.stopped {
            return 0;
        }
        self.pending.len() + usize::from(self.commands.mid_command())
    }

    /// A command was sent whole.
    fn sent(&mut self, cmd: Command, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        let answered = match (&cmd.kind, self.reply_mode) {
            (Kind::ClientReply(ReplyMode::On), _) | (Kind::Reset, _) => {
                self.reply_mode = ReplyMode::On;
                true
            }
            (Kind::ClientReply(ReplyMode::Off), _) => {
                self.reply_mode = ReplyMode::Off;
                false
            }
            (Kind::ClientReply(ReplyMode::Skip), mode) => {
                if mode != ReplyMode::Off {
                    self.reply_mode = ReplyMode::Skip;
                }
                false
            }
            (_, ReplyMode::On) => true,
            (_, ReplyMode::Off) => false,
            (_, ReplyMode::Skip) => {
                self.reply_mode = ReplyMode::On;
                false
            }
        };
        if !answered {
            done.push(operation::command(
                cmd,
                &self.namespace,
                now,
                Outcome::Unanswered,
            ));
            return Flow::Continue;
        }
        self.pending.push_back(Pending {
            cmd,
            confirmations: None,
        });
        if self.pending.len() > MAX_IN_FLIGHT {
            return self.stop(now, errors::PIPELINE_OVERFLOW, done);
        }
        Flow::Continue
    }

    /// A complete top-level value arrived.
    fn received(&mut self, reply: Reply, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        if reply.kind == b'>' {
            self.push(&reply, now, done);
            return Flow::Continue;
        }
        if !self.resp3 && reply.kind == b'*' && self.expects_pubsub() && is_pubsub(&reply) {
            self.push(&reply, now, done);
            return Flow::Continue;
        }
        let Some(p) = self.pending.pop_front() else {
            // A reply to nothing: we lost track of the conversation.
            return self.stop(now, errors::PROTOCOL_ERROR, done);
        };
        let ends_tracing =
            matches!(p.cmd.kind, Kind::Monitor | Kind::Replication) && !reply.is_error();
        self.follow(&p.cmd.kind, &reply);
        done.push(operation::command(
            p.cmd,
            &self.namespace,
            now,
            Outcome::Reply(&reply),
        ));
        if ends_tracing {
            // What follows is a monitor or replication stream, not replies.
            return self.stop(now, errors::PROTOCOL_ERROR, done);
        }
        Flow::Continue
    }

    /// Whether RESP2 arrays may be pub/sub data rather than replies.
    fn expects_pubsub(&self) -> bool {
        self.subscriptions.any()
            || self
                .pending
                .front()
                .is_some_and(|p| matches!(p.cmd.kind, Kind::Pubsub { .. }))
    }

    /// Keeps the connection's state in step with a command's reply.
    fn follow(&mut self, kind: &Kind, reply: &Reply) {
        match kind {
            Kind::Select(index) if reply.is_simple(b"OK") => self.namespace = index.clone(),
            Kind::Select(index) if reply.is_simple(b"QUEUED") => {
                self.queued_select = Some(index.clone());
            }
            // HELLO answers a map in RESP3 and an array in RESP2.
            Kind::Hello if !reply.is_error() => self.resp3 = reply.kind == b'%',
            Kind::Multi => self.queued_select = None,
            Kind::Exec => {
                if let Some(index) = self.queued_select.take().filter(|_| reply.is_aggregate()) {
                    self.namespace = index;
                }
            }
            Kind::Discard => self.queued_select = None,
            Kind::Reset if reply.is_simple(b"RESET") => {
                self.namespace = "0".to_owned();
                self.queued_select = None;
                self.resp3 = false;
                self.subscriptions = Subscriptions::default();
            }
            _ => {}
        }
    }

    /// A value that is not a reply: a RESP3 push, or RESP2 pub/sub data.
    fn push(&mut self, push: &Reply, now: SystemTime, done: &mut Vec<Operation>) {
        let (class, subscribe) = match push.child(0) {
            Some(b"message" | b"pmessage" | b"smessage") => {
                done.extend(operation::message(push, now));
                return;
            }
            Some(b"subscribe") => (Class::Channel, true),
            Some(b"unsubscribe") => (Class::Channel, false),
            Some(b"psubscribe") => (Class::Pattern, true),
            Some(b"punsubscribe") => (Class::Pattern, false),
            Some(b"ssubscribe") => (Class::Shard, true),
            Some(b"sunsubscribe") => (Class::Shard, false),
            // Invalidations (client tracking) and anything newer.
            _ => return,
        };
        let held_before = self.subscriptions.held(class);
        let count = push
            .child(2)
            .and_then(parse_int)
            .and_then(|n| u64::try_from(n).ok());
        if let Some(count) = count {
            self.subscriptions.update(class, subscribe, count);
        }
        let Some(front) = self.pending.front_mut() else {
            return;
        };
        let names = match front.cmd.kind {
            Kind::Pubsub {
                class: c,
                subscribe: s,
                names,
            } if c == class && s == subscribe => names,
            // Unsolicited (the server dropped a shard channel): no command ends.
            _ => return,
        };
        let left =
            front
                .confirmations
                .get_or_insert(if names > 0 { names } else { held_before.max(1) });
        *left = left.saturating_sub(1);
        if *left == 0 {
            if let Some(p) = self.pending.pop_front() {
                done.push(operation::command(
                    p.cmd,
                    &self.namespace,
                    now,
                    Outcome::Reply(push),
                ));
            }
        }
    }

    /// Ends tracing: every command still waiting (and one being sent, if
    /// its name is known) is reported with `why`.
    fn stop(&mut self, now: SystemTime, why: &'static str, done: &mut Vec<Operation>) -> Flow {
        if !self.stopped {
            for p in self.pending.drain(..) {
                done.push(operation::command(
                    p.cmd,
                    &self.namespace,
                    now,
                    Outcome::Cut(why),
                ));
            }
            if let Some(cmd) = self.commands.partial() {
                done.push(operation::command(
                    cmd,
                    &self.namespace,
                    now,
                    Outcome::Cut(why),
                ));
            }
        }
        self.stopped = true;
        self.pending = VecDeque::new();
        self.commands.release();
        self.replies.release();
        Flow::Stop
    }

    /// Bytes held by the connection, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        self.commands.buffered()
            + self.replies.buffered()
            + self.pending.iter().map(|p| p.cmd.held()).sum::<usize>()
    }
}

/// A RESP2 array that is pub/sub data: a message or a confirmation.
fn is_pubsub(reply: &Reply) -> bool {
    matches!(
        reply.child(0),
        Some(
            b"message"
                | b"pmessage"
                | b"smessage"
                | b"subscribe"
                | b"unsubscribe"
                | b"psubscribe"
                | b"punsubscribe"
                | b"ssubscribe"
                | b"sunsubscribe"
        )
    )
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fixture_tests.rs"]
mod fixture_tests;

#[cfg(test)]
#[path = "fuzz.rs"]
mod fuzz;
