# server_lib.sh - sourced by the scripts that run a real ditserve on loopback (tests/e2e/*.sh,
# tools/api_fuzz.sh, bench/server_load.sh): start one on a free port and wait until it is ready.

# ds_server_start BIN LOG ARGS... : run `BIN --host 127.0.0.1 --port 0 ARGS...` in the background (stdout to
# LOG.out, stderr to LOG.err) and set $pid and $port from its "ditserve listening on" line. Returns 1 (after
# printing LOG.err) when no port appears within 30 s or the process dies first.
ds_server_start() {
  local bin=$1 log=$2
  shift 2
  "$bin" --host 127.0.0.1 --port 0 "$@" >"$log.out" 2>"$log.err" &
  pid=$!
  port=
  for _ in $(seq 1 300); do
    port=$(sed -n 's/^ditserve listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$log.out" | head -1)
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start"
  cat "$log.err"
  return 1
}

# ds_server_wait_ready PORT [TENTHS] : 0 once GET /health answers 200 (every model warmed up), 1 after TENTHS
# tenths of a second (default 600).
ds_server_wait_ready() {
  for _ in $(seq 1 "${2:-600}"); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
