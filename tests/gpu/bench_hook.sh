#!/usr/bin/env bash
# bench_hook.sh BUILD_DIR OUTDIR - the GPU performance benchmark as a device-check hook (tests/gpu/device_check.sh
# runs every tests/gpu/*.sh hook this way and collects the lines starting with RESULT).
#
# Runs BUILD_DIR/bench/gpu_bench (ditserve, CUDA bf16) and bench/torch_gpu_bench.py (diffusers + PyTorch eager,
# SDPA, bf16) in the same run with the same shapes and the same FLUX block count, prints their RESULT lines, then
# one `RESULT bench_hook <check> ...` line per target of the GPU-performance issue, and writes OUTDIR/bench.md:
#   flux_fwd_time   FLUX.1-dev 1024x1024 forward time, ditserve / diffusers          target <= 0.8
#   flux_fwd_peak   ditserve FLUX forward TFLOP/s / measured bf16 GEMM peak          target >= 0.55
#   dit_fwd_time    DiT-XL/2-256 forward (batch 2) time, ditserve / diffusers        target <= 0.8
#   flux_fwd_mem    peak device memory of the FLUX forward, ditserve / diffusers     target <= 1.0
#   dit_fwd_mem     the same for DiT                                                  target <= 1.0
#   flux_gen_cache  median cached step vs the cost formula (gpu_bench flux_gen)      target <= 1.10x
#   gemm_peak       ditserve's cuBLASLt bf16 GEMM / torch.matmul (information only)
# A missed target prints MISS and never fails the hook; the hook fails (exit 1) only when gpu_bench crashes or an
# engine call fails (a RESULT ... FAIL line). No GPU: exit 77 with a SKIP line. The peer unavailable (no torch,
# no diffusers and no usable wheels): SKIP lines for the ratios, exit 0.
#
# Environment (all optional):
#   DS_BENCH_FLUX_BLOCKS  FLUX double,single blocks for both sides (default 2,4; "full" = 19,38; see gpu_bench.c)
#   DS_BENCH_BUDGET_S     seconds for both benchmarks together (default 110: device_check gives a hook <= 120 s)
#   DS_BENCH_PYTHON       interpreter with torch (default: the first of python3, python, /opt/conda/bin/python
#                         that imports torch)
#   DS_BENCH_ITERS        timed iterations per case (default 5)
#   DS_BENCH_ARGS, DS_BENCH_TORCH_ARGS  extra arguments for gpu_bench / torch_gpu_bench.py (e.g. --cases, --configs;
#                         "--device cpu --dtype float32" tries the peer's logic on a host without a GPU)
# Without diffusers the hook unzips the wheels of tests/gpu/wheels (tools/fetch_gpu_wheels.sh) that match the
# interpreter into BUILD_DIR/bench-pylib and puts it on PYTHONPATH (no pip, no network).
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR OUTDIR" >&2
    exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "$1" && pwd)" || exit 2
mkdir -p "$2" || exit 2
out="$(cd "$2" && pwd)"
export DS_BENCH_FLUX_BLOCKS="${DS_BENCH_FLUX_BLOCKS:-2,4}"
budget="${DS_BENCH_BUDGET_S:-110}"
iters="${DS_BENCH_ITERS:-5}"
t0=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ours="$tmp/ours.log"
peer="$tmp/peer.log"
: >"$peer"

note() { echo "[bench_hook $((SECONDS - t0))s] $*"; }

bin="$build/bench/gpu_bench"
if [ ! -x "$bin" ]; then
    echo "SKIP: $bin not built (a build without CUDA?)"
    echo "RESULT bench_hook all ratio=- SKIP"
    exit 77
fi

# ---- ditserve ---------------------------------------------------------------------------------------------------
ours_limit=$((budget * 65 / 100))
note "gpu_bench (limit ${ours_limit}s, FLUX blocks $DS_BENCH_FLUX_BLOCKS)"
read -r -a ours_args <<<"${DS_BENCH_ARGS:-}"
read -r -a peer_args <<<"${DS_BENCH_TORCH_ARGS:-}"
timeout -k 5 "$ours_limit" "$bin" --iters "$iters" ${ours_args[@]+"${ours_args[@]}"} 2>&1 | tee "$ours"
ours_rc=${PIPESTATUS[0]}
if [ "$ours_rc" = 77 ]; then
    echo "RESULT bench_hook all ratio=- SKIP"
    exit 77
fi
hook_fail=0
case "$ours_rc" in
    0) ;;
    1) hook_fail=1; note "gpu_bench reported failures (RESULT ... FAIL above)" ;;
    124 | 137) note "gpu_bench ran past ${ours_limit}s: results so far kept"
        echo "RESULT bench_hook gpu_bench_timeout limit_s=$ours_limit blocks=$DS_BENCH_FLUX_BLOCKS TIMEOUT" ;;
    *) hook_fail=1; note "gpu_bench crashed (exit $ours_rc)"
        echo "RESULT bench_hook gpu_bench_crash exit=$ours_rc FAIL" ;;
esac

