#!/usr/bin/env bash
# A local 3-node NATS cluster with JetStream, for tests and benchmarks of replicated (R3)
# streams: three nats-server processes on loopback, each with its own client, cluster and
# monitoring port and its own store directory.
#
#   scripts/nats-cluster.sh start    starts the nodes (those not running) and waits for a
#                                    JetStream meta leader; prints the client URLs
#   scripts/nats-cluster.sh stop     stops them (their stores are kept)
#   scripts/nats-cluster.sh reset    stops them and removes their stores
#   scripts/nats-cluster.sh status   each node's pid and the JetStream meta leader
#   scripts/nats-cluster.sh urls     the client URLs, comma separated (for <SVC>_NATS_URL)
#
# Every listen and advertise address is 127.0.0.1, and `no_advertise` keeps the servers from
# telling clients about other addresses: otherwise a client is handed the machine's external
# address, which tests must never contact. NATS_CLUSTER_BASE (default 14222) moves the ports:
# clients on BASE, BASE+1, BASE+2; routes on BASE+2000..; monitoring on BASE+4000..
# NATS_CLUSTER_DIR (default ~/.cache/billing-tracker/nats-cluster) holds configs, stores, logs.
# NATS_SERVER_BIN names the nats-server to run (default: the PATH's, Debian's 2.9.10), e.g.
# NATS_SERVER_BIN=$(scripts/nats-current.sh --bin) for 2.15.1.
set -euo pipefail

BASE="${NATS_CLUSTER_BASE:-14222}"
DIR="${NATS_CLUSTER_DIR:-$HOME/.cache/billing-tracker/nats-cluster}"
NODES=(1 2 3)

client_port() { echo $((BASE + $1 - 1)); }
route_port() { echo $((BASE + 2000 + $1 - 1)); }
monitor_port() { echo $((BASE + 4000 + $1 - 1)); }

usage() {
  echo "usage: scripts/nats-cluster.sh start|stop|reset|status|urls" >&2
  exit 64
}

server_bin() {
  if [ -n "${NATS_SERVER_BIN:-}" ]; then echo "$NATS_SERVER_BIN"
  elif command -v nats-server >/dev/null 2>&1; then command -v nats-server
  elif [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server
  else
    echo "nats-cluster.sh: nats-server is missing (Debian: apt-get install nats-server)" >&2
    exit 1
  fi
}

config() { # node
  local n=$1 routes=()
  for m in "${NODES[@]}"; do
    [ "$m" = "$n" ] || routes+=("\"nats-route://127.0.0.1:$(route_port "$m")\"")
  done
  cat <<EOF
server_name: "billing-n$n"
listen: "127.0.0.1:$(client_port "$n")"
client_advertise: "127.0.0.1:$(client_port "$n")"
http: "127.0.0.1:$(monitor_port "$n")"
jetstream {
  store_dir: "$DIR/n$n/store"
}
cluster {
  name: "billing-local"
  listen: "127.0.0.1:$(route_port "$n")"
  advertise: "127.0.0.1:$(route_port "$n")"
  no_advertise: true
  routes: [$(IFS=,; echo "${routes[*]}")]
}
EOF
}

pid_of() { # node: the pid if that node runs
  local f="$DIR/n$1/pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

urls() {
  local out=()
  for n in "${NODES[@]}"; do out+=("nats://127.0.0.1:$(client_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# The JetStream meta leader's name, as any running node's monitoring endpoint reports it.
meta_leader() {
  for n in "${NODES[@]}"; do
    local leader
    leader=$(curl -fsS "http://127.0.0.1:$(monitor_port "$n")/jsz" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin).get("meta_cluster",{}).get("leader",""))' 2>/dev/null) || continue
    [ -n "$leader" ] && { echo "$leader"; return 0; }
  done
  return 1
}

start() {
  local bin
  bin=$(server_bin)
  for n in "${NODES[@]}"; do
    [ -n "$(pid_of "$n")" ] && continue
    mkdir -p "$DIR/n$n/store"
    config "$n" >"$DIR/n$n/nats.conf"
    # Its own stdio: a caller reading this script's output must not wait on the server.
    "$bin" -c "$DIR/n$n/nats.conf" -l "$DIR/n$n/nats.log" -P "$DIR/n$n/pid" </dev/null >/dev/null 2>&1 &
    disown
  done
  for _ in $(seq 1 120); do
    if leader=$(meta_leader); then
      # The leader may be another cluster's on these ports (one left running from another
      # directory): then this directory's nodes could not bind and have exited.
      for n in "${NODES[@]}"; do
        if [ -z "$(pid_of "$n")" ]; then
          echo "nats-cluster.sh: node n$n is not running (ports taken?); see $DIR/n$n/nats.log" >&2
          exit 1
        fi
      done
      echo "nats-cluster.sh: 3 nodes up, JetStream meta leader $leader" >&2
      urls
      return 0
    fi
    sleep 0.5
  done
  echo "nats-cluster.sh: no JetStream meta leader after 60 s; see $DIR/n*/nats.log" >&2
  exit 1
}

stop() {
  for n in "${NODES[@]}"; do
    local pid
    pid=$(pid_of "$n") || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/n$n/pid"
  done
}

[ $# -eq 1 ] || usage
case "$1" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$DIR" ;;
  status)
    for n in "${NODES[@]}"; do
      echo "billing-n$n client 127.0.0.1:$(client_port "$n") pid $(pid_of "$n" || echo -)"
    done
    echo "meta leader: $(meta_leader || echo none)"
    ;;
  urls) urls ;;
  *) usage ;;
esac
