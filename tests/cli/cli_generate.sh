#!/usr/bin/env bash
# cli_generate.sh DITSERVE DATA_DIR - end-to-end checks of `ditserve generate`: DiT by class id and by
# ImageNet-style name, FLUX from an embeddings file with true CFG and a given initial noise (the PNG must
# equal diffusers' image from tools/export_pipelines.py within the pipeline tests' bound), --latents-out,
# and one-line errors with exit code 2 for bad arguments.
set -u
bin=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check NAME EXPECTED_RC CMD...
  local name=$1 want=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" != "$want" ]; then
    echo "FAIL $name: exit $rc, expected $want"; cat "$tmp/err"; fail=1
  else
    echo "ok   $name"
  fi
}
is_png() { head -c 8 "$1" | od -An -tx1 | tr -d ' \n' | grep -q '^89504e470d0a1a0a$'; }

check dit_class 0 "$bin" generate --model "$data/ckpt/dit-tiny" --class 207 --steps 8 --seed 1 --out "$tmp/a.png"
is_png "$tmp/a.png" || { echo "FAIL dit_class: not a PNG"; fail=1; }
grep -q '"pipeline":"DiTPipeline"' "$tmp/a.png" || { echo "FAIL dit_class: no parameters tEXt"; fail=1; }
check dit_name_two_images 0 "$bin" generate --model "$data/ckpt/dit-tiny" --class-name "Tinca tinca" --num-images 2 \
  --steps 4 --scheduler dpmpp_2m --out "$tmp/b.png" --latents-out "$tmp/b.safetensors"
for f in "$tmp/b-0.png" "$tmp/b-1.png" "$tmp/b.safetensors"; do
  [ -s "$f" ] || { echo "FAIL dit_name_two_images: missing $f"; fail=1; }
done
check flux_true_cfg 0 "$bin" generate --model "$data/ckpt/flux-tiny" --prompt-embeds "$data/pipe/flux_truecfg.safetensors" \
  --init-noise "$data/pipe/flux_truecfg.safetensors" --width 24 --height 32 --steps 5 --guidance 3.5 --true-cfg 2 \
  --out "$tmp/f.png"
is_png "$tmp/f.png" || { echo "FAIL flux_true_cfg: not a PNG"; fail=1; }

check dit_cached 0 "$bin" generate --model "$data/ckpt/dit-tiny" --class 207 --steps 12 --seed 2 \
  --cache F1B0_W4MC3_T0O1_R1.5 --stats-out "$tmp/stats.json" --out "$tmp/c.png"
grep -q '"speedup_estimate"' "$tmp/stats.json" || { echo "FAIL dit_cached: no speedup_estimate in stats"; fail=1; }
grep -q '"cached_steps"' "$tmp/stats.json" || { echo "FAIL dit_cached: no cached_steps in stats"; fail=1; }
check bad_cache_field 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --cache '{"Fn_compute_blocks":0}' \
  --out "$tmp/x.png"
grep -q 'Fn_compute_blocks' "$tmp/err" || { echo "FAIL bad_cache_field: error does not name the field"; fail=1; }
# no --model: the demo model, found next to the executable or through $DITSERVE_DEMO_DIR
check demo_default 0 "$bin" generate --class-name seven --steps 4 --out "$tmp/demo.png"
is_png "$tmp/demo.png" || { echo "FAIL demo_default: no PNG"; fail=1; }
check demo_env 0 env DITSERVE_DEMO_DIR="$data/../../assets/demo" "$bin" generate --class 3 --steps 2 \
  --out "$tmp/demo_env.png"
check demo_env_missing 2 env DITSERVE_DEMO_DIR="$tmp/nothing" "$bin" generate --class 3 --out "$tmp/x.png"
grep -q "DITSERVE_DEMO_DIR=$tmp/nothing has no model_index.json" "$tmp/err" || { echo "FAIL demo_env_missing: message"; fail=1; }
check missing_out 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1
check no_class 2 "$bin" generate --model "$data/ckpt/dit-tiny" --out "$tmp/x.png"
check bad_steps 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --steps 0 --out "$tmp/x.png"
check bad_class 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1000 --out "$tmp/x.png"
check unknown_name 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class-name unicorn --out "$tmp/x.png"
check bad_scheduler 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --scheduler euler --out "$tmp/x.png"
check wrong_scheduler 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --scheduler flow_euler --out "$tmp/x.png"
check unknown_option 2 "$bin" generate --model "$data/ckpt/dit-tiny" --colour red --out "$tmp/x.png"
check no_model_dir 2 "$bin" generate --model "$tmp/nothing" --class 1 --out "$tmp/x.png"
check flux_no_embeds 2 "$bin" generate --model "$data/ckpt/flux-tiny" --out "$tmp/x.png"
# one line per error
check bad_device 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --device gpu --out "$tmp/x.png"
grep -q "expected auto, cpu, cuda or cuda:N" "$tmp/err" || { echo "FAIL bad_device: message"; fail=1; }
check cpu_bf16 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --device cpu --dtype bf16 --out "$tmp/x.png"
grep -q "CPU backend computes in f32" "$tmp/err" || { echo "FAIL cpu_bf16: message"; fail=1; }
if "$bin" info 2>/dev/null | grep -q '^cuda_devices: 0'; then # no GPU here: asking for one is a clean error
  check cuda_absent 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --device cuda --out "$tmp/x.png"
  grep -q "requested but not usable" "$tmp/err" || { echo "FAIL cuda_absent: message"; fail=1; }
fi
check bad_graphs 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --cuda-graphs maybe --out "$tmp/x.png"
grep -q "cuda-graphs must be on or off, got 'maybe'" "$tmp/err" || { echo "FAIL bad_graphs: message"; fail=1; }
check bad_attention 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --attention flash --out "$tmp/x.png"
grep -q "attention must be fast or exact, got 'flash'" "$tmp/err" || { echo "FAIL bad_attention: message"; fail=1; }
# the CUDA switches are accepted (and ignored) on the CPU: the same image as without them
"$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --steps 2 --device cpu --out "$tmp/a.png" 2>/dev/null &&
  "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --steps 2 --device cpu --cuda-graphs off --attention exact \
    --out "$tmp/b.png" 2>/dev/null && cmp -s "$tmp/a.png" "$tmp/b.png" ||
  { echo "FAIL cuda_switches_on_cpu: not the same image"; fail=1; }
check bad_seed 2 "$bin" generate --model "$data/ckpt/dit-tiny" --class 1 --seed -4 --out "$tmp/x.png"
[ "$(wc -l <"$tmp/err")" = 1 ] || { echo "FAIL bad_seed: error is not one line"; cat "$tmp/err"; fail=1; }
exit $fail
