"""Database clients for the tests; one scenario per argv[1].

redis-pipeline   redis-py: a pipeline of 5 commands
redis-pubsub     redis-py: subscribe, receive 2 messages published by a helper
                 thread, a SET on another connection while handling each
pg-extended      psycopg 3: a prepared statement executed twice, then an error
mysql-pymysql    PyMySQL: a query and an error
mysql-prepared   mysql-connector-python: a server-side prepared statement
mysql-big-binary mysql-connector-python: two 20,000-row binary result sets
                 (a recv per packet header and one per row), then a query
served-redis     an HTTP server (argv[2] = port) that runs a Redis GET per request
served-mysql     the same with a PyMySQL query (connected before serving)
served-pg        the same with a psycopg query (connected before serving)
"""
import sys
import threading
import time

mode = sys.argv[1]

if mode == "redis-pipeline":
    import redis

    r = redis.Redis(host="127.0.0.1", port=6379, protocol=2)
    p = r.pipeline(transaction=False)
    p.set("lumigo:t:a", "1").get("lumigo:t:a").incr("lumigo:t:n").lpush("lumigo:t:l", "x").delete("lumigo:t:a", "lumigo:t:l")
    print(p.execute())
elif mode == "redis-pubsub":
    import redis

    store = redis.Redis(host="127.0.0.1", port=6379, protocol=2)
    sub = redis.Redis(host="127.0.0.1", port=6379, protocol=2).pubsub()
    sub.subscribe("lumigo-chan")
    sub.get_message(timeout=5)  # the subscribe confirmation

    def publish():
        pub = redis.Redis(host="127.0.0.1", port=6379, protocol=2)
        for i in range(2):
            time.sleep(0.2)
            pub.publish("lumigo-chan", "hello %d" % i)

    threading.Thread(target=publish).start()
    got = 0
    deadline = time.time() + 10
    while got < 2 and time.time() < deadline:
        m = sub.get_message(timeout=1)
        if m and m["type"] == "message":
            got += 1
            # Handling the message: a command on another connection.
            store.set("lumigo:t:got", m["data"])
    print("received", got)
elif mode == "pg-extended":
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test sslmode=disable") as c:
        for n in (1, 2):
            c.execute("select %s::int + 1 as x", (n,), prepare=True).fetchone()
        try:
            c.execute("select * from lumigo_missing_table where id = %s", (7,))
        except psycopg.errors.UndefinedTable:
            print("undefined table")
elif mode == "mysql-pymysql":
    import pymysql

    c = pymysql.connect(host="127.0.0.1", user="root", password="", database="test")
    with c.cursor() as cur:
        cur.execute("select 1 + %s", (41,))
        print(cur.fetchone()[0])
        try:
            cur.execute("select * from lumigo_missing_table")
        except pymysql.err.ProgrammingError as e:
            print("error", e.args[0])
    c.close()
elif mode == "mysql-prepared":
    import mysql.connector

    c = mysql.connector.connect(host="127.0.0.1", user="root", password="", database="test", use_pure=True)
    cur = c.cursor(prepared=True)
    cur.execute("select ? + 1", (41,))
    print(cur.fetchone()[0])
    c.close()
elif mode == "mysql-big-binary":
    import mysql.connector

    c = mysql.connector.connect(host="127.0.0.1", user="root", password="", database="test", use_pure=True)
    cur = c.cursor(prepared=True)
    for _ in range(2):
        cur.execute("select seq, repeat('x', 200), '' from seq_1_to_20000 where seq > ?", (0,))
        print(len(cur.fetchall()))
    cur.execute("select ? + 1", (41,))
    print(cur.fetchone()[0])
    c.close()
elif mode.startswith("served-"):
    from http.server import BaseHTTPRequestHandler, HTTPServer
    import signal

    if mode == "served-redis":
        import redis

        r = redis.Redis(host="127.0.0.1", port=6379, protocol=2)
        query = lambda: r.get("lumigo:served")
    elif mode == "served-mysql":
        import pymysql

        db = pymysql.connect(host="127.0.0.1", user="root", password="", database="test")
        db.cursor().execute("set @lumigo_served = 1")

        def query():
            with db.cursor() as cur:
                cur.execute("select 1")
                cur.fetchall()
    else:
        import psycopg

        db = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres sslmode=disable", autocommit=True)
        db.execute("set application_name = 'served'")
        query = lambda: db.execute("select 1").fetchall()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            query()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    HTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
