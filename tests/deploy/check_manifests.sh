#!/usr/bin/env bash
# check_manifests.sh DITSERVE DATA_DIR - the deployment files (deploy/, Dockerfile) against the real binary:
# starts it on 127.0.0.1 with the tiny DiT, runs one cached job so every metric has samples, then runs
# check_manifests.py with its live /metrics and its --help (the fields that matter: GPU request, probes,
# ports, security context, Service affinity, HPA metric, scrape paths, alert metrics, compose, Dockerfile).
# Then validates the Kubernetes manifests against the Kubernetes schemas with kubernetes-validate (PyPI)
# when it is installed (tools/.venv-api/bin/kubernetes-validate or on PATH; the ServiceMonitor CRD has no
# bundled schema and is left to the field checks). Exit 77 (skip) without python3-yaml.
set -u
bin=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "SKIP: python3 cannot import yaml (tools/setup.sh installs Debian's python3-yaml)"
  exit 77
fi
tmp=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
. "$root/tests/e2e/server_lib.sh"
ds_server_start "$bin" "$tmp/server" --model dit="$data/ckpt/dit-tiny" || exit 1
ds_server_wait_ready "$port" 900 || { echo "server never became ready"; cat "$tmp/server.err"; exit 1; }
curl -s "http://127.0.0.1:$port/v1/generate" -d '{"model":"dit","class_labels":[1],"steps":6,"cache_config":"F1B0_W2MC2_R0.9"}' \
  -o /dev/null
curl -s "http://127.0.0.1:$port/metrics" >"$tmp/metrics"
"$bin" --help >"$tmp/help" 2>&1
python3 "$here/check_manifests.py" "$root" "$tmp/metrics" "$tmp/help"
rc=$?
kv=${KUBERNETES_VALIDATE:-$root/tools/.venv-api/bin/kubernetes-validate}
[ -x "$kv" ] || kv=$(command -v kubernetes-validate || true)
if [ -n "$kv" ]; then
  core=$(grep -L '^kind: ServiceMonitor' "$root"/deploy/k8s/*.yaml)
  if "$kv" --strict --quiet $core; then
    echo "ok   kubernetes-validate --strict: $(echo $core | wc -w) manifests match the Kubernetes schemas"
  else
    echo "FAIL kubernetes-validate --strict"
    rc=1
  fi
else
  echo "note: kubernetes-validate not installed, schema validation skipped" \
       "(python3 -m venv tools/.venv-api && tools/.venv-api/bin/pip install kubernetes-validate)"
fi
exit $rc
