//! Table-driven tests of [`sanitize`](super::sanitize) and
//! [`summarize`](super::summarize), and a random-input run.

use super::*;

#[test]
fn sanitize_replaces_literals() {
    let cases: &[(&str, &str)] = &[
        ("SELECT 1", "SELECT ?"),
        (
            "SELECT * FROM t WHERE a = 'x' AND b = 2",
            "SELECT * FROM t WHERE a = ? AND b = ?",
        ),
        ("select 'it''s', 'a\\'", "select ?, ?"),
        ("SELECT E'a\\'b', 'c'", "SELECT ?, ?"),
        ("SELECT e'\\\\', x", "SELECT ?, x"),
        ("SELECT $$a 'b' c$$, $f$x$$y$f$, 3", "SELECT ?, ?, ?"),
        (
            "SELECT $1, $22 FROM t WHERE a = ?",
            "SELECT $1, $22 FROM t WHERE a = ?",
        ),
        (
            "SELECT -1.5e-3, .5, 1., 0x1F, 1_000",
            "SELECT -?, ?, ?, ?, ?",
        ),
        (
            "SELECT B'0101', X'ff', N'n', U&'d\\0061'",
            "SELECT ?, ?, ?, ?",
        ),
        (
            "SELECT t1.c2, \"Col 1\", a$b FROM s1.t2",
            "SELECT t1.c2, \"Col 1\", a$b FROM s1.t2",
        ),
        ("SELECT '1'::int, x::text", "SELECT ?::int, x::text"),
        (
            "SELECT a FROM t WHERE b = :name",
            "SELECT a FROM t WHERE b = :name",
        ),
        (
            "  SELECT\n\t a  -- secret 'x'\n FROM /* 42 /* nested */ still */ t  ",
            "SELECT a FROM t",
        ),
        ("SELECT 'unterminated", "SELECT ?"),
        ("SELECT $$unterminated", "SELECT ?"),
        ("SELECT \"unterminated", "SELECT \"unterminated"),
        ("WHERE id IN (1, 2, -3, 'x')", "WHERE id IN (?)"),
        ("WHERE id in ( 1 )", "WHERE id in (?)"),
        ("WHERE id IN ($1, $2)", "WHERE id IN ($1, $2)"),
        ("WHERE id IN (SELECT 1)", "WHERE id IN (SELECT ?)"),
        ("WHERE id IN (1, x)", "WHERE id IN (?, x)"),
        (
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
            "INSERT INTO t VALUES (?, ?), (?, ?)",
        ),
        ("SELECT 'é', \"ü\" FROM ñ", "SELECT ?, \"ü\" FROM ñ"),
        ("SELECT a#b FROM t", "SELECT a#b FROM t"),
        ("SELECT 1abc", "SELECT ?"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(sanitize(input), *want, "{input:?}");
    }
}

#[test]
fn sanitize_mysql_rules() {
    let cases: &[(&str, &str)] = &[
        ("SELECT \"bob\", 'it\\'s', `col`", "SELECT ?, ?, `col`"),
        ("SELECT a # 'secret'\nFROM t", "SELECT a FROM t"),
        ("SELECT a -- c\nFROM t", "SELECT a FROM t"),
        ("SELECT 5--1", "SELECT ?--?"),
        (
            "SELECT x'ff', 0xFF, b'1', _utf8'a'",
            "SELECT ?, ?, ?, _utf8?",
        ),
        ("SELECT @v, @@version, $x", "SELECT @v, @@version, $x"),
        ("SELECT /* a /* b */ 1", "SELECT ?"),
    ];
    for (input, want) in cases {
        assert_eq!(sanitize_mysql(input), *want, "{input:?}");
    }
}

#[test]
fn sanitize_never_grows_the_text_and_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let alphabet: &[&str] = &[
        "'", "\"", "$", "$$", "$a$", "`", "\\", "-", "--", "/*", "*/", "#", "\n", " ", "1", ".",
        "e", "E", "x", "IN", "(", ")", ",", "?", ":", "@", "é", "U&", "0x",
    ];
    for _ in 0..5000 {
        let mut q = String::new();
        for _ in 0..(seed % 24) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            q.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        for dialect in [Dialect::Postgres, Dialect::MySql] {
            let out = sanitize_with(&q, dialect);
            assert!(out.len() <= q.len(), "{q:?} -> {out:?}");
        }
        let _ = summarize(&q);
    }
}

