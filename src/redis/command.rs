//! Outbound commands, read as a stream: RESP arrays of bulk strings
//! (`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n`) and inline commands
//! (`PING\r\n`).
//!
//! Only what a span needs is kept: the command name, a subcommand, keys
//! and channels (see `keys`), and a few arguments that change how the
//! connection behaves (SELECT's index, CLIENT REPLY's mode). Every other
//! argument is counted and skipped as it streams by, so a 100 MB SET costs
//! no memory. As in Redis itself, the two bytes after an argument are
//! skipped unchecked.

use std::time::SystemTime;

use super::keys::{keys_of, Keys};
use super::line::Line;
use super::{
    capped_string, parse_int, LEN_LINE_BYTES, MAX_HEAD_BYTES, MAX_KEY_BYTES, MAX_QUERY_TEXT_BYTES,
};

/// Most bytes kept of a command or subcommand name.
const MAX_NAME_BYTES: usize = 64;
/// Most arguments recorded per command; the rest are only counted.
const MAX_WORDS: usize = 64;
/// Most bytes kept of an argument looked at but not shown.
const PEEK_BYTES: usize = 8;
// A compacted stream carries every byte kept of an argument.
const _: () = assert!(
    MAX_NAME_BYTES <= super::CARRIED
        && MAX_KEY_BYTES <= super::CARRIED
        && PEEK_BYTES <= super::CARRIED
);
/// Most arguments in one command, as Redis allows.
const MAX_ARGC: i64 = i32::MAX as i64;

/// A class of pub/sub subscription (shard channels are counted apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Channel,
    Pattern,
    Shard,
}

/// `CLIENT REPLY ON|OFF|SKIP`: whether the server answers what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyMode {
    On,
    Off,
    Skip,
}

/// What a command does to the connection, beyond getting one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    /// SELECT, with its index as sent.
    Select(String),
    Hello,
    /// PUBLISH or SPUBLISH: a PRODUCER span.
    Publish {
        channel: String,
        size: u64,
    },
    /// (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE: answered by one confirmation
    /// per channel named (`names`), or, for an unsubscribe naming none, one
    /// per subscription held (at least one).
    Pubsub {
        class: Class,
        subscribe: bool,
        names: u64,
    },
    Multi,
    Exec,
    Discard,
    Reset,
    Monitor,
    ClientReply(ReplyMode),
    /// SYNC or PSYNC: the connection becomes a replication stream.
    Replication,
}

/// A command, as far as a span needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Command {
    /// Time of the call that carried its first byte.
    pub(crate) start: SystemTime,
    /// `db.operation.name`: upper-cased, with a container's subcommand.
    pub(crate) name: String,
    /// `db.query.text`: the name, keys shown, other arguments `?`.
    pub(crate) text: String,
    pub(crate) kind: Kind,
}

impl Command {
    /// Heap bytes held, for bounds checks.
    pub(crate) fn held(&self) -> usize {
        let extra = match &self.kind {
            Kind::Select(s) | Kind::Publish { channel: s, .. } => s.len(),
            _ => 0,
        };
        self.name.len() + self.text.len() + extra
    }
}

/// One argument as recorded.
#[derive(Clone, Debug)]
struct Word {
    /// Its first bytes, up to `cap` (none for a masked argument).
    kept: Vec<u8>,
    cap: usize,
    /// Its full length.
    len: u64,
    /// Shown in `db.query.text` (a name or key), or only looked at.
    show: bool,
}

/// A command whose arguments are arriving.
#[derive(Debug)]
struct Building {
    start: SystemTime,
    argc: u64,
    /// Arguments fully read.
    read: u64,
    words: Vec<Word>,
    keys: Keys,
    kept: usize,
}

impl Building {
    fn new(start: SystemTime, argc: u64) -> Building {
        Building {
            start,
            argc,
            read: 0,
            words: Vec::new(),
            keys: Keys::None,
            kept: 0,
        }
    }

