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
. "$here/server_lib.sh"
pid=
trap 'kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
ds_server_start "$bin" "$tmp/server" --model dit="$data/ckpt/dit-tiny" --api-key "$key" || exit 1
ds_server_wait_ready "$port" 300 || { echo "server never became ready"; cat "$tmp/server.err"; exit 1; }

"$py" "$here/openai_client.py" --base-url "http://127.0.0.1:$port/v1" --api-key "$key" --model dit
rc=$?
kill -TERM $pid
wait $pid
src=$?
[ $src = 0 ] || { echo "FAIL server exit code $src after SIGTERM"; tail -5 "$tmp/server.err"; rc=1; }
exit $rc
