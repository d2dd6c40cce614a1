// The NEON qb32 kernels again, compiled for armv8.2-a+dotprod (runtime/CMakeLists.txt): one SDOT per four rows'
// dword of products. GetQb32Kernels offers this table where the KV kernels' dispatch finds dotprod at run time.
#define MIKV_NEON_NS neon_dot
#define MIKV_QB32_NEON_TABLE kNeonDotQb32Kernels
#include "qb32-gemm-neon.cc"
