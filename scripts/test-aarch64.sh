#!/usr/bin/env bash
# The AArch64 build of the library, tools and tests (NEON kernels native), cross-compiled with Debian's
# g++-aarch64-linux-gnu and run under qemu-aarch64: what proves the Android/ARM path on an x86 machine.
# XNNPACK is cross-built once into ~/.cache/mikv-deps/xnnpack-4ea82e5-aarch64.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLCHAIN=$PWD/cmake/toolchain-aarch64-linux-gnu.cmake
PREFIX=${MIKV_AARCH64_DEPS_PREFIX:-$HOME/.cache/mikv-deps/xnnpack-4ea82e5-aarch64}
MIKV_DEPS_PREFIX=$PREFIX MIKV_XNNPACK_TOOLCHAIN=$TOOLCHAIN bash scripts/build-xnnpack.sh
cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DCMAKE_BUILD_TYPE=Release \
  -DMIKV_XNNPACK_PREFIX="$PREFIX" >/dev/null
cmake --build build-aarch64 -j "$(nproc)" --target mikv_cli mikv_tests
file build-aarch64/tests/mikv_tests | grep -q "ARM aarch64" || { echo "not an aarch64 binary" >&2; exit 1; }
# The suite under the emulator; tests that read the big default model run natively only (qemu is ~10x slower).
ctest --test-dir build-aarch64 --output-on-failure -j "$(nproc)" -E "DefaultModel" "$@"
