#!/usr/bin/env python3
"""The benchmark driver behind scripts/bench.sh (standard library only).

Runs the seven overhead benchmarks of issue 6, each alternating untraced and
traced runs inside this one invocation (pairs in alternating order: U T, T U,
U T, ...), takes medians of per-pair ratios, and writes a Markdown table
between the `<!-- bench:begin -->` / `<!-- bench:end -->` markers of the
output file (hand-written notes outside the markers are kept), plus the raw
numbers as JSON beside it. The processes it drives are in procs.py, the
table in report.py.

It must itself run untraced: bench.sh unsets LD_PRELOAD before calling it,
and every child gets an environment with no LD_PRELOAD, LUMIGO_* or OTEL_*
except what the benchmark sets on purpose.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from procs import (
    HERE, MIB, ROOT, Nginx, Sink, clean_env, dropped_from, free_port, refused_from, spilled_from, log, loadavg, median,
    nginx_binary, proc_cpu_ticks_ns, proc_status, run_rusage, stop, thread_cpu_ns,
    wait_children, wait_http, wrk,
)
from report import report, write_report


class Bench:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.pairs = args.pairs or (1 if args.smoke else 5)
        self.duration = args.duration or (1 if args.smoke else 5)
        self.warmup = 1
        # The packaged layout (scripts/package.sh: static launcher, library
        # without debug sections) is what users install; fall back to the
        # cargo build when it is missing.
        if os.path.exists(os.path.join(args.dist, "bin", "lumigo-run")):
            self.run_bin = os.path.join(args.dist, "bin", "lumigo-run")
            self.lib = os.path.join(args.dist, "lib", "lumigo", "liblumigo_preload.so")
            self.layout = "packaged (`scripts/package.sh`: static launcher, library without debug sections)"
        else:
            self.run_bin = os.path.join(args.target, "lumigo-run")
            self.lib = os.path.join(args.target, "liblumigo_preload.so")
            self.layout = "cargo build (dynamic launcher, library with debug info)"
        log("binaries: %s" % self.layout)
        self.venv = args.venv
        self.work = tempfile.mkdtemp(prefix="lumigo-bench-")
        if args.keep:
            log("keeping logs, configs and callgrind dumps in %s" % self.work)
        self.results = {}
        self.sink = None

    def order(self, i, variants):
        """Alternating order: pair 0 as given, pair 1 reversed (or rotated)..."""
        if len(variants) == 2:
            return list(variants) if i % 2 == 0 else list(reversed(variants))
        k = i % len(variants)
        return list(variants[k:]) + list(variants[:k])

    def traced_env(self, service, debug=False, sink=None):
        sink = sink or self.sink
        extra = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_SERVICE_NAME": service,
        }
        if debug:
            extra["LUMIGO_DEBUG"] = "true"
        return clean_env(**extra)

    # ---------------------------------------------------------------- 1 + 5 + 6b
    def nginx(self):
        log("1/7 nginx static file, wrk -t1 -c10 -d%ss, untraced vs traced (OTLP to the sink)" % self.duration)
        runs = {"untraced": [], "traced": []}
        for i in range(self.pairs):
            for variant in self.order(i, ["untraced", "traced"]):
                traced = variant == "traced"
                prefix = [self.run_bin] if traced else []
                # LUMIGO_DEBUG only says things at start, on errors and at exit
                # (the drop counter); nothing per span.
                env = self.traced_env("bench-nginx", debug=True) if traced else clean_env()
                spans0 = self.sink.settle()
                srv = Nginx(self.work, "nginx-%s-%d" % (variant, i), prefix, env)
                try:
                    warm = wrk(srv.url, self.warmup)
                    cpu0 = thread_cpu_ns(srv.worker)
                    ticks0 = proc_cpu_ticks_ns(srv.worker)
                    sink0 = proc_cpu_ticks_ns(self.sink.proc.pid)
                    r = wrk(srv.url, self.duration)
                    cpu1 = thread_cpu_ns(srv.worker)
                    ticks1 = proc_cpu_ticks_ns(srv.worker)
                    sink1 = proc_cpu_ticks_ns(self.sink.proc.pid)
                    st = proc_status(srv.worker)
                finally:
                    srv.stop()
                spans = self.sink.settle() - spans0
                diagnostics = srv.diagnostics()
                dropped = dropped_from(diagnostics)
                refused = refused_from(diagnostics)
                spilled = spilled_from(diagnostics)
                app_ns = exp_ns = 0
                for tid, (comm, ns) in cpu1.items():
                    d = ns - cpu0.get(tid, (comm, 0))[1]
                    if "lumigo" in comm:
                        exp_ns += d
                    else:
                        app_ns += d
                made = warm["requests"] + r["requests"] + srv.probes
                r.update(
                    cpu_ns=app_ns + exp_ns,
                    app_thread_ns=app_ns,
                    export_thread_ns=exp_ns,
                    cpu_ticks_ns=(ticks1 - ticks0) if ticks0 is not None and ticks1 is not None else None,
                    rss=st.get("VmRSS"),
                    hwm=st.get("VmHWM"),
                    rss_anon=st.get("RssAnon"),
                    threads_after=st.get("Threads"),
                    threads_before_first_request=srv.threads_before_first_request,
                    requests_made=made,
                    spans_received=spans,
                    dropped_reported=dropped,
                    records_refused=refused,
                    records_spilled=spilled,
                    sink_cpu_ns=(sink1 - sink0) if sink0 is not None and sink1 is not None else None,
                )
                r["cpu_ns_per_req"] = r["cpu_ns"] / r["requests"]
                log(
                    "  %-8s %8.0f req/s  p99 %6d us  cpu/req %6.2f us  spans %d/%d (dropped %d)  rss %.1f MiB  threads %s→%s"
                    % (variant, r["rps"], r["p99_us"], r["cpu_ns_per_req"] / 1000, spans, made, dropped,
                       (r["rss"] or 0) / MIB, r["threads_before_first_request"], r["threads_after"])
                )
                runs[variant].append(r)
        self.results["nginx"] = runs

    # ---------------------------------------------------------------- 2
    def flask_variants(self):
        py = os.path.join(self.venv, "bin", "python")
        gunicorn = os.path.join(self.venv, "bin", "gunicorn")
        otel = os.path.join(self.venv, "bin", "opentelemetry-instrument")
        have = {}

        def spec(mod):
            if not os.access(py, os.X_OK):
                return False
            return subprocess.run(
                [py, "-c", "import importlib.util,sys; sys.exit(importlib.util.find_spec(%r) is None)" % mod],
                env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ).returncode == 0

        base_ok = os.access(gunicorn, os.X_OK) and spec("flask")
        have["untraced"] = base_ok
        have["lumigo-run"] = base_ok
        have["lumigo-python"] = base_ok and spec("lumigo_opentelemetry")
        have["otel-instrument"] = base_ok and os.access(otel, os.X_OK) and spec(
            "opentelemetry.exporter.otlp.proto.http"
        ) and spec("opentelemetry.instrumentation.flask")
        return have, gunicorn, otel

    def flask(self):
        log("2/7 Flask on gunicorn (1 sync worker), wrk -t1 -c10 -d%ss" % self.duration)
        have, gunicorn, otel = self.flask_variants()
        variants = ["untraced", "lumigo-run", "lumigo-python", "otel-instrument"]
        runs = {v: [] for v in variants}
        self.results["flask_available"] = have
        if not have["untraced"]:
            log("  flask/gunicorn not installed in %s: row skipped" % self.venv)
            self.results["flask"] = runs
            return
        sink = self.sink
        # gunicorn imports the app from a copy, so no __pycache__ lands in scripts/bench.
        app_dir = os.path.join(self.work, "flask-app")
        os.makedirs(app_dir, exist_ok=True)
        shutil.copy(os.path.join(HERE, "flask_app.py"), app_dir)
        for i in range(self.pairs):
            for variant in self.order(i, [v for v in variants if have[v]]):
                port = free_port()
                gcmd = [
                    gunicorn, "-w", "1", "-k", "sync", "-b", "127.0.0.1:%d" % port,
                    "--chdir", app_dir, "--log-level", "warning", "flask_app:app",
                ]
                svc = "bench-flask"
                if variant == "untraced":
                    cmd, env = gcmd, clean_env()
                elif variant == "lumigo-run":
                    cmd, env = [self.run_bin] + gcmd, self.traced_env(svc)
                elif variant == "lumigo-python":
                    cmd = gcmd
                    env = clean_env(
                        AUTOWRAPT_BOOTSTRAP="lumigo_opentelemetry",
                        LUMIGO_TRACER_TOKEN="t_bench_not_a_real_token",
                        LUMIGO_ENDPOINT=sink.url + "/v1/traces",
                        OTEL_SERVICE_NAME=svc,
                    )
                else:
                    cmd = [otel] + gcmd
                    env = clean_env(
                        OTEL_SERVICE_NAME=svc,
                        OTEL_TRACES_EXPORTER="otlp",
                        OTEL_METRICS_EXPORTER="none",
                        OTEL_LOGS_EXPORTER="none",
                        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink.url + "/v1/traces",
                    )
                logf = open(os.path.join(self.work, "gunicorn-%s-%d.log" % (variant, i)), "w")
                spans0 = sink.settle()
                proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
                url = "http://127.0.0.1:%d/" % port
                try:
                    probes = wait_http(url, proc, timeout=30)
                    worker = wait_children(proc.pid)[0]
                    warm = wrk(url, self.warmup)
                    cpu0 = sum(ns for _, ns in thread_cpu_ns(worker).values())
                    r = wrk(url, self.duration)
                    cpu1 = sum(ns for _, ns in thread_cpu_ns(worker).values())
                    r["cpu_ns_per_req"] = (cpu1 - cpu0) / max(r["requests"], 1)
                finally:
                    stop(proc, signal.SIGTERM, timeout=15)
                    logf.close()
                spans = sink.settle(timeout=6)
                r["spans_received"] = spans - spans0
                r["requests_made"] = warm["requests"] + r["requests"] + probes
                log("  %-15s %7.0f req/s  p99 %7d us  cpu/req %6.1f us  spans %d/%d  errors %d"
                    % (variant, r["rps"], r["p99_us"], r["cpu_ns_per_req"] / 1000, r["spans_received"],
                       r["requests_made"], r["errors"]))
                runs[variant].append(r)
        self.results["flask"] = runs

    # ---------------------------------------------------------------- 3
    def io_loops(self):
        n = 200_000 if self.smoke else 3_000_000
        m = 100_000 if self.smoke else 1_000_000
        loops = {
            "dd bs=1 /dev/zero → /dev/null (%d reads + %d writes)" % (n, n): [
                "dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=%d" % n, "status=none"],
            "pipe: dd bs=1 | dd bs=1 (%d bytes, both ends traced)" % m: [
                "bash", "-c",
                "dd if=/dev/zero bs=1 count=%d status=none | dd of=/dev/null bs=1 status=none" % m],
        }
        pairs = self.pairs
        log("3/7 non-socket I/O loops, %d pairs" % pairs)
        out = {}
        for name, cmd in loops.items():
            runs = {"untraced": [], "traced": []}
            for i in range(pairs):
                for variant in self.order(i, ["untraced", "traced"]):
                    if variant == "traced":
                        wall, cpu, rc = run_rusage([self.run_bin] + cmd, self.traced_env("bench-io"))
                    else:
                        wall, cpu, rc = run_rusage(cmd, clean_env())
                    if rc != 0:
                        raise RuntimeError("%s failed: %s" % (cmd, rc))
                    runs[variant].append({"wall_s": wall, "cpu_s": cpu})
            u = median(r["wall_s"] for r in runs["untraced"])
            t = median(r["wall_s"] for r in runs["traced"])
            log("  %s: untraced %.3fs traced %.3fs" % (name, u, t))
            out[name] = runs
        self.results["io"] = out

    # ---------------------------------------------------------------- 4
    def startup(self):
        runs_true = 20 if self.smoke else 300
        runs_py = 5 if self.smoke else 60
        python = os.path.realpath(
            subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                           env=clean_env(), capture_output=True, text=True).stdout.strip()
        )
        env_bin = shutil.which("env") or "/usr/bin/env"
        # (name, untraced argv, traced argv, runs, is a breakdown row)
        comparisons = [
            ("`lumigo-run /bin/true` vs `/bin/true`",
             ["/bin/true"], [self.run_bin, "/bin/true"], runs_true, False),
            ("`lumigo-run python3 -c pass` vs `python3 -c pass`",
             [python, "-c", "pass"], [self.run_bin, python, "-c", "pass"], runs_py, False),
            ("`env LD_PRELOAD=lib /bin/true` vs `env /bin/true` (the library's load and constructor alone)",
             [env_bin, "/bin/true"], [env_bin, "LD_PRELOAD=" + self.lib, "/bin/true"], runs_true, True),
            ("`env /bin/true` vs `/bin/true` (one extra exec: the floor for any exec-ing launcher)",
             ["/bin/true"], [env_bin, "/bin/true"], runs_true, True),
        ]
        log("4/7 start-up (hyperfine -N, %d rounds, plus an interleaved spawn loop; python: %s)"
            % (self.pairs, python))
        out = {"python": python}
        env = self.traced_env("bench-startup")
        q = shlex.join
        for name, base, traced, nruns, breakdown in comparisons:
            rounds = []
            for i in range(self.pairs):
                cmds = self.order(i, [q(base), q(traced)])
                jf = os.path.join(self.work, "hyperfine.json")
                subprocess.run(
                    ["hyperfine", "-N", "--style", "none", "--warmup", "5", "--runs", str(nruns),
                     "--export-json", jf] + cmds,
                    env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                with open(jf) as f:
                    res = {r["command"]: r for r in json.load(f)["results"]}
                rounds.append({
                    "untraced_ms": statistics.median(res[q(base)]["times"]) * 1000,
                    "traced_ms": statistics.median(res[q(traced)]["times"]) * 1000,
                    "untraced_mean_ms": res[q(base)]["mean"] * 1000,
                    "traced_mean_ms": res[q(traced)]["mean"] * 1000,
                })
            # Cross-check robust to a neighbour's varying load: the two commands
            # interleaved run by run (posix_spawn + waitpid, same overhead for both).
            times = {"u": [], "t": []}
            for i in range(nruns):
                for key in (("u", "t") if i % 2 == 0 else ("t", "u")):
                    argv = base if key == "u" else traced
                    t0 = time.perf_counter_ns()
                    pid = os.posix_spawn(argv[0], argv, env)
                    os.waitpid(pid, 0)
                    times[key].append((time.perf_counter_ns() - t0) / 1e6)
            inter = {
                "untraced_ms": statistics.median(times["u"]),
                "traced_ms": statistics.median(times["t"]),
            }
            inter["added_ms"] = inter["traced_ms"] - inter["untraced_ms"]
            added = median(r["traced_ms"] - r["untraced_ms"] for r in rounds)
            log("  %s: %+.3f ms (hyperfine), %+.3f ms (interleaved)" % (name, added, inter["added_ms"]))
            out[name] = {"rounds": rounds, "interleaved": inter, "breakdown": breakdown}
        self.results["startup"] = out

    # ---------------------------------------------------------------- 6a
    def idle_memory(self):
        python = os.path.realpath(
            subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                           env=clean_env(), capture_output=True, text=True).stdout.strip()
        )
        progs = {
            "sleep": ["/bin/sleep", "600"],
            "python3 (idle, time.sleep)": [
                python, "-c",
                "import sys, time; print('ready', flush=True); time.sleep(600)"],
        }
        log("6/7 idle memory and threads, %d pairs" % self.pairs)
        out = {}
        for name, cmd in progs.items():
            runs = {"untraced": [], "traced": []}
            for i in range(self.pairs):
                for variant in self.order(i, ["untraced", "traced"]):
                    if variant == "traced":
                        c, env = [self.run_bin] + cmd, self.traced_env("bench-idle")
                    else:
                        c, env = cmd, clean_env()
                    p = subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    try:
                        if "python" in name:
                            p.stdout.readline()
                        time.sleep(0.3)
                        st = proc_status(p.pid)
                        st["fds"] = len(os.listdir("/proc/%d/fd" % p.pid))
                    finally:
                        stop(p, signal.SIGKILL)
                    runs[variant].append(st)
            out[name] = runs
            log("  %s: RSS untraced %.2f MiB traced %.2f MiB, threads %s vs %s" % (
                name,
                median(r["VmRSS"] for r in runs["untraced"]) / MIB,
                median(r["VmRSS"] for r in runs["traced"]) / MIB,
                median(r["Threads"] for r in runs["untraced"]),
                median(r["Threads"] for r in runs["traced"])))
        self.results["idle"] = out

    # ---------------------------------------------------------------- 7
    def traced_wrk(self, url, sink, label, conns=10, delay_ms=None):
        """`lumigo-run wrk` with LUMIGO_DEBUG, so the library reports its drops at exit."""
        errf = os.path.join(self.work, "wrk-traced-%s.err" % label)
        env = self.traced_env("bench-wrk", debug=True, sink=sink)
        if delay_ms:
            env["WRK_DELAY_MS"] = str(delay_ms)
        spans0 = sink.settle()
        t0 = time.perf_counter()
        r = wrk(url, self.duration, conns=conns, cmd_prefix=[self.run_bin], env=env, stderr_path=errf)
        r["exit_wall_s"] = time.perf_counter() - t0
        r["spans_received"] = sink.settle(timeout=6) - spans0
        with open(errf, errors="replace") as f:
            text = f.read()
        r["dropped_reported"] = dropped_from(text)
        r["records_refused"] = refused_from(text)
        r["records_spilled"] = spilled_from(text)
        return r

    def export_capacity(self):
        log("7/7 export capacity: traced wrk (client spans) against an untraced nginx")
        srv = Nginx(self.work, "nginx-capacity")
        slow_ms = 100
        slow = Sink(self.work, "slow-sink", delay_ms=slow_ms)
        out = {"fast": {"untraced": [], "traced": []}, "slow": {"untraced": [], "traced": []},
               "slow_delay_ms": slow_ms, "sweep": []}
        # Paced loads (1 ms between a response and the next request on each
        # connection): about 0.75k req/s per connection here.
        levels = [20] if self.smoke else [5, 20, 50, 100]
        try:
            for conns in levels:
                r = self.traced_wrk(srv.url, self.sink, "paced-%d" % conns, conns=conns, delay_ms=1)
                r["conns"] = conns
                log("  paced, %3d connections: %8.0f spans/s offered, received %d, dropped (reported) %d, "
                    "records spilled %d, refused %d, made %d"
                    % (conns, r["rps"], r["spans_received"], r["dropped_reported"], r["records_spilled"],
                       r["records_refused"], r["requests"]))
                out["sweep"].append(r)
            for label, sink in (("fast", self.sink), ("slow", slow)):
                for i in range(self.pairs if label == "fast" else min(self.pairs, 3)):
                    for variant in self.order(i, ["untraced", "traced"]):
                        if variant == "traced":
                            r = self.traced_wrk(srv.url, sink, "%s-%d" % (label, i))
                        else:
                            r = wrk(srv.url, self.duration)
                        log("  %s sink, %-8s %8.0f req/s%s" % (
                            label, variant, r["rps"],
                            "  spans received %d, dropped (reported) %d, records spilled %d, refused %d, made %d" % (
                                r["spans_received"], r["dropped_reported"], r["records_spilled"],
                                r["records_refused"], r["requests"])
                            if variant == "traced" else ""))
                        out[label][variant].append(r)
        finally:
            srv.stop()
            slow.close()
        self.results["capacity"] = out

    # ---------------------------------------------------------------- callgrind
    def callgrind(self):
        """Instruction counts (callgrind): noise-free where CPU times are not.

        This VM exposes no hardware counters (`perf stat -e instructions`
        says "not supported"), so instructions come from valgrind: per
        exchange in the nginx worker (app thread and export thread apart),
        per read/write call on an untracked fd (dd), and per process start
        (the library's constructor).
        """
        if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
            log("valgrind not found: no instruction counts")
            return
        n = 300 if self.smoke else 2000
        log("5/7 instruction counts (callgrind): nginx worker over %d keep-alive requests; dd; process start" % n)
        out = {"requests": n}

        def keepalive_requests(port, count, varied=False):
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for i in range(count):
                # "varied": a request id of its own on every request (as a
                # proxy or a traced client adds), so no request head repeats
                # and the memos of whole heads serve only the responses.
                headers = {"X-Request-Id": "%016x" % (i * 0x9e3779b97f4a7c15 % (1 << 64))} if varied else {}
                c.request("GET", "/index.html", headers=headers)
                c.getresponse().read()
            c.close()

        def dumps(d, pid):
            total, per_thread = 0, []
            for name in sorted(os.listdir(d)):
                if re.fullmatch(r"cg\.%d\.1(-\d+)?" % pid, name):
                    with open(os.path.join(d, name)) as f:
                        m = re.search(r"^summary: (\d+)", f.read(), re.M)
                    if m:
                        per_thread.append(int(m.group(1)))
                        total += int(m.group(1))
            return total, per_thread

        # "traced": payload capture on (the default); "traced-nopayload":
        # LUMIGO_CAPTURE_PAYLOADS=false (issue 14: at most 500 instructions
        # apart on the app thread); "traced-unsampled": every exchange
        # unsampled (OTEL_TRACES_SAMPLER=always_off: framed, not recorded);
        # "traced-varied": as "traced", each request head with an id of its
        # own (so is its answer's, by its Date, once a second), and
        # "untraced-varied" its baseline.
        for variant in ("untraced", "traced", "traced-nopayload", "traced-unsampled",
                        "untraced-varied", "traced-varied"):
            d = os.path.join(self.work, "cg-nginx-%s" % variant)
            os.makedirs(d, exist_ok=True)
            env = clean_env()
            varied = variant.endswith("-varied")
            if variant.startswith("traced"):
                env = self.traced_env("bench-nginx")
                env["LD_PRELOAD"] = self.lib  # what lumigo-run sets; valgrind keeps it for its client
                env["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # export promptly, inside the counted window
                if variant == "traced-nopayload":
                    env["LUMIGO_CAPTURE_PAYLOADS"] = "false"
                if variant == "traced-unsampled":
                    env["OTEL_TRACES_SAMPLER"] = "always_off"
            vg = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--separate-threads=yes",
                  "--callgrind-out-file=%s/cg.%%p" % d]
            srv = Nginx(self.work, "nginx-cg-%s" % variant, vg, env)
            try:
                keepalive_requests(srv.port, 100, varied)
                time.sleep(1.5)  # the warm-up's spans exported before counting starts
                subprocess.run(["callgrind_control", "-z", str(srv.worker)], env=clean_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                keepalive_requests(srv.port, n, varied)
                time.sleep(1.5)  # their export is part of their cost
                subprocess.run(["callgrind_control", "-d", str(srv.worker)], env=clean_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            finally:
                srv.stop()
            total, threads = dumps(d, srv.worker)
            out[variant] = {"total": total, "threads": threads}
        u, t = out["untraced"], out["traced"]
        off = out["traced-nopayload"]
        if off["threads"]:
            out["app_per_req_nopayload"] = off["threads"][0] / n
            out["export_per_span_nopayload"] = sum(off["threads"][1:]) / n
        uv, tv = out["untraced-varied"], out["traced-varied"]
        if uv["total"] and tv["threads"]:
            out["untraced_per_req_varied"] = uv["total"] / n
            out["app_per_req_varied"] = tv["threads"][0] / n
            out["export_per_span_varied"] = sum(tv["threads"][1:]) / n
        unsampled = out["traced-unsampled"]
        if unsampled["threads"]:
            out["app_per_req_unsampled"] = unsampled["threads"][0] / n
            out["other_threads_unsampled"] = sum(unsampled["threads"][1:]) / n
        if u["total"] and t["threads"]:
            out["untraced_per_req"] = u["total"] / n
            out["app_per_req"] = t["threads"][0] / n
            out["export_per_span"] = sum(t["threads"][1:]) / n
            out["threads_per_span"] = [x / n for x in t["threads"][1:]]
            log("  nginx: untraced %.0f instr/request; traced app thread %.0f (+%.0f), our threads %.0f per span"
                % (out["untraced_per_req"], out["app_per_req"], out["app_per_req"] - out["untraced_per_req"],
                   out["export_per_span"]))

        # dd: an untracked fd's hook cost, and the constructor's.
        calls = 20_000 if self.smoke else 100_000
        counts = {}
        for variant in ("untraced", "traced"):
            for count in (0, calls):
                f = os.path.join(self.work, "cg-dd-%s-%d" % (variant, count))
                env = clean_env() if variant == "untraced" else dict(self.traced_env("bench-dd"), LD_PRELOAD=self.lib)
                subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + f,
                                "dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=%d" % count, "status=none"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                with open(f) as fh:
                    counts[(variant, count)] = int(re.search(r"^summary: (\d+)", fh.read(), re.M).group(1))
        out["dd_calls"] = 2 * calls
        out["per_untracked_call"] = ((counts[("traced", calls)] - counts[("traced", 0)])
                                     - (counts[("untraced", calls)] - counts[("untraced", 0)])) / (2 * calls)
        out["per_process_start"] = counts[("traced", 0)] - counts[("untraced", 0)]
        log("  dd: +%.1f instructions per read/write on an untracked fd; +%d per process start (dd count=0)"
            % (out["per_untracked_call"], out["per_process_start"]))
        self.results["callgrind"] = out

    def perf_under_wrk(self, srv, data, options):
        """`perf record OPTIONS` into `data` while wrk drives nginx `srv` for the
        run's duration, after a warm-up."""
        wrk(srv.url, self.warmup)
        perf = subprocess.Popen(["perf", "record"] + options + ["-o", data, "--", "sleep", str(self.duration)],
                                env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wrk(srv.url, self.duration)
        perf.wait()

    # ---------------------------------------------------------------- 5 (time split)
    def time_split(self):
        """Where the nginx worker's thread spends its time under wrk, untraced
        and traced: perf's cpu-clock samples of that thread alone, by object
        (the kernel, nginx, libc, our library). Callgrind counts user-space
        instructions only; this says how much of the worker's time they are."""
        # Not every machine lets perf sample (no perf, perf_event_paranoid,
        # a container): said in the table, not a failure of the run.
        if not shutil.which("perf"):
            self.results["split_skipped"] = "perf not found"
            log("5/7 where the nginx worker's time goes: perf not found, skipped")
            return
        log("5/7 where the nginx worker's time goes: perf record -e cpu-clock on its thread under wrk -t1 -c10")
        out = {}
        for variant in ("untraced", "traced"):
            traced = variant == "traced"
            prefix = [self.run_bin] if traced else []
            env = self.traced_env("bench-nginx") if traced else clean_env()
            srv = Nginx(self.work, "nginx-split-%s" % variant, prefix, env)
            data = os.path.join(self.work, "perf-split-%s.data" % variant)
            try:
                self.perf_under_wrk(srv, data, ["-e", "cpu-clock", "-F", "4999", "-t", str(srv.worker)])
            finally:
                srv.stop()
            rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso"],
                                 env=clean_env(), capture_output=True, text=True)
            shares = {}
            for line in rep.stdout.splitlines():
                m = re.match(r"\s*([0-9.]+)%\s+(\S+)", line)
                if m:
                    shares[m.group(2)] = float(m.group(1))
            if not shares:
                self.results["split_skipped"] = "perf recorded no sample of the worker (perf_event_paranoid?)"
                log("  %s" % self.results["split_skipped"])
                return
            log("  %-8s %s" % (variant, ", ".join("%s %.1f%%" % kv for kv in sorted(shares.items(), key=lambda kv: -kv[1])[:4])))
            out[variant] = shares
        self.results["split"] = out

    # ---------------------------------------------------------------- profile
    def profile(self):
        if not shutil.which("perf"):
            log("perf not found: no profile")
            return
        log("profile: perf record on the traced nginx worker under wrk")
        srv = Nginx(self.work, "nginx-profile", [self.run_bin], self.traced_env("bench-nginx"))
        data = os.path.join(self.args.outdir, "perf-nginx.data")
        try:
            self.perf_under_wrk(srv, data, ["-e", "cpu-clock", "-F", "1999", "--call-graph", "dwarf,16384",
                                            "-p", str(srv.worker)])
        finally:
            srv.stop()
        for name, extra in (("perf-nginx-dso.txt", ["--sort", "dso"]),
                            ("perf-nginx-symbols.txt", ["--sort", "dso,symbol"]),
                            ("perf-nginx-lumigo.txt", ["--sort", "symbol", "--dsos", "liblumigo_preload.so"])):
            with open(os.path.join(self.args.outdir, name), "w") as f:
                subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none",
                                "--percent-limit", "0.3"] + extra,
                               env=clean_env(), stdout=f, stderr=subprocess.DEVNULL)
        log("  perf reports in %s/perf-nginx-*.txt" % self.args.outdir)

    # ---------------------------------------------------------------- all
    def run(self):
        started = time.time()
        self.results["machine"] = machine(self)
        self.results["mode"] = "smoke" if self.smoke else "full"
        self.results["pairs"] = self.pairs
        self.results["duration_s"] = self.duration
        self.sink = Sink(self.work)
        try:
            steps = {
                "nginx": self.nginx, "flask": self.flask, "io": self.io_loops,
                "startup": self.startup, "callgrind": self.callgrind, "split": self.time_split,
                "idle": self.idle_memory, "capacity": self.export_capacity,
            }
            only = [x for x in self.args.only.split(",") if x in steps] if self.args.only is not None else list(steps)
            for name in only:
                t = time.time()
                try:
                    steps[name]()
                except Exception as e:  # noqa: BLE001 - record, keep going
                    log("  %s FAILED: %s" % (name, e))
                    self.results.setdefault("errors", {})[name] = str(e)
                self.results.setdefault("step_seconds", {})[name] = round(time.time() - t, 1)
            if self.args.profile:
                self.profile()
        finally:
            self.sink.close()
            self.results["load_after"] = loadavg()
            self.results["elapsed_s"] = round(time.time() - started, 1)
            if not self.args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
        return self.results


