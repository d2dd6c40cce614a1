// qu8-kv-scores and -values, AVX2 + FMA (INT4, INT3 and INT2 rows: qu4-qu2-kv-avx2.cc). Scores in integers
// (qu8-kv-scores-avx.h with the AVX2 dot below). Values in floats: unsigned codes widened eight at a time, each row's
// per-group scale and zero folded into p. The group variants read each row once for all the heads of a GQA group.
#include <algorithm>

#include "qu8-kv-scores-avx.h"
#include "qu8-kv-values-avx.h"

namespace mikv::avx {

namespace {

// The INT8 scores' dot (qu8-kv-scores-avx.h) in AVX2: the codes widened to int16 and vpmaddwd against the query's
// int16 channels, exact in int32 (255·127·2 per lane). vpmaddubsw would take the bytes as they lie but sums its int16
// pairs with saturation, which 255·127·2 exceeds.
struct WidenDot {
  static __m256i Load16(const uint8_t* p) { return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m256i Prepare16(const int8_t* q8) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8))); }
  static __m256i Add16(__m256i acc, __m256i c, __m256i q) { return _mm256_add_epi32(acc, _mm256_madd_epi16(c, q)); }
  // 32 channels: two of the above.
  struct Codes {
    __m256i lo, hi;  // channels 0-15, 16-31
  };
  using Query = Codes;
  static Codes Load(const uint8_t* p) { return {Load16(p), Load16(p + 16)}; }
  static Query Prepare(const int8_t* q8) { return {Prepare16(q8), Prepare16(q8 + 16)}; }
  static __m256i Add(__m256i acc, const Codes& c, const Query& q) { return Add16(Add16(acc, c.lo, q.lo), c.hi, q.hi); }
};

// The shapes the eight-row kernel does not take (head_dim other than 64 or 128, more than four groups),
// with groups of a multiple of 16 channels: four rows and a query at a time, 16 codes per step widened to int16
// against the query's int16 channels (WidenDot's 16-channel steps), the four rows' lanes of a group reduced together
// (vphaddd), then the reference's float terms for four rows per instruction. (The INT8 float kernels that came before
// read every shape; this keeps those shapes off the scalar reference.) Groups of 8 channels go to the reference.
void ScoresInt8AnyShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                        size_t n, float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  if (group % 16 != 0)
    return kScalarKvKernels.scores_group[(int)KvPrecision::Int8](f, nq, q, qsum, rows, n, scale, out, out_stride);
  const size_t code_bytes = KvCodeBytes(d, 8);
  __m256i q16[kMaxHeadDim / 16];
  int8_t q8[kMaxHeadDim];
  float qs[kMaxHeadDim / 16];
  for (int h = 0; h < nq; ++h) {
    QuantizeQueryAvx2(q + (size_t)h * d, d, group, q8, qs);
    for (int i = 0; i < d; i += 16) q16[i / 16] = WidenDot::Prepare16(q8 + i);
    const float* qsum_h = qsum + (size_t)h * ng;
    for (size_t t = 0; t < n; t += 4) {
      const int nb = (int)std::min<size_t>(4, n - t);
      const uint8_t* r[4];  // rows past n repeat the last one; their scores are not stored
      for (int k = 0; k < 4; ++k) r[k] = rows + (t + std::min(k, nb - 1)) * f.stride;
      __m128 total = _mm_setzero_ps();
      for (int g = 0; g < ng; ++g) {
        __m256i acc[4];
        for (int k = 0; k < 4; ++k) acc[k] = _mm256_setzero_si256();
        for (int i = g * group; i < (g + 1) * group; i += 16)
          for (int k = 0; k < 4; ++k) acc[k] = WidenDot::Add16(acc[k], WidenDot::Load16(r[k] + i), q16[i / 16]);
        const __m256i h4 = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0], acc[1]), _mm256_hadd_epi32(acc[2], acc[3]));
        const __m128 dots = _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(h4), _mm256_extracti128_si256(h4, 1)));
        float sc[4], zc[4];
        for (int k = 0; k < 4; ++k) {
          uint16_t sz[2];
          std::memcpy(&sz[0], r[k] + code_bytes + 2 * g, 2);
          std::memcpy(&sz[1], r[k] + code_bytes + 2 * (ng + g), 2);
          sc[k] = Half(sz[0]);
          zc[k] = Half(sz[1]);
        }
        const __m128 s4 = _mm_mul_ps(_mm_loadu_ps(sc), _mm_set1_ps(qs[g])), z4 = _mm_loadu_ps(zc);
        total = _mm_add_ps(total, _mm_add_ps(_mm_mul_ps(s4, dots), _mm_mul_ps(z4, _mm_set1_ps(qsum_h[g]))));
      }
      alignas(16) float s[4];
      _mm_store_ps(s, _mm_mul_ps(total, _mm_set1_ps(scale)));
      for (int k = 0; k < nb; ++k) out[(size_t)h * out_stride + t + k] = s[k];
    }
  }
}

}  // namespace

void QuKvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                         float scale, float* out, size_t out_stride) {
  if (!Int8FastShape(f)) return ScoresInt8AnyShape(f, nq, q, qsum, rows, n, scale, out, out_stride);
  ScoresInt8OfShape<WidenDot>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void QuKvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                         float* acc) {
  ValuesGroup<8>(f, nq, p, p_stride, rows, n, acc);
}

void QuKvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                    float* out) {
  QuKvScoresGroupAvx2(f, 1, q, qsum, rows, n, scale, out, n);
}

void QuKvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Values<8>(f, p, rows, n, acc);
}

void QuantizeQueryAvx2Entry(const float* q, int head_dim, int group, int8_t* q8, float* qs) {
  QuantizeQueryAvx2(q, head_dim, group, q8, qs);
}

}  // namespace mikv::avx

namespace mikv {
extern const KvKernels kAvx2KvKernels = {
    "avx2",
    {avx::F16KvScoresAvx2, avx::QuKvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2},
    {avx::F16KvValuesAvx2, avx::QuKvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2},
    avx::FwhtAvx2,
    avx::KvEncodeAvx2,
    {KvScoresEachQuery<avx::F16KvScoresAvx2>, avx::QuKvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2,
     avx::Qu4Qu2KvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2},
    {KvValuesEachQuery<avx::F16KvValuesAvx2>, avx::QuKvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2,
     avx::Qu4Qu2KvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2},
    avx::QuantizeQueryAvx2Entry,
    avx::ExpSumAvx2,
    avx::GreatestAvx2,
};
}  // namespace mikv
