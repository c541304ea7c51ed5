#!/usr/bin/env bash
# playground_test.sh DITSERVE DATA_DIR [OUT_DIR] - the web playground (GET /) in headless Chromium against the
# real server on 127.0.0.1 with the tiny DiT and FLUX checkpoints. Chromium is driven by cdp_pipe.py (the
# DevTools protocol over --remote-debugging-pipe, standard library only). Checks:
#   GET / and HEAD / answer the page (text/html, CSP, no key needed);
#   DiT with a cache config and the uncached comparison: the page reaches "done", shows the same PNG pixels
#     as POST /v1/generate for the same request, plots one point per step with exactly the API's cached steps
#     filled and the threshold line, and its stats table shows the API's cache config, cached-step count,
#     speedup estimate, a measured speedup and a PSNR; a screenshot goes to OUT_DIR/playground.png
#     (OUT_DIR: $DS_CI_OUT, else the third argument, else the current directory);
#   the same cache config as separate fields (a JSON object): the same config string, cached steps and pixels;
#   FLUX from a safetensors embeddings file (F32 and BF16 tensors, given in the URL fragment): the same pixels
#     as the API's for the same f32 embeddings;
#   a server with --api-key: without the key the page says 401 and how to fix it; with it the run completes.
# Exits 77 (skipped) when Chromium is not installed (tools/setup.sh installs Debian's `chromium`).
set -u
bin=$1
data=$2
out=${DS_CI_OUT:-${3:-.}}
here=$(cd "$(dirname "$0")" && pwd)
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [ -z "$chromium" ] || [ ! -x "$chromium" ]; then
  echo "SKIP: chromium not installed${chromium:+ ($chromium is not executable)} (tools/setup.sh installs Debian's" \
       "chromium package; or set CHROMIUM=path)"
  exit 77
fi
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

. "$here/../e2e/server_lib.sh"

start() { # start NAME ARGS...: sets $port and $pid
  local name=$1
  shift
  ds_server_start "$bin" "$tmp/$name" "$@" || { echo "(server $name)"; exit 1; }
  pids+=("$pid")
  ds_server_wait_ready "$port" 900 || { echo "server $name never became ready"; cat "$tmp/$name.err"; exit 1; }
}

# browse NAME URL [SCREENSHOT]: load URL until the page's state is done or error; DOM to $tmp/NAME.html
browse() {
  local t0=$SECONDS shot=()
  [ -n "${3:-}" ] && shot=(--screenshot "$3")
  state=$(python3 "$here/cdp_pipe.py" --chromium "$chromium" --url "$2" --until 'document.body.dataset.state' \
    --want done,error --timeout 120 --dom "$tmp/$1.html" --log "$tmp/$1.chromium.log" "${shot[@]}")
  echo "     ($1: state '$state' after $((SECONDS - t0)) s)"
  [ -s "$tmp/$1.html" ] || echo "     (no DOM written; Chromium's log: $(tail -3 "$tmp/$1.chromium.log"))"
}

start main --model dit="$data/ckpt/dit-tiny" --model flux="$data/ckpt/flux-tiny" --default-cache flux=none
base=http://127.0.0.1:$port

# --- the route ------------------------------------------------------------------------------------------
curl -s -D "$tmp/h" -o "$tmp/page.html" "$base/"
grep -qi '^content-type: text/html; charset=utf-8' "$tmp/h" && grep -qi "^content-security-policy: default-src 'none'" "$tmp/h" \
  && head -c 15 "$tmp/page.html" | grep -q '<!DOCTYPE html>' && ok "GET / serves the page" || bad "GET /: $(head -1 "$tmp/h")"
len=$(curl -s -I "$base/" | tr -d '\r' | sed -n 's/^[Cc]ontent-[Ll]ength: //p')
[ "$len" = "$(wc -c <"$tmp/page.html")" ] && [ "$(curl -s -I -o /dev/null -w '%{size_download}' "$base/")" = 0 ] \
  && ok "HEAD / (length $len, no body)" || bad "HEAD /: length '$len'"

# --- DiT: cached run + uncached comparison, against the API's answer for the same request -------------------
cc=F1B0_W2MC2_T0O1_R0.9
browse dit "$base/?autorun=1&model=dit&class=207&steps=12&seed=4&cache=$cc&compare=1" "$out/playground.png"
[ "$state" = done ] || bad "DiT run ended '$state': $(grep -o '<div id="msg"[^<]*' "$tmp/dit.html")"
curl -s "$base/v1/generate" -d "{\"model\":\"dit\",\"class_labels\":[207],\"steps\":12,\"seed\":4,\"cache_config\":\"$cc\"}" \
  >"$tmp/api.json"
