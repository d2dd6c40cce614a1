// f32-softmax, AVX2 + FMA: max, exp and sum eight scores at a time. exp(x) = 2^n · e^r with n = round(x·log2 e),
// r = x - n·ln 2 (ln 2 split in two for exactness), e^r by a degree-6 polynomial on |r| <= ln2/2 (Cephes' expf
// coefficients): within 2 ulp of std::exp over the range softmax uses (x <= 0). -inf scores (masked) give exactly 0.
#include "kv-avx.h"

namespace mikv::avx {

namespace {

inline __m256 Exp(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f);  // below this e^x is subnormal: flushed to 0
  const __m256 small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lo);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(small, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

}  // namespace

float ExpSumAvx2(float* s, size_t n, float max) {
  // Chunk c of eight scores (the tail padded with -inf, whose exp is 0) adds into sum2[c % 2], so the sum depends
  // on the scores alone, not on where the array ends: caches that pad their scores differently agree bit for bit.
  const __m256 m = _mm256_set1_ps(max);
  __m256 sum2[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 2; ++j) {
      const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(s + i + 8 * j), m));
      _mm256_storeu_ps(s + i + 8 * j, e);
      sum2[j] = _mm256_add_ps(sum2[j], e);
    }
  int odd = 0;  // the next chunk's accumulator
  if (i + 8 <= n) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(s + i), m));
    _mm256_storeu_ps(s + i, e);
    sum2[0] = _mm256_add_ps(sum2[0], e);
    i += 8;
    odd = 1;
  }
  if (i < n) {  // the tail through the same vector code, padded with -inf
    alignas(32) float tail[8];
    for (int j = 0; j < 8; ++j) tail[j] = i + j < n ? s[i + j] : -INFINITY;
    const __m256 e = Exp(_mm256_sub_ps(_mm256_load_ps(tail), m));
    _mm256_store_ps(tail, e);
    sum2[odd] = _mm256_add_ps(sum2[odd], e);
    for (size_t j = i; j < n; ++j) s[j] = tail[j - i];
  }
  return Hsum8(_mm256_add_ps(sum2[0], sum2[1]));
}

float GreatestAvx2(const float* s, size_t n) { return ExtremeOf8s<true>(s, n, -INFINITY); }

}  // namespace mikv::avx