# ---- the peer: torch + diffusers -----------------------------------------------------------------------------------
# the interpreter with torch: DS_BENCH_PYTHON, else the first of python3, python, /opt/conda/bin/python that has it
py=""
for cand in ${DS_BENCH_PYTHON:-} python3 python /opt/conda/bin/python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" >/dev/null 2>&1; then
        py="$cand"
        break
    fi
done
peer_skip=""
if [ -z "$py" ]; then
    peer_skip="no python with torch (DS_BENCH_PYTHON, python3, python, /opt/conda/bin/python)"
elif ! "$py" -c "import diffusers" >/dev/null 2>&1; then
    wheels="$repo/tests/gpu/wheels"
    pylib="$build/bench-pylib"
    if compgen -G "$wheels/*.whl" >/dev/null; then
        note "diffusers missing: unzipping the matching wheels of $wheels into $pylib"
        "$py" - "$wheels" "$pylib" <<'PY'
import glob, importlib.metadata as md, os, platform, re, sys, zipfile
wheels, target = sys.argv[1], sys.argv[2]
os.makedirs(target, exist_ok=True)
major, minor = sys.version_info[:2]
mach = platform.machine()
# always ours: diffusers and the hub with its HTTP stack (a host's older copies would not match); the rest only
# when the host lacks the distribution
always = {"diffusers", "huggingface-hub", "httpx2", "httpcore2", "h11", "truststore"}
def norm(n):
    return re.sub(r"[-_.]+", "-", n).lower()
def score(fname):  # -1: incompatible; higher: better
    parts = os.path.basename(fname)[:-4].split("-")
    pyt, abi, plat = parts[-3:]
    if plat != "any" and not ("linux" in plat and mach in plat):
        return -1
    tags = pyt.split(".")
    if f"cp{major}{minor}" in tags and abi in (f"cp{major}{minor}", "abi3", "none"):
        return 3
    if abi == "abi3" and any(t.startswith("cp3") and int(t[3:] or 0) <= minor for t in tags):
        return 2
    if any(t in ("py3", f"py{major}{minor}") for t in tags) and abi == "none":
        return 1
    return -1
best = {}
for f in glob.glob(os.path.join(wheels, "*.whl")):
    d, s = norm(os.path.basename(f).split("-")[0]), score(f)
    if s >= 0 and (d not in best or s > best[d][0]):
        best[d] = (s, f)
for d, (s, f) in sorted(best.items()):
    if d not in always:
        try:
            md.distribution(d)
            print(f"  {d}: the host's {md.version(d)}")
            continue
        except md.PackageNotFoundError:
            pass
    zipfile.ZipFile(f).extractall(target)
    print(f"  {d}: {os.path.basename(f)}")
PY
        export PYTHONPATH="$pylib${PYTHONPATH:+:$PYTHONPATH}"
        if ! err="$("$py" -c "import diffusers" 2>&1)"; then
            why="$(echo "$err" | grep -E 'Error|not found' | tail -1)"
            peer_skip="diffusers not importable after unzipping tests/gpu/wheels (${why:-$(echo "$err" | tail -1)}); python $("$py" -c 'import sys; print(sys.version.split()[0])')"
        fi
    else
        peer_skip="diffusers missing and no tests/gpu/wheels (tools/fetch_gpu_wheels.sh)"
    fi
fi
if [ -n "$peer_skip" ]; then
    note "peer skipped: $peer_skip"
    echo "RESULT gpu_bench torch_all ms=- tflops=- reason=$(echo "$peer_skip" | tr ' =' '__') SKIP" | tee "$peer"
else
    left=$((budget - (SECONDS - t0)))
    [ "$left" -lt 30 ] && left=30
    note "torch_gpu_bench.py (limit ${left}s)"
    timeout -k 5 "$left" "$py" "$repo/bench/torch_gpu_bench.py" --iters "$iters" ${peer_args[@]+"${peer_args[@]}"} 2>&1 | tee "$peer"
    prc=${PIPESTATUS[0]}
    [ "$prc" != 0 ] && echo "RESULT bench_hook torch_gpu_bench_exit exit=$prc ERROR"
fi

