#!/usr/bin/env bash
# The threaded tests under ThreadSanitizer: sessions that share one model across threads (Concurrency.*) and every
# test whose sessions split work over a thread pool. pthreadpool is rebuilt here from the same cached Debian source
# with TSan and plain pthread condition variables, so TSan sees every hand-off between the pool's threads (its
# default futex code would be invisible to it and look like races). XNNPACK's own kernels stay uninstrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE_ROOT=${MIKV_DEPS_CACHE:-$HOME/.cache/mikv-deps}
XNN=${MIKV_XNNPACK_PREFIX:-$CACHE_ROOT/xnnpack-4ea82e5}
B=build-tsan
FLAGS="-fsanitize=thread -fno-omit-frame-pointer -g -O1"

deps=$PWD/$B/deps
if [[ ! -f $deps/.complete ]]; then
  rm -rf "$deps" && mkdir -p "$deps/src/pthreadpool" "$deps/src/fxdiv" "$deps/lib" "$deps/include"
  tar -xf "$(ls "$CACHE_ROOT"/src/pthreadpool_*.orig.tar.* | head -n1)" -C "$deps/src/pthreadpool" --strip-components=1
  tar -xf "$(ls "$CACHE_ROOT"/src/fxdiv_*.orig.tar.* | head -n1)" -C "$deps/src/fxdiv" --strip-components=1
  cmake -S "$deps/src/pthreadpool" -B "$deps/b-pthreadpool" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="$FLAGS" -DPTHREADPOOL_LIBRARY_TYPE=static -DPTHREADPOOL_SYNC_PRIMITIVE=condvar \
    -DPTHREADPOOL_BUILD_TESTS=OFF -DPTHREADPOOL_BUILD_BENCHMARKS=OFF -DFXDIV_SOURCE_DIR="$deps/src/fxdiv" >/dev/null
  cmake --build "$deps/b-pthreadpool" -j "$(nproc)" >/dev/null
  cp "$XNN"/include/*.h "$deps/include/"
  cp "$XNN/lib/libXNNPACK.a" "$XNN/lib/libmicrokernels-prod.a" "$XNN/lib/libcpuinfo.a" "$deps/lib/"
  find "$deps/b-pthreadpool" -name libpthreadpool.a -exec cp {} "$deps/lib/" \;
  [[ -f $deps/lib/libpthreadpool.a ]] || { echo "tsan: pthreadpool did not build" >&2; exit 1; }
  touch "$deps/.complete"
fi

cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMIKV_BUILD_TESTS=ON -DMIKV_BUILD_TOOLS=ON -DMIKV_BUILD_JAVA=OFF \
  -DMIKV_XNNPACK_PREFIX="$deps" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build $B -j "$(nproc)" --target mikv_cli mikv_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir $B --output-on-failure -j "$(nproc)" \
  -R "^(Concurrency|Stories260K|PolicySessions|DefaultModel.Greedy|FuzzRegressions)" \
  -E "BudgetPlanMatchesMeasuredPeakRss|InstalledPackage" "$@"
