#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for mikv: Debian packages, a modern XNNPACK (built from Debian's
# source archive into ~/.cache/mikv-deps, see scripts/build-xnnpack.sh), then configures and builds
# mikv into ./build. Safe to run again: each step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake git xz-utils pkg-config ca-certificates flatbuffers-compiler libflatbuffers-dev
          nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libsimde-dev
          libfp16-dev libfxdiv-dev libpsimd-dev python3
          default-jdk-headless g++-aarch64-linux-gnu qemu-user file clang libclang-rt-14-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the llama.cpp oracle in the tests; a machine that already has node and npm (from any
# source) keeps them, since Debian's npm package conflicts with other Node.js installs.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash scripts/build-xnnpack.sh

# llama.cpp as the tests' oracle: node-llama-cpp's prebuilt CPU build, from the npm registry.
LLAMACPP_DIR=${MIKV_LLAMACPP_DIR:-$HOME/.cache/mikv-deps/llamacpp}
if [[ ! -d "$LLAMACPP_DIR/node_modules/@node-llama-cpp/linux-x64" ]]; then
  echo "setup: installing node-llama-cpp 3.21.1 into $LLAMACPP_DIR"
  mkdir -p "$LLAMACPP_DIR"
  (cd "$LLAMACPP_DIR" && { [[ -f package.json ]] || echo '{"name":"mikv-llamacpp-oracle","private":true}' > package.json; } &&
   npm i -E --omit=optional --no-audit --no-fund node-llama-cpp@3.21.1 @node-llama-cpp/linux-x64@3.21.1 >/dev/null)
fi
# A second opinion from llama.cpp itself: the same package with only its portable x86-64 CPU build left, so it
# cannot pick the SIMD build for this CPU. The top-1 tests measure how well llama.cpp agrees with itself.
LLAMACPP_BINS=node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
if [[ ! -f "$LLAMACPP_DIR-x64/$LLAMACPP_BINS/libggml-cpu-x64.so" ]]; then
  rm -rf "$LLAMACPP_DIR-x64"
  cp -r "$LLAMACPP_DIR" "$LLAMACPP_DIR-x64"
  find "$LLAMACPP_DIR-x64/$LLAMACPP_BINS" -name 'libggml-cpu-*.so' ! -name 'libggml-cpu-x64.so' -delete
fi

BUILD_TYPE=${BUILD_TYPE:-Release}
cmake -S . -B build -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build build -j "$(nproc)"
echo "setup: built ./build/tools/mikv"
bash scripts/convert-default-model.sh
