// The references of the heavy-hitter bookkeeping kernels (kv_kernels.h: KvAddImportanceFn, KvLeastFn), in a file of
// their own to be compiled without fused multiply-adds (CMakeLists.txt): AArch64 compilers fuse by default, and the
// definition is a product rounded and then added, which the x86 variants match bit for bit.
#include "generic_vectors.h"
#include "kv_kernels.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace mikv {

namespace {

// The group's weights in registers, one pass over the rows (a loop over heads inside would reload them each row).
template <int G>
void AddImportanceOf(float* imp, const float* p, size_t stride, const float* f, size_t n) {
  float fh[G];
  for (int h = 0; h < G; ++h) fh[h] = f[h];
  for (size_t i = 0; i < n; ++i) {
    float v = imp[i];
    for (int h = 0; h < G; ++h) v += fh[h] * p[h * stride + i];
    imp[i] = v;
  }
}

}  // namespace

void AddImportance(float* imp, const float* p, size_t stride, const float* f, int group, size_t n) {
  switch (group) {
    case 1: return AddImportanceOf<1>(imp, p, stride, f, n);
    case 2: return AddImportanceOf<2>(imp, p, stride, f, n);
    case 3: return AddImportanceOf<3>(imp, p, stride, f, n);
    case 4: return AddImportanceOf<4>(imp, p, stride, f, n);
    default:  // (each row's sum in the same order: head by head)
      for (int h = 0; h < group; ++h)
        for (size_t i = 0; i < n; ++i) imp[i] += f[h] * p[h * stride + i];
  }
}

namespace {

// a < b ? a : b per lane: minps's own rule, so minps itself on x86 (the mask below compiled to a compare and three
// logic operations there, and the least was a third of the cache writes' time at 4k tokens); elsewhere written with
// a mask because not every compiler takes ?: on vectors. (A plain loop of ?: is not vectorized at all: a float
// minimum in another order is another result only for NaNs and signed zeros, which the compiler must assume.)
F32x4 Min4(F32x4 a, F32x4 b) {
#if defined(__SSE__)
  return (F32x4)_mm_min_ps((__m128)a, (__m128)b);
#else
  const I32x4 lower = a < b;
  return (F32x4)(((I32x4)a & lower) | ((I32x4)b & ~lower));
#endif
}

}  // namespace

// Eight lanes at a time in two registers (the baseline x86-64 build's SSE, NEON on AArch64).
float LeastValue(const float* x, size_t n) {
  float least = x[0];
  size_t i = 0;
  if (n >= 8) {
    F32x4 m0 = Load4(x), m1 = Load4(x + 4);
    for (i = 8; i + 8 <= n; i += 8) m0 = Min4(Load4(x + i), m0), m1 = Min4(Load4(x + i + 4), m1);
    m0 = Min4(m1, m0);
    least = m0[0];
    for (int j = 1; j < 4; ++j) least = m0[j] < least ? m0[j] : least;
  }
  for (; i < n; ++i) least = x[i] < least ? x[i] : least;
  return least;
}

}  // namespace mikv
