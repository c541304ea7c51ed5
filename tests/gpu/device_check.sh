#!/usr/bin/env bash
# device_check.sh - build ditserve with CUDA and run the GPU twin tests on a GPU host that has only a
# compiler, CMake and the CUDA toolkit (no network, no root). Writes OUTDIR/summary.md (a markdown table of
# every RESULT line, plus each ctest test's status), OUTDIR/nvidia-smi.txt and OUTDIR/logs/*, and exits
# non-zero when anything failed. Stays under ~6 minutes (every step has a timeout from one budget).
#
# Usage: tests/gpu/device_check.sh OUTDIR
# Environment (all optional):
#   DS_GPU_BUILD_DIR  build directory (default <repo>/build-gpu; the .debs unpack into <build>/prefix)
#   DS_COMMIT         commit to print when the tree has no .git (e.g. DS_COMMIT=$(git rev-parse HEAD))
#   DS_CHECK_BUDGET_S total time budget in seconds (default 340)
#   DS_UNPACK_WITH_AR set to unpack with ar + tar even when dpkg exists (to test that path)
#
# Steps: (a) unpack tests/gpu/debs/*.deb (tools/fetch_gpu_debs.sh) with dpkg -x (or ar + tar) into
# <build>/prefix and point CMake and LD_LIBRARY_PATH at it; (b) configure with -DDS_CUDA=ON -DDS_WERROR=ON
# -DCMAKE_BUILD_TYPE=Release and build with all cores; (c) nvidia-smi; (d) ctest -L gpu, then every other
# tests/gpu/*.sh hook, called as `hook.sh BUILD_DIR OUTDIR` (its RESULT lines are collected too; non-zero
# exit = failure, 77 = skipped); (e) summary. When nvidia-smi sees a GPU, a skipped GPU test is a failure
# (the runtime could not use the card).
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$1/logs" || exit 2
out="$(cd "$1" && pwd)"
logs="$out/logs"
build="${DS_GPU_BUILD_DIR:-$repo/build-gpu}"
prefix="$build/prefix"
budget="${DS_CHECK_BUDGET_S:-340}"
t0=$SECONDS
failures=()

note() { echo "[device_check $((SECONDS - t0))s] $*"; }
fail() { failures+=("$1"); note "FAIL: $1"; }
# Seconds a step may take: min(wanted, what is left of the budget), at least 5.
left() {
    local l=$((budget - (SECONDS - t0)))
    [ "$l" -gt "$1" ] && l=$1
    [ "$l" -lt 5 ] && l=5
    echo "$l"
}

