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

void F16KvScoresAvx512(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                       float scale, float* out) {
  const int d = f.head_dim;
  if (d % 16 != 0) return F16KvScoresAvx2(f, q, qsum, rows, n, scale, out);
  size_t t = 0;
  for (; t + 4 <= n; t += 4) {
    const uint16_t* r0 = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    const uint16_t* r1 = reinterpret_cast<const uint16_t*>(rows + (t + 1) * f.stride);
    const uint16_t* r2 = reinterpret_cast<const uint16_t*>(rows + (t + 2) * f.stride);
    const uint16_t* r3 = reinterpret_cast<const uint16_t*>(rows + (t + 3) * f.stride);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < d; i += 16) {
      const __m512 qi = _mm512_loadu_ps(q + i);
      a0 = _mm512_fmadd_ps(qi, Load16(r0 + i), a0);
      a1 = _mm512_fmadd_ps(qi, Load16(r1 + i), a1);
      a2 = _mm512_fmadd_ps(qi, Load16(r2 + i), a2);
      a3 = _mm512_fmadd_ps(qi, Load16(r3 + i), a3);
    }
    out[t] = Hsum16(a0) * scale;
    out[t + 1] = Hsum16(a1) * scale;
    out[t + 2] = Hsum16(a2) * scale;
    out[t + 3] = Hsum16(a3) * scale;
  }
  for (; t < n; ++t) {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    __m512 a = _mm512_setzero_ps();
    for (int i = 0; i < d; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), Load16(r + i), a);
    out[t] = Hsum16(a) * scale;
  }
}

void F16KvValuesAvx512(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim;
  if (d % 16 != 0) return F16KvValuesAvx2(f, p, rows, n, acc);
  if (d == 64) {
    __m512 a0 = _mm512_loadu_ps(acc), a1 = _mm512_loadu_ps(acc + 16), a2 = _mm512_loadu_ps(acc + 32),
           a3 = _mm512_loadu_ps(acc + 48);
    for (size_t t = 0; t < n; ++t) {
      if (p[t] == 0.0f) continue;
      const __m512 pt = _mm512_set1_ps(p[t]);
      const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
      a0 = _mm512_fmadd_ps(pt, Load16(r), a0);
      a1 = _mm512_fmadd_ps(pt, Load16(r + 16), a1);
      a2 = _mm512_fmadd_ps(pt, Load16(r + 32), a2);
      a3 = _mm512_fmadd_ps(pt, Load16(r + 48), a3);
    }
    _mm512_storeu_ps(acc, a0);
    _mm512_storeu_ps(acc + 16, a1);
    _mm512_storeu_ps(acc + 32, a2);
    _mm512_storeu_ps(acc + 48, a3);
    return;
  }
  for (size_t t = 0; t < n; ++t) {
    if (p[t] == 0.0f) continue;
    const __m512 pt = _mm512_set1_ps(p[t]);
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    for (int i = 0; i < d; i += 16) _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(pt, Load16(r + i), _mm512_loadu_ps(acc + i)));
  }
}

}  // namespace

void F16KvScoresAvx512Entry(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out) {
  F16KvScoresAvx512(f, q, qsum, rows, n, scale, out);
}
void F16KvValuesAvx512Entry(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  F16KvValuesAvx512(f, p, rows, n, acc);
}

}  // namespace mikv::avx

namespace mikv {
extern const KvKernels kAvx512KvKernels = {
    "avx512",
    {avx::F16KvScoresAvx512Entry, avx::QuKvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2},
    {avx::F16KvValuesAvx512Entry, avx::QuKvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2},
    avx::FwhtAvx2,
    avx::SoftmaxAvx512,
    avx::KvEncodeAvx2,
    {KvScoresEachQuery<avx::F16KvScoresAvx512Entry>, avx::QuKvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2,
     avx::Qu4Qu2KvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2},
    {KvValuesEachQuery<avx::F16KvValuesAvx512Entry>, avx::QuKvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2,
     avx::Qu4Qu2KvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2},
};
}  // namespace mikv
