#!/usr/bin/env bash
# fetch_gpu_wheels.sh - download the Python wheels the diffusers peer of the GPU benchmark
# (bench/torch_gpu_bench.py, run by tests/gpu/bench_hook.sh) needs on a GPU host that has PyTorch but no
# diffusers and no network, into tests/gpu/wheels/ (gitignored). Pass tests/gpu/wheels in the run tool's
# carry list next to tests/gpu/debs.
#
# What `from diffusers import FluxTransformer2DModel, DiTTransformer2DModel` imports at module import time in
# diffusers 0.42.1 beyond a stock PyTorch install (torch already brings filelock, fsspec, typing_extensions,
# jinja2, sympy, networkx; checked by importing it into a venv that holds torch alone):
#   pure Python (one wheel each, the reference env's pins, tools/requirements.txt + tools/.venv):
#     diffusers huggingface_hub packaging requests certifi idna urllib3 charset_normalizer tqdm httpx2 httpcore2
#     h11 truststore
#   binary (one wheel per CPython version in PYVERS): pillow (~7 MB each) pyyaml safetensors (abi3); numpy
#     only with DS_WHEELS_NUMPY=1 (PyTorch images carry numpy; it is ~17 MB per Python version)
# diffusers 0.42.1 declares Requires-Python >= 3.11, hence PYVERS "3.11 3.12" by default: ~26 MB, which with
# tests/gpu/debs (~13 MB) and the tree (~16 MB) stays inside the run tool's 64 MiB carry limit. If the GPU host's
# python3 is another version, the hook says so (SKIP line); refetch with e.g. PYVERS=3.13.
# The bench hook unzips the wheels that match its interpreter into <build>/bench-pylib (no pip, no venv needed)
# for the distributions the host lacks, plus diffusers and huggingface_hub and its HTTP stack always.
#
# Usage: tools/fetch_gpu_wheels.sh [DEST]     (default DEST: <repo>/tests/gpu/wheels)
# Environment: PYVERS (default "3.11 3.12"), DS_WHEELS_NUMPY=1, PIP (default: tools/.venv/bin/pip,
# else python3 -m pip).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo/tests/gpu/wheels}"
pyvers="${PYVERS:-3.11 3.12}"
if [ -n "${PIP:-}" ]; then
    read -r -a pip <<<"$PIP"
elif [ -x "$repo/tools/.venv/bin/pip" ]; then
    pip=("$repo/tools/.venv/bin/pip")
else
    pip=(python3 -m pip)
fi

pure=(diffusers==0.42.1 huggingface_hub==2.4.0 packaging==26.4 requests==2.34.2 certifi==2026.10.19.post1
      idna==3.20 urllib3==2.8.0 charset_normalizer==3.5.3 tqdm==4.70.1 httpx2==2.16.2 httpcore2==2.16.2
      h11==0.16.0 truststore==0.10.5)
binary=(pillow pyyaml "safetensors==0.8.0")
[ "${DS_WHEELS_NUMPY:-0}" = 1 ] && binary+=(numpy)

mkdir -p "$dest"
rm -f "$dest"/*.whl "$dest"/MANIFEST.txt
common=(download --no-deps --only-binary=:all: --disable-pip-version-check --dest "$dest")
echo "fetch_gpu_wheels: pure-Python wheels"
# (diffusers 0.42.1 declares Requires-Python >= 3.11; charset_normalizer: its pure wheel)
"${pip[@]}" "${common[@]}" --python-version 3.11 --implementation py --abi none --platform any "${pure[@]}"
for v in $pyvers; do
    cp="cp${v/./}"
    echo "fetch_gpu_wheels: binary wheels for CPython $v"
    if ! "${pip[@]}" "${common[@]}" --python-version "$v" --implementation cp --abi "$cp" --abi abi3 \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            "${binary[@]}"; then
        echo "fetch_gpu_wheels: no complete binary set for CPython $v (skipped)" >&2
    fi
done
(cd "$dest" && find . -maxdepth 1 -name '*.whl' -printf '%f\n' | sort >MANIFEST.txt)
echo "fetch_gpu_wheels: $(wc -l <"$dest/MANIFEST.txt") wheels in $dest:"
cat "$dest/MANIFEST.txt"
du -sh "$dest"
