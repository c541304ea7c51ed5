#!/usr/bin/env bash
# server_hook.sh BUILD_DIR OUTDIR - the server's own overhead per request on the GPU (issue 9's target: under
# 5 ms), run by tests/gpu/device_check.sh after the GPU tests. Starts BUILD_DIR/server/ditserve with
# --device cuda on the tiny DiT checkpoint, drives it for 15 s with bench/load_gen.py (2 clients: generate sync
# and async with and without cache configs, status, stats, cancel, health, metrics), drains every job, and prints
#   RESULT server_hook worker_overhead p50_ms=.. p99_ms=..   total - queue - denoise - decode - encode per job
#   RESULT server_hook sync_http_overhead p50_ms=.. p99_ms=..  client latency - the reply's total_ms (sync)
#   RESULT server_hook overhead_p50 ms=.. target=<5 PASS|MISS   the two p50s added
# (definitions: bench/load_gen.py). OUTDIR/server_load.json keeps the full report. A missed target is MISS,
# never a failure; a lost job, a 5xx or a server that does not start fails the hook (exit 1). Without a usable
# GPU: SKIP, exit 77. DS_SERVER_HOOK_DEVICE=cpu runs the same measurement on the CPU (a dry run of the hook).
set -u
build=${1:?usage: server_hook.sh BUILD_DIR OUTDIR}
out=${2:?usage: server_hook.sh BUILD_DIR OUTDIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$build/server/ditserve
py=${PYTHON:-python3}
mkdir -p "$out"
skip() {
    echo "SKIP: $1"
    echo "RESULT server_hook all ms=- SKIP"
    exit 77
}
[ -x "$bin" ] || skip "no $bin (built without libmicrohttpd?)"
command -v "$py" >/dev/null || skip "no $py"
device=${DS_SERVER_HOOK_DEVICE:-cuda}
if [ "$device" != cpu ]; then
    ndev=$("$bin" info 2>/dev/null | sed -n 's/^cuda_devices: //p')
    [ "${ndev:-0}" -ge 1 ] 2>/dev/null || skip "no CUDA device (ditserve info: cuda_devices ${ndev:-?})"
fi

log=$out/server_hook
"$bin" --host 127.0.0.1 --port 0 --device "$device" --model dit="$repo/tests/data/ckpt/dit-tiny" >"$log.out" 2>"$log.err" &
pid=$!
trap 'kill -9 $pid 2>/dev/null' EXIT
port=
for _ in $(seq 1 300); do
    port=$(sed -n 's/^ditserve listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$log.out" | head -1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "server_hook: the server did not start:"
    tail -20 "$log.err"
    echo "RESULT server_hook start ms=- FAIL"
    exit 1
fi
# ready: /health 200 once the model is loaded and warmed up (at most 60 s)
"$py" - "$port" <<'EOF' || { echo "RESULT server_hook ready ms=- FAIL"; tail -20 "$log.err"; exit 1; }
import http.client, sys, time
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
        c.request("GET", "/health")
        if c.getresponse().status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF

rc=0
timeout 90 "$py" "$repo/bench/load_gen.py" --port "$port" --clients 2 --seconds 15 --out "$out/server_load.json" \
    >"$log.load.txt" 2>&1 || rc=1
kill -TERM "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
trap - EXIT
if [ ! -s "$out/server_load.json" ]; then
    tail -20 "$log.load.txt"
    echo "RESULT server_hook load ms=- FAIL"
    exit 1
fi
"$py" - "$out/server_load.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def f(x):
    return "-" if x is None else "%.3f" % x
w, h = r["overhead_ms"], r["sync_http_ms"]
print("RESULT server_hook worker_overhead p50_ms=%s p99_ms=%s n=%d INFO" % (f(w["p50_ms"]), f(w["p99_ms"]), w["n"]))
print("RESULT server_hook sync_http_overhead p50_ms=%s p99_ms=%s n=%d INFO" % (f(h["p50_ms"]), f(h["p99_ms"]), h["n"]))
if w["p50_ms"] is None or h["p50_ms"] is None:
    print("RESULT server_hook overhead_p50 ms=- target=<5 SKIP")
else:
    t = w["p50_ms"] + h["p50_ms"]
    print("RESULT server_hook overhead_p50 ms=%.3f target=<5 %s" % (t, "PASS" if t < 5.0 else "MISS"))
print("RESULT server_hook jobs accepted=%d lost=%d stuck=%d 5xx=%d %s" % (
    r["jobs_accepted"], r["n_jobs_lost"], len(r["jobs_stuck"]) if isinstance(r["jobs_stuck"], list) else r["jobs_stuck"],
    len(r["server_5xx"]), "PASS" if not r["n_jobs_lost"] and not r["server_5xx"] else "FAIL"))
EOF
[ "$rc" = 0 ] || { tail -5 "$log.load.txt"; echo "RESULT server_hook load_gen exit=1 FAIL"; }
exit "$rc"
