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
  using Query = std::conditional_t<kUnit == 32, typename Dot::Query, __m256i>;
  Query qd[kPass][d / kUnit];
  float qs[kPass][NG];
  for (int h = 0; h < NQ; ++h) {
    int8_t q8[d];
    KvQuantizeQuery(q + h * d, d, group, q8, qs[h]);
    for (int r = 0; r < d / kUnit; ++r) {
      if constexpr (kUnit == 32) qd[h][r] = Dot::Prepare(q8 + 32 * r);
      else qd[h][r] = Dot::Prepare16(q8 + 16 * r);
    }
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
  }
}

// The shapes the eight-row kernel does not take (head_dim other than 64 or 128, more than four groups),
// with groups of a multiple of 16 channels: four rows and a query at a time, 16 codes per step widened to int16
// against the query's int16 channels (vpmaddwd, as WidenDot), the four rows' lanes of a group reduced together
// (vphaddd), then the reference's float terms for four rows per instruction. (The INT8 float kernels that came before
// read every shape; this keeps those shapes off the scalar reference.) Groups of 8 channels go to the reference.
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
    for (size_t t = 0; t < n; t += 4) {
      const int nb = (int)std::min<size_t>(4, n - t);
      const uint8_t* r[4];  // rows past n repeat the last one; their scores are not stored
      for (int k = 0; k < 4; ++k) r[k] = rows + (t + std::min(k, nb - 1)) * f.stride;
      __m128 total = _mm_setzero_ps();
      for (int g = 0; g < ng; ++g) {
        __m256i acc[4];
        for (int k = 0; k < 4; ++k) acc[k] = _mm256_setzero_si256();
        for (int i = g * group; i < (g + 1) * group; i += 16) {
          const __m256i qi = _mm256_load_si256(reinterpret_cast<const __m256i*>(q16 + i));
          for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_add_epi32(
                acc[k], _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[k] + i))), qi));
        }
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

// The shapes ScoresInt8 takes: head_dim 64 or 128 in at most four groups of a multiple of 16 channels (FastShape's,
// and head_dim 64 in groups of 16).
inline bool Int8FastShape(const KvRowFormat& f) {
  return (f.head_dim == 64 || f.head_dim == 128) && f.group % 16 == 0 && f.head_dim / f.group <= 4;
}

// Runs kernel(nc, ng, count, first) as ForScoreShape does, for Int8FastShape's shapes.
template <typename Kernel>
inline void ForInt8Shape(const KvRowFormat& f, int nq, Kernel&& kernel) {
  auto passes = [&](auto nc, auto ng) { KvForQueryPasses(nq, [&](auto count, int h) { kernel(nc, ng, count, h); }); };
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  using Four = std::integral_constant<int, 4>;
  const int ng = f.head_dim / f.group;
  if (f.head_dim == 64) return ng == 1 ? passes(One(), One()) : ng == 2 ? passes(One(), Two()) : passes(One(), Four());
  if (ng == 1) return passes(Two(), One());
  if (ng == 2) return passes(Two(), Two());
  passes(Two(), Four());
}

// INT8 scores of nq queries in passes (KvForQueryPasses) for Int8FastShape's shapes; others ScoresInt8AnyShape.
template <class Dot>
void ScoresInt8OfShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                       float scale, float* out, size_t out_stride) {
  if (!Int8FastShape(f)) return ScoresInt8AnyShape(f, nq, q, qsum, rows, n, scale, out, out_stride);
  ForInt8Shape(f, nq, [&](auto nc, auto ng, auto count, int h) {
    constexpr int NC = decltype(nc)::value, NG = decltype(ng)::value, NQ = decltype(count)::value;
    ScoresInt8<Dot, NC, NQ, NG>(f, q + h * f.head_dim, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
  });
}

}  // namespace
}  // namespace mikv::avx
