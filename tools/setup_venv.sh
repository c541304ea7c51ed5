#!/usr/bin/env bash
# setup_venv.sh - create tools/.venv with the pinned reference environment (tools/requirements.txt).
# Idempotent: an existing venv with the pins satisfied is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
[ -x "$here/.venv/bin/python" ] || "$py" -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
"$here/.venv/bin/python" -c "import torch, diffusers, cache_dit, safetensors, numpy; print('reference env ok: torch', torch.__version__, 'diffusers', diffusers.__version__)"
