// qu4-kv-scores/values and qu2-kv-scores/values, AVX2: the integer definition of kv_kernels.h with byte
// multiply-adds (vpmaddubsw), reading the codes as they lie in the row.
//
// INT4: a row's codes are read 64 channels (a "chunk", 32 bytes x) at a time into two registers of one code per
// byte, A = x & 15 (byte j -> channel 2j) and B = x >> 4 & 15 (channel 2j+1), without reordering them — the query
// and the weights are reordered once per call instead (ChunkChannel).
// INT2: two rows per register — row t's 16 code bytes of a chunk in the low 128 bits and row t+1's in the high
// (scores), or the two rows' bytes interleaved (values) — and the four 2-bit phases split with one shift each; byte
// j of phase k holds channel 4j+k.
// Scores, eight rows at a time. Per row only integer work: vpmaddubsw of the codes with the query's int8 codes in
// their order, summed to int16 (INT4 |sum| <= 2·15·127·2, INT2 8·3·127, both < 2^15), vpmaddwd -> int32 lanes, each
// inside one group. Per eight rows the lanes are reduced to group sums with vphaddd, and the scales and zeros —
// loaded as columns by an 8x8 transpose of the rows' FP16 halfs — are applied to eight rows per instruction. (The
// scores' code is in qu4-qu2-kv-scores-avx.h, shared with the AVX-512 VNNI kernels; this file supplies its AVX2 dot.)
// Values: qu4-qu2-kv-values-avx.h.
//
// The fast path covers head_dim 64 and 128 with groups of 32, 64 or 128 channels (every Llama-family model here);
// other shapes go to qu-kv-anyshape-avx2.cc.
#include "qu4-qu2-kv-scores-avx.h"
#include "qu4-qu2-kv-values-avx.h"

namespace mikv::avx {

namespace {

// The scores' byte dot products in AVX2 (qu4-qu2-kv-scores-avx.h): vpmaddubsw to int16, vpmaddwd to int32 lanes.
struct MaddubsDot {
  static __m256i Int4(__m256i a, __m256i b, __m256i qa, __m256i qb) {
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(a, qa), _mm256_maddubs_epi16(b, qb)),
                             _mm256_set1_epi16(1));
  }
  static __m256i Int2(const __m256i* p, const __m256i* qk) {
    const __m256i s16 = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(p[0], qk[0]), _mm256_maddubs_epi16(p[1], qk[1])),
                                         _mm256_add_epi16(_mm256_maddubs_epi16(p[2], qk[2]), _mm256_maddubs_epi16(p[3], qk[3])));
    return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
  }
};

}  // namespace

void Qu4Qu2KvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                             size_t n, float scale, float* out, size_t out_stride) {
  if (!FastShape(f)) return QuKvScoresAnyShapeAvx2(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int2) return ScoresOfShape<MaddubsDot, 2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int3) return ScoresOfShape<MaddubsDot, 3>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  return ScoresOfShape<MaddubsDot, 4>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void Qu4Qu2KvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                             float* acc) {
  if (FastShape(f)) return ValuesOfShape(f, nq, p, p_stride, rows, n, acc);
  QuKvValuesAnyShapeAvx2(f, nq, p, p_stride, rows, n, acc);
}

void Qu4Qu2KvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                        float scale, float* out) {
  Qu4Qu2KvScoresGroupAvx2(f, 1, q, qsum, rows, n, scale, out, n);
}

void Qu4Qu2KvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Qu4Qu2KvValuesGroupAvx2(f, 1, p, n, rows, n, acc);
}

}  // namespace mikv::avx
