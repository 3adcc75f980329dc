#!/usr/bin/env bash
# Overhead benchmarks (issue 6): what tracing with lumigo-run costs an app.
#
#   bash scripts/bench.sh            # full run (~7 min + build), rewrites the table in BENCHMARKS.md
#   bash scripts/bench.sh --smoke    # ~1 min run for CI, writes target/bench/BENCHMARKS.smoke.md
#   bash scripts/bench.sh --profile  # full run plus a perf profile of the traced nginx worker
#
# Installs what it needs (apt-get: nginx-light, wrk, hyperfine, curl,
# python3-venv, perf/valgrind when available; pip, into target/bench-venv so
# the system Python stays clean: flask, gunicorn, lumigo_opentelemetry,
# opentelemetry-distro, opentelemetry-exporter-otlp-proto-http,
# opentelemetry-instrumentation-flask), builds the release binaries, then
# runs scripts/bench/run.py, which alternates untraced and traced runs of
# every benchmark inside this one invocation and writes the results.
# Any other argument is passed to run.py (see `python3 scripts/bench/run.py --help`).
# A pip package that cannot be installed is recorded in the table, not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
# The driver, the sink and the untraced runs must not be traced themselves.
unset LD_PRELOAD AUTOWRAPT_BOOTSTRAP
for name in $(compgen -e); do
  case "$name" in LUMIGO_* | OTEL_*) unset "$name" ;; esac
done

SMOKE=false
for a in "$@"; do [ "$a" = "--smoke" ] && SMOKE=true; done

say() { echo "[bench] $*" >&2; }

# ---- system packages -------------------------------------------------------
bash scripts/install-deps.sh
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
apt_install() {
  # Installs what it can; a package missing from the archive is not fatal.
  [ "$#" -gt 0 ] || return 0
  say "apt-get install $*"
  if [ -z "${BENCH_APT_UPDATED:-}" ]; then
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    BENCH_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
    for p in "$@"; do
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 ||
        say "could not install $p (continuing without it)"
    done
}
need=()
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if ! $SMOKE; then
  command -v perf >/dev/null 2>&1 || need+=(linux-perf)
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
fi
apt_install "${need[@]+"${need[@]}"}"

# ---- Python packages, in a venv of our own ----------------------------------
VENV=target/bench-venv
PKGS=(flask gunicorn lumigo_opentelemetry opentelemetry-distro
      opentelemetry-exporter-otlp-proto-http opentelemetry-instrumentation-flask)
STAMP="$VENV/.bench-packages"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV" || say "cannot create a venv: the Flask row will say so"
fi
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" != "${PKGS[*]}" ]; then
  say "pip install ${PKGS[*]} (into $VENV)"
  if "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PKGS[@]}" >/dev/null 2>&1; then
    echo "${PKGS[*]}" >"$STAMP"
  else
    for p in "${PKGS[@]}"; do
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$p" >/dev/null 2>&1 ||
        say "pip could not install $p (the table records it as not measured)"
    done
  fi
fi

# ---- build ---------------------------------------------------------------
say "cargo build --release --workspace; scripts/package.sh (the installable layout)"
cargo build --release --workspace --quiet
bash scripts/package.sh >&2

# ---- run -----------------------------------------------------------------
exec python3 scripts/bench/run.py "$@"