    /// Argument number `read` starts, `len` bytes long.
    fn begin(&mut self, len: u64) {
        if self.words.len() >= MAX_WORDS {
            return;
        }
        let i = self.read;
        let (cap, show) = if i == 0 || (i == 1 && self.keys.has_subcommand()) {
            (MAX_NAME_BYTES, true)
        } else if self.keys.is_key(i, self.argc, self.numkeys()) {
            (MAX_KEY_BYTES, true)
        } else if self.peeks_at(i) {
            (PEEK_BYTES, false)
        } else {
            (0, false)
        };
        let cap = cap.min(MAX_HEAD_BYTES - self.kept);
        let want = usize::try_from(len).unwrap_or(usize::MAX).min(cap);
        self.kept += want;
        self.words.push(Word {
            kept: Vec::with_capacity(want),
            cap: want,
            len,
            show,
        });
    }

    /// Bytes of the current argument.
    fn take(&mut self, bytes: &[u8]) {
        // Arguments past MAX_WORDS have no word.
        let Some(w) = self.words.get_mut(self.read as usize) else {
            return;
        };
        let room = w.cap.saturating_sub(w.kept.len());
        w.kept
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }

    /// The current argument is complete.
    fn end(&mut self) {
        if self.read == 0 {
            self.keys = keys_of(&upper(self.word(0)));
        }
        self.read += 1;
    }

    fn done(&self) -> bool {
        self.read >= self.argc
    }

    fn word(&self, i: usize) -> &[u8] {
        self.words.get(i).map_or(&[], |w| &w.kept)
    }

    fn numkeys(&self) -> Option<u64> {
        if self.keys != Keys::Eval || self.read < 3 {
            return None;
        }
        parse_int(self.word(2)).and_then(|n| u64::try_from(n).ok())
    }

    /// Arguments kept though not shown: CLIENT REPLY's mode.
    fn peeks_at(&self, i: u64) -> bool {
        i == 2 && upper(self.word(0)) == b"CLIENT" && upper(self.word(1)) == b"REPLY"
    }

    /// The command, from what was read of it.
    fn finish(self) -> Command {
        let cmd = upper(self.word(0));
        let mut name = capped_string(&cmd, MAX_NAME_BYTES);
        let sub = upper(self.word(1));
        let mut first_arg = 1;
        if self.keys.has_subcommand() && self.read > 1 && is_token(&sub) {
            name.push(' ');
            name.push_str(&String::from_utf8_lossy(&sub));
            first_arg = 2;
        }
        let mut text = name.clone();
        for i in first_arg..self.argc {
            if text.len() > MAX_QUERY_TEXT_BYTES {
                break;
            }
            if i >= MAX_WORDS as u64 {
                text.push_str(" ...");
                break;
            }
            // Arguments not read yet (a command cut short) are `?` too.
            match self.words.get(i as usize) {
                Some(w) if w.show && !(i == 1 && self.keys.has_subcommand()) => {
                    text.push(' ');
                    text.push_str(&String::from_utf8_lossy(&w.kept));
                }
                _ => text.push_str(" ?"),
            }
        }
        let kind = self.kind(&cmd, &sub);
        Command {
            start: self.start,
            name,
            text: capped_string(text.as_bytes(), MAX_QUERY_TEXT_BYTES),
            kind,
        }
    }

