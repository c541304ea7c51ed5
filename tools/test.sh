#!/usr/bin/env bash
# test.sh - the project's one test command: install dependencies, build (with CUDA when nvcc is found:
# compile and link only on hosts without a GPU), run every test, then rebuild the checkpoint-parsing
# suites under ASan+UBSan and run them again, then build and run the CPU container image
# (deploy/docker-test.sh). Exits non-zero on any failure.
#   DS_JOBS    parallel build jobs (default: all cores)
#   DS_NO_ASAN=1 skips the sanitizer pass (for quick local runs; CI always runs it)
#   DS_NO_DOCKER_TEST=1 skips deploy/docker-test.sh (the CPU container image; needs root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${DS_JOBS:-$(nproc)}
tools/setup.sh
export PATH="$PATH:/usr/local/cuda/bin"

cmake -S . -B build -DDS_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

if [ "${DS_NO_ASAN:-0}" != 1 ]; then
  # Every CPU test again under AddressSanitizer + UBSan (CPU-only build: no CUDA runtime under ASan).
  cmake -S . -B build-asan -DDS_WERROR=ON -DDS_SANITIZE=ON -DDS_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs" -L cpu)
fi
if [ "${DS_NO_DOCKER_TEST:-0}" != 1 ]; then
  # The CPU container image built, run and queried without an image registry (docs/deploy.md; about 3 min;
  # skipped, 77, without root or where neither a Docker engine nor a chroot can run)
  rc=0
  deploy/docker-test.sh || rc=$?
  [ $rc = 0 ] || [ $rc = 77 ] || exit $rc
fi
echo "test.sh: all tests passed"
