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

}  // namespace

void QuKvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                         float scale, float* out, size_t out_stride) {
  if (!FastShape(f)) return QuKvScoresAnyShapeAvx2(f, nq, q, qsum, rows, n, scale, out, out_stride);
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
    avx::AddImportanceAvx2,
    avx::LeastAvx2,
};
}  // namespace mikv
