#!/usr/bin/env bash
# SQL checked at build time. The services' queries are sqlx's `query!` macros; builds compile them
# against the offline data committed in .sqlx/ (SQLX_OFFLINE=true in .cargo/config.toml), never
# against a database. This script makes that data from a scratch database holding every
# service's schema at its latest migration (migrations/<schema>/, applied as each service applies
# them: in its own schema, with its own history table):
#
#   scripts/sqlx.sh prepare    rewrites .sqlx/: after a migration or a query changes; commit it
#   scripts/sqlx.sh check      fails when .sqlx/ is stale or a query no longer fits the
#                              migrations (what CI runs)
#   scripts/sqlx.sh database   (re)creates the database billing_sqlx_dev the same way and prints
#                              its URL, for checking queries live while writing them:
#                              SQLX_OFFLINE=false DATABASE_URL=$(scripts/sqlx.sh database) cargo check
#
# Queries name their schema (`notifier.emails`): tables of different schemas share names. Needs
# PostgreSQL (scripts/services.sh, TEST_DATABASE_URL as the tests use it) and sqlx-cli of the
# workspace's sqlx version, installed into ~/.cargo/bin when missing (it builds for minutes once).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/billing-tracker/target}"
ADMIN_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"
SERVER_URL="${ADMIN_URL%/*}"
# Scratch databases left by a run that was killed are dropped by a later run after this long.
STALE_AFTER_SECS=$((3 * 60 * 60))

usage() {
  echo "usage: scripts/sqlx.sh prepare|check|database" >&2
  exit 64
}
[ $# -eq 1 ] || usage
mode=$1
case "$mode" in prepare | check | database) ;; *) usage ;; esac

scripts/services.sh

# The CLI writes and compares the offline data in its own format: same sqlx major.minor as the
# workspace (Cargo.lock).
want=$(awk '$0 == "name = \"sqlx\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(cargo sqlx --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "${have%.*}" != "${want%.*}" ]; then
  echo "sqlx.sh: installing sqlx-cli $want (found: ${have:-none}); it builds for a few minutes" >&2
  env -u CARGO_TARGET_DIR cargo install sqlx-cli --version "=$want" --locked \
    --no-default-features --features postgres,rustls
fi

admin() { PGOPTIONS="-c client_min_messages=warning" psql "$ADMIN_URL" -qAtX -v ON_ERROR_STOP=1 "$@"; }

# Every schema at its latest migration, in a fresh database named $1.
build_database() {
  admin -c "drop database if exists $1 with (force)" -c "create database $1"
  for dir in migrations/*/; do
    local schema
    schema=$(basename "$dir")
    psql "$SERVER_URL/$1" -qAtX -v ON_ERROR_STOP=1 -c "create schema $schema"
    sqlx migrate run --no-dotenv --source "$dir" \
      --database-url "$SERVER_URL/$1?options=-csearch_path%3D$schema" >&2
  done
}

if [ "$mode" = database ]; then
  build_database billing_sqlx_dev
  echo "$SERVER_URL/billing_sqlx_dev"
  exit 0
fi

now=$(date +%s)
for old in $(admin -c "select datname from pg_database where datname ~ '^billing_sqlx_[0-9]+_[0-9]+$'"); do
  created=${old#billing_sqlx_}
  created=${created%%_*}
  if [ $((now - created)) -gt "$STALE_AFTER_SECS" ]; then
    admin -c "drop database if exists $old with (force)" || true
  fi
done

# One per run: other checkouts on this machine may be preparing at the same time.
db="billing_sqlx_${now}_$$"
trap 'admin -c "drop database if exists $db with (force)" || true' EXIT
build_database "$db"

# `cargo sqlx prepare` builds the workspace (cargo check, every target) with the query macros
# online against that database, after touching the crates that use them so they recompile.
args=(prepare --workspace --database-url "$SERVER_URL/$db")
[ "$mode" = check ] && args+=(--check)
if ! cargo sqlx "${args[@]}" -- --workspace --all-targets --locked; then
  if [ "$mode" = check ]; then
    echo "sqlx.sh: the queries do not match .sqlx/ or the migrations (see above): fix the query," \
      "or run scripts/sqlx.sh prepare and commit .sqlx/" >&2
  else
    echo "sqlx.sh: a query does not compile against the migrations (see above); .sqlx/ may now" \
      "be incomplete: fix it and prepare again (git checkout .sqlx restores the last data)" >&2
  fi
  exit 1
fi
