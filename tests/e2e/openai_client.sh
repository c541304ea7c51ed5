#!/usr/bin/env bash
# openai_client.sh DITSERVE DATA_DIR - the official `openai` Python client against POST /v1/images/generations:
# starts the real binary on 127.0.0.1 (free port, the tiny DiT checkpoint, --api-key) and runs
# tests/e2e/openai_client.py with base_url http://127.0.0.1:PORT/v1. Exit 77 (skip) with a message when the
# python `openai` package is not importable. Python: $PYTHON, else tools/.venv-api/bin/python when present,
# else python3 (python3 -m venv tools/.venv-api && tools/.venv-api/bin/pip install openai).
set -u
bin=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/tools/.venv-api/bin/python" ]; then py=$root/tools/.venv-api/bin/python; else py=python3; fi
fi
if ! "$py" -c 'import openai' 2>/dev/null; then
  echo "SKIP: the python 'openai' package is not importable by $py (pip install openai, or" \
       "python3 -m venv tools/.venv-api && tools/.venv-api/bin/pip install openai)"
  exit 77
fi

tmp=$(mktemp -d)
key=openai-e2e-key
"$bin" --model dit="$data/ckpt/dit-tiny" --host 127.0.0.1 --port 0 --api-key "$key" >"$tmp/out" 2>"$tmp/err" &
pid=$!
trap 'kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/^ditserve listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/out" | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "server did not start"; cat "$tmp/err"; exit 1; }
ready=0
for _ in $(seq 1 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && { ready=1; break; }
  sleep 0.1
done
[ $ready = 1 ] || { echo "server never became ready"; cat "$tmp/err"; exit 1; }

"$py" "$here/openai_client.py" --base-url "http://127.0.0.1:$port/v1" --api-key "$key" --model dit
rc=$?
kill -TERM $pid
wait $pid
src=$?
[ $src = 0 ] || { echo "FAIL server exit code $src after SIGTERM"; tail -5 "$tmp/err"; rc=1; }
exit $rc
