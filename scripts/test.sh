#!/usr/bin/env bash
# The test command: builds the workspace and runs every test (unit tests,
# parser tests, and integration tests with real programs under lumigo-run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
bash scripts/install-deps.sh
cargo build --workspace --quiet
cargo test --workspace "$@"
