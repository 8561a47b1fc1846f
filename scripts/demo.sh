#!/usr/bin/env bash
# The system's main job on one machine: start PostgreSQL and NATS if needed, build and start the
# four services, a local SMTP server and a local SimplyBook (the emulator, answering in the
# shapes of tests/fixtures/simplybook/), send last month's bookings as SimplyBook's native
# callbacks (Claire's and Kenji's, fetched back from the emulator) and as signed forwarder
# payloads (Kenji's), reconcile with SimplyBook and repair a lost callback, run the monthly close,
# show the invoices that were emailed, import a bank statement and Claire's deposits export, and
# print her month statement (SimplyBook = ledger = invoice = deposits = payments). Nothing
# leaves 127.0.0.1. NATS is a server of the demo's own (127.0.0.1:4223, store under .demo/) with
# the production permissions of deploy/nats/nats-server.conf: each service logs in as itself.
#
# Everything it writes goes under .demo/ (logs, received emails, PDFs). Services are stopped at
# the end unless KEEP_RUNNING=1.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR="$PWD/.demo"
PG_ADMIN_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"
DB_URL="${PG_ADMIN_URL%/*}/billing_demo"
TENANTS="$PWD/deploy/tenants.example.json"
# Each service only its own tenant secrets (webhook secrets and callback tokens for ingest, the
# SimplyBook keys for the ledger); the tenants file itself holds none.
INGEST_SECRETS="$PWD/deploy/tenant-secrets/ingest.example.json"
LEDGER_SECRETS="$PWD/deploy/tenant-secrets/ledger.example.json"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
BIN="$TARGET/debug"
RUN_ID="$(date +%s)"

scripts/services.sh

echo "==> building (the first build takes several minutes)"
cargo build --bins -q

