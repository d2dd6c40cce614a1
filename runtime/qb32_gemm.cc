#include "qb32_gemm.h"

#include "kv_kernels.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace mikv {

#if defined(MIKV_HAVE_AVX_KERNELS)
extern const Qb32Kernels kAvx2Qb32Kernels;
extern const Qb32Kernels kAvx512VnniQb32Kernels;
#endif
#if defined(MIKV_HAVE_NEON_KERNELS)
extern const Qb32Kernels kNeonQb32Kernels;
extern const Qb32Kernels kNeonDotQb32Kernels;
#endif

const Qb32Kernels* GetQb32Kernels(const char* isa) {
  if (std::strcmp(isa, "scalar") == 0) return &kScalarQb32Kernels;
#if defined(MIKV_HAVE_AVX_KERNELS)
  // The KV kernels' dispatch decides what this CPU runs (AVX2 + FMA + F16C), for both families of kernels.
  if (std::strcmp(isa, "avx2") == 0) return GetKvKernels(KvIsa::Avx2) ? &kAvx2Qb32Kernels : nullptr;
  if (std::strcmp(isa, "avx512vnni") == 0) return GetKvKernels(KvIsa::Avx512Vnni) ? &kAvx512VnniQb32Kernels : nullptr;
#endif
#if defined(MIKV_HAVE_NEON_KERNELS)
  if (std::strcmp(isa, "neon") == 0) return &kNeonQb32Kernels;  // NEON is part of every AArch64 core
  // The dotprod build where the KV kernels' dispatch finds dotprod on this CPU.
  if (std::strcmp(isa, "neon-dotprod") == 0) return GetKvKernels(KvIsa::NeonDotprod) ? &kNeonDotQb32Kernels : nullptr;
#endif
  return nullptr;
}

namespace {
const Qb32Kernels* g_override = nullptr;
}

void OverrideQb32KernelsForTesting(const Qb32Kernels* kernels) { g_override = kernels; }

const Qb32Kernels& ActiveQb32Kernels() {
  if (g_override) return *g_override;
  static const Qb32Kernels* active = [] {
    if (const char* forced = std::getenv("MIKV_QB32_ISA"))
      if (const Qb32Kernels* k = GetQb32Kernels(forced)) return k;
    for (const char* isa : {"avx512vnni", "avx2", "neon-dotprod", "neon"})
      if (const Qb32Kernels* k = GetQb32Kernels(isa)) return k;
    return &kScalarQb32Kernels;
  }();
  return *active;
}

}  // namespace mikv
