#!/usr/bin/env bash
# run_fuzz.sh - build a libFuzzer target with clang (-fsanitize=fuzzer,address,undefined) in
# build-fuzz/ and run it for N seconds (default 600) on a working copy of its seed corpus, then
# print the stats. Crashing inputs land in build-fuzz/fuzz-artifacts/.
#   tools/run_fuzz.sh [seconds] [target]
# Targets: fuzz_safetensors (default; seeds tests/fuzz/corpus/, working copy tests/fuzz/corpus-run/,
# gitignored) and fuzz_config (seeds tests/fuzz/corpus-config/, working copy
# build-fuzz/corpus-config-run/).
set -euo pipefail
secs=${1:-600}
target=${2:-fuzz_safetensors}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
arts=$build/fuzz-artifacts
case "$target" in
  fuzz_safetensors) seeds=$root/tests/fuzz/corpus; run=$root/tests/fuzz/corpus-run
                    extra=(-dict="$root/tests/fuzz/safetensors.dict") ;;
  fuzz_config)      seeds=$root/tests/fuzz/corpus-config; run=$build/corpus-config-run; extra=() ;;
  *) echo "unknown target '$target' (fuzz_safetensors, fuzz_config)" >&2; exit 2 ;;
esac

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DDS_FUZZ=ON -DDS_CUDA=OFF -DDS_WERROR=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target "$target" -j2
mkdir -p "$run" "$arts"
for f in "$seeds"/*; do [ -e "$run/$(basename "$f")" ] || cp "$f" "$run"/; done
before=$(ls "$run" | wc -l)

echo "== $target: ${secs}s on $run ($before files at start), started $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
set +e
"$build/tests/fuzz/$target" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -max_len=8192 "${extra[@]}" -artifact_prefix="$arts/" "$run"
rc=$?
set -e
echo "== finished $(date -u '+%Y-%m-%d %H:%M:%S UTC'), exit code $rc"
echo "== corpus: $(ls "$run" | wc -l) files, $(du -sh "$run" | cut -f1)"
echo "== artifacts: $(ls "$arts" | wc -l) file(s) in $arts"
exit $rc
