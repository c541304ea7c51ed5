#!/bin/sh
# image_steps.sh - the build steps of ditserve's container image, shared by the top-level Dockerfile (each
# RUN calls one step) and by deploy/docker-test.sh's chroot fallback, so that both run the same commands.
#   image_steps.sh build-deps cpu|cuda    compiler, CMake and the -dev packages (Debian 12 / Ubuntu 22.04)
#   image_steps.sh build cpu|cuda SRC     configure and build SRC, install to /opt/ditserve:
#                                         bin/ditserve and share/ditserve/demo (the demo model, found by the
#                                         binary at <exe dir>/../share/ditserve/demo)
#   image_steps.sh runtime-deps           shared libraries, curl (the HEALTHCHECK), user and group ditserve (10001)
# Environment: DS_CUDA_ARCHS (default "80;90"), DS_JOBS (default: all cores).
set -eu
step=$1
apt_install() { # quiet unless it fails
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
    >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  rm -f "$log"
  rm -rf /var/lib/apt/lists/*
}
case $step in
build-deps)
  apt_install build-essential cmake pkg-config libopenblas-dev libcjson-dev libpng-dev libmicrohttpd-dev
  ;;
build)
  variant=$2
  src=$3
  cuda=OFF
  [ "$variant" = cuda ] && cuda=ON
  cmake -S "$src" -B /tmp/ditserve-build -DCMAKE_BUILD_TYPE=Release -DDS_BUILD_TESTS=OFF -DDS_CUDA=$cuda \
    -DCMAKE_CUDA_ARCHITECTURES="${DS_CUDA_ARCHS:-80;90}" -Wno-dev >/dev/null
  cmake --build /tmp/ditserve-build -j"${DS_JOBS:-$(nproc)}" --target ditserve
  install -D -m 0755 /tmp/ditserve-build/server/ditserve /opt/ditserve/bin/ditserve
  mkdir -p /opt/ditserve/share/ditserve
  rm -rf /opt/ditserve/share/ditserve/demo
  cp -r "$src/assets/demo" /opt/ditserve/share/ditserve/demo
  chmod -R a+rX,go-w /opt/ditserve   # the server runs as another user than the one that built it
  rm -rf /tmp/ditserve-build
  /opt/ditserve/bin/ditserve --version
  ;;
runtime-deps)
  apt_install libopenblas0-pthread libcjson1 libpng16-16 libmicrohttpd12 libgomp1 curl
  getent group ditserve >/dev/null || groupadd --gid 10001 ditserve
  id ditserve >/dev/null 2>&1 ||
    useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin ditserve
  ;;
*)
  echo "image_steps.sh: unknown step '$step' (build-deps | build | runtime-deps)" >&2
  exit 2
  ;;
esac
