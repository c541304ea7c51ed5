#!/usr/bin/env bash
# run_fuzz.sh - build a libFuzzer target with clang (-fsanitize=fuzzer,address,undefined) in
# build-fuzz/ and run it for N seconds (default 600) on a working copy of its seed corpus, then
# print the stats. Crashing inputs land in build-fuzz/fuzz-artifacts/.
#   tools/run_fuzz.sh [seconds] [target]
# Targets: fuzz_safetensors (default; seeds tests/fuzz/corpus/, working copy tests/fuzz/corpus-run/,
# gitignored), fuzz_config (seeds tests/fuzz/corpus-config/, working copy
# build-fuzz/corpus-config-run/) and fuzz_request (HTTP request bodies: seeds tests/fuzz/corpus-request/,
# working copy build-fuzz/corpus-request-run/, dictionary of field names written to build-fuzz/request.dict).
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
  fuzz_request)     seeds=$root/tests/fuzz/corpus-request; run=$build/corpus-request-run
                    extra=(-dict="$build/request.dict") ;;
  *) echo "unknown target '$target' (fuzz_safetensors, fuzz_config, fuzz_request)" >&2; exit 2 ;;
esac

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DDS_FUZZ=ON -DDS_CUDA=OFF -DDS_WERROR=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target "$target" -j2
mkdir -p "$run" "$arts"
if [ "$target" = fuzz_request ]; then
  # every field name and enum value of the two request bodies and of cache_config
  {
    for w in model class_labels prompt_embeds pooled_prompt_embeds negative_prompt_embeds \
             negative_pooled_prompt_embeds shape dtype f32 data_b64 true_cfg_scale width height steps \
             guidance_scale scheduler ddim dpmpp_2m flow_euler seed num_images cache_config mode sync async \
             prompt n size auto response_format b64_json url output_format png stream quality style user \
             background moderation output_compression partial_images none goldfish "golden retriever" flux dit \
             cache_type DBCache Fn_compute_blocks Bn_compute_blocks residual_diff_threshold \
             max_accumulated_residual_diff_threshold max_warmup_steps warmup_interval max_cached_steps \
             max_continuous_cached_steps enable_separate_cfg cfg_compute_first cfg_diff_compute_separate \
             num_inference_steps steps_computation_mask slow medium fast ultra steps_computation_policy dynamic \
             static enable_taylorseer taylorseer_order taylorseer_cache_type residual hidden_states \
             enable_encoder_taylorseer calibrator_cache_type enable_foca enable_dmd separate_block_lists \
             256x256 F8B0_W4MC3_T0O1_R0.12 DBCache_F8B0_W8I1M0MC0_R0.08 _SCM _N _CFG _T _S; do
      printf '"\\"%s\\""\n' "$w"
    done
    for t in true false null '{' '}' '[' ']' ':' ',' '1e308' '-0' '0.5' '9007199254740991' '9007199254740992' '\\u0000' '='; do
      printf '"%s"\n' "$t"
    done
  } >"$build/request.dict"
fi
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
