#!/usr/bin/env bash
# The test suite built with AddressSanitizer + UndefinedBehaviorSanitizer (no recovery: the first report fails
# the run). XNNPACK itself is not instrumented; everything mikv writes is.
set -euo pipefail
cd "$(dirname "$0")/.."
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMIKV_BUILD_TESTS=ON -DMIKV_BUILD_TOOLS=ON -DMIKV_BUILD_JAVA=OFF -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan -j "$(nproc)" --target mikv_cli mikv_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$(nproc)" \
  -E "BudgetPlanMatchesMeasuredPeakRss|BudgetProposalFitsTheMemory|InstalledPackage|BenchVsLlamaCpp|_NOT_BUILT" "$@"
# Every test of mikv_tests, less: the RSS measurements and the budget proposal checked against them (ASan's shadow memory is not the runtime's; measured
# natively) and the installed-package build (a plain C program cannot link an instrumented libmikv.a). Not built
# here: mikv_alloc_tests, which replaces malloc itself, and the llama.cpp comparison, the same code as the suite on
# larger models, and the side-by-side speed script's smoke test (its generator is not built here; a speed script
# under ASan measures nothing).
