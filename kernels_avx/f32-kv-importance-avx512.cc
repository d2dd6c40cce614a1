// f32-kv-importance and f32-kv-least, AVX-512F: f32-kv-importance-avx2.cc's kernels sixteen rows at a time, the tail
// under a mask. Compiled without fused multiply-adds (CMakeLists.txt): bit for bit the reference's sums.
#include "kv-avx.h"

namespace mikv::avx {

void AddImportanceAvx512(float* imp, const float* p, size_t stride, const float* f, int group, size_t n) {
  // Whole chunks unmasked, then the tail under a mask: one loop masking every chunk measured 4% slower at 16k rows
  // and a sixth slower at 512 (the mask chosen in each chunk).
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(imp + i);
    for (int h = 0; h < group; ++h)
      v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(f[h]), _mm512_loadu_ps(p + h * stride + i)));
    _mm512_storeu_ps(imp + i, v);
  }
  if (i < n) {
    const __mmask16 tail = FirstLanes(n - i);
    __m512 v = _mm512_maskz_loadu_ps(tail, imp + i);
    for (int h = 0; h < group; ++h)
      v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(f[h]), _mm512_maskz_loadu_ps(tail, p + h * stride + i)));
    _mm512_mask_storeu_ps(imp + i, tail, v);
  }
}

float LeastAvx512(const float* x, size_t n) { return ExtremeOf16s<false>(x, n, x[0]); }

}  // namespace mikv::avx
