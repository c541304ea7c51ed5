#!/usr/bin/env bash
# run_fuzz.sh - build the libFuzzer target for the safetensors reader with clang
# (-fsanitize=fuzzer,address,undefined) in build-fuzz/ and run it for N seconds (default 600) on a
# working copy of the seed corpus (tests/fuzz/corpus-run/, gitignored), then print the stats.
# Crashing inputs land in build-fuzz/fuzz-artifacts/. Usage: tools/run_fuzz.sh [seconds]
set -euo pipefail
secs=${1:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
run=$root/tests/fuzz/corpus-run
arts=$build/fuzz-artifacts

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DDS_FUZZ=ON -DDS_CUDA=OFF -DDS_WERROR=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_safetensors -j2
mkdir -p "$run" "$arts"
cp -n "$root"/tests/fuzz/corpus/* "$run"/
before=$(ls "$run" | wc -l)

echo "== fuzz_safetensors: ${secs}s on $run (seed files: $before), started $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
set +e
"$build/tests/fuzz/fuzz_safetensors" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -max_len=8192 -dict="$root/tests/fuzz/safetensors.dict" \
    -artifact_prefix="$arts/" "$run"
rc=$?
set -e
echo "== finished $(date -u '+%Y-%m-%d %H:%M:%S UTC'), exit code $rc"
echo "== corpus: $(ls "$run" | wc -l) files, $(du -sh "$run" | cut -f1)"
echo "== artifacts: $(ls "$arts" | wc -l) file(s) in $arts"
exit $rc
