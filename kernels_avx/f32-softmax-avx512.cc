// f32-softmax, AVX-512F: f32-softmax-avx2.cc sixteen scores at a time, with the same exp (range reduction, degree-6
// polynomial, the same flush to 0 below -87.34; 2^n applied by vscalefps instead of a multiply by the power of two
// built from its bits) — and -inf scores (masked) give exactly 0. The
// sum adds chunk c of sixteen into accumulator c % 2, so, as in AVX2's, it depends on the scores alone and not on
// where the array ends; its order differs from AVX2's, so the last bits of the probabilities may too.
#include "kv-avx.h"

namespace mikv::avx {

namespace {

inline __m512 Exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f);  // below this e^x is subnormal: flushed to 0
  const __mmask16 normal = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
  x = _mm512_max_ps(x, lo);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(normal, p, n);
}

}  // namespace

float ExpSumAvx512(float* s, size_t n, float max) {
  const __m512 minus_inf = _mm512_set1_ps(-INFINITY);
  const __m512 m = _mm512_set1_ps(max);
  __m512 sum2[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 2; ++j) {
      const __m512 e = Exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i + 16 * j), m));
      _mm512_storeu_ps(s + i + 16 * j, e);
      sum2[j] = _mm512_add_ps(sum2[j], e);
    }
  int odd = 0;  // the next chunk's accumulator
  if (i + 16 <= n) {
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i), m));
    _mm512_storeu_ps(s + i, e);
    sum2[0] = _mm512_add_ps(sum2[0], e);
    i += 16;
    odd = 1;
  }
  if (i < n) {  // the tail through the same code, padded with -inf
    const __mmask16 tail = FirstLanes(n - i);
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(minus_inf, tail, s + i), m));
    _mm512_mask_storeu_ps(s + i, tail, e);
    sum2[odd] = _mm512_add_ps(sum2[odd], e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(sum2[0], sum2[1]));
}

float GreatestAvx512(const float* s, size_t n) { return ExtremeOf16s<true>(s, n, -INFINITY); }

}  // namespace mikv::avx
