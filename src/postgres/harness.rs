//! Test harness for [`PgConnection`]: message builders, a one-line summary
//! of an operation, and a replay that feeds events whole, byte by byte or at
//! random splits and checks the results agree.

use std::time::SystemTime;

use super::*;
use crate::protocol::Operation;
use crate::span::{AttrValue, SpanStatus};
use crate::testkit::Ev::{self, *};
use crate::testkit::{at, Split, StopWatch};

/// An operation in one line: `name [status] t=start-end key=value…`, times
/// in seconds (event `i` happens at second `i`), `db.system.name` left out.
pub(super) fn summary(op: &Operation) -> String {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    };
    let status = match &op.status {
        SpanStatus::Unset => "-".to_owned(),
        SpanStatus::Ok => "ok".to_owned(),
        SpanStatus::Error(m) => format!("error({m})"),
    };
    let mut s = format!(
        "{} [{status}] t={}-{}",
        op.name,
        secs(op.start),
        secs(op.end)
    );
    for (k, v) in &op.attributes {
        if *k == "db.system.name" {
            assert_eq!(v, &AttrValue::from("postgresql"));
            continue;
        }
        let key = match *k {
            "db.namespace" => "namespace",
            "db.user" => "user",
            "db.query.text" => "text",
            "db.operation.name" => "op",
            "db.collection.name" => "table",
            "db.operation.batch.size" => "batch.size",
            "db.response.returned_rows" => "returned_rows",
            "lumigo.db.affected_rows" => "affected_rows",
            "db.response.status_code" => "status_code",
            "error.type" => "type",
            other => other,
        };
        match v {
            AttrValue::Str(v) => s.push_str(&format!(" {key}={v}")),
            AttrValue::Int(v) => s.push_str(&format!(" {key}={v}")),
            AttrValue::Bool(v) => s.push_str(&format!(" {key}={v}")),
        }
    }
    s
}

pub(super) struct Outcome {
    pub ops: Vec<String>,
    pub stopped_at: Option<usize>,
    pub tls: bool,
}

/// Runs the events; event `i` happens at second `i`.
pub(super) fn run(events: &[Ev], split: Split) -> Outcome {
    let mut conn = PgConnection::new();
    let mut done = Vec::new();
    let mut stop = StopWatch::default();
    let mut cutter = split.cutter(12);
    for (i, ev) in events.iter().enumerate() {
        let now = at(i);
        let reported = done.len();
        let mut flows = Vec::new();
        match ev {
            Out(d) | In(d) => {
                for piece in cutter.pieces(d) {
                    flows.push(match ev {
                        Out(_) => conn.on_outbound(piece, now, &mut done),
                        _ => conn.on_inbound(piece, now, &mut done),
                    });
                }
            }
            Close(reason) => conn.on_close(now, *reason, &mut done),
        }
        stop.note(i, &flows, reported, done.len());
        assert!(conn.buffered() <= 2 * MAX_MESSAGE_BYTES);
        assert!(conn.pending_len() <= MAX_PENDING);
    }
    Outcome {
        ops: done.iter().map(summary).collect(),
        stopped_at: stop.at,
        tls: conn.tls_accepted(),
    }
}

/// Replays whole, byte by byte and at 20 random splittings; all must agree.
pub(super) fn check(name: &str, events: &[Ev], want: &[&str], stops_at: Option<usize>) {
    let whole = run(events, Split::Whole);
    assert_eq!(whole.ops, want, "{name}: operations");
    assert_eq!(whole.stopped_at, stops_at, "{name}: stop");
    let mut splits = vec![Split::Bytes];
    splits.extend((0..20).map(|s| Split::Random(0x5eed + s)));
    for split in splits {
        let other = run(events, split);
        assert_eq!(other.ops, whole.ops, "{name}: {split:?}");
        assert_eq!(
            other.stopped_at, whole.stopped_at,
            "{name}: stop, {split:?}"
        );
        assert_eq!(other.tls, whole.tls, "{name}: tls, {split:?}");
    }
}

// --- Message builders ------------------------------------------------------

pub(super) fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstrs(parts: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(p);
        b.push(0);
    }
    b
}

pub(super) fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstrs(&[k.as_bytes(), v.as_bytes()]));
    }
    body.push(0);
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

pub(super) const SSL_REQUEST: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";
pub(super) const GSSENC_REQUEST: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16\x30";

pub(super) fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstrs(&[sql.as_bytes()]))
}
pub(super) fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstrs(&[name.as_bytes(), sql.as_bytes()]);
    b.extend_from_slice(&[0, 0]);
    msg(b'P', &b)
}
pub(super) fn bind(portal: &str, statement: &str) -> Vec<u8> {
    let mut b = cstrs(&[portal.as_bytes(), statement.as_bytes()]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    msg(b'B', &b)
}
pub(super) fn describe(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend(cstrs(&[portal.as_bytes()]));
    msg(b'D', &b)
}
pub(super) fn execute(portal: &str, max_rows: u32) -> Vec<u8> {
    let mut b = cstrs(&[portal.as_bytes()]);
    b.extend_from_slice(&max_rows.to_be_bytes());
    msg(b'E', &b)
}
pub(super) fn close_statement(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend(cstrs(&[name.as_bytes()]));
    msg(b'C', &b)
}
pub(super) fn sync() -> Vec<u8> {
    msg(b'S', b"")
}
pub(super) fn flush() -> Vec<u8> {
    msg(b'H', b"")
}
pub(super) fn terminate() -> Vec<u8> {
    msg(b'X', b"")
}
/// A group: Parse, Bind, Describe, Execute (unnamed).
pub(super) fn pbde(sql: &str) -> Vec<u8> {
    cat(&[parse("", sql), bind("", ""), describe(""), execute("", 0)])
}

pub(super) fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

pub(super) fn auth_ok() -> Vec<u8> {
    cat(&[
        msg(b'R', &[0, 0, 0, 0]),
        msg(b'S', b"server_version\x0015.2\x00"),
        msg(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]),
        ready(),
    ])
}
pub(super) fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}
pub(super) fn row_desc() -> Vec<u8> {
    msg(
        b'T',
        b"\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00",
    )
}
pub(super) fn data_row(value: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend_from_slice(&(value.len() as u32).to_be_bytes());
    b.extend_from_slice(value);
    msg(b'D', &b)
}
pub(super) fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstrs(&[tag.as_bytes()]))
}
pub(super) fn error(code: &str, message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [(b'S', "ERROR"), (b'C', code), (b'M', message)] {
        b.push(f);
        b.extend(cstrs(&[v.as_bytes()]));
    }
    b.push(0);
    msg(b'E', &b)
}
pub(super) fn notice() -> Vec<u8> {
    msg(b'N', b"SNOTICE\x00C00000\x00Mhello\x00\x00")
}
pub(super) fn parse_complete() -> Vec<u8> {
    msg(b'1', b"")
}
pub(super) fn bind_complete() -> Vec<u8> {
    msg(b'2', b"")
}
pub(super) fn no_data() -> Vec<u8> {
    msg(b'n', b"")
}

pub(super) fn connect() -> Vec<Ev> {
    vec![
        Out(startup(&[("user", "bob"), ("database", "shop")])),
        In(auth_ok()),
    ]
}

pub(super) fn with(mut events: Vec<Ev>, more: Vec<Ev>) -> Vec<Ev> {
    events.extend(more);
    events
}

pub(super) const NS: &str = "namespace=shop user=bob";
