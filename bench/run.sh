#!/usr/bin/env bash
# The benchmarks. Builds release binaries, makes sure PostgreSQL and NATS are running, then runs
#   bench/run.sh [ingest] [args]   ingest vs a bare HMAC-only axum endpoint (ingest-bench run),
#                                  each security level in alternating rounds (~4 minutes)
#   bench/run.sh ledger [args]     ledger drain rate and latency at a steady rate (ledger-bench),
#                                  each security level in interleaved rounds, each with client
#                                  encryption off and on (~10 minutes)
#   bench/run.sh close [args]      monthly close: 1 tenant x 100k bookings, 1,000 x 100 (close-bench;
#                                  anonymous NATS, the database's owner)
#   bench/run.sh pdf [args]        invoice PDF rendering, 2,000 lines (pdf-bench; no services)
#   bench/run.sh all               all four, one after the other
#   bench/run.sh faults [args]     fault injection: nothing lost or doubled while parts fail
#                                  (fault-bench; own PostgreSQL and NATS; security as in production
#                                  by default; ~5 minutes; kill-ledger also builds the ledger's
#                                  debug build, whose test-only fault point dies between a commit
#                                  and its acks)
#   bench/run.sh faults --cluster  the same on a fresh 3-node NATS cluster per scenario, every
#                                  stream R3 (scripts/nats-cluster.sh, ports 25222..; security
#                                  off): the WEBHOOKS leader killed, the ledger consumer's leader
#                                  frozen 20 s, a rolling restart, the WEBHOOKS leader cut off the
#                                  network 20 s (nftables) (~6 minutes with --bookings 250)
#   bench/run.sh report            all four, then bench/RESULTS.md: the machine, the date, every
#                                  figure with its ratio to its ceiling (~16 minutes)
# Extra arguments go to the benchmark (e.g. --duration-secs 5 --rounds 1; --backlog 20000).
# Security levels (--security; ingest and ledger take a list, default off,auth,tls, and state each
# level's cost against the first; faults takes one, default tls):
#   off   anonymous NATS, the services as the database's owner, plain connections, unkeyed chain
#   auth  as in production: each service its own NATS user (deploy/nats/nats-server.conf) and
#         database role (<schema>_runtime, after the owner's --migrate-only), the keyed chain
#   tls   auth, and NATS and PostgreSQL over TLS (a CA made per run with openssl)
# Client encryption (--encryption; ledger takes a list, default off,on, and states on against off):
#   off   the ledger without LEDGER_CLIENT_KEYRING_FILE: it keeps no client details
#   on    a keyring made per run with random keys: each booking's client details sealed
# The benchmarks share the machine's cores: each report gives the load average before and after;
# rerun when other work (a build) disturbed it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/billing-tracker/target}"
which=ingest
case "${1:-}" in ingest | ledger | close | pdf | all | report | faults) which=$1; shift ;; esac
scripts/services.sh
cargo build --release --locked -p ingest -p ledger -p invoicing -p notifier -p billing-bench
# The ledger's test-only fault point exists in debug builds only (kill-ledger); the network
# cuts (cut-webhooks-leader, vanish-postgres, partition-postgres) need nftables.
if [ "$which" = faults ]; then
  cargo build --locked -p ledger
  if ! command -v nft >/dev/null 2>&1; then
    echo "run.sh: installing nftables (the fault suite's network cuts)" >&2
    as_root=""; [ "$(id -u)" = 0 ] || as_root=sudo
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null ||
      { $as_root apt-get update -q >/dev/null &&
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null; }
  fi
fi
bin="$CARGO_TARGET_DIR/release"
case "$which" in
  ingest) exec "$bin/ingest-bench" run "$@" ;;
  ledger) exec "$bin/ledger-bench" "$@" ;;
  close) exec "$bin/close-bench" "$@" ;;
  pdf) exec "$bin/pdf-bench" "$@" ;;
  faults) exec "$bin/fault-bench" "$@" ;;
  all) "$bin/ingest-bench" run && "$bin/ledger-bench" && "$bin/close-bench" && "$bin/pdf-bench" ;;
  report)
    [ $# -eq 0 ] || { echo "run.sh report takes no arguments (it runs each benchmark as it is)" >&2; exit 64; }
    run_dir=$(mktemp -d)
    trap 'rm -rf "$run_dir"' EXIT
    export BENCH_SUMMARY="$run_dir/summary.jsonl"
    "$bin/ingest-bench" run | tee "$run_dir/ingest.md"
    "$bin/ledger-bench" | tee "$run_dir/ledger.md"
    "$bin/close-bench" | tee "$run_dir/close.md"
    "$bin/pdf-bench" | tee "$run_dir/pdf.md"
    "$bin/bench-report" "$run_dir" bench/RESULTS.md
    ;;
esac
