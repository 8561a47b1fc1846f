#!/usr/bin/env bash
# Runs every test: unit tests and the end-to-end tests against real PostgreSQL, NATS JetStream
# and an SMTP server on loopback. Starts what it needs first. The suite runs twice, once against
# each supported NATS server: a current one (scripts/nats-current.sh, 2.15) and Debian's (2.9).
# NATS_SERVERS=current (or debian) runs one of them.
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
servers="${NATS_SERVERS:-current debian}"
for server in $servers; do
  case "$server" in
    current) url=$(scripts/nats-current.sh) ;;
    debian) url=nats://127.0.0.1:4222 ;;
    *) echo "test.sh: NATS_SERVERS names current and/or debian, not $server" >&2; exit 64 ;;
  esac
  echo "--- the suite against NATS $server ($url)" >&2
  TEST_NATS_URL="$url" cargo nextest run --workspace --no-fail-fast "$@"
done
