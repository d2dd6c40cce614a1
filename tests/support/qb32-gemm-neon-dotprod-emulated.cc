// The NEON qb32 kernels' SDOT path, compiled through SIMDe on x86 so the tests run it beside the baseline path
// (kernels_neon/qb32-gemm-neon.cc picks the path at compile time; the aarch64 CI build has no dotprod).
#define MIKV_NEON_EMULATE_DOTPROD 1
#include "../../kernels_neon/qb32-gemm-neon.cc"
