// f32-kv-importance and f32-kv-least, AVX2: the heavy-hitter policy's bookkeeping beside the attention (kv_kernels.h,
// KvAddImportanceFn, KvLeastFn) eight rows at a time. Until session 54 these were the cache's own loops, which the
// baseline x86-64 build compiles to SSE, four rows at a time (now the reference, kv_importance_scalar.cc). One call
// each, three query heads, alternating in one process on this project's Zen 4 VM: 4,096 rows 852 -> 722 ns (AVX2),
// 651 (AVX-512) to add, 310 -> 150 / 120 ns for the least; 16,384 rows 3,366 -> 2,965 / 2,384 and 1,151 -> 410 / 400
// (docs/bench/importance-kernels-session54.txt): with the SmolLM2 shape's 90 kv heads a token, ~35 µs of a step at 4k
// tokens (1% of one thread's ~4.5 ms), ~150 µs at 16k — too little to see in end-to-end runs on this VM. Compiled
// without fused multiply-adds (CMakeLists.txt): the definition rounds each product before adding it, and these give
// the reference's sums bit for bit.
#include "kv-avx.h"

namespace mikv::avx {

void AddImportanceAvx2(float* imp, const float* p, size_t stride, const float* f, int group, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(imp + i);
    for (int h = 0; h < group; ++h)
      v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_broadcast_ss(f + h), _mm256_loadu_ps(p + h * stride + i)));
    _mm256_storeu_ps(imp + i, v);
  }
  if (i < n) AddImportance(imp + i, p + i, stride, f, group, n - i);  // the last rows: the reference, the same sums
}

float LeastAvx2(const float* x, size_t n) { return ExtremeOf8s<false>(x, n, x[0]); }

}  // namespace mikv::avx
