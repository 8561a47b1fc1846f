#!/usr/bin/env bash
# Checks what deploys and watches the system, offline: the Prometheus alert rules (syntax and
# their unit tests) and the Prometheus configuration. Installs promtool (Debian's prometheus
# package) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v promtool >/dev/null 2>&1 || {
  echo "check_deploy.sh: installing promtool (Debian's prometheus package)" >&2
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null
}

echo "--- promtool: alert rules, their tests, the scrape config"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml
promtool check config deploy/prometheus/prometheus.yml

echo "--- every metric the alert rules read is one the services export"
missing=0
for metric in $(grep -oE '\b(ingest|ledger|invoicing|notifier|outbox|nats|grpc|http)_[a-z0-9_]+' deploy/prometheus/alerts.yml | sort -u); do
  if ! grep -rqF "\"$metric\"" crates services --include='*.rs'; then
    echo "alerts.yml reads $metric, which no service exports" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] && echo "ok"
exit "$missing"
