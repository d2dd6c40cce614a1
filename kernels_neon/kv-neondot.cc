// The NEON KV table again, compiled for armv8.2-a+dotprod (runtime/CMakeLists.txt): the integer scores take SDOT
// (qu4-qu2-kv-neon.cc's DotAccumulate), the rest is the baseline table's source. On AArch64 GetKvKernels offers it
// when the CPU reports dotprod at run time (HWCAP_ASIMDDP), so one binary runs on baseline cores and uses SDOT where
// it exists; tests/support compiles it through SIMDe with the SDOT path emulated.
#ifndef MIKV_NEON_KV_TABLE
#define MIKV_NEON_KV_TABLE kNeonDotKvKernels
#endif
#define MIKV_NEON_KV_TABLE_NAME "neon-dotprod"
#define MIKV_NEON_NS neon_dot

#include "kv-neon.cc"
#include "qu4-qu2-kv-neon.cc"
#include "kv-encode-neon.cc"
#include "f32-softmax-neon.cc"
