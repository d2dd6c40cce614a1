// The NEON KV kernels' dotprod table (kernels_neon/kv-neondot.cc), compiled through SIMDe on x86 with SDOT emulated, so
// the tests run its integer scores beside the baseline table's (the aarch64 CI build runs both natively under qemu).
#define MIKV_NEON_EMULATE_DOTPROD 1
#define MIKV_NEON_KV_TABLE kNeonDotKvKernelsEmulated
#include "../../kernels_neon/kv-neondot.cc"
