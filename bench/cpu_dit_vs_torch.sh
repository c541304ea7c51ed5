#!/usr/bin/env bash
# cpu_dit_vs_torch.sh [CONFIG_DIR] [batch] [iters] - one DiT transformer forward on the CPU: ditserve
# (bench/dit_forward) against diffusers/PyTorch eager (bench/torch_dit_forward.py) in the same run, same
# shapes, same thread count; prints both JSON lines and the time ratio (ours / PyTorch; target <= 1.0).
# Needs a build in build/ and tools/.venv (tools/setup_venv.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/bench/configs/dit-xl-2-256}
B=${2:-2}
iters=${3:-3}
threads=${OMP_NUM_THREADS:-$(nproc)}
ours=$(OMP_NUM_THREADS=$threads "$root/build/bench/dit_forward" "$dir" "$B" "$iters")
peer=$(OMP_NUM_THREADS=$threads "$root/tools/.venv/bin/python" "$root/bench/torch_dit_forward.py" "$dir" "$B" "$iters")
echo "$ours"
echo "$peer"
python3 - "$ours" "$peer" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"ratio ditserve/pytorch time = {a['median_ms'] / b['median_ms']:.2f}x, "
      f"peak RSS {a['peak_rss_mb']} MB vs {b['peak_rss_mb']} MB")
PY