def machine(b):
    def cmd_out(c):
        try:
            return subprocess.run(c, capture_output=True, text=True, env=clean_env()).stdout.strip()
        except OSError:
            return "?"

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1024 / 1024)
    except OSError:
        pass
    commit = cmd_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = cmd_out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    nginx_v = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "load_before": loadavg(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "nginx": nginx_v.replace("nginx version: ", ""),
        "wrk": cmd_out(["wrk", "--version"]).split(" Copyright")[0] or "wrk",
        "hyperfine": cmd_out(["hyperfine", "--version"]),
        "python": platform.python_version(),
        "lib_size": os.path.getsize(b.lib) if os.path.exists(b.lib) else None,
        "layout": b.layout,
    }


def main():
    p = argparse.ArgumentParser(description="lumigo-run overhead benchmarks (see scripts/bench.sh)")
    p.add_argument("--smoke", action="store_true", help="seconds-long run: 1 pair, 1 s wrk runs")
    p.add_argument("--pairs", type=int, help="untraced/traced pairs per comparison (default 5, smoke 1)")
    p.add_argument("--duration", type=int, help="seconds per measured wrk run (default 5, smoke 1)")
    p.add_argument("--only", help="comma-separated steps: nginx,flask,io,startup,callgrind,split,idle,capacity")
    p.add_argument("--profile", action="store_true", help="also perf-record the traced nginx worker")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    p.add_argument("--target", default=os.path.join(ROOT, "target", "release"))
    p.add_argument("--dist", default=os.path.join(ROOT, "target", "dist", "lumigo-run"),
                   help="packaged layout to measure (scripts/package.sh); --target is used when it is missing")
    p.add_argument("--venv", default=os.path.join(ROOT, "target", "bench-venv"))
    p.add_argument("--out", help="Markdown file to write (default BENCHMARKS.md; smoke: target/bench/BENCHMARKS.smoke.md)")
    p.add_argument("--outdir", default=os.path.join(ROOT, "target", "bench"))
    p.add_argument("--report-only", help="rewrite the Markdown from a results JSON file")
    args = p.parse_args()
    if os.environ.get("LD_PRELOAD"):
        sys.exit("run.py must run untraced: unset LD_PRELOAD")
    os.makedirs(args.outdir, exist_ok=True)
    # Only a complete full run may replace the table in BENCHMARKS.md.
    partial = args.only is not None
    out = args.out or (os.path.join(args.outdir, "BENCHMARKS.smoke.md") if args.smoke
                       else os.path.join(args.outdir, "BENCHMARKS.partial.md") if partial
                       else os.path.join(ROOT, "BENCHMARKS.md"))
    if args.report_only:
        with open(args.report_only) as f:
            res = json.load(f)
    else:
        res = Bench(args).run()
        jf = os.path.join(args.outdir, "results-%s.json" % ("partial" if partial and not args.smoke else res["mode"]))
        with open(jf, "w") as f:
            json.dump(res, f, indent=1)
        log("raw results: %s" % jf)
    table = report(res)
    write_report(out, table)
    print(table)
    log("wrote %s" % out)
    return 1 if res.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
