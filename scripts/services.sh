#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and NATS with JetStream (127.0.0.1:4222) answer.
# Uses them when they already run; otherwise installs them from Debian's packages (when missing)
# and starts them. Safe to run repeatedly.
set -euo pipefail

PG_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name
  for _ in $(seq 1 60); do answers "$1" && return 0; sleep 0.5; done
  echo "services.sh: $2 does not answer on 127.0.0.1:$1" >&2
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  echo "services.sh: installing $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
    { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

if ! answers 5432; then
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  wait_for 5432 PostgreSQL
  # A fresh Debian cluster wants a password on TCP: give the postgres user the one our default
  # URL carries (a development machine only) and create the `test` database.
  if ! psql "$PG_URL" -qAtc 'select 1' >/dev/null 2>&1; then
    as_root runuser -u postgres -- psql -qc "alter user postgres password 'postgres'"
    as_root runuser -u postgres -- createdb test 2>/dev/null || true
  fi
fi

if ! answers 4222; then
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  as_root mkdir -p /var/lib/nats-server
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for 4222 "NATS"
fi

psql "$PG_URL" -qAtc 'select 1' >/dev/null || { echo "services.sh: cannot log in with $PG_URL" >&2; exit 1; }
echo "services.sh: PostgreSQL on 127.0.0.1:5432 and NATS on 127.0.0.1:4222 are up" >&2
