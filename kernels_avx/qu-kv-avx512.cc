// qu8/qu3-kv-scores and -values, AVX-512F (INT4 and INT2 rows use the AVX2 integer kernels, qu4-qu2-kv-avx2.cc): sixteen codes per step (two 8-code words broadcast into the
// two halves of a register, one variable shift, one mask). Groups that are not a multiple of 16 channels go to
// the AVX2 kernels.
#include "kv-avx.h"

namespace mikv::avx {

void F16KvScoresAvx512Entry(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out);
void F16KvValuesAvx512Entry(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);

namespace {

inline float Hsum16(__m512 v) { return Hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))); }

template <int BITS>
inline __m512 Codes16(const uint8_t* codes, int i) {
  if (BITS == 8) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i))));
  } else {
    // 4-byte loads (Codes8 in kv-avx.h says why; the byte past the codes is the row's own).
    uint32_t lo, hi;
    std::memcpy(&lo, codes + (size_t)i * BITS / 8, 4);
    std::memcpy(&hi, codes + (size_t)(i + 8) * BITS / 8, 4);
    const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)lo)), _mm256_set1_epi32((int)hi), 1);
    const __m512i shifts = _mm512_setr_epi32(0, BITS, 2 * BITS, 3 * BITS, 4 * BITS, 5 * BITS, 6 * BITS, 7 * BITS, 0, BITS,
                                             2 * BITS, 3 * BITS, 4 * BITS, 5 * BITS, 6 * BITS, 7 * BITS);
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(w, shifts), _mm512_set1_epi32((1 << BITS) - 1)));
  }
}

template <int BITS>
void Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale, float* out) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    __m512 total = _mm512_setzero_ps();
    float zeros = 0.0f;
    for (int g = 0; g < ng; ++g) {
      __m512 a = _mm512_setzero_ps();
      for (int i = g * group; i < (g + 1) * group; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), Codes16<BITS>(row, i), a);
      total = _mm512_fmadd_ps(_mm512_set1_ps(Half(sz[g])), a, total);
      zeros += Half(sz[ng + g]) * qsum[g];
    }
    out[t] = (Hsum16(total) + zeros) * scale;
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
      const __m512 ps = _mm512_set1_ps(p[t] * Half(sz[g])), pz = _mm512_set1_ps(p[t] * Half(sz[ng + g]));
      for (int i = g * group; i < (g + 1) * group; i += 16)
        _mm512_storeu_ps(acc + i, _mm512_add_ps(_mm512_loadu_ps(acc + i), _mm512_fmadd_ps(ps, Codes16<BITS>(row, i), pz)));
    }
  }
}

}  // namespace

void QuKvScoresAvx512(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out) {
  if (f.group % 16 != 0) return QuKvScoresAvx2(f, q, qsum, rows, n, scale, out);
  switch (f.precision) {
    case KvPrecision::Int8: return Scores<8>(f, q, qsum, rows, n, scale, out);
    default: return Scores<3>(f, q, qsum, rows, n, scale, out);
  }
}

void QuKvValuesAvx512(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  if (f.group % 16 != 0) return QuKvValuesAvx2(f, p, rows, n, acc);
  switch (f.precision) {
    case KvPrecision::Int8: return Values<8>(f, p, rows, n, acc);
    default: return Values<3>(f, p, rows, n, acc);
  }
}

}  // namespace mikv::avx

namespace mikv {
extern const KvKernels kAvx512KvKernels = {
    "avx512",
    {avx::F16KvScoresAvx512Entry, avx::QuKvScoresAvx512, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2},
    {avx::F16KvValuesAvx512Entry, avx::QuKvValuesAvx512, avx::Qu4Qu2KvValuesAvx2, avx::QuKvValuesAvx512, avx::Qu4Qu2KvValuesAvx2},
    avx::FwhtAvx2,
    avx::SoftmaxAvx2,
    avx::KvEncodeAvx2,
    {KvScoresEachQuery<avx::F16KvScoresAvx512Entry>, KvScoresEachQuery<avx::QuKvScoresAvx512>, avx::Qu4Qu2KvScoresGroupAvx2,
     avx::Qu4Qu2KvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2},
    {KvValuesEachQuery<avx::F16KvValuesAvx512Entry>, KvValuesEachQuery<avx::QuKvValuesAvx512>, avx::Qu4Qu2KvValuesGroupAvx2,
     KvValuesEachQuery<avx::QuKvValuesAvx512>, avx::Qu4Qu2KvValuesGroupAvx2},
};
}  // namespace mikv
