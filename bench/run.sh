#!/usr/bin/env bash
# The ingest load benchmark: builds release binaries, makes sure NATS is running, then measures
# ingest against a bare HMAC-only axum endpoint in the same run. Extra arguments go to
# `ingest-bench run` (e.g. --duration-secs 5 --rounds 1).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/billing-tracker/target}"
scripts/services.sh
cargo build --release --locked -p ingest -p billing-bench
exec "$CARGO_TARGET_DIR/release/ingest-bench" run "$@"
