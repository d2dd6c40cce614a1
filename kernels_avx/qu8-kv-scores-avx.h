// qu8-kv-scores: INT8 keys in integers (the definition of kv_kernels.h: the query rounded to int8 per group), eight
// rows at a time, for x86 targets with byte dot products. The code is written once; `Dot` supplies the instructions
// for 32 channels of one row against one query (qu-kv-avx2.cc: AVX2 widens the codes to int16 and takes vpmaddwd,
// since vpmaddubsw's int16 pairs would saturate at 255·127·2; qu4-qu2-kv-avx512vnni.cc: one vpdpbusd):
//   Dot::Codes  Dot::Load(p)            32 codes from p, as the dot wants them (shared by every query of a pass)
//   Dot::Query  Dot::Prepare(q8)        32 int8 query channels, once per call
//   __m256i     Dot::Add(acc, c, q)     acc + int32 lanes, lane m holding a sum of products of channels inside the 32
// The lanes of eight rows reduce to their group sums (GroupSums8) and finish with FinishScores, INT4's float
// operations in INT4's order: every x86 table computes the same integer sums, so the same scores
// (KvKernels.X86IntegerScoresAreTheSameOnEveryTable).
// Everything here has internal linkage: each translation unit compiles its own copy for its own target.
#pragma once

#include "qu4-qu2-kv-scores-avx.h"

namespace mikv::avx {
namespace {

// A pass of NQ queries over n rows of head_dim 64·NC in NG groups. A group (a multiple of 32 channels) at a time over
// eight rows: each row's 32-channel registers of the group are loaded once for the pass and every query adds them
// into one int32 vector per row, which GroupSums8 reduces with the other seven rows' to the rows' group sums. Going
// group by group keeps 8·NQ vectors live, not 8·NQ·NG. n need not be a multiple of 8: the last rows repeat row n-1
// and their scores are not stored.
template <class Dot, int NC, int NQ, int NG>
void ScoresInt8(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                float* out, size_t out_stride) {
  constexpr int d = 64 * NC, group = d / NG, kRegs = group / 32;  // registers of 32 codes per group
  const size_t code_bytes = KvCodeBytes(d, 8);
  typename Dot::Query qd[kPass][d / 32];
  float qs[kPass][NG];
  for (int h = 0; h < NQ; ++h) {
    int8_t q8[d];
    KvQuantizeQuery(q + h * d, d, group, q8, qs[h]);
    for (int r = 0; r < d / 32; ++r) qd[h][r] = Dot::Prepare(q8 + 32 * r);
  }
  for (size_t t = 0; t < n; t += 8) {
    const int nb = (int)std::min<size_t>(8, n - t);
    __m256i sums[NQ][NG];
    for (int g = 0; g < NG; ++g) {
      __m256i lanes[NQ][8];
      for (int i = 0; i < 8; ++i) {
        const uint8_t* row = rows + (t + std::min(i, nb - 1)) * f.stride;
        for (int h = 0; h < NQ; ++h) lanes[h][i] = _mm256_setzero_si256();
        for (int k = 0; k < kRegs; ++k) {
          const int r = g * kRegs + k;
          const typename Dot::Codes codes = Dot::Load(row + 32 * r);
          for (int h = 0; h < NQ; ++h) lanes[h][i] = Dot::Add(lanes[h][i], codes, qd[h][r]);
        }
      }
      for (int h = 0; h < NQ; ++h) GroupSums8<1>(lanes[h], &sums[h][g]);
    }
    FinishScores<NQ, NG, 1, NG>(rows + t * f.stride + code_bytes, f.stride, nb, qs, qsum, scale,
                                [&](int h, int u, __m256i* s) { s[0] = sums[h][u]; }, out + t, out_stride);
  }
}

// The shapes the eight-row kernel does not take (head_dim other than 64 or 128, groups of 16, more than four groups),
// with groups of a multiple of 16 channels: a row and a query at a time, 16 codes per step widened to int16 against
// the query's int16 channels (vpmaddwd, as WidenDot), each group's lanes summed, then the reference's float terms in
// its order. (The INT8 float kernels that came before read every shape; this keeps those shapes off the scalar
// reference.) Groups of 8 channels go to the reference.
inline void ScoresInt8AnyShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                               size_t n, float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  if (group % 16 != 0)
    return kScalarKvKernels.scores_group[(int)KvPrecision::Int8](f, nq, q, qsum, rows, n, scale, out, out_stride);
  const size_t code_bytes = KvCodeBytes(d, 8);
  alignas(32) int16_t q16[kMaxHeadDim];
  int8_t q8[kMaxHeadDim];
  float qs[kMaxHeadDim / 16];
  for (int h = 0; h < nq; ++h) {
    KvQuantizeQuery(q + (size_t)h * d, d, group, q8, qs);
    for (int i = 0; i < d; ++i) q16[i] = q8[i];
    const float* qsum_h = qsum + (size_t)h * ng;
    for (size_t t = 0; t < n; ++t) {
      const uint8_t* row = rows + t * f.stride;
      float total = 0.0f;
      for (int g = 0; g < ng; ++g) {
        __m256i acc = _mm256_setzero_si256();
        for (int i = g * group; i < (g + 1) * group; i += 16) {
          const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i)));
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(c, _mm256_load_si256(reinterpret_cast<const __m256i*>(q16 + i))));
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        const int32_t dot = _mm_cvtsi128_si32(_mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1)));
        uint16_t sz[2];
        std::memcpy(&sz[0], row + code_bytes + 2 * g, 2);
        std::memcpy(&sz[1], row + code_bytes + 2 * (ng + g), 2);
        total += Half(sz[0]) * qs[g] * (float)dot + Half(sz[1]) * qsum_h[g];
      }
      out[(size_t)h * out_stride + t] = total * scale;
    }
  }
}

// INT8 scores of nq queries in passes (KvForQueryPasses) for the fast shapes (FastShape); others ScoresInt8AnyShape.
template <class Dot>
void ScoresInt8OfShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                       float scale, float* out, size_t out_stride) {
  if (!FastShape(f)) return ScoresInt8AnyShape(f, nq, q, qsum, rows, n, scale, out, out_stride);
  ForScoreShape(f, nq, [&](auto nc, auto ng, auto count, int h) {
    constexpr int NC = decltype(nc)::value, NG = decltype(ng)::value, NQ = decltype(count)::value;
    ScoresInt8<Dot, NC, NQ, NG>(f, q + h * f.head_dim, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
  });
}

}  // namespace
}  // namespace mikv::avx
