#!/usr/bin/env bash
# Checks what deploys and watches the system, offline (no Docker engine, no cluster):
# - the Prometheus alert rules (syntax and unit tests) and scrape config, with promtool
#   (Debian's prometheus package, installed when missing);
# - docker-compose.yml against the Compose Specification's JSON schema (check-jsonschema);
# - the Kubernetes manifests against the Kubernetes API schemas (kubernetes-validate), and that
#   kustomization.yaml lists files that exist;
# - that every metric the alerts and the Grafana dashboard read is one the services export.
# The promtool installed here also lints the services' live /metrics in the tests (e2e
# observability::every_metric_has_help_text_and_passes_promtool, which fails without it).
# The Python tools live in a virtualenv outside the clone ($HOME/.cache/billing-tracker/venv).
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

venv="$HOME/.cache/billing-tracker/venv"
if ! "$venv/bin/check-jsonschema" --version >/dev/null 2>&1 || ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  echo "check_deploy.sh: installing check-jsonschema and kubernetes-validate into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q check-jsonschema==0.39.0 kubernetes-validate==1.37.0
fi

echo "--- docker-compose.yml against the Compose Specification"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

echo "--- Kubernetes manifests (deploy/k8s) against the Kubernetes 1.30 API"
(
  cd deploy/k8s
  # kustomization.yaml lists every manifest, and every manifest exists.
  for f in $(sed -n '/^resources:/,/^[a-z]/p' kustomization.yaml | sed -n 's/^ *- "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p'); do
    [ -f "$f" ] || { echo "kustomization.yaml lists $f, which does not exist" >&2; exit 1; }
  done
  for f in *.yaml; do
    [ "$f" = kustomization.yaml ] && continue
    grep -q "\b$f\b" kustomization.yaml || { echo "$f is not listed in kustomization.yaml" >&2; exit 1; }
  done
  "$venv/bin/kubernetes-validate" -k 1.30.0 --strict --quiet $(ls *.yaml | grep -v kustomization.yaml)
)

echo "--- every metric the alert rules and the dashboard read is one the services export"
missing=0
for metric in $(grep -ohE '\b(ingest|ledger|invoicing|notifier|outbox|nats|grpc|http)_[a-z0-9_]+' deploy/prometheus/alerts.yml deploy/grafana/dashboards/*.json | sed -E 's/_(bucket|count|sum)$//' | sort -u); do
  # A description (services/*/src/metrics.rs, crates/runtime/src/metric_docs.rs) is not an export.
  if ! grep -rqF "\"$metric\"" crates services --include='*.rs' --exclude=metrics.rs --exclude=metric_docs.rs; then
    echo "alerts.yml reads $metric, which no service exports" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] && echo "ok"
exit "$missing"