# ---- (a) unpack the .debs ------------------------------------------------------------------------
mkdir -p "$build"
rm -rf "$prefix"
mkdir -p "$prefix"
ndeb=0
shopt -s nullglob
for deb in "$repo"/tests/gpu/debs/*.deb; do
    if [ -z "${DS_UNPACK_WITH_AR:-}" ] && command -v dpkg >/dev/null 2>&1; then
        dpkg -x "$deb" "$prefix" || fail "dpkg -x $(basename "$deb")"
    else
        # A .deb is an ar archive holding data.tar.{xz,zst,gz}; tar picks the decompressor.
        tmp="$(mktemp -d)"
        data=""
        if (cd "$tmp" && ar x "$deb"); then
            for d in "$tmp"/data.tar.*; do data="$d"; done
        fi
        if [ -n "$data" ]; then
            tar -xf "$data" -C "$prefix" || fail "tar -xf $(basename "$data") from $(basename "$deb")"
        else
            fail "ar x $(basename "$deb")"
        fi
        rm -rf "$tmp"
    fi
    ndeb=$((ndeb + 1))
done
shopt -u nullglob
note "unpacked $ndeb .deb files into $prefix"
arch_lib="$prefix/usr/lib/x86_64-linux-gnu"
cmake_paths=()
if [ "$ndeb" -gt 0 ]; then
    export LD_LIBRARY_PATH="$arch_lib:$arch_lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # Searched before the system paths, so the unpacked libraries win.
    cmake_paths=(
        "-DCMAKE_PREFIX_PATH=$prefix/usr"
        "-DCMAKE_LIBRARY_PATH=$arch_lib;$arch_lib/openblas-pthread"
        "-DCMAKE_INCLUDE_PATH=$prefix/usr/include;$prefix/usr/include/x86_64-linux-gnu/openblas-pthread"
    )
fi

# ---- (b) configure and build ---------------------------------------------------------------------
jobs="$(nproc 2>/dev/null || echo 4)"
build_ok=0
note "configure $build"
if timeout "$(left 90)" cmake -S "$repo" -B "$build" -DDS_CUDA=ON -DDS_WERROR=ON -DCMAKE_BUILD_TYPE=Release \
        ${cmake_paths[@]+"${cmake_paths[@]}"} >"$logs/configure.log" 2>&1; then
    note "build with $jobs jobs"
    if timeout "$(left 240)" cmake --build "$build" -j "$jobs" >"$logs/build.log" 2>&1; then
        build_ok=1
    else
        fail "build (see logs/build.log)"
        tail -40 "$logs/build.log"
    fi
else
    fail "configure (see logs/configure.log)"
    tail -40 "$logs/configure.log"
fi
grep -E "^(OPENBLAS|CJSON)_(INCLUDE_DIR|LIBRARY):" "$build/CMakeCache.txt" >"$logs/found-libs.txt" 2>/dev/null || true

# ---- (c) nvidia-smi ------------------------------------------------------------------------------
card="none (nvidia-smi not found)"
gpu_seen=0
if command -v nvidia-smi >/dev/null 2>&1; then
    timeout 30 nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
    name="$(timeout 30 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    if [ -n "$name" ]; then
        card="$name"
        gpu_seen=1
    else
        card="none (nvidia-smi lists no GPU)"
    fi
else
    echo "nvidia-smi not found" >"$out/nvidia-smi.txt"
fi
note "card: $card"

# ---- (d) GPU tests and hooks ---------------------------------------------------------------------
results="$logs/results.txt"   # the RESULT lines
statuses="$logs/statuses.txt" # "name|status|time" per ctest test / hook
: >"$results"
: >"$statuses"
if [ "$build_ok" = 1 ]; then
    note "ctest -L gpu"
    (cd "$build" && timeout "$(left 200)" ctest -L gpu -V --output-on-failure --timeout "$(left 150)") \
        >"$logs/ctest-gpu.log" 2>&1
    rc=$?
    [ "$rc" -ne 0 ] && fail "ctest -L gpu exited $rc"
    sed -nE 's/^([0-9]+: )?(RESULT .*)$/\2/p' "$logs/ctest-gpu.log" >>"$results"
    # "1/2 Test #44: gpu_linear .......***Skipped   0.12 sec"
    sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+) \.*\**([A-Za-z][^0-9]*[A-Za-z)]) +([0-9.]+ sec).*$/\1|\2|\3/p' \
        "$logs/ctest-gpu.log" >>"$statuses"
    if ! grep -q . "$statuses"; then fail "ctest ran no gpu tests"; fi
    [ -f "$build/Testing/Temporary/LastTest.log" ] && cp "$build/Testing/Temporary/LastTest.log" "$logs/ctest-LastTest.log"

    for hook in "$repo"/tests/gpu/*.sh; do
        [ "$(basename "$hook")" = "device_check.sh" ] && continue
        hname="$(basename "$hook" .sh)"
        note "hook $hname"
        hs=$SECONDS
        timeout "$(left 120)" bash "$hook" "$build" "$out" >"$logs/hook-$hname.log" 2>&1
        hrc=$?
        case "$hrc" in
            0) st=Passed ;;
            77) st=Skipped ;;
            124) st=Timeout; fail "hook $hname timed out" ;;
            *) st="Failed (exit $hrc)"; fail "hook $hname exited $hrc" ;;
        esac
        echo "hook:$hname|$st|$((SECONDS - hs)) sec" >>"$statuses"
        sed -nE 's/^(RESULT .*)$/\1/p' "$logs/hook-$hname.log" >>"$results"
    done
fi

# A RESULT line marked FAIL fails the check even if its test's exit code was 0.
nfail_cases="$(awk '$1 == "RESULT" && $NF == "FAIL"' "$results" | wc -l)"
[ "$nfail_cases" -gt 0 ] && fail "$nfail_cases RESULT case(s) FAIL"
nskip="$(grep -c '|Skipped|' "$statuses" || true)"
if [ "$gpu_seen" = 1 ] && [ "$nskip" -gt 0 ]; then
    fail "nvidia-smi sees a GPU but $nskip GPU test(s) skipped (see logs/ctest-gpu.log)"
fi

# ---- (e) summary ---------------------------------------------------------------------------------
commit="${DS_COMMIT:-}"
if [ -z "$commit" ]; then
    commit="$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo "unknown (no .git; set DS_COMMIT)")"
    if git -C "$repo" rev-parse HEAD >/dev/null 2>&1 && [ -n "$(git -C "$repo" status --porcelain 2>/dev/null)" ]; then
        commit="$commit (+ uncommitted changes)"
    fi
fi
nvcc_bin="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
nvcc_ver="$("$nvcc_bin" --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1)"
overall=PASS
[ "${#failures[@]}" -gt 0 ] && overall=FAIL
{
    echo "# ditserve GPU device check"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- card: $card"
    echo "- commit: $commit"
    echo "- host: $(hostname 2>/dev/null || echo '?'), CUDA ${nvcc_ver:-?}, $jobs cores, .debs unpacked: $ndeb"
    echo "- build: $([ "$build_ok" = 1 ] && echo ok || echo FAILED) ($build)"
    echo "- duration: $((SECONDS - t0)) s"
    echo "- overall: **$overall**"
    if [ "${#failures[@]}" -gt 0 ]; then
        echo
        echo "Failures:"
        for f in "${failures[@]}"; do echo "- $f"; done
    fi
    echo
    echo "## Cases"
    echo
    echo "| test | case | rel | max_abs | tol | status |"
    echo "|---|---|---|---|---|---|"
    awk '$1 == "RESULT" {
        rel = $4; sub(/^rel=/, "", rel); ma = $5; sub(/^max_abs=/, "", ma); tol = $6; sub(/^tol=/, "", tol);
        gsub(/\|/, "\\|", tol);
        printf "| %s | %s | %s | %s | %s | %s |\n", $2, $3, rel, ma, tol, $NF }' "$results"
    echo
    echo "## Tests (ctest and hooks)"
    echo
    echo "| test | status | time |"
    echo "|---|---|---|"
    awk -F'|' 'NF >= 3 { printf "| %s | %s | %s |\n", $1, $2, $3 }' "$statuses"
    echo
    echo "Logs: logs/ (configure, build, ctest-gpu, hooks, found-libs); nvidia-smi.txt."
} >"$out/summary.md"
note "summary: $out/summary.md"
cat "$out/summary.md"
[ "$overall" = PASS ] && exit 0
exit 1
