#!/usr/bin/env bash
# docker-test.sh - prove the CPU image (Dockerfile, VARIANT=cpu) on a host that reaches no image registry:
#   1. make a Debian 12 base image locally: debootstrap --variant=minbase from the Debian mirror, then
#      `docker import` (kept under $DS_DOCKER_TEST_DIR between runs);
#   2. use the running Docker engine, or start a private one (vfs storage, no iptables, host network only)
#      when none runs; the build uses BuildKit with --network host;
#   3. build the image, run it (demo model), wait for /health and for Docker's HEALTHCHECK to say healthy,
#      check the user is not root, send a generate request with a cache config and check the PNG (signature,
#      CRCs, 64x64, decodes) and the cache statistics, fetch the playground page; then run it again with
#      the tiny test checkpoint mounted as a volume (-v DIR:/models:ro --model dit=/models/dit-tiny).
# If no Docker engine can run here (no dockerd, or it cannot start or run a container) it says why and runs
# the same build steps (deploy/image_steps.sh) in debootstrap chroots instead - a build root and a runtime
# root with only the runtime packages - serves from there as user 10001 and makes the same checks.
# Needs root (debootstrap, dockerd, chroot; passwordless sudo is used otherwise) and the Debian mirror; installs
# debootstrap and docker.io from Debian when missing. Exit 0: passed; 1: failed; 77: skipped (no root, or
# neither a Docker engine nor chroot mounts are allowed here). About 3 minutes from scratch (docs/deploy.md
# records the last runs); tools/test.sh runs it (DS_NO_DOCKER_TEST=1 skips). With a Docker engine already
# running it leaves the images ditserve:cpu-test and ditserve-test/debian:bookworm there.
#   DS_DOCKER_TEST_DIR  work directory [/var/tmp/ditserve-docker-test]
#   DS_DOCKER_TEST_MODE auto | docker | chroot [auto]
#   DS_DEBIAN_MIRROR    [http://deb.debian.org/debian]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=DS_DOCKER_TEST_DIR,DS_DOCKER_TEST_MODE,DS_DEBIAN_MIRROR,DOCKER_HOST "$0" "$@"
  fi
  echo "docker-test: SKIP: needs root (debootstrap, dockerd, chroot) and sudo asks for a password"
  exit 77
