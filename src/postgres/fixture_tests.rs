//! Captured client traffic (psql, psycopg 3 over libpq; see
//! `tests/fixtures/postgres/record.sh`) replayed through [`PgConnection`]:
//! whole, byte by byte and at random splits, with identical results.

use super::harness::{check, run};
use crate::testkit::{Ev, Split};

/// Parses a fixture: `> hex` (client sent), `< hex` (client received),
/// `#` comments.
fn events(text: &str) -> Vec<Ev> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (dir, hex) = l.split_once(' ').expect("direction and hex");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            match dir {
                ">" => Ev::Out(bytes),
                "<" => Ev::In(bytes),
                other => panic!("bad direction {other:?}"),
            }
        })
        .collect()
}

macro_rules! fixture {
    ($name:literal) => {
        events(include_str!(concat!(
            "../../tests/fixtures/postgres/",
            $name,
            ".pg"
        )))
    };
}

const CONN: &str = "namespace=test user=postgres";

/// Expected operations, with `{C}` standing for [`CONN`].
fn want(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.replace("{C}", CONN)).collect()
}

fn check_fixture(name: &str, events: &[Ev], expected: &[&str], stops_at: Option<usize>) {
    let expected = want(expected);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    check(name, events, &expected, stops_at);
}

#[test]
fn psql_simple_queries() {
    // DROP IF EXISTS draws a NoticeResponse; the Terminate ends cleanly.
    check_fixture(
        "psql_simple",
        &fixture!("psql_simple"),
        &[
            "DROP lumigo_fixture [-] t=2-3 {C} text=DROP TABLE IF EXISTS lumigo_fixture op=DROP table=lumigo_fixture",
            "CREATE lumigo_fixture [-] t=4-5 {C} text=CREATE TABLE lumigo_fixture (id int, name text) op=CREATE table=lumigo_fixture",
            "INSERT lumigo_fixture [-] t=6-7 {C} text=INSERT INTO lumigo_fixture VALUES (?, ?), (?, ?) op=INSERT table=lumigo_fixture affected_rows=2",
            "SELECT lumigo_fixture [-] t=8-9 {C} text=SELECT * FROM lumigo_fixture WHERE name = ? op=SELECT table=lumigo_fixture returned_rows=1",
            "DROP lumigo_fixture [-] t=10-11 {C} text=DROP TABLE lumigo_fixture op=DROP table=lumigo_fixture",
        ],
        Some(12),
    );
}

#[test]
fn psql_error_and_multi_statement_query() {
    // The ErrorResponse and ReadyForQuery arrived in separate reads.
    check_fixture(
        "psql_error",
        &fixture!("psql_error"),
        &[
            "SELECT lumigo_missing [error(relation \"lumigo_missing\" does not exist)] t=2-4 {C} text=SELECT * FROM lumigo_missing op=SELECT table=lumigo_missing status_code=42P01 type=42P01",
            "BATCH SELECT [-] t=5-6 {C} text=SELECT ?; SELECT ?, ? op=BATCH SELECT batch.size=2 returned_rows=2",
        ],
        Some(7),
    );
}

#[test]
fn ssl_refused_by_the_server() {
    check_fixture(
        "ssl_refused",
        &fixture!("ssl_refused"),
        &["SELECT [-] t=4-5 {C} text=SELECT ? op=SELECT returned_rows=1"],
        Some(6),
    );
}

#[test]
fn ssl_accepted_by_the_server() {
    let events = fixture!("ssl_accepted");
    // What the glue feeds: the SSLRequest and the 'S'; then it stops.
    let fed = run(&events[..2], Split::Whole);
    assert!(fed.tls && fed.ops.is_empty() && fed.stopped_at.is_none());
    // The TLS handshake, if fed anyway, is skipped record by record.
    check_fixture("ssl_accepted", &events, &[], None);
    assert!(run(&events, Split::Bytes).tls);
}

#[test]
fn psycopg_prepared_statement_executed_twice() {
    // Parse of _pg3_0 + Sync alone (no span), then Bind/Describe/Execute/Sync
    // twice: two spans with the prepared SQL. An unnamed statement on a
    // missing table fails at Parse: the error ends its Execute's span.
    check_fixture(
        "psycopg_prepared",
        &fixture!("psycopg_prepared"),
        &[
            "DROP lumigo_ext [-] t=2-3 {C} text=DROP TABLE IF EXISTS lumigo_ext op=DROP table=lumigo_ext",
            "CREATE lumigo_ext [-] t=4-5 {C} text=CREATE TABLE lumigo_ext (id int PRIMARY KEY, name text) op=CREATE table=lumigo_ext",
            "INSERT lumigo_ext [-] t=6-7 {C} text=INSERT INTO lumigo_ext VALUES ($1, $2), ($3, $4) op=INSERT table=lumigo_ext affected_rows=2",
            "SELECT lumigo_ext [-] t=10-11 {C} text=SELECT name FROM lumigo_ext WHERE id = $1 op=SELECT table=lumigo_ext returned_rows=1",
            "SELECT lumigo_ext [-] t=12-13 {C} text=SELECT name FROM lumigo_ext WHERE id = $1 op=SELECT table=lumigo_ext returned_rows=1",
            "SELECT lumigo_missing [error(relation \"lumigo_missing\" does not exist)] t=14-15 {C} text=SELECT * FROM lumigo_missing WHERE id = $1 op=SELECT table=lumigo_missing status_code=42P01 type=42P01",
            "DROP lumigo_ext [-] t=16-17 {C} text=DROP TABLE lumigo_ext op=DROP table=lumigo_ext",
            "DEALLOCATE [-] t=18-19 {C} text=DEALLOCATE ALL op=DEALLOCATE",
        ],
        Some(20),
    );
}

