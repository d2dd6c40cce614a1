// f16-kv-scores / f16-kv-values, AVX2 + FMA + F16C: FP16 rows converted in registers (vcvtph2ps); the _group
// entries convert each row once for every head of a GQA group.
#include "kv-avx.h"

namespace mikv::avx {

void F16KvScoresAvx2(const KvRowFormat& f, const float* q, const float*, const uint8_t* rows, size_t n, float scale,
                     float* out) {
  const int d = f.head_dim;
  size_t t = 0;
  for (; t + 4 <= n; t += 4) {  // four rows at a time: four independent FMA chains
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
    if (p[t] == 0.0f) continue;
    const __m256 pt = _mm256_set1_ps(p[t]);
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    for (int i = 0; i < d; i += 8)
      _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(pt, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + i))),
                                                _mm256_loadu_ps(acc + i)));
  }
}

namespace {

inline __m256 Load8(const uint16_t* h) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))); }

// NQ heads of a GQA group (a pass of KvForQueryPasses) against R rows at a time: each row's 8-channel chunks are
// converted once for every head, and each head keeps the one-query kernel's chain of fmadds and its Hsum8, so every
// head gets the one-query result bit for bit. R·NQ accumulators, R chunks and a query chunk fit sixteen registers.
template <int NQ>
void F16ScoresPassAvx2(const KvRowFormat& f, const float* q, const uint8_t* rows, size_t n, float scale, float* out,
                       size_t out_stride) {
  constexpr int R = NQ <= 2 ? 4 : 2;
  const int d = f.head_dim;
  size_t t = 0;
  for (; t + R <= n; t += R) {
    const uint16_t* r[R];
    for (int k = 0; k < R; ++k) r[k] = reinterpret_cast<const uint16_t*>(rows + (t + k) * f.stride);
    __m256 a[NQ][R];
    for (int h = 0; h < NQ; ++h)
      for (int k = 0; k < R; ++k) a[h][k] = _mm256_setzero_ps();
    for (int i = 0; i < d; i += 8) {
      __m256 x[R];
      for (int k = 0; k < R; ++k) x[k] = Load8(r[k] + i);
      for (int h = 0; h < NQ; ++h) {
        const __m256 qi = _mm256_loadu_ps(q + h * d + i);
        for (int k = 0; k < R; ++k) a[h][k] = _mm256_fmadd_ps(qi, x[k], a[h][k]);
      }
    }
    for (int h = 0; h < NQ; ++h)
      for (int k = 0; k < R; ++k) out[h * out_stride + t + k] = Hsum8(a[h][k]) * scale;
  }
  for (; t < n; ++t) {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    __m256 a[NQ];
    for (int h = 0; h < NQ; ++h) a[h] = _mm256_setzero_ps();
    for (int i = 0; i < d; i += 8) {
      const __m256 x = Load8(r + i);
      for (int h = 0; h < NQ; ++h) a[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * d + i), x, a[h]);
    }
    for (int h = 0; h < NQ; ++h) out[h * out_stride + t] = Hsum8(a[h]) * scale;
  }
}

// NQ heads' weighted rows, sixteen channels at a time: a slice's accumulators for every head of the pass (2·NQ
// registers) stay in registers over all the rows, and each row's slice is converted once for them all. Per channel
// each head sees the one-query kernel's fmadds in the same row order, rows it gives no weight skipped.
template <int NQ>
void F16ValuesPassAvx2(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim;
  for (int i = 0; i < d; i += 16) {
    __m256 a[NQ][2];
    for (int h = 0; h < NQ; ++h)
      for (int k = 0; k < 2; ++k) a[h][k] = _mm256_loadu_ps(acc + h * d + i + 8 * k);
    for (size_t t = 0; t < n; ++t) {
      const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride) + i;
      const __m256 x0 = Load8(r), x1 = Load8(r + 8);
      for (int h = 0; h < NQ; ++h) {
        const float ph = p[h * p_stride + t];
        if (ph == 0.0f) continue;
        const __m256 pt = _mm256_set1_ps(ph);
        a[h][0] = _mm256_fmadd_ps(pt, x0, a[h][0]);
        a[h][1] = _mm256_fmadd_ps(pt, x1, a[h][1]);
      }
    }
    for (int h = 0; h < NQ; ++h)
      for (int k = 0; k < 2; ++k) _mm256_storeu_ps(acc + h * d + i + 8 * k, a[h][k]);
  }
}

}  // namespace

void F16KvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                          float scale, float* out, size_t out_stride) {
  if (f.head_dim % 8 != 0) return KvScoresEachQuery<F16KvScoresAvx2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  KvForQueryPasses(nq, [&](auto count, int h) {
    F16ScoresPassAvx2<decltype(count)::value>(f, q + (size_t)h * f.head_dim, rows, n, scale, out + (size_t)h * out_stride,
                                              out_stride);
  });
}

void F16KvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                          float* acc) {
  if (f.head_dim % 16 != 0) return KvValuesEachQuery<F16KvValuesAvx2>(f, nq, p, p_stride, rows, n, acc);
  KvForQueryPasses(nq, [&](auto count, int h) {
    F16ValuesPassAvx2<decltype(count)::value>(f, p + (size_t)h * p_stride, p_stride, rows, n, acc + (size_t)h * f.head_dim);
  });
}

}  // namespace mikv::avx
