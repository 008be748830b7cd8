#!/usr/bin/env bash
# The Helm chart (deploy/xiji), rendered by Helm's own engine and validated, run by tests/run:
#   1. rendered with the default values and with every deploy/xiji/ci/*-values.yaml, each is
#      linted (`helm lint --strict`), every object validated with `kubernetes-validate --strict`
#      against Kubernetes 1.33.0 and 1.37.0, and checked for what the schemas cannot see
#      (tests/helm/check_chart.py: labels, selectors, xiji.toml, the shared token Secret, RBAC,
#      the values reflected);
#   2. values the chart must refuse are refused with a message that says why (its
#      values.schema.json, or the templates' own checks);
#   3. the checks can fail: copies of the chart broken on purpose (an unknown field, a Role with
#      a wildcard, a template that does not parse, a hub that no longer mounts the agent token)
#      must each be reported;
#   4. the chart's pods run (tests/helm/run_chart.py, as root in network and mount namespaces of
#      their own): the real hub with the rendered xiji.toml against the Kubernetes stand-in, the
#      real proxy with the Deployment's arguments, PostgreSQL (Debian's server set up as the
#      official image would be, or a campus database) and the node agent; the administrator
#      logs in through the proxy with the Secret's password, puts a node into a compute pool by
#      its name, and starts and stops a server (a pod running jupyterhub-singleuser, reached
#      through the proxy); every API request the hub made must be allowed by the chart's RBAC.
#      A hub configuration with an unknown key, or RBAC short of what the hub does, must fail.
#
#   tests/suites/40-helm-chart.sh
#
# Needs tests/setup-env.sh: its kube venv (XIJI_KUBE_PYTHON) has kubernetes-validate and
# helm-python-sdk (Helm v4's Go SDK as a library: the renderer and the linter), and the built
# xiji and xiji-proxy (XIJI_BIN's folder; built here when XIJI_BIN is unset). About 30 s.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${XIJI_KUBE_PYTHON:-}" ] && [ -f .cache/test-env.sh ]; then
    # shellcheck disable=SC1091
    . .cache/test-env.sh
