#!/usr/bin/env bash
# server_e2e.sh DITSERVE DATA_DIR - end-to-end checks of the HTTP server: starts the real binary on
# 127.0.0.1 with a free port (--port 0, the port is read from its first stdout line) and the tiny DiT and
# FLUX checkpoints, then checks with curl + python3:
#   sync and async images equal `ditserve generate`'s for the same request (PNG pixel data); cache stats
#   equal the CLI's --stats-out trace; SSE step events arrive in order then `done`; cancel of a queued and of
#   a running job; a sync client that disconnects cancels its job; 429 + Retry-After when the queue is full;
#   40 malformed or hostile requests each get the right status (and the server still answers); 413 over the
#   body cap; OpenAI /v1/images/generations; FLUX from embeddings; /metrics; auth on (a second server);
#   SIGTERM exits 0.
set -u
bin=$1
data=$2
dit=$data/ckpt/dit-tiny
flux=$data/ckpt/flux-tiny
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

. "$(dirname "$0")/server_lib.sh"

# start NAME ARGS... : starts a server, sets $port and $pid
start() {
  local name=$1
  shift
  ds_server_start "$bin" "$tmp/$name" "$@" || { echo "(server $name)"; exit 1; }
  pids+=("$pid")
}

wait_ready() { ds_server_wait_ready "$1" 900; } # wait_ready PORT (90 s: a loaded host warms up slowly)

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# idat FILE: hex of the concatenated IDAT payloads (the pixel data, independent of tEXt chunks)
idat() {
  python3 - "$1" <<'EOF'
import struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
assert b[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
i, out = 8, b''
while i < len(b):
    n, = struct.unpack('>I', b[i:i+4]); t = b[i+4:i+8]
    if t == b'IDAT': out += b[i+8:i+8+n]
    i += 12 + n
print(zlib.decompress(out).hex())
EOF
}

start main --model dit="$dit" --model flux="$flux" --queue-size 1 --max-steps 1000 --max-body-mb 1 \
  --default-cache flux=none
base=http://127.0.0.1:$port
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/health")
case $code in 200|503) ok "health answers while loading ($code)";; *) bad "health while loading: $code";; esac
wait_ready "$port" && ok "health 200 after warm-up" || bad "server never became ready"

# --- sync and async equal the CLI -------------------------------------------------------------------
"$bin" generate --model "$dit" --class 207 --steps 8 --seed 1 --out "$tmp/cli.png" >/dev/null 2>&1 || bad "cli generate"
curl -s -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":["golden retriever"],"steps":8,"seed":1}' \
  >"$tmp/sync.json"
json "d['images'][0]['png_b64']" <"$tmp/sync.json" | base64 -d >"$tmp/sync.png"
[ "$(idat "$tmp/sync.png")" = "$(idat "$tmp/cli.png")" ] && ok "sync image equals ditserve generate" \
  || bad "sync image differs from the CLI's"
[ "$(json "d['seed'], d['state'], d['stats']['steps']" <"$tmp/sync.json")" = "(1, 'done', 8)" ] \
  && ok "sync reply fields" || bad "sync reply fields: $(head -c 300 "$tmp/sync.json")"
