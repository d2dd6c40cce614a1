#!/usr/bin/env bash
# The threaded tests under ThreadSanitizer: sessions that share one model across threads (Concurrency.*), every
# test whose sessions split work over a thread pool, the cache's writes made per kv head from several threads
# (MixedKvCache.WritesPerKvHead*), the lockstep decode (LockstepDecode.*: every thread runs the layers, LockstepBarrier
# between; CApiThreads.*: its shares set through the C API between steps; ThreadRoster.*: steps on fewer threads)
# and the pool itself (ThreadPool.*, rosters of fewer threads among them).
# The pool is mikv's own (runtime/thread_pool.cc, also behind the pthreadpool API that XNNPACK calls), built here
# with TSan like the rest of libmikv, so TSan sees every hand-off between its threads (std::atomic acquire/release;
# the futex calls only put idle workers to sleep). XNNPACK's own kernels stay uninstrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE_ROOT=${MIKV_DEPS_CACHE:-$HOME/.cache/mikv-deps}
XNN=${MIKV_XNNPACK_PREFIX:-$CACHE_ROOT/xnnpack-4ea82e5}
B=build-tsan
FLAGS="-fsanitize=thread -fno-omit-frame-pointer -g -O1"

cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMIKV_BUILD_TESTS=ON -DMIKV_BUILD_TOOLS=ON -DMIKV_BUILD_JAVA=OFF \
  -DMIKV_XNNPACK_PREFIX="$XNN" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build $B -j "$(nproc)" --target mikv_cli mikv_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir $B --output-on-failure -j "$(nproc)" \
  -R "^(ThreadPool|Concurrency|Stories260K|PolicySessions|DefaultModel.Greedy|FuzzRegressions|MixedKvCache.WritesPerKvHead|LockstepDecode|CApiThreads|ThreadRoster)" \
  -E "BudgetPlanMatchesMeasuredPeakRss|InstalledPackage" "$@"