fi
: "${XIJI_KUBE_PYTHON:?run tests/setup-env.sh and source .cache/test-env.sh}"
: "${XIJI_TEST_VENV5:?run tests/setup-env.sh and source .cache/test-env.sh}"
PY=$XIJI_KUBE_PYTHON
CHART=deploy/xiji
CHECK=tests/helm/check_chart.py
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xiji-helm-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
record() {
    if [ "$1" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
run() {
    timeout --kill-after=5 300 "$PY" "$CHECK" "$@"
    record $?
}

echo "== the chart rendered by Helm and validated against Kubernetes 1.33.0 and 1.37.0"
run check --chart "$CHART" --case default --out "$WORK/rendered"
for values in "$CHART"/ci/*-values.yaml; do
    run check --chart "$CHART" --case "$(basename "$values" -values.yaml)" -f "$values" \
        --out "$WORK/rendered"
done

echo "== values the chart refuses"
run expect-error --chart "$CHART" --set-json '{"database": {"url": "postgres://x@db/x"}}' \
    --error "give one database"
run expect-error --chart "$CHART" \
    --set-json '{"postgresql": {"enabled": false}, "database": {"url": "postgres://x@db/x", "existingSecret": "db"}}' \
    --error "give one database"
run expect-error --chart "$CHART" \
    --set-json '{"storagePools": [{"name": "p", "mountPath": "/srv/xiji/p", "claimName": "c"}]}' \
    --error "must not contain each other"
run expect-error --chart "$CHART" \
    --set-json '{"storagePools": [{"name": "a", "mountPath": "/srv/p", "claimName": "c"}, {"name": "b", "mountPath": "/srv/p/b", "claimName": "d"}]}' \
    --error "must not contain each other"
run expect-error --chart "$CHART" \
    --set-json '{"storagePools": [{"name": "Pool_1", "mountPath": "/srv/p", "claimName": "c"}]}' \
    --error "at '/storagePools/0/name'"
run expect-error --chart "$CHART" \
    --set-json '{"storagePools": [{"name": "p", "mountPath": "/srv/p"}]}' \
    --error "at '/storagePools/0': 'oneOf' failed"
run expect-error --chart "$CHART" --set-json '{"ingress": {"enabled": true}}' \
    --error "needs at least one host"
run expect-error --chart "$CHART" --set-json '{"nodeAgent": {"token": "too-short"}}' \
    --error "at '/nodeAgent/token'"
run expect-error --chart "$CHART" --set-json '{"hub": {"admin": {"password": "short"}}}' \
    --error "at '/hub/admin/password'"
run expect-error --chart "$CHART" \
    --set-json '{"singleuser": {"tolerations": [{"operator": "Exists"}]}}' \
    --error "at '/singleuser/tolerations/0': missing property 'key'"
# values.schema.json: a misspelt key is refused, not silently ignored.
run expect-error --chart "$CHART" --set-json '{"singleuser": {"gpuResorce": "amd.com/gpu"}}' \
    --error "additional properties 'gpuResorce' not allowed"
run expect-error --chart "$CHART" --set-json '{"proxy": {"service": {"type": "Ingress"}}}' \
    --error "at '/proxy/service/type'"

echo "== the checks catch a broken chart"
# broken NAME FILE PYTHON-EXPRESSION: a copy of the chart whose FILE is replaced by the
# expression's value (of `text`, the file's content); the check must fail.
broken() {
    local name=$1 file=$2 expr=$3 copy="$WORK/broken-$1/xiji"
    mkdir -p "$(dirname "$copy")"
    cp -r "$CHART" "$copy"
    "$PY" -c '
import sys
path, expr = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
new = eval(expr)
assert new != text, "the breakage changed nothing"
open(path, "w", encoding="utf-8").write(new)
' "$copy/$file" "$expr" || { record 1; return; }
    local out
    out=$(timeout --kill-after=5 300 "$PY" "$CHECK" check --chart "$copy" --case "broken-$name" \
        --out "$WORK/rendered" 2>&1)
    if [ $? -ne 0 ] && grep -q '^FAIL' <<<"$out"; then
        echo "ok   broken-$name is reported: $( (grep -m1 '^  - ' <<<"$out" || grep -m1 '^FAIL' <<<"$out") | sed 's/^ *//' | cut -c1-160)"
        record 0
    else
        echo "FAIL broken-$name was not reported:"
        echo "$out"
        record 1
    fi
}
broken unknown-field templates/proxy-deployment.yaml \
    'text.replace("containerPort:", "containerPorts:", 1)'
broken role-wildcard templates/hub-rbac.yaml \
    'text.replace("resources: [\"pods/status\", \"pods/log\"]\n    verbs: [\"get\"]", "resources: [\"pods/status\", \"pods/log\"]\n    verbs: [\"*\"]")'
broken template-syntax templates/hub-service.yaml 'text.replace("}}", "}", 1)'
broken agent-token templates/hub-deployment.yaml \
    'text.replace("- key: agent-token\n                      path: agent-token", "- key: proxy-token\n                      path: agent-token")'
broken backend templates/hub-configmap.yaml 'text.replace("backend = \"kubernetes\"", "backend = \"docker\"")'
broken release-labels templates/_helpers.tpl \
    'text.replace("app.kubernetes.io/part-of: xiji\n", "")'

echo "== the chart's pods run as their specs say (tests/helm/run_chart.py, root: namespaces)"
if [ -z "${XIJI_BIN:-}" ]; then
    cargo build -q -p hub -p proxy
    XIJI_BIN="$ROOT/target/debug/xiji"
fi
BIN_DIR=$(dirname "$XIJI_BIN")
RUN=tests/helm/run_chart.py
runs() {
    timeout --kill-after=10 600 "$PY" "$RUN" --chart "$1" --bin-dir "$BIN_DIR" "${@:2}"
}
# The default values, and the administrator's own server started and stopped: a pod the
# stand-in's kubelet runs as root, hence --allow-root (a real node runs as jovyan).
as_root='{"singleuser": {"cmd": ["jupyterhub-singleuser", "--ip=0.0.0.0", "--port=8888", "--allow-root"]}}'
runs "$CHART" --singleuser-bin-dir "$XIJI_TEST_VENV5/bin" --set-json "$as_root"
record $?
runs "$CHART" -f "$CHART/ci/in-chart-postgres-no-agent-values.yaml" \
    --operator-secret 'xiji-admin:admin-password=chosen by the operator'
record $?
runs "$CHART" -f "$CHART/ci/sqlite-unprivileged-agent-values.yaml"
record $?
# The campus database from the operator's Secret (a PostgreSQL server played at its host).
campus_db='postgres://campus:campus%20secret@db.example.edu:5432/xiji'
# Its server goes through Volcano (served by the stand-in) to the pool "teaching".
runs "$CHART" -f "$CHART/ci/external-db-ingress-gpu-values.yaml" \
    --operator-secret "campus-postgres:url=$campus_db" --external-postgres "$campus_db" \
    --singleuser-bin-dir "$XIJI_TEST_VENV5/bin" --set-json "$as_root"
record $?
# broken_run NAME FILE PYTHON-EXPRESSION TEXT: a copy of the chart changed as in broken();
# running it must fail, saying TEXT.
broken_run() {
    local name=$1 file=$2 expr=$3 text=$4 copy="$WORK/broken-run-$1/xiji" out
    mkdir -p "$(dirname "$copy")" && cp -r "$CHART" "$copy"
    "$PY" -c '
import sys
path, expr = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
new = eval(expr)
assert new != text, "the breakage changed nothing"
open(path, "w", encoding="utf-8").write(new)
' "$copy/$file" "$expr" || { record 1; return; }
    if out=$(runs "$copy" 2>&1); then
        echo "FAIL broken-run-$name ran:"
        echo "$out"
        record 1
    elif grep -q -- "$text" <<<"$out"; then
        echo "ok   broken-run-$name is reported: $(grep -m1 -- "$text" <<<"$out" | cut -c1-160)"
        record 0
    else
        echo "FAIL broken-run-$name failed for another reason:"
        echo "$out"
        record 1
    fi
}
# A key the hub does not know (the chart and the hub drifting apart) stops the hub.
broken_run unknown-key templates/hub-configmap.yaml \
    'text.replace("    gpu_resource = ", "    gpu_resources = ")' 'gpu_resources'
# A ClusterRole that cannot label nodes would refuse the hub's "add a compute node".
broken_run no-node-patch templates/hub-rbac.yaml \
    'text.replace("verbs: [\"get\", \"list\", \"watch\", \"patch\"]", "verbs: [\"get\", \"list\", \"watch\"]")' \
    "RBAC would refuse the hub's requests \[('patch', 'core', 'nodes'"
# A Role without secrets would refuse the hub's look for leftovers at start.
broken_run no-secrets templates/hub-rbac.yaml \
    'text.replace("resources: [\"pods\", \"services\", \"secrets\",", "resources: [\"pods\", \"services\",")' \
    "'list', 'core', 'secrets'"

echo "== the chart's image (deploy/images/build.sh) with the binaries just built"
missing=$(for b in xiji xiji-proxy xiji-node-agent; do [ -x "$BIN_DIR/$b" ] || echo "$b"; done)
if [ -n "$missing" ]; then
    echo "skip the image: not built in $BIN_DIR: $missing"
elif [ "${XIJI_TEST_DOCKER:-}" = 1 ] && docker image inspect xiji/debian:bookworm >/dev/null 2>&1; then
    tag="suite-$$"
    if XIJI_BIN_DIR="$BIN_DIR" XIJI_PROFILE=dev XIJI_REGISTRY= XIJI_IMAGE_TAG="$tag" \
        timeout 900 deploy/images/build.sh >"$WORK/image.log" 2>&1; then
        # Each binary runs in the image as its pod runs it: the proxy as nobody, all on a
        # read-only root filesystem.
        if docker run --rm --read-only "xiji/xiji:$tag" xiji --version >/dev/null \
            && docker run --rm --read-only --user 65534:65534 "xiji/xiji:$tag" \
                xiji-proxy --help >/dev/null \
            && docker run --rm --read-only "xiji/xiji:$tag" xiji-node-agent --help >/dev/null \
            && docker run --rm --read-only "xiji/xiji:$tag" test -f /usr/share/novnc/vnc.html; then
            echo "ok   xiji/xiji builds; xiji, xiji-proxy (as nobody) and xiji-node-agent run in it"
            record 0
        else
            echo "FAIL a binary does not run in xiji/xiji:$tag"
            record 1
        fi
        docker image rm -f "xiji/xiji:$tag" >/dev/null 2>&1 || true
    else
        echo "FAIL deploy/images/build.sh:"
        tail -n 30 "$WORK/image.log"
        record 1
    fi
else
    echo "skip the image: no Docker environment (tests/setup-docker.sh)"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
