#!/usr/bin/env bash
# export_refs.sh - regenerate every committed reference under tests/data/ from the pinned Python
# environment (tools/requirements.txt). Deterministic: a rerun rewrites identical files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup_venv.sh"
# Order matters: the pipeline references run on the checkpoints the model exporters write.
order="export_ops_transformer export_ops_image export_schedulers export_dit_tiny export_flux_tiny export_vae_tiny
export_pipelines export_cache_traces"
for name in $order; do
  echo "== $name.py"
  (cd "$here" && "$here/.venv/bin/python" "$here/$name.py")
done
for s in "$here"/export_*.py; do  # any exporter not listed above fails loudly rather than being skipped
  case " $(echo $order) " in *" $(basename "$s" .py) "*) ;; *) echo "export_refs.sh: $s is not in the order list" >&2; exit 1 ;; esac
done