    fn kind(&self, cmd: &[u8], sub: &[u8]) -> Kind {
        let names = self.argc.saturating_sub(1);
        let arg = |i: usize| capped_string(self.word(i), MAX_KEY_BYTES);
        let pubsub = |class, subscribe| Kind::Pubsub {
            class,
            subscribe,
            names,
        };
        match cmd {
            b"SELECT" if self.argc == 2 => Kind::Select(arg(1)),
            b"HELLO" => Kind::Hello,
            b"PUBLISH" | b"SPUBLISH" if self.argc == 3 => Kind::Publish {
                channel: arg(1),
                size: self.words.get(2).map_or(0, |w| w.len),
            },
            b"SUBSCRIBE" => pubsub(Class::Channel, true),
            b"UNSUBSCRIBE" => pubsub(Class::Channel, false),
            b"PSUBSCRIBE" => pubsub(Class::Pattern, true),
            b"PUNSUBSCRIBE" => pubsub(Class::Pattern, false),
            b"SSUBSCRIBE" => pubsub(Class::Shard, true),
            b"SUNSUBSCRIBE" => pubsub(Class::Shard, false),
            b"MULTI" => Kind::Multi,
            b"EXEC" => Kind::Exec,
            b"DISCARD" => Kind::Discard,
            b"RESET" => Kind::Reset,
            b"MONITOR" => Kind::Monitor,
            b"SYNC" | b"PSYNC" => Kind::Replication,
            b"CLIENT" if sub == b"REPLY" && self.argc == 3 => {
                match upper(self.word(2)).as_slice() {
                    b"ON" => Kind::ClientReply(ReplyMode::On),
                    b"OFF" => Kind::ClientReply(ReplyMode::Off),
                    b"SKIP" => Kind::ClientReply(ReplyMode::Skip),
                    _ => Kind::Plain,
                }
            }
            _ => Kind::Plain,
        }
    }
}

fn upper(b: &[u8]) -> Vec<u8> {
    b.to_ascii_uppercase()
}

/// A subcommand name: letters, digits, `-` and `_`.
fn is_token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= MAX_NAME_BYTES
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between commands.
    Idle,
    /// After `*`: the argument count.
    Count,
    /// Expecting the `$` of the next argument.
    ArgStart,
    /// After `$`: the argument's length.
    ArgLen,
    /// Inside an argument: `left` more bytes.
    ArgBody { left: u64 },
    /// The bytes after an argument (CR LF).
    ArgEnd { left: u8 },
    /// An inline command's line.
    Inline,
}

/// What [`CommandReader::feed`] found.
#[derive(Debug)]
pub(crate) enum Step {
    /// Every byte taken; no command complete yet.
    Partial,
    /// A command, complete after this many bytes of the input.
    Command(Command, usize),
    /// Bytes that are not RESP.
    Malformed,
}

/// A command's argument count, from its complete `*` line: `Ok(None)` for
/// an empty or null array (which Redis ignores).
pub(super) fn argc(line: &Line) -> Result<Option<u64>, ()> {
    match parse_int(line.content()) {
        Some(c) if c <= 0 => Ok(None),
        Some(c) if c <= MAX_ARGC => Ok(Some(c as u64)),
        _ => Err(()),
    }
}

/// An argument's length, from its complete `$` line.
pub(super) fn arg_len(line: &Line) -> Option<u64> {
    parse_int(line.content()).and_then(|l| u64::try_from(l).ok())
}

/// Reads commands from the outbound stream.
#[derive(Debug)]
pub(crate) struct CommandReader {
    state: State,
    line: Line,
    building: Option<Building>,
    /// Time of the first byte of the command being read.
    start: SystemTime,
    /// Most bytes of an argument present in the stream: all of them, or
    /// [`super::CARRIED`] in a compacted one.
    carried: u64,
}

impl CommandReader {
    pub(crate) fn new() -> CommandReader {
        CommandReader {
            state: State::Idle,
            line: Line::default(),
            building: None,
            start: SystemTime::UNIX_EPOCH,
            carried: u64::MAX,
        }
    }

    /// Reads a stream compacted by [`super::RedisCompactor`]: each argument
    /// carries at most [`super::CARRIED`] bytes.
    pub(crate) fn compacted() -> CommandReader {
        CommandReader {
            carried: super::CARRIED as u64,
            ..CommandReader::new()
        }
    }

