// The NEON qb32 kernels again, compiled for armv8.2-a+dotprod+i8mm (runtime/CMakeLists.txt): tokens in pairs through
// SMMLA (prefill), a single token through SDOT. GetQb32Kernels offers this table where the CPU reports i8mm and
// dotprod at run time.
#define MIKV_NEON_NS neon_i8mm
#define MIKV_QB32_NEON_TABLE kNeonI8mmQb32Kernels
#include "qb32-gemm-neon.cc"
