#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks run against, on a
# fresh Debian machine: nginx, curl, python3, wrk, hyperfine, database
# clients, and the runtimes of README's runtime table. Idempotent and
# quiet when everything is already there.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# nm: tests/symbols.rs reads the preload library's exported symbols.
command -v nm >/dev/null 2>&1 || need+=(binutils)

command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
# HTTPS clients of the TLS tests: Perl's HTTP::Tiny, a C client built there.
perl -MIO::Socket::SSL -e 1 >/dev/null 2>&1 || need+=(libio-socket-ssl-perl)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)

# The runtimes tests/runtimes.rs drives (README's runtime table).
command -v wget >/dev/null 2>&1 || need+=(wget)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v ruby >/dev/null 2>&1 || need+=(ruby)
command -v php >/dev/null 2>&1 || need+=(php-cli)
{ command -v php >/dev/null 2>&1 && php -m 2>/dev/null | grep -qx curl; } || need+=(php-curl)
perl -MIO::Socket::SSL -e 1 2>/dev/null || need+=(libio-socket-ssl-perl)

if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python drivers the database tests drive (redis-py, psycopg2 and psycopg 3,
# PyMySQL, mysql-connector-python) and requests (tests/runtimes.rs),
# installed only when missing.
pymods=()
python3 -c "import redis" 2>/dev/null || pymods+=(redis)
python3 -c "import psycopg2" 2>/dev/null || pymods+=(psycopg2-binary)
python3 -c "import pymysql" 2>/dev/null || pymods+=(pymysql)
python3 -c "import psycopg" 2>/dev/null || pymods+=("psycopg[binary]")
python3 -c "import mysql.connector" 2>/dev/null || pymods+=(mysql-connector-python)
python3 -c "import requests" 2>/dev/null || pymods+=(requests)
# Message broker clients (tests/brokers.rs, tests/fixtures/brokers.py).
python3 -c "import pika" 2>/dev/null || pymods+=(pika)
python3 -c "import paho.mqtt" 2>/dev/null || pymods+=(paho-mqtt)
python3 -c "import nats" 2>/dev/null || pymods+=(nats-py)
# The OTLP/gRPC receiver of tests/otlp_grpc.rs (grpcio and the OTLP service).
python3 -c "import grpc" 2>/dev/null || pymods+=(grpcio)
python3 -c "import opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc" 2>/dev/null \
  || pymods+=(opentelemetry-proto)
# An asyncio server and client (tests/eventloop.rs).
python3 -c "import aiohttp" 2>/dev/null || pymods+=(aiohttp)
if [ "${#pymods[@]}" -gt 0 ]; then
  echo "pip installing: ${pymods[*]}"
  python3 -m pip install -q --disable-pip-version-check "${pymods[@]}"
fi

# The Node.js packages of the tests, pinned by their package-lock.json
# files: the broker client of tests/brokers.rs (MQTT.js) and Express for
# tests/eventloop.rs. Installed when missing or older than the lock file.
for fixture in node-brokers node-eventloop; do
  dir="$(dirname "$0")/../tests/fixtures/$fixture"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "npm ci in tests/fixtures/$fixture"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# cargo-fuzz for scripts/fuzz.sh (the fuzz targets in fuzz/). It builds
# them with the nightly toolchain where there is one, else with the stable
# one told to take the nightly flags (RUSTC_BOOTSTRAP=1).
if ! command -v cargo-fuzz >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "cargo install cargo-fuzz"
  cargo install --locked --quiet cargo-fuzz ||
    echo "could not install cargo-fuzz: scripts/fuzz.sh will say it skipped"
fi
