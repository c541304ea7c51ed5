#!/usr/bin/env bash
# setup.sh - install the Debian packages ditserve's build and tests need. Idempotent and quiet:
# packages already installed are skipped, and apt only runs when something is missing.
# Uses sudo when not root. Set DS_SETUP_EXTRA="pkg ..." to add packages (e.g. clang for fuzzing).
set -euo pipefail
pkgs="build-essential cmake pkg-config libopenblas-dev libcjson-dev libpng-dev libmicrohttpd-dev libcriterion-dev"
pkgs="$pkgs clang libclang-rt-dev curl python3 ${DS_SETUP_EXTRA:-}"
# tests/browser (headless Chromium) and tests/deploy (YAML manifests)
pkgs="$pkgs chromium python3-yaml"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
