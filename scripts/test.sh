#!/usr/bin/env bash
# Runs every test: unit tests and the end-to-end tests against real PostgreSQL, NATS JetStream
# and an SMTP server on loopback. Starts what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
command -v pdftotext >/dev/null 2>&1 || {
  echo "test.sh: installing poppler-utils (pdftotext reads the invoice PDFs back)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q poppler-utils >/dev/null; else sudo apt-get install -y -q poppler-utils >/dev/null; fi
}
cargo nextest --version >/dev/null 2>&1 || cargo install cargo-nextest --locked

# The end-to-end tests drive billingctl as an operator would: build the binary first.
cargo build --locked -p billingctl
cargo nextest run --workspace --no-fail-fast "$@"
