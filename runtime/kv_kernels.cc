#include "kv_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#if defined(MIKV_HAVE_NEON_KERNELS) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace mikv {

#if defined(MIKV_HAVE_AVX_KERNELS)
extern const KvKernels kAvx2KvKernels;
extern const KvKernels kAvx512KvKernels;
extern const KvKernels kAvx512VnniKvKernels;
extern const KvKernels kAvx512VbmiKvKernels;

// F16C from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows the name.
static bool HasF16c() {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
#endif
#if defined(MIKV_HAVE_NEON_KERNELS)
extern const KvKernels kNeonKvKernels;
extern const KvKernels kNeonDotKvKernels;

// Whether this core has the dotprod extension (SDOT/UDOT): compiled in, or reported by the kernel at run time.
static bool HasArmDotprod() {
#if defined(__ARM_FEATURE_DOTPROD)
  return true;
#elif defined(__linux__)  // Linux and Android
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
  return false;  // (other systems: the baseline table)
#endif
}
#endif

const char* KvIsaName(KvIsa isa) {
  switch (isa) {
    case KvIsa::Scalar: return "scalar";
    case KvIsa::Avx2: return "avx2";
    case KvIsa::Avx512: return "avx512";
    case KvIsa::Neon: return "neon";
    case KvIsa::NeonDotprod: return "neon-dotprod";
    case KvIsa::Avx512Vnni: return "avx512vnni";
    case KvIsa::Avx512Vbmi: return "avx512vbmi";
  }
  return "?";
}

const KvKernels* GetKvKernels(KvIsa isa) {
  switch (isa) {
    case KvIsa::Scalar: return &kScalarKvKernels;
#if defined(MIKV_HAVE_AVX_KERNELS)
    case KvIsa::Avx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c()
                 ? &kAvx2KvKernels : nullptr;
    case KvIsa::Avx512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c()
                 ? &kAvx512KvKernels : nullptr;
    case KvIsa::Avx512Vnni:
      // What its translation unit is compiled for: AVX-512F (the table's other kernels), VL and VNNI (256-bit
      // vpdpbusd), BW (byte and word instructions on all 32 registers; every CPU with VNNI has it).
      return GetKvKernels(KvIsa::Avx512) && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vnni")
                 ? &kAvx512VnniKvKernels : nullptr;
    case KvIsa::Avx512Vbmi:
      // The VNNI table's translation unit again, with VBMI (the INT3 unpack) and GFNI (bit fields in one instruction;
      // every CPU with VBMI but Cannon Lake has it).
      return GetKvKernels(KvIsa::Avx512Vnni) && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni")
                 ? &kAvx512VbmiKvKernels : nullptr;
#endif
#if defined(MIKV_HAVE_NEON_KERNELS)
    case KvIsa::Neon: return &kNeonKvKernels;  // NEON is part of every AArch64 core
    case KvIsa::NeonDotprod: return HasArmDotprod() ? &kNeonDotKvKernels : nullptr;
#endif
    default: return nullptr;
  }
}

static const KvKernels* Pick() {
  if (const char* forced = std::getenv("MIKV_KV_ISA")) {
    for (KvIsa isa : kKvIsasPreferredFirst)
      if (std::strcmp(forced, KvIsaName(isa)) == 0 && GetKvKernels(isa)) return GetKvKernels(isa);
  }
  for (KvIsa isa : kKvIsasPreferredFirst)
    if (const KvKernels* k = GetKvKernels(isa)) return k;
  return &kScalarKvKernels;  // (unreachable: the list ends with the scalar reference)
}

const KvKernels& ActiveKvKernels() {
  static const KvKernels* const active = Pick();
  return *active;
}

}  // namespace mikv
