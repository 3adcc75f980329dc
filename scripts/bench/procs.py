"""Processes the benchmarks run and measure: the OTLP sink, wrk, nginx, and
/proc readings (CPU per thread, RSS, threads). Standard library only.

Every child gets `clean_env()`: no LD_PRELOAD, LUMIGO_* or OTEL_*, unless a
benchmark adds them on purpose.
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# --------------------------------------------------------------------------
# small helpers


def log(msg):
    print("[bench] " + msg, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def clean_env(**extra):
    """The environment of every child: ours without tracer variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "LD_PRELOAD" and not k.startswith(("LUMIGO_", "OTEL_")) and k != "AUTOWRAPT_BOOTSTRAP"
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on port %d after %.0fs" % (port, timeout))


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, proc=None, timeout=20.0):
    """GETs `url` until it answers; returns how many requests succeeded (1)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s before answering" % proc.returncode)
        try:
            http_get(url, timeout=2.0)
            return 1
        except Exception as e:  # noqa: BLE001
            last = e
            time.sleep(0.1)
    raise RuntimeError("%s did not answer: %s" % (url, last))


def stop(proc, sig=signal.SIGTERM, timeout=10.0):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0]) * 1024
                elif k == "Threads":
                    out[k] = int(v)
    except OSError:
        pass
    return out


def thread_cpu_ns(pid):
    """{tid: (comm, cpu ns)} from /proc/PID/task/*/schedstat (ns precision)."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns = int(f.read().split()[0])
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            out[int(tid)] = (comm, ns)
        except (OSError, ValueError, IndexError):
            pass
    return out


def proc_cpu_ticks_ns(pid):
    """utime+stime of the whole process (all threads), from /proc/PID/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def wait_children(pid, n=1, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        kids = children(pid)
        if len(kids) >= n:
            return kids
        time.sleep(0.02)
    raise RuntimeError("process %d has no worker after %.0fs" % (pid, timeout))


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------
# the OTLP sink


class Sink:
    """scripts/bench/otlp_sink.py, run untraced on 127.0.0.1."""

    def __init__(self, workdir, name="sink", delay_ms=0):
        self.port_file = os.path.join(workdir, name + ".port")
        self.log = open(os.path.join(workdir, name + ".log"), "w")
        cmd = [sys.executable, os.path.join(HERE, "otlp_sink.py"), "--port-file", self.port_file]
        if delay_ms:
            cmd += ["--delay-ms", str(delay_ms)]
        self.proc = subprocess.Popen(cmd, env=clean_env(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the OTLP sink did not start (see %s)" % self.log.name)
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read())
        self.url = "http://127.0.0.1:%d" % self.port

    def stats(self):
        return json.loads(http_get(self.url + "/stats")[1])

    def spans(self):
        return self.stats()["spans"]

    def settle(self, timeout=4.0, quiet=0.4):
        """The span count once it has stopped growing (exports in flight)."""
        deadline = time.time() + timeout
        last, since = self.spans(), time.time()
        while time.time() < deadline:
            time.sleep(0.1)
            now = self.spans()
            if now != last:
                last, since = now, time.time()
            elif time.time() - since >= quiet:
                break
        return last

    def close(self):
        stop(self.proc)
        self.log.close()


# --------------------------------------------------------------------------
# wrk


def wrk(url, duration, threads=1, conns=10, cmd_prefix=(), env=None, stderr_path=None):
    """Runs wrk and returns its WRK_JSON numbers plus rps and the process's CPU."""
    cmd = list(cmd_prefix) + [
        "wrk",
        "-t%d" % threads,
        "-c%d" % conns,
        "-d%ss" % duration,
        "-s",
        os.path.join(HERE, "wrk_report.lua"),
        url,
    ]
    err = open(stderr_path, "w") if stderr_path else subprocess.DEVNULL
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env or clean_env(), stdout=subprocess.PIPE, stderr=err, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    wall = time.perf_counter() - t0
    if stderr_path:
        err.close()
    m = re.search(r"WRK_JSON (\{.*\})", out)
    if p.returncode != 0 or not m:
        raise RuntimeError("wrk failed (%s): %s" % (p.returncode, out[-2000:]))
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["wall_s"] = wall
    r["cpu_s"] = ru.ru_utime + ru.ru_stime
    return r


def run_rusage(cmd, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    """Runs cmd to completion; (wall s, user+sys CPU s of it and its children, rc)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    # Grandchildren (a pipeline under bash) are in RUSAGE_CHILDREN of bash,
    # which wait4 already folds into `ru` once bash reaped them.
    return wall, ru.ru_utime + ru.ru_stime, p.returncode


# --------------------------------------------------------------------------
# nginx


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    default_type text/html;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location / {{ }}
    }}
}}
"""

SMALL_FILE = b"<!doctype html><title>bench</title><p>" + b"x" * 96 + b"</p>\n"


def nginx_binary():
    for c in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if c and os.access(c, os.X_OK):
            return c
    raise RuntimeError("nginx not found")


class Nginx:
    def __init__(self, workdir, name, cmd_prefix=(), env=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(os.path.join(self.dir, "www"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        with open(os.path.join(self.dir, "www", "index.html"), "wb") as f:
            f.write(SMALL_FILE)
        self.port = free_port()
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(
                NGINX_CONF.format(
                    d=self.dir, port=self.port, user="user root;" if os.geteuid() == 0 else ""
                )
            )
        self.url = "http://127.0.0.1:%d/index.html" % self.port
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "w")
        cmd = list(cmd_prefix) + [
            nginx_binary(),
            "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf"),
            "-e", os.path.join(self.dir, "error.log"),
        ]
        self.proc = subprocess.Popen(cmd, env=env or clean_env(), stdout=self.stderr, stderr=self.stderr)
        wait_port(self.port, self.proc)
        self.worker = wait_children(self.proc.pid)[0]
        time.sleep(0.05)
        # Before any request: a traced worker must have no thread of ours yet.
        self.threads_before_first_request = proc_status(self.worker).get("Threads")
        self.probes = wait_http(self.url, self.proc)

    def stop(self):
        stop(self.proc, signal.SIGQUIT, timeout=15)
        self.stderr.close()

    def diagnostics(self):
        text = ""
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text


def dropped_from(text):
    """Spans the library reported lost at exit (LUMIGO_DEBUG's summary line,
    `exit: 12 spans lost: 10 queue full, 2 deadline`)."""
    return sum(int(m) for m in re.findall(r"exit: (\d+) spans? lost", text))


def refused_from(text):
    """Capture records the library reported refused by full rings at exit
    (their exchanges were not traced; records, not spans)."""
    return sum(int(m) for m in re.findall(r"exit: (\d+) capture records refused", text))


def spilled_from(text):
    """Capture records the library reported at exit as having found their
    ring full and waited in the spill (traced all the same)."""
    return sum(int(m) for m in re.findall(r"exit: (\d+) capture records found their ring full", text))


# --------------------------------------------------------------------------
# the benchmarks
