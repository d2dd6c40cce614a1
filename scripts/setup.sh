#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for mikv: Debian packages, a modern XNNPACK (built from Debian's
# source archive into ~/.cache/mikv-deps, see scripts/build-xnnpack.sh), then configures and builds
# mikv into ./build. Safe to run again: each step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake git xz-utils ca-certificates flatbuffers-compiler libflatbuffers-dev
          nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libsimde-dev
          libfp16-dev libfxdiv-dev libpsimd-dev python3 nodejs npm)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash scripts/build-xnnpack.sh

BUILD_TYPE=${BUILD_TYPE:-Release}
cmake -S . -B build -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build build -j "$(nproc)"
echo "setup: built ./build/tools/mikv"