#[test]
fn psycopg_pipeline_with_an_error() {
    // Three pipelined groups and one Sync; the second fails at Parse, the
    // third is skipped by the server (no span). Then a clean pipeline.
    check_fixture(
        "psycopg_pipeline",
        &fixture!("psycopg_pipeline"),
        &[
            "SELECT [-] t=2-3 {C} text=SELECT $1::int op=SELECT returned_rows=1",
            "SELECT lumigo_missing [error(relation \"lumigo_missing\" does not exist)] t=2-3 {C} text=SELECT * FROM lumigo_missing WHERE id = $1 op=SELECT table=lumigo_missing status_code=42P01 type=42P01",
            "SELECT [-] t=4-5 {C} text=SELECT $1::text op=SELECT returned_rows=1",
            "SELECT [-] t=4-5 {C} text=SELECT $1::int op=SELECT returned_rows=1",
        ],
        Some(6),
    );
}

#[test]
fn psycopg_copy_in_and_out() {
    check_fixture(
        "psycopg_copy",
        &fixture!("psycopg_copy"),
        &[
            "DROP lumigo_copy [-] t=2-4 {C} text=DROP TABLE IF EXISTS lumigo_copy op=DROP table=lumigo_copy",
            "CREATE lumigo_copy [-] t=5-6 {C} text=CREATE TABLE lumigo_copy (id int, name text) op=CREATE table=lumigo_copy",
            "COPY lumigo_copy [-] t=7-10 {C} text=COPY lumigo_copy FROM STDIN op=COPY table=lumigo_copy affected_rows=2",
            "COPY lumigo_copy [-] t=11-12 {C} text=COPY lumigo_copy TO STDOUT op=COPY table=lumigo_copy affected_rows=2",
            "DROP lumigo_copy [-] t=13-14 {C} text=DROP TABLE lumigo_copy op=DROP table=lumigo_copy",
        ],
        Some(15),
    );
}

#[test]
fn psycopg_large_row_and_notification() {
    // A 20,000-byte DataRow (over the 16 KiB cap) split over two reads,
    // then LISTEN / NOTIFY with its NotificationResponse.
    check_fixture(
        "psycopg_large",
        &fixture!("psycopg_large"),
        &[
            "SELECT [-] t=2-4 {C} text=SELECT repeat(?, ?) AS big, $1::int AS n op=SELECT returned_rows=1",
            "LISTEN [-] t=5-6 {C} text=LISTEN lumigo_chan op=LISTEN",
            "NOTIFY [-] t=7-8 {C} text=NOTIFY lumigo_chan, ? op=NOTIFY",
        ],
        Some(9),
    );
}

/// The data path's differential test for PostgreSQL: every fixture, fed in
/// calls of many sizes (each call at a time of its own), gives the same
/// spans parsed on the app's thread and compacted there (see
/// [`super::PgCompactor`]) for the capture thread to parse. With no
/// fixture's spans empty, so the comparison compares something.
#[test]
fn every_fixture_gives_the_same_spans_captured() {
    use crate::capture::differential::compare_calls;
    use crate::capture::Capture;
    let fixtures = [
        ("psql_simple", fixture!("psql_simple")),
        ("psql_error", fixture!("psql_error")),
        ("ssl_refused", fixture!("ssl_refused")),
        ("ssl_accepted", fixture!("ssl_accepted")),
        ("psycopg_prepared", fixture!("psycopg_prepared")),
        ("psycopg_pipeline", fixture!("psycopg_pipeline")),
        ("psycopg_copy", fixture!("psycopg_copy")),
        ("psycopg_large", fixture!("psycopg_large")),
    ];
    for (name, events) in &fixtures {
        let steps = crate::testkit::steps(events);
        // The whole conversation once more, cut short: a close with
        // queries in flight.
        let cut = &steps[..steps.len() - 2];
        for steps in [&steps[..], cut] {
            for step in [1, 2, 3, 5, 7, 64, 1 << 20] {
                let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
                match compare_calls(false, steps, 0, step, cap, true) {
                    Ok(n) => assert!(
                        n > 0 || *name == "ssl_accepted",
                        "{name}: no spans at step {step}"
                    ),
                    Err(e) => panic!("{name}, step {step}: {}", e.message),
                }
                assert_eq!(cap.dropped(), 0);
                assert_eq!(cap.open_connections(), 0, "{name}: its CLOSE was decoded");
            }
        }
    }
}

/// On the data path, a query's span is a child of the context the thread
/// had when it wrote the query (carried with the record), not of whatever is active when the reply is read, nor
/// of anything on the capture thread.
#[test]
fn captured_queries_are_children_of_the_context_they_were_written_in() {
    use crate::capture::differential::parents_when_captured;
    let events = fixture!("psql_simple");
    let steps = crate::testkit::steps(&events);
    // Each write whole, and cut into calls of 7 bytes (a query's context
    // goes with the call that starts it).
    for piece in [usize::MAX, 7] {
        let parents = parents_when_captured(&steps, piece);
        // Writes 2 to 6 are the five queries.
        let want: Vec<(String, Option<[u8; 8]>, [u8; 16])> = [
            "DROP lumigo_fixture",
            "CREATE lumigo_fixture",
            "INSERT lumigo_fixture",
            "SELECT lumigo_fixture",
            "DROP lumigo_fixture",
        ]
        .iter()
        .zip(2u8..)
        .map(|(name, n)| (name.to_string(), Some([n; 8]), [n; 16]))
        .collect();
        assert_eq!(parents, want, "{piece} bytes per call");
    }
}
