#!/usr/bin/env bash
# export_refs.sh - regenerate every committed reference under tests/data/ from the pinned Python
# environment (tools/requirements.txt). Deterministic: a rerun rewrites identical files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup_venv.sh"
for s in "$here"/export_*.py; do
  echo "== $(basename "$s")"
  "$here/.venv/bin/python" "$s"
done