# ---- ratios against the targets --------------------------------------------------------------------------------------
# val LOG CASE KEY: the value of KEY= on the RESULT line of CASE
val() {
    awk -v c="$2" -v k="$3" '$1 == "RESULT" && $3 == c {
        for (i = 4; i < NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' "$1"
}
isnum() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
rows=()
# check NAME OURS PEER TARGET_OP TARGET DESC: ratio = OURS / PEER
check() {
    local name=$1 a=$2 b=$3 op=$4 tgt=$5 desc=$6 r st
    if isnum "$a" && isnum "$b" && awk -v b="$b" 'BEGIN { exit !(b > 0) }'; then
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')
        if [ "$op" = info ]; then st=INFO
        elif awk -v r="$r" -v t="$tgt" -v op="$op" 'BEGIN { exit !(op == "le" ? r <= t : r >= t) }'; then st=PASS
        else st=MISS; fi
    else
        r=-
        st=SKIP
    fi
    local tg="-"
    [ "$op" = le ] && tg="<=$tgt"
    [ "$op" = ge ] && tg=">=$tgt"
    echo "RESULT bench_hook $name ratio=$r ours=${a:--} peer=${b:--} target=$tg $st"
    rows+=("| $desc | ${a:--} | ${b:--} | $r | $tg | $st |")
}
ob=$(val "$ours" flux_fwd blocks)
pb=$(val "$peer" torch_flux_fwd blocks)
flux_peer_ms=$(val "$peer" torch_flux_fwd ms)
flux_peer_mem=$(val "$peer" torch_flux_fwd mem_mb)
if [ -n "$ob" ] && [ -n "$pb" ] && [ "$ob" != "$pb" ]; then
    note "FLUX block counts differ ($ob vs $pb): no FLUX ratio"
    flux_peer_ms=""
    flux_peer_mem=""
fi
echo
check flux_fwd_time "$(val "$ours" flux_fwd ms)" "$flux_peer_ms" le 0.8 "FLUX.1-dev 1024² forward, ms (blocks ${ob:-?})"
check flux_fwd_peak "$(val "$ours" flux_fwd tflops)" "$(val "$ours" gemm_bf16 tflops)" ge 0.55 \
    "FLUX forward TFLOP/s : measured bf16 GEMM peak (ditserve's)"
check flux_fwd_full_est "$(val "$ours" flux_fwd full_est_ms)" "$(val "$peer" torch_flux_fwd full_est_ms)" info 0 \
    "FLUX 19+38 blocks, ms (extrapolated)"
check dit_fwd_time "$(val "$ours" dit_fwd ms)" "$(val "$peer" torch_dit_fwd ms)" le 0.8 "DiT-XL/2-256 forward, batch 2, ms"
check flux_fwd_mem "$(val "$ours" flux_fwd mem_mb)" "$flux_peer_mem" le 1.0 "FLUX forward peak device memory, MB"
check dit_fwd_mem "$(val "$ours" dit_fwd mem_mb)" "$(val "$peer" torch_dit_fwd mem_mb)" le 1.0 \
    "DiT forward peak device memory, MB"
check gemm_peak "$(val "$ours" gemm_bf16 tflops)" "$(val "$peer" torch_gemm_bf16 tflops)" info 0 \
    "bf16 GEMM 8192³ TFLOP/s (cuBLASLt : torch.matmul)"
# each optimisation against its absence, same model and run: > 1 means it helps
check flux_graphs_gain "$(val "$ours" flux_fwd ms_graphs_off)" "$(val "$ours" flux_fwd ms)" info 0 \
    "FLUX forward: CUDA graphs off : on, ms"
check flux_tc_attn_gain "$(val "$ours" flux_fwd ms_exact_attn)" "$(val "$ours" flux_fwd ms)" info 0 \
    "FLUX forward: fp32 attention : tensor-core attention, ms"
check dit_graphs_gain "$(val "$ours" dit_fwd ms_graphs_off)" "$(val "$ours" dit_fwd ms)" info 0 \
    "DiT forward: CUDA graphs off : on, ms"
check dit_tc_attn_gain "$(val "$ours" dit_fwd ms_exact_attn)" "$(val "$ours" dit_fwd ms)" info 0 \
    "DiT forward: fp32 attention : tensor-core attention, ms"
check flux_gen_cache "$(val "$ours" flux_gen cached_step_ms)" "$(val "$ours" flux_gen formula_ms)" le 1.10 \
    "cached step : cost formula, ms (28-step FLUX-shaped generation)"
check flux_gen_ideal "$(val "$ours" flux_gen denoise_ms)" "$(val "$ours" flux_gen ideal_ms)" info 0 \
    "cached generation denoise : ideal from the blocks skipped, ms"

# ---- bench.md ---------------------------------------------------------------------------------------------------------
dev_name=$(val "$ours" device name)
{
    echo "# GPU benchmark (tests/gpu/bench_hook.sh)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- device: ${dev_name:-?} (gpu_bench exit $ours_rc)"
    echo "- peer: torch $(val "$peer" torch_versions torch) / diffusers $(val "$peer" torch_versions diffusers)${peer_skip:+ (skipped: $peer_skip)}"
    echo "- FLUX blocks: ${DS_BENCH_FLUX_BLOCKS} (19,38 = full FLUX.1-dev; others are extrapolated in *_est); iterations: $iters"
    echo
    echo "| measurement | ditserve | diffusers / reference | ratio | target | status |"
    echo "|---|---|---|---|---|---|"
    for r in "${rows[@]}"; do echo "$r"; done
    echo
    echo "ratio = ditserve / diffusers (time, memory), ditserve TFLOP/s / measured GEMM peak, cached step / formula."
    echo "MISS = a target of the GPU-performance issue not met (never a failure of the device check)."
    echo
    echo '```'
    grep -h '^RESULT' "$ours" "$peer" 2>/dev/null
    echo '```'
} >"$out/bench.md"
note "wrote $out/bench.md"
exit "$hook_fail"
