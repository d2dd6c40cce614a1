// qu8/qu3-kv-scores and -values, AVX2 + FMA (INT4 and INT2 rows: qu4-qu2-kv-avx2.cc): unsigned codes unpacked eight at a time with one variable
// shift (vpsrlvd) and a mask, per-group scale and zero folded in after the group's dot product (scores) or into
// p (values). The group variants unpack each row once for all the heads of a GQA group.
#include <algorithm>

#include "kv-avx.h"

namespace mikv::avx {

namespace {

template <int BITS>
void Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale, float* out) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    // Scales are folded in as vectors, so the row needs one horizontal sum, not one per group.
    __m256 total = _mm256_setzero_ps();
    float zeros = 0.0f;
    for (int g = 0; g < ng; ++g) {
      __m256 a = _mm256_setzero_ps();
      for (int i = g * group; i < (g + 1) * group; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), Codes8<BITS>(row, i), a);
      total = _mm256_fmadd_ps(_mm256_set1_ps(Half(sz[g])), a, total);
      zeros += Half(sz[ng + g]) * qsum[g];
    }
    out[t] = (Hsum8(total) + zeros) * scale;
  }
}

template <int BITS>
void Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (size_t t = 0; t < n; ++t) {
    if (p[t] == 0.0f) continue;
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    for (int g = 0; g < ng; ++g) {
      const __m256 ps = _mm256_set1_ps(p[t] * Half(sz[g])), pz = _mm256_set1_ps(p[t] * Half(sz[ng + g]));
      for (int i = g * group; i < (g + 1) * group; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_fmadd_ps(ps, Codes8<BITS>(row, i), pz)));
    }
  }
}

// The heads of a GQA group against each row: the row's codes are unpacked once per chunk of eight channels and used
// by every query, each query doing the one-query kernel's operations in its order (the same results bit for bit).
// Up to kMaxQueries queries at a time.
constexpr int kMaxQueries = 8;

template <int BITS>
void ScoresGroup(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                 float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (int h0 = 0; h0 < nq; h0 += kMaxQueries) {
    const int m = std::min(kMaxQueries, nq - h0);
    const float* qh = q + (size_t)h0 * d;
    const float* sh = qsum + (size_t)h0 * ng;
    for (size_t t = 0; t < n; ++t) {
      const uint8_t* row = rows + t * f.stride;
      const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
      __m256 total[kMaxQueries], a[kMaxQueries];
      float zeros[kMaxQueries];
      for (int h = 0; h < m; ++h) total[h] = _mm256_setzero_ps(), zeros[h] = 0.0f;
      for (int g = 0; g < ng; ++g) {
        for (int h = 0; h < m; ++h) a[h] = _mm256_setzero_ps();
        for (int i = g * group; i < (g + 1) * group; i += 8) {
          const __m256 codes = Codes8<BITS>(row, i);
          for (int h = 0; h < m; ++h) a[h] = _mm256_fmadd_ps(_mm256_loadu_ps(qh + (size_t)h * d + i), codes, a[h]);
        }
        const __m256 s = _mm256_set1_ps(Half(sz[g]));
        const float z = Half(sz[ng + g]);
        for (int h = 0; h < m; ++h) {
          total[h] = _mm256_fmadd_ps(s, a[h], total[h]);
          zeros[h] += z * sh[(size_t)h * ng + g];
        }
      }
      for (int h = 0; h < m; ++h) out[(size_t)(h0 + h) * out_stride + t] = (Hsum8(total[h]) + zeros[h]) * scale;
    }
  }
}

template <int BITS>
void ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                 float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    for (int g = 0; g < ng; ++g) {
      const float scale = Half(sz[g]), zero = Half(sz[ng + g]);
      for (int i = g * group; i < (g + 1) * group; i += 8) {
        const __m256 codes = Codes8<BITS>(row, i);
        for (int h = 0; h < nq; ++h) {
          const float ph = p[h * p_stride + t];
          if (ph == 0.0f) continue;
          float* ah = acc + (size_t)h * d + i;
          const __m256 ps = _mm256_set1_ps(ph * scale), pz = _mm256_set1_ps(ph * zero);
          _mm256_storeu_ps(ah, _mm256_add_ps(_mm256_loadu_ps(ah), _mm256_fmadd_ps(ps, codes, pz)));
        }
      }
    }
  }
}

}  // namespace

void QuKvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                         float scale, float* out, size_t out_stride) {
  if (f.precision == KvPrecision::Int8) return ScoresGroup<8>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  return ScoresGroup<3>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void QuKvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                         float* acc) {
  if (f.precision == KvPrecision::Int8) return ValuesGroup<8>(f, nq, p, p_stride, rows, n, acc);
  return ValuesGroup<3>(f, nq, p, p_stride, rows, n, acc);
}

void QuKvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                    float* out) {
  switch (f.precision) {
    case KvPrecision::Int8: return Scores<8>(f, q, qsum, rows, n, scale, out);
    default: return Scores<3>(f, q, qsum, rows, n, scale, out);
  }
}

void QuKvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  switch (f.precision) {
    case KvPrecision::Int8: return Values<8>(f, p, rows, n, acc);
    default: return Values<3>(f, p, rows, n, acc);
  }
}

}  // namespace mikv::avx

namespace mikv {
extern const KvKernels kAvx2KvKernels = {
    "avx2",
    {avx::F16KvScoresAvx2, avx::QuKvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::QuKvScoresAvx2, avx::Qu4Qu2KvScoresAvx2},
    {avx::F16KvValuesAvx2, avx::QuKvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::QuKvValuesAvx2, avx::Qu4Qu2KvValuesAvx2},
    avx::FwhtAvx2,
    avx::SoftmaxAvx2,
    avx::KvEncodeAvx2,
    {KvScoresEachQuery<avx::F16KvScoresAvx2>, avx::QuKvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2,
     avx::QuKvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2},
    {KvValuesEachQuery<avx::F16KvValuesAvx2>, avx::QuKvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2,
     avx::QuKvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2},
};
}  // namespace mikv