python3 - "$tmp/dit.html" "$tmp/api.json" <<'EOF' && ok "DiT: image, plot and stats equal the API's" || bad "DiT page content"
import base64, json, re, sys, zlib
dom = open(sys.argv[1], encoding='utf-8').read()
api = json.load(open(sys.argv[2]))
st = api['stats']

def idat(png):
    assert png[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    i, out = 8, b''
    while i < len(png):
        n = int.from_bytes(png[i:i + 4], 'big')
        if png[i + 4:i + 8] == b'IDAT':
            out += png[i + 8:i + 8 + n]
        i += 12 + n
    return zlib.decompress(out)

def img(id_):
    m = re.search(r'<img id="%s"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"' % id_, dom)
    assert m, 'no %s image' % id_
    return base64.b64decode(m.group(1))

assert idat(img('image')) == idat(base64.b64decode(api['images'][0]['png_b64'])), 'page image differs from the API image'
idat(img('ref-image'))  # the uncached reference decodes
svg = re.search(r'<figure id="plot"><svg[^>]*data-points="(\d+)" data-cached="(\d+)"', dom)
assert svg and int(svg.group(1)) == 12, 'plot points: %s' % (svg and svg.group(1))
assert int(svg.group(2)) == st['num_cached_steps'] > 0, (svg.group(2), st['num_cached_steps'])
plotted = sorted(int(s) - 1 for s in re.findall(r'<circle class="pt cached"[^>]*data-step="(\d+)"', dom))
assert plotted == sorted(st['cached_steps']), (plotted, st['cached_steps'])
assert len(re.findall(r'<circle class="pt', dom)) == 12
thr = re.search(r'<line class="thr"[^>]*data-threshold="([0-9.]+)"', dom)
assert thr and float(thr.group(1)) == 0.9, 'threshold line'

def cell(key):
    m = re.search(r'<tr data-key="%s"><th>[^<]*</th><td>([^<]*)</td>' % key, dom)
    assert m, 'no stats row ' + key
    return m.group(1)

assert cell('cache_config_str') == st['cache_config_str'] == 'DBCache_F1B0_W2I1M0MC2_R0.9_T0O0', cell('cache_config_str')
assert cell('num_cached_steps').startswith('%d of 12' % st['num_cached_steps']), cell('num_cached_steps')
assert cell('speedup_estimate') == '%.2fx' % st['speedup_estimate'], (cell('speedup_estimate'), st['speedup_estimate'])
assert cell('blocks').startswith('%d computed, %d skipped' % (st['blocks']['computed'], st['blocks']['skipped']))
assert float(cell('measured_speedup').rstrip('x')) > 0
assert re.fullmatch(r'[0-9.]+ dB|identical', cell('psnr')), cell('psnr')
assert re.search(r'<progress id="progress" value="12" max="12"', dom), 'progress bar'
assert 'uncached reference: step 12 / 12 computed' in dom, 'live progress of the reference run'
assert 'speedup estimate %.2fx' % st['speedup_estimate'] in dom
EOF
python3 - "$out/playground.png" <<'EOF' && ok "screenshot $out/playground.png" || bad "screenshot"
import sys
b = open(sys.argv[1], 'rb').read()
assert b[:8] == b'\x89PNG\r\n\x1a\n' and int.from_bytes(b[16:20], 'big') == 1280, 'not a 1280-wide PNG'
EOF

# --- the same cache config given field by field (sent as a JSON object) -------------------------------------
browse fields "$base/?autorun=1&model=dit&class=207&steps=12&seed=4&cache=$cc&cmode=fields&compare=0"
python3 - "$tmp/fields.html" "$tmp/api.json" <<'EOF' && ok "cache as fields: the API's config string, cached steps, pixels" \
  || bad "cache as fields ($state)"
import base64, json, re, sys
dom = open(sys.argv[1], encoding='utf-8').read()
api = json.load(open(sys.argv[2]))
st = api['stats']
cell = lambda k: re.search(r'<tr data-key="%s"><th>[^<]*</th><td>([^<]*)</td>' % k, dom).group(1)
assert 'data-state="done"' in dom
assert cell('cache_config_str') == st['cache_config_str'], cell('cache_config_str')
assert cell('num_cached_steps').startswith('%d of 12' % st['num_cached_steps'])
a = base64.b64decode(re.search(r'<img id="image"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom).group(1))
b = base64.b64decode(api['images'][0]['png_b64'])
assert a[a.index(b'IDAT') - 4:] == b[b.index(b'IDAT') - 4:], 'pixels differ'
EOF

# --- FLUX from an embeddings file -------------------------------------------------------------------------
python3 - "$tmp" <<'EOF'
import base64, json, struct, sys
tmp = sys.argv[1]
pe = [((i * 37) % 17 - 8) / 16.0 for i in range(96)]        # [1, 4, 24] f32
pooled = [((i * 11) % 7 - 3) / 4.0 for i in range(12)]       # [1, 12] bf16 (exact in bf16)
pe_b = struct.pack('<96f', *pe)
pooled_b = b''.join(struct.pack('<I', struct.unpack('<I', struct.pack('<f', v))[0])[2:] for v in pooled)
hdr = {'prompt_embeds': {'dtype': 'F32', 'shape': [1, 4, 24], 'data_offsets': [0, len(pe_b)]},
       'pooled_prompt_embeds': {'dtype': 'BF16', 'shape': [1, 12], 'data_offsets': [len(pe_b), len(pe_b) + len(pooled_b)]}}
h = json.dumps(hdr).encode()
h += b' ' * (-len(h) % 8)
st = struct.pack('<Q', len(h)) + h + pe_b + pooled_b
open(tmp + '/embeds.b64', 'w').write(base64.b64encode(st).decode())
t = lambda shape, vals: {'shape': shape, 'dtype': 'f32', 'data_b64': base64.b64encode(struct.pack('<%df' % len(vals), *vals)).decode()}
req = {'model': 'flux', 'width': 64, 'height': 64, 'steps': 3, 'seed': 5, 'cache_config': 'none',
       'prompt_embeds': t([1, 4, 24], pe), 'pooled_prompt_embeds': t([1, 12], pooled)}
open(tmp + '/flux_req.json', 'w').write(json.dumps(req))
EOF
emb=$(python3 -c "import urllib.parse,sys; print(urllib.parse.quote(open(sys.argv[1]).read(), safe=''))" "$tmp/embeds.b64")
browse flux "$base/?autorun=1&model=flux&width=64&height=64&steps=3&seed=5&cache=none&compare=0#embeds=$emb"
[ "$state" = done ] || bad "FLUX run ended '$state': $(grep -o '<div id="msg"[^<]*' "$tmp/flux.html")"
curl -s "$base/v1/generate" --data-binary @"$tmp/flux_req.json" >"$tmp/flux_api.json"
python3 - "$tmp/flux.html" "$tmp/flux_api.json" <<'EOF' && ok "FLUX from an embeddings file: the API's pixels" || bad "FLUX page image"
import base64, json, re, sys
dom = open(sys.argv[1], encoding='utf-8').read()
api = json.load(open(sys.argv[2]))
m = re.search(r'<img id="image"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
assert m, 'no image'
a, b = base64.b64decode(m.group(1)), base64.b64decode(api['images'][0]['png_b64'])
assert a[:8] == b'\x89PNG\r\n\x1a\n' and a[a.index(b'IHDR'):a.index(b'IHDR') + 12] == b[b.index(b'IHDR'):b.index(b'IHDR') + 12]
assert a[a.index(b'IDAT') - 4:] == b[b.index(b'IDAT') - 4:], 'pixels differ'  # IDAT..IEND (tEXt aside)
EOF

# --- API key ------------------------------------------------------------------------------------------------
start keyed --model dit="$data/ckpt/dit-tiny" --api-key sekrit
kbase=http://127.0.0.1:$port
[ "$(curl -s -o /dev/null -w '%{http_code}' "$kbase/")" = 200 ] && ok "GET / needs no key" || bad "GET / with --api-key"
browse nokey "$kbase/?autorun=1&model=dit&class=1&steps=2&compare=0"
msg=$(grep -o '<div id="msg"[^<]*' "$tmp/nokey.html")
[ "$state" = error ] && echo "$msg" | grep -q '401 Unauthorized: this server runs with --api-key; type the key' \
  && ok "no key: the page says 401 and what to do" || bad "no key: state '$state', $msg"
browse key "$kbase/?autorun=1&model=dit&class=1&steps=2&compare=0#key=sekrit"
[ "$state" = done ] && ok "with the key (URL fragment): done" || bad "with the key: '$state' $(grep -o '<div id="msg"[^<]*' "$tmp/key.html")"
exit $fail