echo "==> fresh demo database, NATS server and output directory"
for pidfile in "$DEMO_DIR"/pids/*.pid; do
  [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR/logs" "$DEMO_DIR/mail" "$DEMO_DIR/pids"
psql "$PG_ADMIN_URL" -qc "drop database if exists billing_demo with (force)" -c "create database billing_demo"

export LOG_FORMAT=text RUST_LOG="${RUST_LOG:-info,sqlx=warn}"
export INGEST_TENANTS_FILE="$TENANTS" LEDGER_TENANTS_FILE="$TENANTS" INVOICING_TENANTS_FILE="$TENANTS"
export INGEST_LISTEN_ADDR=127.0.0.1:8080 LEDGER_LISTEN_ADDR=127.0.0.1:8081
export INVOICING_LISTEN_ADDR=127.0.0.1:8082 NOTIFIER_LISTEN_ADDR=127.0.0.1:8083
# Each service runs as its least-privilege role (deploy/postgres/roles.sql), after its schema's
# owner applied the migrations and granted that role only what the service does.
# The ledger's hash-chain key for this run (the database never holds it).
head -c 48 /dev/urandom | base64 >"$DEMO_DIR/chain.key"
export LEDGER_CHAIN_KEY_FILE="$DEMO_DIR/chain.key"
# The keyring clients' personal details are sealed with (docs/privacy.md), made for this run.
cat >"$DEMO_DIR/client-keyring.json" <<KEYRING
{"identity_key": "$(head -c 32 /dev/urandom | base64)", "current": "demo-kek-1",
 "keys": {"demo-kek-1": "$(head -c 32 /dev/urandom | base64)"}}
KEYRING
export LEDGER_CLIENT_KEYRING_FILE="$DEMO_DIR/client-keyring.json"
for svc in ledger invoicing notifier; do
  SVC=$(echo "$svc" | tr a-z A-Z)
  psql "$PG_ADMIN_URL" -qc "do \$\$ begin create role ${svc}_runtime; exception when duplicate_object then null; end \$\$" \
    -c "alter role ${svc}_runtime login password '${svc}_runtime-dev-only'"
  env "${SVC}_DATABASE_URL=$DB_URL" "$BIN/$svc" --migrate-only
  export "${SVC}_DATABASE_URL=${DB_URL%%://*}://${svc}_runtime:${svc}_runtime-dev-only@${DB_URL#*@}"
done
# Each service its own NATS user, with a password made for this run in a file (as a Kubernetes
# Secret volume would hold it); the server reads the same passwords from its environment.
NATS_PORT=4223
mkdir -p "$DEMO_DIR/nats/logins" "$DEMO_DIR/nats/store"
for svc in ingest ledger invoicing notifier; do
  SVC=$(echo "$svc" | tr a-z A-Z)
  password="demo-$svc-$RUN_ID-$RANDOM$RANDOM"
  printf '%s\n' "$password" >"$DEMO_DIR/nats/logins/$svc"
  export "${SVC}_NATS_PASSWORD=$password" "${SVC}_NATS_USER=$svc"
  export "${SVC}_NATS_PASSWORD_FILE=$DEMO_DIR/nats/logins/$svc" "${SVC}_NATS_URL=nats://127.0.0.1:$NATS_PORT"
done
export INVOICING_LEDGER_URL=http://127.0.0.1:8081 NOTIFIER_INVOICING_URL=http://127.0.0.1:8082
export NOTIFIER_SMTP_HOST=127.0.0.1 NOTIFIER_SMTP_PORT=2525
export NOTIFIER_FROM="Platform Billing <billing@platform.example.test>"
export NOTIFIER_OPERATOR_EMAIL="ops@platform.example.test" NOTIFIER_OPERATOR_NAME="Example Platform Pty Ltd"
export NOTIFIER_OPERATOR_ADDRESS="1 Example Street; Sydney NSW 2000" NOTIFIER_OPERATOR_TAX_ID="ABN 00 000 000 000 (example)"
export BILLINGCTL_NOTIFIER_URL=http://127.0.0.1:8083
# SimplyBook is the emulator on loopback, never the real service.
export LEDGER_SIMPLYBOOK_URL=http://127.0.0.1:8090 LEDGER_SIMPLYBOOK_API_HOSTS=127.0.0.1
# gRPC tokens for this run only: an admin one for billingctl, a viewer one the services call
# each other with.
ADMIN_TOKEN="demo-admin-token-$RUN_ID-not-secret" SERVICE_TOKEN="demo-service-token-$RUN_ID-not-secret"
export LEDGER_GRPC_TOKENS="admin:$ADMIN_TOKEN viewer:$SERVICE_TOKEN"
export INVOICING_GRPC_TOKENS="$LEDGER_GRPC_TOKENS" NOTIFIER_GRPC_TOKENS="$LEDGER_GRPC_TOKENS"
export INVOICING_LEDGER_TOKEN="$SERVICE_TOKEN" NOTIFIER_INVOICING_TOKEN="$SERVICE_TOKEN"
export BILLINGCTL_TOKEN="$ADMIN_TOKEN"

start() { # name command...
  local name=$1; shift
  "$@" >"$DEMO_DIR/logs/$name.log" 2>&1 &
  echo $! >"$DEMO_DIR/pids/$name.pid"
}
stop_all() {
  for pidfile in "$DEMO_DIR"/pids/*.pid; do kill "$(cat "$pidfile")" 2>/dev/null || true; done
}
[ "${KEEP_RUNNING:-0}" = 1 ] || trap stop_all EXIT

echo "==> starting NATS (127.0.0.1:$NATS_PORT, deploy/nats/nats-server.conf), mailsink (SMTP on 127.0.0.1:2525), the SimplyBook emulator (127.0.0.1:8090) and the four services"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
start nats "$NATS_SERVER" -c deploy/nats/nats-server.conf -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DEMO_DIR/nats/store"
for i in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
  [ "$i" = 50 ] && { echo "NATS did not start; see $DEMO_DIR/logs/nats.log" >&2; exit 1; }
  sleep 0.2
done
# The server has the passwords now; the services only get their files.
unset INGEST_NATS_PASSWORD LEDGER_NATS_PASSWORD INVOICING_NATS_PASSWORD NOTIFIER_NATS_PASSWORD
start mailsink "$BIN/mailsink" 127.0.0.1:2525 "$DEMO_DIR/mail"
start simplybook "$BIN/simplybook_emulator" 127.0.0.1:8090 "$TENANTS" "$DEMO_DIR" "$INGEST_SECRETS" "$LEDGER_SECRETS"
start ledger env LEDGER_TENANT_SECRETS_FILE="$LEDGER_SECRETS" "$BIN/ledger"
start invoicing "$BIN/invoicing"
start notifier "$BIN/notifier"
start ingest env INGEST_TENANT_SECRETS_FILE="$INGEST_SECRETS" "$BIN/ingest"
for port in 8080 8081 8082 8083; do
  for i in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    if [ "$i" = 100 ]; then echo "service on port $port did not become ready; see $DEMO_DIR/logs" >&2; exit 1; fi
    sleep 0.2
  done
done

# The operator console (docs/console.md) on 127.0.0.1:8084: its own schema and runtime role, the
# services' admin token, and one demo login (an admin) with a password made for this run.
psql "$PG_ADMIN_URL" -qc "do \$\$ begin create role console_runtime; exception when duplicate_object then null; end \$\$" \
  -c "alter role console_runtime login password 'console_runtime-dev-only'"
env CONSOLE_DATABASE_URL="$DB_URL" "$BIN/console" --migrate-only
CONSOLE_PASSWORD="demo-$RUN_ID-$RANDOM$RANDOM"
printf 'demo admin %s\n' "$(printf '%s\n' "$CONSOLE_PASSWORD" | "$BIN/console" hash-password)" >"$DEMO_DIR/console-accounts"
start console env CONSOLE_LISTEN_ADDR=127.0.0.1:8084 CONSOLE_TOKEN="$ADMIN_TOKEN" \
  CONSOLE_DATABASE_URL="${DB_URL%%://*}://console_runtime:console_runtime-dev-only@${DB_URL#*@}" \
  CONSOLE_ACCOUNTS_FILE="$DEMO_DIR/console-accounts" "$BIN/console"
for i in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:8084/readyz" >/dev/null 2>&1 && break
  [ "$i" = 100 ] && { echo "the console did not become ready; see $DEMO_DIR/logs/console.log" >&2; exit 1; }
  sleep 0.2
done

for i in $(seq 1 100); do
  [ -s "$DEMO_DIR/callbacks.json" ] && break
  [ "$i" = 100 ] && { echo "the SimplyBook emulator did not start; see $DEMO_DIR/logs/simplybook.log" >&2; exit 1; }
  sleep 0.2
done

echo "==> SimplyBook's native callbacks for last month (the ledger fetches each booking back)"
python3 - "$DEMO_DIR/callbacks.json" <<'PY'
import json, sys, urllib.request
for cb in json.load(open(sys.argv[1])):
    body = json.dumps(cb["body"]).encode()
    url = f"http://127.0.0.1:8080/api/v1/webhooks/simplybook/{cb['tenant']}/callback/{cb['token']}"
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        print(f"  {cb['tenant']:<8} booking {cb['body']['booking_id']}  callback -> HTTP {response.status}")
PY
echo "==> signed forwarder payloads for last month (Kenji's)"
python3 scripts/send_sample_webhooks.py "$TENANTS" "$INGEST_SECRETS" http://127.0.0.1:8080 "$RUN_ID" kenji

echo "==> waiting for the ledger to record them"
expected=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))) + 2)' "$DEMO_DIR/callbacks.json")
for i in $(seq 1 100); do
  got=$(psql "$DB_URL" -qAtc "select count(*) from ledger.bookings" 2>/dev/null || echo 0)
  [ "$got" -ge "$expected" ] && break
  [ "$i" = 100 ] && { echo "ledger recorded $got of $expected bookings; see $DEMO_DIR/logs/ledger.log" >&2; exit 1; }
  sleep 0.2
done
"$BIN/billingctl" bookings list --tenant claire

echo "==> reconciling Claire's month with SimplyBook: one callback was lost on the way"
"$BIN/billingctl" simplybook check --tenant claire || true
"$BIN/billingctl" reconcile simplybook --tenant claire || echo "(exit status $?: a gap for a person, or for --repair)"
"$BIN/billingctl" reconcile simplybook --tenant claire --repair || true
# The repair goes through the webhook stream; wait until the ledger has it and the month is clean.
for i in $(seq 1 50); do
  "$BIN/billingctl" reconcile simplybook --tenant claire >"$DEMO_DIR/reconcile.txt" 2>&1 && break
  [ "$i" = 50 ] && { cat "$DEMO_DIR/reconcile.txt" >&2; echo "reconciliation is still not clean (above); see $DEMO_DIR/logs/ledger.log" >&2; exit 1; }
  sleep 0.2
done
"$BIN/billingctl" reconcile simplybook --tenant claire

echo "==> monthly close (previous month in each tenant's time zone), run twice: the second run changes nothing"
"$BIN/billingctl" invoices generate
"$BIN/billingctl" invoices generate

echo "==> waiting for the emails"
invoices=$("$BIN/billingctl" invoices list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
for i in $(seq 1 150); do
  [ "$(ls "$DEMO_DIR"/mail/*.eml 2>/dev/null | wc -l)" -ge "$invoices" ] && break
  [ "$i" = 150 ] && { echo "emails did not arrive; see $DEMO_DIR/logs/notifier.log" >&2; exit 1; }
  sleep 0.2
done

for id in $("$BIN/billingctl" invoices list --json | python3 -c 'import json,sys; [print(i["id"]) for i in json.load(sys.stdin)]'); do
  echo
  "$BIN/billingctl" invoices show "$id"
done
echo
echo "==> the emails and their PDFs"
ls -1 "$DEMO_DIR"/mail/
if command -v pdftotext >/dev/null 2>&1; then
  first_pdf=$(ls "$DEMO_DIR"/mail/*.pdf | head -n 1)
  echo; echo "--- text of $first_pdf ---"; pdftotext -layout "$first_pdf" - | sed '/^\s*$/d' | head -n 40
fi
echo
echo "==> exports for the accountant, and a bank statement paying Claire's invoice in part"
period=$("$BIN/billingctl" invoices list --tenant claire --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["period"])')
"$BIN/billingctl" export bookings --tenant claire --period "$period" --out "$DEMO_DIR/claire-$period-bookings.csv"
"$BIN/billingctl" export invoices --tenant claire --period "$period" --out "$DEMO_DIR/claire-$period-invoices.csv"
"$BIN/billingctl" invoices list --tenant claire --json | python3 -c '
import json, sys
from decimal import Decimal
inv = json.load(sys.stdin)[0]
half = (Decimal(inv["total"].split()[-1]) / 2).quantize(Decimal("0.01"))
print("date,description,amount,reference")
print("%s,TRANSFER FROM C HAMILTON,%s,%s" % (inv["issue_date"], half, inv["number"].lower().replace("-", " ")))
print("%s,TRANSFER FROM A STRANGER,12.34,GIFT" % inv["issue_date"])' >"$DEMO_DIR/statement.csv"
"$BIN/billingctl" reconcile bank "$DEMO_DIR/statement.csv" || echo "(exit status $?: the stranger's transfer is left for a person)"
echo
echo "==> Claire's deposits export (her HNRY account): a mangled reference, a deposit paid short,"
echo "    one paid twice, one missing, a line naming no booking; imported twice (nothing changes)"
"$BIN/billingctl" bookings list --tenant claire --json | python3 -c '
import json, sys
from decimal import Decimal
rows = [b for b in json.load(sys.stdin) if b["status"] in ("confirmed", "completed")]
print("Date,Description,Amount,Reference")
for i, b in enumerate(rows):
    day, ref = b["session_at"][:10], b["booking_ref"]
    deposit = Decimal(b["deposit"].split()[-1])
    if i == 0:
        print("%s,ONLINE DEPOSIT,%s,bk-%s" % (day, deposit, ref))
    elif i == 1:
        print("%s,ONLINE DEPOSIT,%s,%s" % (day, (deposit / 2).quantize(deposit), ref))
    elif i == 2:
        print("%s,ONLINE DEPOSIT,%s,Booking %s" % (day, deposit, ref))
        print("%s,ONLINE DEPOSIT,%s,Booking %s" % (day, deposit, ref))
    elif i != 3:
        print("%s,ONLINE DEPOSIT,%s,%s" % (day, deposit, ref))
print("%s,TRANSFER FROM A STRANGER,15.00,THANKS" % rows[0]["session_at"][:10])' >"$DEMO_DIR/deposits.csv"
"$BIN/billingctl" reconcile deposits --tenant claire "$DEMO_DIR/deposits.csv" || echo "(exit status $?: the stranger's line is left for a person)"
"$BIN/billingctl" reconcile deposits --tenant claire "$DEMO_DIR/deposits.csv" >/dev/null || true
echo
echo "==> Claire's month statement: SimplyBook = ledger = invoice = deposits; fees = invoice = payments"
"$BIN/billingctl" report month --tenant claire --period "$period" || echo "(exit status $?: differences open for a person)"
"$BIN/billingctl" report month --tenant claire --period "$period" --format pdf --out "$DEMO_DIR/claire-$period-statement.pdf" || true
"$BIN/billingctl" report month --tenant claire --period "$period" --format csv --out "$DEMO_DIR/claire-$period-statement.csv" || true
echo
echo "Emails (.eml) and invoice PDFs are in $DEMO_DIR/mail, exports, the bank statement, the"
echo "deposits export and the month statement (PDF, CSV) in $DEMO_DIR, service logs in"
echo "$DEMO_DIR/logs. billingctl's token for this run: $ADMIN_TOKEN"
echo
echo "The operator console: http://127.0.0.1:8084 (sign in as demo, password $CONSOLE_PASSWORD)"
[ "${KEEP_RUNNING:-0}" = 1 ] || echo "(the services stop now; KEEP_RUNNING=1 scripts/demo.sh leaves them and the console up)"