    /// Reads from `data` up to the end of the next complete command.
    pub(crate) fn feed(&mut self, data: &[u8], now: SystemTime) -> Step {
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            match self.state {
                State::Idle => {
                    let b = rest.first().copied().unwrap_or_default();
                    match b {
                        b'*' => {
                            self.begin(now, State::Count, LEN_LINE_BYTES);
                            pos += 1;
                        }
                        // Empty lines between commands, as Redis allows.
                        b'\r' | b'\n' | b' ' => pos += 1,
                        b if b.is_ascii_alphabetic() => {
                            self.begin(now, State::Inline, MAX_HEAD_BYTES);
                        }
                        _ => return Step::Malformed,
                    }
                }
                State::Count => {
                    let Some(n) = self.line.feed(rest) else {
                        return Step::Partial;
                    };
                    pos += n;
                    match argc(&self.line) {
                        Ok(None) => self.state = State::Idle,
                        Ok(Some(c)) => {
                            self.building = Some(Building::new(self.start, c));
                            self.state = State::ArgStart;
                        }
                        Err(()) => return Step::Malformed,
                    }
                }
                State::ArgStart => {
                    if rest.first() != Some(&b'$') {
                        return Step::Malformed;
                    }
                    pos += 1;
                    self.line.start(LEN_LINE_BYTES);
                    self.state = State::ArgLen;
                }
                State::ArgLen => {
                    let Some(n) = self.line.feed(rest) else {
                        return Step::Partial;
                    };
                    pos += n;
                    let Some(len) = arg_len(&self.line) else {
                        return Step::Malformed;
                    };
                    if let Some(b) = &mut self.building {
                        b.begin(len);
                    }
                    self.state = State::ArgBody {
                        left: len.min(self.carried),
                    };
                }
                State::ArgBody { left } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    if let Some(b) = &mut self.building {
                        b.take(rest.get(..take).unwrap_or_default());
                    }
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::ArgEnd { left: 2 }
                    } else {
                        State::ArgBody { left }
                    };
                }
                State::ArgEnd { left } => {
                    let take = usize::from(left).min(rest.len());
                    pos += take;
                    let left = left - take as u8;
                    if left > 0 {
                        self.state = State::ArgEnd { left };
                        continue;
                    }
                    let Some(b) = &mut self.building else {
                        return Step::Malformed;
                    };
                    b.end();
                    if !b.done() {
                        self.state = State::ArgStart;
                        continue;
                    }
                    self.state = State::Idle;
                    if let Some(b) = self.building.take() {
                        return Step::Command(b.finish(), pos);
                    }
                }
                State::Inline => {
                    let Some(n) = self.line.feed(rest) else {
                        return Step::Partial;
                    };
                    pos += n;
                    self.state = State::Idle;
                    if let Some(cmd) = self.inline() {
                        return Step::Command(cmd, pos);
                    }
                }
            }
        }
        Step::Partial
    }

    fn begin(&mut self, now: SystemTime, state: State, line_cap: usize) {
        self.start = now;
        self.state = state;
        self.line.start(line_cap);
    }

    /// The inline command just read, if its line had any word.
    fn inline(&mut self) -> Option<Command> {
        let content = self.line.content();
        let words: Vec<&[u8]> = content
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return None;
        }
        let mut b = Building::new(self.start, words.len() as u64);
        for w in words {
            b.begin(w.len() as u64);
            b.take(w);
            b.end();
        }
        Some(b.finish())
    }

    /// A command whose first bytes were sent and whose name is known.
    pub(crate) fn partial(&self) -> Option<Command> {
        let b = self.building.as_ref().filter(|b| b.read > 0)?;
        let mut rest = Building::new(b.start, b.argc);
        rest.read = b.read;
        rest.keys = b.keys;
        rest.words = b.words.iter().take(b.read as usize).cloned().collect();
        Some(rest.finish())
    }

    /// Whether a command has started and is not complete.
    pub(crate) fn mid_command(&self) -> bool {
        self.state != State::Idle
    }

    /// Bytes held.
    pub(crate) fn buffered(&self) -> usize {
        self.line.buffered() + self.building.as_ref().map_or(0, |b| b.kept)
    }

    /// Frees everything (when tracing stops).
    pub(crate) fn release(&mut self) {
        self.line.release();
        self.building = None;
        self.state = State::Idle;
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
