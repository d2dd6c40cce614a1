// qu8-kv-scores: INT8 keys in integers (the definition of kv_kernels.h: the query rounded to int8 per group), eight
// rows at a time, for x86 targets with byte dot products. The code is written once; `Dot` supplies the instructions
// for 32 channels of one row against one query (qu-kv-avx2.cc: AVX2 widens the codes to int16 and takes vpmaddwd,
// since vpmaddubsw's int16 pairs would saturate at 255·127·2; qu4-qu2-kv-avx512vnni.cc: one vpdpbusd):
//   Dot::Codes  Dot::Load(p)            32 codes from p, as the dot wants them (shared by every query of a pass)
//   Dot::Query  Dot::Prepare(q8)        32 int8 query channels, once per call
//   __m256i     Dot::Add(acc, c, q)     acc + int32 lanes, lane m holding a sum of products of channels inside the 32
//   Load16, Prepare16, Add16            the same for 16 channels in one __m256i each (groups of 16)
// The lanes of eight rows reduce to their group sums (GroupSums8) and finish with FinishScores, INT4's float
// operations in INT4's order: every x86 table computes the same integer sums, so the same scores
// (KvKernels.X86IntegerScoresAreTheSameOnEveryTable).
// Everything here has internal linkage: each translation unit compiles its own copy for its own target.
#pragma once

#include "qu4-qu2-kv-scores-avx.h"

namespace mikv::avx {
namespace {

// The query of one step of kUnit channels: Dot::Query for 32, one __m256i for 16. (Named through a function's return
// type: std::conditional_t<..., __m256i> drops the vector type's attributes, and GCC warns.)
template <class Dot, int kUnit>
auto StepQuery() {
  if constexpr (kUnit == 32) return typename Dot::Query{};
  else return __m256i{};
}

// A pass of NQ queries over n rows of head_dim 64·NC in NG groups. A group (a multiple of 16 channels) at a time over
// eight rows: each row's steps of 32 channels (16 for groups of 16) are loaded once for the pass and every query adds
// them into one int32 vector per row, which GroupSums8 reduces with the other seven rows' to the rows' group sums.
// Going group by group keeps 8·NQ vectors live, not 8·NQ·NG. n need not be a multiple of 8: the last rows repeat row
// n-1 and their scores are not stored.
template <class Dot, int NC, int NQ, int NG>
void ScoresInt8(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                float* out, size_t out_stride) {
  constexpr int d = 64 * NC, group = d / NG;
  constexpr int kUnit = group == 16 ? 16 : 32, kRegs = group / kUnit;  // channels per step, steps per group
  const size_t code_bytes = KvCodeBytes(d, 8);
  using Query = decltype(StepQuery<Dot, kUnit>());
  Query qd[kPass][d / kUnit];
  float qs[kPass][NG];
  for (int h = 0; h < NQ; ++h) {
    int8_t q8[d];
    QuantizeQueryAvx2(q + h * d, d, group, q8, qs[h]);
    for (int r = 0; r < d / kUnit; ++r) {
      if constexpr (kUnit == 32) qd[h][r] = Dot::Prepare(q8 + 32 * r);
      else qd[h][r] = Dot::Prepare16(q8 + 16 * r);
    }
  }
  WholeBlocksThenLast<8>(n, [&](size_t t, auto nb) __attribute__((always_inline)) {
    AskRowsAhead(rows + t * f.stride, 8 * f.stride);
    __m256i sums[NQ][NG];
    for (int g = 0; g < NG; ++g) {
      __m256i lanes[NQ][8];
      for (int i = 0; i < 8; ++i) {
        const uint8_t* row = rows + (t + std::min(i, nb - 1)) * f.stride;
        for (int h = 0; h < NQ; ++h) lanes[h][i] = _mm256_setzero_si256();
        for (int k = 0; k < kRegs; ++k) {
          const int r = g * kRegs + k;
          if constexpr (kUnit == 32) {
            const typename Dot::Codes codes = Dot::Load(row + 32 * r);
            for (int h = 0; h < NQ; ++h) lanes[h][i] = Dot::Add(lanes[h][i], codes, qd[h][r]);
          } else {
            const __m256i codes = Dot::Load16(row + 16 * r);
            for (int h = 0; h < NQ; ++h) lanes[h][i] = Dot::Add16(lanes[h][i], codes, qd[h][r]);
          }
        }
      }
      for (int h = 0; h < NQ; ++h) GroupSums8<1>(lanes[h], &sums[h][g]);
    }
    FinishScores<NQ, NG, 1, NG>(rows + t * f.stride + code_bytes, f.stride, nb, qs, qsum, scale,
                                [&](int h, int u, __m256i* s) { s[0] = sums[h][u]; }, out + t, out_stride);
  });
}

// INT8 scores of nq queries in passes (KvForQueryPasses), for FastShape's shapes only (the callers send the others
// elsewhere: qu-kv-anyshape-avx2.cc).
template <class Dot>
void ScoresInt8OfShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                       float scale, float* out, size_t out_stride) {
  ForScoreShape(f, nq, [&](auto nc, auto ng, auto count, int h) {
    constexpr int NC = decltype(nc)::value, NG = decltype(ng)::value, NQ = decltype(count)::value;
    ScoresInt8<Dot, NC, NQ, NG>(f, q + h * f.head_dim, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
  });
}

}  // namespace
}  // namespace mikv::avx