fi
work=${DS_DOCKER_TEST_DIR:-/var/tmp/ditserve-docker-test}
mode=${DS_DOCKER_TEST_MODE:-auto}
mirror=${DS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=ditserve:cpu-test
base_tag=ditserve-test/debian:bookworm
mkdir -p "$work"
t_start=$SECONDS
say() { echo "docker-test: $*"; }
die() { echo "docker-test: FAIL: $*" >&2; exit 1; }
elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

cleanup_cmds=()
cleanup() {
  local i
  for ((i = ${#cleanup_cmds[@]} - 1; i >= 0; i--)); do eval "${cleanup_cmds[$i]}" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- tools ----------------------------------------------------------------------------------------------
missing=""
command -v debootstrap >/dev/null || missing="$missing debootstrap"
command -v curl >/dev/null || missing="$missing curl"
command -v python3 >/dev/null || missing="$missing python3"
if [ "$mode" != chroot ] && ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
  missing="$missing docker.io"
fi
if [ -n "$missing" ]; then
  say "installing$missing"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
    say "could not install$missing"
fi
command -v debootstrap >/dev/null || die "debootstrap is missing"

# ---- 1. the Debian base --------------------------------------------------------------------------------
base_tar=$work/debian-bookworm-minbase.tar
if [ ! -s "$base_tar" ]; then
  t=$SECONDS
  say "debootstrap bookworm (minbase) from $mirror ..."
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; die "debootstrap failed (log: $work/debootstrap.log)"; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -cf "$base_tar" .
  rm -rf "$work/rootfs"
  say "base made in $(elapsed $t) ($(du -h "$base_tar" | cut -f1))"
else
  say "reusing $base_tar"
fi

# ---- the checks, the same for both branches -------------------------------------------------------------
# check_server PORT MODEL CLASS CACHE LONG LABEL: /health, a generate request with cache config CACHE (the PNG;
# the statistics: config string LONG, some steps cached), the playground page.
# $alive is a command that fails once the server has exited (its log is then in $server_log).
check_server() {
  local port=$1 model=$2 class=$3 cache=$4 long=$5 what=$6 base=http://127.0.0.1:$1
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" = 200 ] && break
    eval "$alive" || { eval "$server_log" | tail -5; die "$what: the server exited"; }
    sleep 0.2
  done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" = 200 ] || die "$what: /health never answered 200"
  curl -s "$base/v1/generate" -d "{\"model\":\"$model\",\"class_labels\":[$class],\"steps\":20,\"seed\":1,
    \"cache_config\":\"$cache\"}" >"$work/reply.json"
  python3 - "$work/reply.json" "$work/$model.png" "$long" <<'EOF' || die "$what: generate reply"
import base64, json, struct, sys, zlib
r = json.load(open(sys.argv[1]))
assert r.get('state') == 'done', r.get('error')
png = base64.b64decode(r['images'][0]['png_b64'])
open(sys.argv[2], 'wb').write(png)
assert png[:8] == b'\x89PNG\r\n\x1a\n', 'PNG signature'
i, idat, ihdr = 8, b'', None
while i < len(png):
    n, t = struct.unpack('>I', png[i:i + 4])[0], png[i + 4:i + 8]
    body = png[i + 8:i + 8 + n]
    assert zlib.crc32(t + body) == struct.unpack('>I', png[i + 8 + n:i + 12 + n])[0], 'CRC of ' + t.decode()
    if t == b'IHDR': ihdr = struct.unpack('>IIBB', body[:10])
    if t == b'IDAT': idat += body
    i += 12 + n
w, h, depth, color = ihdr
assert (w, h, depth, color) == (64, 64, 8, 2), ihdr
assert len(zlib.decompress(idat)) == h * (1 + 3 * w), 'inflated size'
st = r['stats']
assert st['cache_config_str'] == sys.argv[3], st['cache_config_str']
assert st['num_cached_steps'] > 0 and st['speedup_estimate'] > 1, st
print('docker-test:   PNG %dx%d ok, %d of 20 steps cached, speedup_estimate %.2f, %.0f ms' %
      (w, h, st['num_cached_steps'], st['speedup_estimate'], r['timings']['total_ms']))
EOF
  curl -s -o "$work/page.html" "$base/"
  [ "$(head -c 15 "$work/page.html")" = '<!DOCTYPE html>' ] || die "$what: GET / is not the playground"
  say "$what: /health 200, generate + PNG + stats ok, playground served"
}

# The tiny test checkpoint as an operator would mount one: readable by the image's user (10001), whatever the
# checkout's file modes.
models=$work/models
rm -rf "$models"
mkdir -p "$models"
cp -r "$root/tests/data/ckpt/dit-tiny" "$models/"
chmod -R a+rX "$models"

# ---- 2. a Docker engine ----------------------------------------------------------------------------------
stop_dockerd() { # PID: stop the private engine and drop the network-namespace mount it can leave behind
  kill "$1"
  for _ in $(seq 1 60); do kill -0 "$1" 2>/dev/null || break; sleep 0.5; done
  for m in "$work"/docker/exec/netns/*; do umount "$m" 2>/dev/null || true; done
}
reason="DS_DOCKER_TEST_MODE=chroot"
docker_ok=0
if [ "$mode" != chroot ]; then
  if docker info >/dev/null 2>&1; then
    say "using the running Docker engine"
    docker_ok=1
  elif command -v dockerd >/dev/null; then
    say "no Docker engine runs: starting a private dockerd (vfs, no iptables, host network)"
    mkdir -p "$work/docker"
    dockerd --data-root "$work/docker/root" --exec-root "$work/docker/exec" --pidfile "$work/docker/dockerd.pid" \
      -H "unix://$work/docker/docker.sock" --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
      >"$work/docker/dockerd.log" 2>&1 &
    dpid=$!
    cleanup_cmds+=("stop_dockerd $dpid")
    export DOCKER_HOST=unix://$work/docker/docker.sock
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      kill -0 $dpid 2>/dev/null || break
      sleep 0.5
    done
    if docker info >/dev/null 2>&1; then docker_ok=1
    else reason="dockerd did not start: $(tail -3 "$work/docker/dockerd.log" | tr '\n' ' ')"; fi
  else
    reason="no Docker engine is running and dockerd is not installed"
  fi
fi
if [ $docker_ok = 1 ]; then
  docker image inspect "$base_tag" >/dev/null 2>&1 || docker import "$base_tar" "$base_tag" >/dev/null
  if ! out=$(docker run --rm --network host "$base_tag" /bin/sh -c 'echo ok' 2>&1) || [ "$out" != ok ]; then
    docker_ok=0
    reason="the Docker engine cannot run a container here: $(echo "$out" | tail -2 | tr '\n' ' ')"
  fi
fi
[ "$mode" = docker ] && [ $docker_ok = 0 ] && die "$reason"

# ---- 3a. Docker: build, run, check -----------------------------------------------------------------------
if [ $docker_ok = 1 ]; then
  say "branch: docker ($(docker version --format 'engine {{.Server.Version}}' 2>/dev/null))"
  # BuildKit picks the stage by VARIANT: docker buildx when installed, else a CLI older than 23 with
  # DOCKER_BUILDKIT=1 (Debian's docker.io ships one as /usr/bin/docker)
  build=()
  if docker buildx version >/dev/null 2>&1; then
    build=(docker buildx build --load)
  else
    for cli in $(which -a docker) /usr/bin/docker; do
      v=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
      if [ -n "$v" ] && [ "$v" -lt 23 ] 2>/dev/null; then build=(env DOCKER_BUILDKIT=1 "$cli" build); break; fi
    done
  fi
  [ ${#build[@]} -gt 0 ] || die "no BuildKit builder: install docker-buildx (or Debian's docker.io CLI)"
  t=$SECONDS
  "${build[@]}" --network host --build-arg VARIANT=cpu --build-arg CPU_BUILD_BASE=$base_tag \
    --build-arg CPU_RUNTIME_BASE=$base_tag -t $image "$root" >"$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log"; die "docker build failed (log: $work/build.log)"; }
  say "image built in $(elapsed $t): $(docker image inspect $image --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
  docker run --rm $image --version | head -1 | sed 's/^/docker-test:   /'
  [ "$(docker image inspect $image --format '{{.Config.User}}')" = 10001:10001 ] || die "image user is not 10001"
  port=$(free_port)
  t=$SECONDS
  cid=$(docker run -d --network host -e DITSERVE_PORT="$port" $image)
  cleanup_cmds+=("docker rm -f $cid")
  alive='[ "$(docker inspect --format "{{.State.Running}}" "$cid")" = true ]'
  server_log='docker logs "$cid" 2>&1'
  check_server "$port" demo 7 F1B0_W4MC3_R0.12 DBCache_F1B0_W4I1M0MC3_R0.12_T0O0 "container (demo model)"
  [ "$(docker exec "$cid" id -u)" = 10001 ] || die "the server runs as root in the container"
  for _ in $(seq 1 60); do
    hs=$(docker inspect --format '{{.State.Health.Status}}' "$cid")
    [ "$hs" = healthy ] && break
    sleep 1
  done
  [ "$hs" = healthy ] || die "HEALTHCHECK: $hs"
  say "HEALTHCHECK: healthy after $(elapsed $t)"
  docker rm -f "$cid" >/dev/null
  port=$(free_port)
  cid=$(docker run -d --network host -e DITSERVE_PORT="$port" -v "$models:/models:ro" $image --model dit=/models/dit-tiny)
  cleanup_cmds+=("docker rm -f $cid")
  check_server "$port" dit 207 F1B0_W2MC2_R0.9 DBCache_F1B0_W2I1M0MC2_R0.9_T0O0 \
    "container (-v /models, --model dit=/models/dit-tiny)"
  say "PASS (docker branch) in $(elapsed $t_start)"
  exit 0
fi

# ---- 3b. no engine: the same steps in chroots ------------------------------------------------------------
say "no Docker engine can run here ($reason)"
say "branch: chroot - running deploy/image_steps.sh in debootstrap chroots instead"
mounts=()
unmount_all() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
cleanup_cmds+=("unmount_all")
# new_root DIR: a fresh copy of the base with /proc, /dev and the host's resolv.conf. Exits 77 (skipped) when
# this host does not allow the mounts (an unprivileged container): neither branch can prove the image here.
new_root() {
  rm -rf "$1"
  mkdir -p "$1"
  tar -C "$1" -xf "$base_tar"
  cp /etc/resolv.conf "$1/etc/resolv.conf"
  if ! mount -t proc proc "$1/proc"; then
    echo "docker-test: SKIP: no Docker engine ($reason) and no privilege to mount /proc in a chroot"
    exit 77
  fi
  mounts+=("$1/proc")
  mount --bind /dev "$1/dev" && mounts+=("$1/dev")
}
t=$SECONDS
new_root "$work/build-root"
mkdir -p "$work/build-root/src"
# the build context: what .dockerignore lets through
(cd "$root" && tar -cf - --exclude=__pycache__ $(sed -n 's/^!//p' .dockerignore)) | tar -C "$work/build-root/src" -xf -
chroot "$work/build-root" /bin/sh /src/deploy/image_steps.sh build-deps cpu
chroot "$work/build-root" /bin/sh /src/deploy/image_steps.sh build cpu /src >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log"; die "build failed (log: $work/build.log)"; }
say "build root done in $(elapsed $t)"
t=$SECONDS
new_root "$work/run-root"
cp "$root/deploy/image_steps.sh" "$work/run-root/usr/local/bin/image_steps.sh"
chroot "$work/run-root" /bin/sh /usr/local/bin/image_steps.sh runtime-deps
rm "$work/run-root/usr/local/bin/image_steps.sh"
cp -a "$work/build-root/opt/ditserve" "$work/run-root/opt/ditserve"
say "runtime root done in $(elapsed $t) ($(du -shx "$work/run-root" | cut -f1))"
chroot "$work/run-root" /opt/ditserve/bin/ditserve --version | head -1 | sed 's/^/docker-test:   /'
# run_chroot PORT ARGS...: the image's ENTRYPOINT and ENV, as user 10001
run_chroot() {
  local port=$1
  shift
  chroot --userspec=10001:10001 "$work/run-root" /usr/bin/env -i PATH=/opt/ditserve/bin:/usr/bin:/bin \
    DITSERVE_HOST=127.0.0.1 DITSERVE_PORT="$port" OMP_WAIT_POLICY=passive ditserve "$@" >"$work/server.log" 2>&1 &
  spid=$!
  cleanup_cmds+=("kill $spid")
  alive='kill -0 $spid 2>/dev/null'
  server_log='cat "$work/server.log"'
}
port=$(free_port)
run_chroot "$port"
check_server "$port" demo 7 F1B0_W4MC3_R0.12 DBCache_F1B0_W4I1M0MC3_R0.12_T0O0 "chroot (demo model)"
[ "$(ps -o uid= -p $spid | tr -d ' ')" = 10001 ] || die "the server does not run as 10001"
chroot "$work/run-root" /bin/sh -c "curl -fsS -o /dev/null http://127.0.0.1:$port/health" || die "HEALTHCHECK command"
say "HEALTHCHECK command passes in the runtime root"
kill $spid
wait $spid 2>/dev/null || true
mkdir -p "$work/run-root/models"
mount --bind "$models" "$work/run-root/models" && mounts+=("$work/run-root/models")
mount -o remount,bind,ro "$work/run-root/models"
port=$(free_port)
run_chroot "$port" --model dit=/models/dit-tiny
check_server "$port" dit 207 F1B0_W2MC2_R0.9 DBCache_F1B0_W2I1M0MC2_R0.9_T0O0 \
  "chroot (/models mounted, --model dit=/models/dit-tiny)"
say "PASS (chroot branch) in $(elapsed $t_start)"