id=$(curl -s -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":[207],"steps":8,"seed":1,"mode":"async"}' \
  -w '\n%{http_code}' | { read -r body; read -r c; [ "$c" = 202 ] || echo "status $c" >&2; echo "$body" | json "d['id']"; })
for _ in $(seq 1 100); do
  st=$(curl -s "$base/v1/jobs/$id" | json "d['state']")
  [ "$st" = done ] && break
  sleep 0.1
done
curl -s -o "$tmp/async.png" "$base/v1/images/$id/0.png"
[ "$(idat "$tmp/async.png")" = "$(idat "$tmp/cli.png")" ] && ok "async image equals ditserve generate" \
  || bad "async image differs ($st)"

# --- cache stats equal the CLI's trace --------------------------------------------------------------
cc=F1B0_W2MC2_T0O1_R0.9
"$bin" generate --model "$dit" --class 3 --steps 12 --seed 4 --cache "$cc" --stats-out "$tmp/cli_stats.json" \
  --out "$tmp/c.png" >/dev/null 2>&1 || bad "cli generate --cache"
curl -s -X POST "$base/v1/generate" -d "{\"model\":\"dit\",\"class_labels\":[3],\"steps\":12,\"seed\":4,\"cache_config\":\"$cc\"}" \
  >"$tmp/cached.json"
cid=$(json "d['id']" <"$tmp/cached.json")
curl -s "$base/v1/stats/$cid" >"$tmp/stats.json"
python3 - "$tmp/stats.json" "$tmp/cli_stats.json" <<'EOF' && ok "stats equal the CLI's cache trace" || bad "stats differ from the CLI's trace"
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a['lists'] == b['lists'], (a['lists'], b['lists'])
assert a['cache_config_str'] == b['cache_options'], (a['cache_config_str'], b['cache_options'])
assert a['num_cached_steps'] == b['lists'][0]['branches'][0]['accumulated_cached_steps']
assert a['num_cached_steps'] > 0 and a['blocks']['skipped'] > 0 and a['speedup_estimate'] > 1
assert set(a['diff_percentiles']) == {'p0', 'p25', 'p50', 'p75', 'p95', 'max'}
EOF
"$bin" generate --model "$dit" --class 3 --steps 12 --seed 4 --cache "$cc" --out "$tmp/c2.png" >/dev/null 2>&1
json "d['images'][0]['png_b64']" <"$tmp/cached.json" | base64 -d >"$tmp/cached.png"
[ "$(idat "$tmp/cached.png")" = "$(idat "$tmp/c.png")" ] && ok "cached image equals the CLI's" || bad "cached image differs"

# --- SSE order ---------------------------------------------------------------------------------------
id=$(curl -s -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":[1],"steps":10,"mode":"async","cache_config":"F1B0_W2MC2_T0O1_R0.5"}' | json "d['id']")
curl -s -N --max-time 60 "$base/v1/jobs/$id/events" >"$tmp/events.txt"
python3 - "$tmp/events.txt" <<'EOF' && ok "SSE: 10 step events in order, then done" || bad "SSE order"
import json, sys
ev, name = [], None
for line in open(sys.argv[1]):
    line = line.rstrip('\n')
    if line.startswith('event: '): name = line[7:]
    elif line.startswith('data: '): ev.append((name, json.loads(line[6:])))
steps = [d['step'] for n, d in ev if n == 'step']
assert steps == list(range(1, 11)), steps
assert ev[-1][0] == 'done' and ev[-1][1]['state'] == 'done'
assert any(d['cached'] for n, d in ev if n == 'step')
EOF

# --- queue full, cancel queued and running ------------------------------------------------------------
long=$(curl -s -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":[1,2],"num_images":2,"steps":1000,"mode":"async"}' | json "d['id']")
for _ in $(seq 1 100); do [ "$(curl -s "$base/v1/jobs/$long" | json "d['state']")" = running ] && break; sleep 0.05; done
queued=$(curl -s -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":[1],"steps":5,"mode":"async"}' | json "d['id']")
curl -s -D "$tmp/h429" -o "$tmp/b429" -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":[1],"steps":5,"mode":"async"}'
grep -q "^HTTP/1.1 429" "$tmp/h429" && grep -qi "^Retry-After: [0-9]" "$tmp/h429" && ok "queue full: 429 with Retry-After" \
  || bad "queue full: $(head -1 "$tmp/h429")"
[ "$(json "d['error']['code']" <"$tmp/b429")" = queue_full ] || bad "429 body"
[ "$(curl -s -X DELETE "$base/v1/jobs/$queued" | json "d['state']")" = cancelled ] && ok "cancel a queued job" \
  || bad "cancel queued"
curl -s -X DELETE "$base/v1/jobs/$long" >/dev/null
for _ in $(seq 1 100); do st=$(curl -s "$base/v1/jobs/$long" | json "d['state']"); [ "$st" = cancelled ] && break; sleep 0.05; done
[ "$st" = cancelled ] && ok "cancel a running job" || bad "cancel running: $st"
[ "$(curl -s "$base/v1/jobs/$long" | json "d['step'] < 1000")" = True ] || bad "running job ran to the end"

# --- a sync client that disconnects cancels its job ----------------------------------------------------
before=$(curl -s "$base/metrics" | sed -n 's/^ditserve_jobs_total{state="cancelled"} //p')
curl -s --max-time 0.3 -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":[1,2],"num_images":2,"steps":1000}' >/dev/null
after=$before
for _ in $(seq 1 50); do
  after=$(curl -s "$base/metrics" | sed -n 's/^ditserve_jobs_total{state="cancelled"} //p')
  [ "$after" -gt "$before" ] && break
  sleep 0.1
done
[ "$after" -gt "$before" ] && ok "client disconnect cancels the sync job" || bad "disconnect did not cancel ($before -> $after)"

# --- malformed and hostile requests ---------------------------------------------------------------------
# each line: EXPECTED_STATUS METHOD PATH BODY (BODY '-' = none)
cat >"$tmp/cases" <<'EOF'
400 POST /v1/generate {
400 POST /v1/generate not-json
400 POST /v1/generate []
400 POST /v1/generate "string"
400 POST /v1/generate {}
400 POST /v1/generate {"model":"dit"}
404 POST /v1/generate {"model":"nope","class_labels":[1]}
400 POST /v1/generate {"model":"dit","class_labels":[1],"unknown_field":1}
400 POST /v1/generate {"model":"dit","class_labels":[1],"steps":-5}
400 POST /v1/generate {"model":"dit","class_labels":[1],"steps":1e308}
400 POST /v1/generate {"model":"dit","class_labels":[1],"steps":99999999999999999999}
400 POST /v1/generate {"model":"dit","class_labels":[1],"steps":"ten"}
400 POST /v1/generate {"model":"dit","class_labels":[1],"width":-64,"height":-64}
400 POST /v1/generate {"model":"dit","class_labels":[1],"width":100000,"height":8}
400 POST /v1/generate {"model":"dit","class_labels":[1],"width":4096,"height":4096}
400 POST /v1/generate {"model":"dit","class_labels":[-1]}
400 POST /v1/generate {"model":"dit","class_labels":[1.5]}
400 POST /v1/generate {"model":"dit","class_labels":["not an imagenet class"]}
400 POST /v1/generate {"model":"dit","class_labels":[[1]]}
400 POST /v1/generate {"model":"dit","class_labels":[1],"num_images":1000}
400 POST /v1/generate {"model":"dit","class_labels":[1],"seed":-1}
400 POST /v1/generate {"model":"dit","class_labels":[1],"seed":1.5}
400 POST /v1/generate {"model":"dit","class_labels":[1],"guidance_scale":null}
400 POST /v1/generate {"model":"dit","class_labels":[1],"scheduler":"../../etc"}
400 POST /v1/generate {"model":"dit","class_labels":[1],"cache_config":{"Fn_compute_blocks":-3}}
400 POST /v1/generate {"model":"dit","class_labels":[1],"cache_config":"garbage"}
400 POST /v1/generate {"model":"dit","class_labels":[1],"mode":"turbo"}
400 POST /v1/generate {"model":"dit","class_labels":[1],"model":"dit"}
400 POST /v1/generate {"model":"/etc/passwd","class_labels":[1],"prompt_embeds":{"shape":[1],"data_b64":"@@@@"}}
400 POST /v1/generate {"model":"flux","prompt_embeds":{"shape":[1,4,24],"dtype":"f32","data_b64":"AAAA"}}
400 POST /v1/generate {"model":"flux","class_labels":[1]}
400 POST /v1/generate {"model":"dit","class_labels":[1],"width":72,"height":72}
405 GET /v1/generate -
405 PUT /v1/models -
404 GET /v1/jobs/../../etc/passwd -
404 GET /v1/jobs/job-0000000000000000 -
404 GET /v1/jobs/job-%2e%2e%2f%2e%2e -
404 GET /v1/jobs/JOB-0000000000000000 -
404 DELETE /v1/jobs/job-000000000000000g -
404 GET /v1/images/job-0000000000000000/0.png -
404 GET /v1/stats/job-00000000000000000000000000 -
404 GET /v1/nothing -
422 POST /v1/images/generations {"model":"flux","prompt":"a cat"}
400 POST /v1/images/generations {"prompt":"not a class at all"}
400 POST /v1/images/generations {"prompt":"golden retriever","size":"huge"}
400 POST /v1/images/generations {"prompt":"golden retriever","stream":true}
EOF
n=0
while read -r want method path body; do
  n=$((n + 1))
  if [ "$body" = - ]; then
    got=$(curl -s -o "$tmp/resp" -w '%{http_code}' --path-as-is -X "$method" "$base$path")
  else
    got=$(curl -s -o "$tmp/resp" -w '%{http_code}' --path-as-is -X "$method" "$base$path" --data-binary "$body")
  fi
  if [ "$got" != "$want" ]; then
    bad "hostile #$n $method $path $body: got $got, want $want: $(head -c 200 "$tmp/resp")"
  elif ! python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['error']; assert set(e)=={'message','type','param','code'}" "$tmp/resp" 2>/dev/null; then
    bad "hostile #$n: error body not OpenAI-shaped: $(head -c 200 "$tmp/resp")"
  fi
done <"$tmp/cases"
# deep nesting and a body over the 1 MiB cap
python3 -c "print('{\"model\":' + '['*100000 + ']'*100000 + '}')" >"$tmp/deep.json"
got=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/v1/generate" --data-binary @"$tmp/deep.json")
[ "$got" = 400 ] || bad "deep nesting: $got"
head -c 2000000 /dev/zero | tr '\0' 'a' >"$tmp/big"
got=$(curl -s -o "$tmp/resp" -w '%{http_code}' -X POST "$base/v1/generate" --data-binary @"$tmp/big")
[ "$got" = 413 ] || bad "body over the cap: $got"
got=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Transfer-Encoding: chunked' "$base/v1/generate" --data-binary @"$tmp/big")
[ "$got" = 413 ] || bad "chunked body over the cap: $got"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" = 200 ] && ok "$((n + 3)) hostile requests answered; server still up" \
  || bad "server down after hostile requests"

# --- OpenAI endpoint, FLUX from embeddings, models, metrics ------------------------------------------------
curl -s -X POST "$base/v1/images/generations" -d '{"prompt":"golden retriever","steps":8,"seed":1,"response_format":"b64_json"}' \
  >"$tmp/oai.json"
json "d['data'][0]['b64_json']" <"$tmp/oai.json" | base64 -d >"$tmp/oai.png"
[ "$(idat "$tmp/oai.png")" = "$(idat "$tmp/cli.png")" ] \
  && ok "OpenAI images/generations (b64_json) equals the CLI" || bad "OpenAI endpoint: $(head -c 300 "$tmp/oai.json")"
[ "$(curl -s -X POST "$base/v1/images/generations" -d '{"prompt":"golden retriever","n":2,"steps":2}' | json "len(d['data'])")" = 2 ] \
  && ok "OpenAI n=2" || bad "OpenAI n=2"
url=$(curl -s -X POST "$base/v1/images/generations" -d '{"prompt":"207","steps":2,"response_format":"url"}' | json "d['data'][0]['url']")
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] && ok "OpenAI url response fetches" || bad "OpenAI url: $url"
pe=$(python3 -c "import base64,struct; print(base64.b64encode(struct.pack('<96f',*([0.1]*96))).decode())")
pp=$(python3 -c "import base64,struct; print(base64.b64encode(struct.pack('<12f',*([0.2]*12))).decode())")
code=$(curl -s -o "$tmp/flux.json" -w '%{http_code}' -X POST "$base/v1/generate" -d "{\"model\":\"flux\",\"width\":64,\"height\":64,\"steps\":2,
  \"prompt_embeds\":{\"shape\":[1,4,24],\"dtype\":\"f32\",\"data_b64\":\"$pe\"},\"pooled_prompt_embeds\":{\"shape\":[1,12],\"dtype\":\"f32\",\"data_b64\":\"$pp\"}}")
[ "$code" = 200 ] && ok "FLUX from prompt embeddings" || bad "FLUX: $code $(head -c 300 "$tmp/flux.json")"
[ "$(curl -s "$base/v1/models" | json "[m['id'] for m in d['data']]")" = "['dit', 'flux']" ] && ok "models" || bad "models"
curl -s "$base/metrics" >"$tmp/metrics"
for m in ditserve_http_requests_total ditserve_queue_depth ditserve_job_seconds_bucket ditserve_step_seconds_count \
  ditserve_cached_step_ratio ditserve_residual_diff_bucket ditserve_device_memory_bytes; do
  grep -q "^$m" "$tmp/metrics" || bad "metrics: no $m"
done
ok "metrics"

# --- auth on ------------------------------------------------------------------------------------------------
main_pid=$pid
start auth --model dit="$dit" --api-key sekrit
wait_ready "$port" || bad "auth server not ready"
a=http://127.0.0.1:$port
[ "$(curl -s -o /dev/null -w '%{http_code}' "$a/health")" = 200 ] || bad "auth: /health should be open"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$a/v1/models")" = 401 ] || bad "auth: no key should be 401"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "$a/v1/models")" = 401 ] || bad "auth: wrong key"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sekrit' "$a/v1/models")" = 200 ] || bad "auth: right key"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$a/metrics")" = 401 ] || bad "auth: metrics need the key"
ok "auth on: /health open, key required elsewhere"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models")" = 200 ] && ok "auth off: open" || bad "auth off"

# --- CUDA switches: bad values refused at start (exit 2, one line naming the flag) ----------------------------
out=$("$bin" --cuda-graphs maybe 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q "cuda-graphs must be on or off" && ok "--cuda-graphs maybe refused" \
  || bad "--cuda-graphs maybe: rc $rc: $out"
out=$(DITSERVE_ATTENTION=flash "$bin" 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q "attention must be fast or exact" && ok "DITSERVE_ATTENTION=flash refused" \
  || bad "DITSERVE_ATTENTION=flash: rc $rc: $out"

# --- SIGTERM: finish the running job, exit 0 -------------------------------------------------------------
id=$(curl -s -X POST "$base/v1/generate" -d '{"model":"dit","class_labels":[1],"steps":100,"mode":"async"}' | json "d['id']")
kill -TERM "$main_pid"
wait "$main_pid"
rc=$?
[ "$rc" = 0 ] && ok "SIGTERM: exit 0" || bad "SIGTERM exit $rc"
grep -q "job $id done" "$tmp/main.err" && ok "SIGTERM finished the running job (--on-shutdown finish)" \
  || bad "job not finished at shutdown"
kill -TERM "$pid"
wait "$pid"
exit $fail
