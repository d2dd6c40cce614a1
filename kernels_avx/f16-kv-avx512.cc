// f16-kv-scores / f16-kv-values, AVX-512F: sixteen FP16 channels per instruction. Head sizes that are not a
// multiple of 16 go to the AVX2 kernels.
// The AVX-512 table (below) is these and the AVX2 kernels for everything else: INT4/INT3/INT2 read in integers
// (qu4-qu2-kv-avx2.cc), INT8 and INT3 values in floats (qu-kv-avx2.cc). A 16-lane float INT8/INT3 kernel was removed
// when the AVX2 one, rewritten to keep its sums in registers, beat it on the device's Xeon (session 11: INT3 values
// 266 µs against 589-998, INT8 scores 289 against 573, 16k rows, GQA 3, one thread).
#include "kv-avx.h"

namespace mikv::avx {

namespace {

inline __m512 Load16(const uint16_t* h) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h))); }

// Lanes l and l+8 first, then the 8-lane order of the reference.
inline float Hsum16(__m512 v) {
  return Hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

// NQ heads of a GQA group (a pass of KvForQueryPasses; one for the one-query kernels): each row's 16-channel chunks are
// converted once for every head, each head with its own chain of fmadds and its own Hsum16, so every head of a group gets
// the one-query result bit for bit.
template <int NQ>
void F16ScoresPass(const KvRowFormat& f, const float* q, const uint8_t* rows, size_t n, float scale, float* out,
                   size_t out_stride) {
  const int d = f.head_dim;
  size_t t = 0;
  for (; t + 4 <= n; t += 4) {
    const uint16_t* r[4];
    for (int k = 0; k < 4; ++k) r[k] = reinterpret_cast<const uint16_t*>(rows + (t + k) * f.stride);
    AskRowsAhead(rows + t * f.stride, 4 * f.stride);
    __m512 a[NQ][4];
    for (int h = 0; h < NQ; ++h)
      for (int k = 0; k < 4; ++k) a[h][k] = _mm512_setzero_ps();
    for (int i = 0; i < d; i += 16) {
      const __m512 x[4] = {Load16(r[0] + i), Load16(r[1] + i), Load16(r[2] + i), Load16(r[3] + i)};
      for (int h = 0; h < NQ; ++h) {
        const __m512 qi = _mm512_loadu_ps(q + h * d + i);
        for (int k = 0; k < 4; ++k) a[h][k] = _mm512_fmadd_ps(qi, x[k], a[h][k]);
      }
    }
    for (int h = 0; h < NQ; ++h)
      for (int k = 0; k < 4; ++k) out[h * out_stride + t + k] = Hsum16(a[h][k]) * scale;
  }
  for (; t < n; ++t) {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    __m512 a[NQ];
    for (int h = 0; h < NQ; ++h) a[h] = _mm512_setzero_ps();
    for (int i = 0; i < d; i += 16) {
      const __m512 x = Load16(r + i);
      for (int h = 0; h < NQ; ++h) a[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * d + i), x, a[h]);
    }
    for (int h = 0; h < NQ; ++h) out[h * out_stride + t] = Hsum16(a[h]) * scale;
  }
}

// Head size 64: every head's accumulator in four registers, sixteen for a pass of four.
template <int NQ>
void F16ValuesPass64(const float* p, size_t p_stride, const uint8_t* rows, size_t stride, size_t n, float* acc) {
  __m512 a[NQ][4];
  for (int h = 0; h < NQ; ++h)
    for (int j = 0; j < 4; ++j) a[h][j] = _mm512_loadu_ps(acc + h * 64 + 16 * j);
  for (size_t t = 0; t < n; ++t) {
    AskRowsAhead(rows + t * stride, stride);
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * stride);
    const __m512 x[4] = {Load16(r), Load16(r + 16), Load16(r + 32), Load16(r + 48)};
    for (int h = 0; h < NQ; ++h) {
      const float ph = p[h * p_stride + t];
      // A row the head gives no weight is left out, as the reference and the other head sizes skip p == 0 (it differs
      // from adding 0·x only where a row holds inf or NaN).
      const __mmask16 weighed = ph != 0.0f ? (__mmask16)0xffff : (__mmask16)0;
      const __m512 pt = _mm512_set1_ps(ph);
      for (int j = 0; j < 4; ++j) a[h][j] = _mm512_mask3_fmadd_ps(pt, x[j], a[h][j], weighed);  // unweighed: a kept
    }
  }
  for (int h = 0; h < NQ; ++h)
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(acc + h * 64 + 16 * j, a[h][j]);
}

}  // namespace

void F16KvScoresAvx512Entry(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out) {
  if (f.head_dim % 16 != 0) return F16KvScoresAvx2(f, q, qsum, rows, n, scale, out);
  F16ScoresPass<1>(f, q, rows, n, scale, out, 0);
}

void F16KvValuesAvx512Entry(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim;
  if (d % 16 != 0) return F16KvValuesAvx2(f, p, rows, n, acc);
  if (d == 64) return F16ValuesPass64<1>(p, 0, rows, f.stride, n, acc);
  for (size_t t = 0; t < n; ++t) {
    if (p[t] == 0.0f) continue;
    const __m512 pt = _mm512_set1_ps(p[t]);
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    for (int i = 0; i < d; i += 16) _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(pt, Load16(r + i), _mm512_loadu_ps(acc + i)));
  }
}

void F16KvScoresGroupAvx512(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                            size_t n, float scale, float* out, size_t out_stride) {
  if (f.head_dim % 16 != 0) return KvScoresEachQuery<F16KvScoresAvx2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  KvForQueryPasses(nq, [&](auto count, int h) {
    F16ScoresPass<decltype(count)::value>(f, q + (size_t)h * f.head_dim, rows, n, scale, out + (size_t)h * out_stride, out_stride);
  });
}

void F16KvValuesGroupAvx512(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows,
                            size_t n, float* acc) {
  if (f.head_dim != 64) return KvValuesEachQuery<F16KvValuesAvx512Entry>(f, nq, p, p_stride, rows, n, acc);
  KvForQueryPasses(nq, [&](auto count, int h) {
    F16ValuesPass64<decltype(count)::value>(p + (size_t)h * p_stride, p_stride, rows, f.stride, n, acc + (size_t)h * 64);
  });
}

}  // namespace mikv::avx

namespace mikv {
extern const KvKernels kAvx512KvKernels = {
    "avx512",
    {avx::F16KvScoresAvx512Entry, avx::QuKvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2},
    {avx::F16KvValuesAvx512Entry, avx::QuKvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2},
    avx::FwhtAvx2,
    avx::KvEncodeAvx2,
    {avx::F16KvScoresGroupAvx512, avx::QuKvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2,
     avx::Qu4Qu2KvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2},
    {avx::F16KvValuesGroupAvx512, avx::QuKvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2,
     avx::Qu4Qu2KvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2},
    avx::QuantizeQueryAvx2Entry,
    avx::ExpSumAvx512,
    avx::GreatestAvx512,
    avx::AddImportanceAvx512,
    avx::LeastAvx512,
};
}  // namespace mikv