#[test]
fn summaries() {
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("SELECT * FROM users WHERE id = 1", Some("SELECT"), Some("users")),
        ("select a from public.users u where u.id = $1", Some("SELECT"), Some("public.users")),
        ("SELECT * FROM \"My Table\"", Some("SELECT"), Some("My Table")),
        ("SELECT * FROM \"a\"\"b\"", Some("SELECT"), Some("a\"b")),
        ("SELECT * FROM `db`.`t`", Some("SELECT"), Some("db.t")),
        ("SELECT a FROM t AS x ORDER BY a, b", Some("SELECT"), Some("t")),
        ("SELECT 1", Some("SELECT"), None),
        ("SELECT * FROM a, b", Some("SELECT"), None),
        ("SELECT * FROM a x, b", Some("SELECT"), None),
        ("SELECT * FROM a JOIN b ON a.id = b.id", Some("SELECT"), None),
        ("SELECT * FROM a WHERE id IN (SELECT id FROM b)", Some("SELECT"), None),
        ("SELECT * FROM (SELECT 1) s", Some("SELECT"), None),
        ("SELECT * FROM generate_series(1, 3)", Some("SELECT"), None),
        ("SELECT a FROM t UNION SELECT a FROM u", Some("SELECT"), None),
        ("SELECT extract(year FROM ts), substring(s FROM 2) FROM t", Some("SELECT"), Some("t")),
        ("SELECT * FROM t WHERE a IS NOT DISTINCT FROM b", Some("SELECT"), Some("t")),
        ("SELECT * FROM t FOR UPDATE", Some("SELECT"), Some("t")),
        ("(SELECT * FROM t)", Some("SELECT"), Some("t")),
        ("  /* c */ -- d\n insert into t (a, b) values ($1, $2) returning id", Some("INSERT"), Some("t")),
        ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1", Some("INSERT"), Some("t")),
        ("INSERT INTO t SELECT * FROM u", Some("INSERT"), None),
        ("INSERT t VALUES (1)", Some("INSERT"), Some("t")),
        ("INSERT IGNORE INTO t VALUES (1)", Some("INSERT"), Some("t")),
        ("REPLACE INTO t VALUES (1)", Some("REPLACE"), Some("t")),
        ("UPDATE t SET a = 1 WHERE b = 2", Some("UPDATE"), Some("t")),
        ("UPDATE ONLY t SET a = 1", Some("UPDATE"), Some("t")),
        ("UPDATE t SET a = u.a FROM u WHERE t.id = u.id", Some("UPDATE"), None),
        ("UPDATE t, u SET t.a = u.a", Some("UPDATE"), None),
        ("DELETE FROM t WHERE id = 1", Some("DELETE"), Some("t")),
        ("DELETE FROM t USING u WHERE t.id = u.id", Some("DELETE"), None),
        ("TABLE t", Some("TABLE"), Some("t")),
        ("CREATE TABLE IF NOT EXISTS t (id int, b text)", Some("CREATE"), Some("t")),
        ("CREATE TEMP TABLE t (id int)", Some("CREATE"), Some("t")),
        ("CREATE TABLE t AS SELECT * FROM u", Some("CREATE"), None),
        ("CREATE INDEX i ON t (a)", Some("CREATE"), None),
        ("CREATE FUNCTION f() RETURNS TABLE (a int) AS $$ SELECT 1 $$ LANGUAGE sql", Some("CREATE"), None),
        ("DROP TABLE IF EXISTS t CASCADE", Some("DROP"), Some("t")),
        ("DROP TABLE a, b", Some("DROP"), None),
        ("ALTER TABLE t ADD COLUMN a int, ADD COLUMN b int", Some("ALTER"), Some("t")),
        ("TRUNCATE t", Some("TRUNCATE"), Some("t")),
        ("TRUNCATE TABLE ONLY t", Some("TRUNCATE"), Some("t")),
        ("COPY t (a, b) FROM STDIN", Some("COPY"), Some("t")),
        ("COPY (SELECT 1) TO STDOUT", Some("COPY"), None),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", Some("MERGE"), None),
        ("WITH x AS (SELECT 1) SELECT * FROM x", Some("SELECT"), None),
        ("WITH RECURSIVE x(n) AS (SELECT 1 UNION SELECT n + 1 FROM x), y AS NOT MATERIALIZED (SELECT 2) INSERT INTO t SELECT * FROM x", Some("INSERT"), None),
        ("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", Some("INSERT"), None),
        ("SELECT * FROM t;", Some("SELECT"), Some("t")),
        ("begin", Some("BEGIN"), None),
        ("SET search_path TO x", Some("SET"), None),
        ("EXPLAIN SELECT * FROM t", Some("EXPLAIN"), None),
        ("GRANT SELECT ON t TO u", Some("GRANT"), None),
        ("SELECT * FROM", Some("SELECT"), None),
        ("SELECT * FROM (", Some("SELECT"), None),
        ("", None, None),
        ("42", None, None),
        ("'x'", None, None),
        ("(((", None, None),
        ("WITH", None, None),
    ];
    for (input, op, coll) in cases {
        let s = summarize(input);
        assert_eq!(s.operation.as_deref(), *op, "operation of {input:?}");
        assert_eq!(s.collection.as_deref(), *coll, "collection of {input:?}");
    }
}

#[test]
fn span_names() {
    let s = |op: Option<&str>, coll: Option<&str>| SqlSummary {
        operation: op.map(str::to_owned),
        collection: coll.map(str::to_owned),
    };
    assert_eq!(
        s(Some("SELECT"), Some("t")).span_name("postgresql"),
        "SELECT t"
    );
    assert_eq!(s(Some("BEGIN"), None).span_name("postgresql"), "BEGIN");
    assert_eq!(s(None, None).span_name("mysql"), "mysql");
}

#[test]
fn names_are_capped() {
    let long = format!("SELECT * FROM {}", "é".repeat(1000));
    let s = summarize(&long);
    assert!(s.collection.unwrap().len() <= MAX_NAME_BYTES);
    let s = summarize(&"Ö".repeat(1000));
    assert!(s.operation.unwrap().len() <= MAX_NAME_BYTES);
}
