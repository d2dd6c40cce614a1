// The NEON qb32 kernels' SDOT path, compiled through SIMDe on x86 so the tests run it beside the baseline path
// (kernels_neon/qb32-gemm-neon.cc takes it where compiled with dotprod: qb32-gemm-neondot.cc on AArch64).
#define MIKV_NEON_EMULATE_DOTPROD 1
#define MIKV_NEON_NS neon_dot
#include "../../kernels_neon/qb32-gemm-neon.cc"
