// f16-kv-scores / f16-kv-values, AVX2 + FMA + F16C: FP16 rows converted in registers (vcvtph2ps). They ask for rows
// ahead (AskRowsAhead) as the other x86 kernels do: with the AVX2 table, a SmolLM2-shape decode step at 4k tokens (FP16
// + INT2 cache) took 0.984-0.987x the time with the asks (steps interleaved in one process,
// docs/bench/kv-prefetch-session38.txt).
#include "kv-avx.h"

namespace mikv::avx {

void F16KvScoresAvx2(const KvRowFormat& f, const float* q, const float*, const uint8_t* rows, size_t n, float scale,
                     float* out) {
  const int d = f.head_dim;
  size_t t = 0;
  for (; t + 4 <= n; t += 4) {  // four rows at a time: four independent FMA chains
    AskRowsAhead(rows + t * f.stride, 4 * f.stride);
    const uint16_t* r0 = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    const uint16_t* r1 = reinterpret_cast<const uint16_t*>(rows + (t + 1) * f.stride);
    const uint16_t* r2 = reinterpret_cast<const uint16_t*>(rows + (t + 2) * f.stride);
    const uint16_t* r3 = reinterpret_cast<const uint16_t*>(rows + (t + 3) * f.stride);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < d; i += 8) {
      const __m256 qi = _mm256_loadu_ps(q + i);
      a0 = _mm256_fmadd_ps(qi, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + i))), a0);
      a1 = _mm256_fmadd_ps(qi, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + i))), a1);
      a2 = _mm256_fmadd_ps(qi, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r2 + i))), a2);
      a3 = _mm256_fmadd_ps(qi, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r3 + i))), a3);
    }
    out[t] = Hsum8(a0) * scale;
    out[t + 1] = Hsum8(a1) * scale;
    out[t + 2] = Hsum8(a2) * scale;
    out[t + 3] = Hsum8(a3) * scale;
  }
  for (; t < n; ++t) {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    __m256 a = _mm256_setzero_ps();
    for (int i = 0; i < d; i += 8)
      a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + i))), a);
    out[t] = Hsum8(a) * scale;
  }
}

void F16KvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim;
  if (d == 64) {  // the common head size: the accumulator lives in eight registers
    __m256 a[8];
    for (int j = 0; j < 8; ++j) a[j] = _mm256_loadu_ps(acc + 8 * j);
    for (size_t t = 0; t < n; ++t) {
      AskRowsAhead(rows + t * f.stride, f.stride);  // (before the skip: the rows ahead may weigh)
      if (p[t] == 0.0f) continue;
      const __m256 pt = _mm256_set1_ps(p[t]);
      const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
      for (int j = 0; j < 8; ++j)
        a[j] = _mm256_fmadd_ps(pt, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 8 * j))), a[j]);
    }
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(acc + 8 * j, a[j]);
    return;
  }
  for (size_t t = 0; t < n; ++t) {
    AskRowsAhead(rows + t * f.stride, f.stride);
    if (p[t] == 0.0f) continue;
    const __m256 pt = _mm256_set1_ps(p[t]);
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    for (int i = 0; i < d; i += 8)
      _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(pt, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + i))),
                                                _mm256_loadu_ps(acc + i)));
  }
}

}  // namespace mikv::avx
