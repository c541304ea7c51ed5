#!/usr/bin/env bash
# fetch_gpu_debs.sh - download the .deb files a bare GPU host needs to build ditserve (OpenBLAS, cJSON and
# their runtime libraries) into tests/gpu/debs/ (gitignored). tests/gpu/device_check.sh unpacks them with
# dpkg -x into build-gpu/prefix, so the GPU host needs no network and no root. Run here (any user) before a
# device check, and pass tests/gpu/debs in the run tool's carry list.
#
# Package set (apt-cache depends, Debian 12): libopenblas-dev -> libopenblas0 + libopenblas-pthread-dev ->
# libopenblas0-pthread -> libgfortran5 -> libquadmath0 (+ libc6, libgcc-s1, gcc-12-base: present wherever
# a compiler is); libcjson-dev -> libcjson1. Criterion is not needed (the Criterion tests are skipped).
# The .debs are built for this machine's distribution (glibc); the GPU host must be as new or newer.
#
# Usage: tools/fetch_gpu_debs.sh [DEST]   (default DEST: <repo>/tests/gpu/debs)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo/tests/gpu/debs}"
pkgs=(libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5 libquadmath0
      libcjson-dev libcjson1)

command -v apt-get >/dev/null || { echo "fetch_gpu_debs: apt-get not found (Debian/Ubuntu only)" >&2; exit 1; }
mkdir -p "$dest"
cd "$dest"
rm -f ./*.deb
# apt-get download needs no root; it writes into the current directory.
if ! apt-get download "${pkgs[@]}"; then
    echo "fetch_gpu_debs: apt-get download failed (try 'sudo apt-get update' first)" >&2
    exit 1
fi
debs=(./*.deb)
echo "fetch_gpu_debs: ${#debs[@]} packages in $dest:"
ls -l ./*.deb
du -sh "$dest"
