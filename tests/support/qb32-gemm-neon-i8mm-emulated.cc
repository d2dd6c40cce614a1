// The NEON qb32 kernels' SMMLA path (tokens in pairs), compiled through SIMDe on x86 with SDOT emulated and SMMLA
// defined by its definition (kernels_neon/qb32-gemm-neon.cc), so the tests run it beside the SDOT and baseline paths
// (qb32-gemm-neoni8mm.cc on AArch64, where the aarch64 CI runs it natively under qemu).
#define MIKV_NEON_EMULATE_DOTPROD 1
#define MIKV_NEON_EMULATE_I8MM 1
#define MIKV_NEON_NS neon_i8mm
#include "../../kernels_neon/qb32-gemm-neon.cc"
