// qu4-kv-values, qu3-kv-values and qu2-kv-values for AVX2 (qu4-qu2-kv-avx2.cc): the integer definition of
// kv_kernels.h with byte multiply-adds (vpmaddubsw), reading the codes as they lie in the row. The AVX-512 VNNI
// tables have their own 512-bit kernels (qu4-qu2-kv-avx512vnni.cc: four rows per vpdpbusd) and take only the INT2
// float slots (Int2ValueSlots) from here.
//
// Values, two rows at a time: their codes interleaved byte by byte (vpunpcklbw), times their quantized weights
// interleaved the same way: one vpmaddubsw gives w_t·code_t + w_u·code_u per channel in int16 (a block of
// KvValueBlockRows sums to at most 16·15·127 (INT4) or 64·3·127 (INT2) < 2^15); at the end of a block the int16
// sums widen to float, times the block's weight scale. The float accumulator is kept in that permuted channel order
// and put back at the end.
#pragma once

#include "qu4-qu2-kv-scores-avx.h"

namespace mikv::avx {
namespace {

// The weights side of the values kernels: per query, the quantized weights of the current kBlocks blocks of S
// 16-row sub-blocks (block k's at w8[h][g][16·S·k + t], its scale ws[h][g][k]) and the running Σ_t p_t·zero_g
// (zacc), with the vpshufb patterns that spread a row pair's weights. INT4 quantizes four 16-row blocks per call:
// one block's chain (the largest weight, a division, the codes) is long against its 16 rows of sums, and four
// independent chains overlap (1.2x at 16k rows on the Zen 4 here, MIKV_KV_ISA=avx2; same bytes). kGroups: the most
// groups a row has (8 only for head_dim 128 in groups of 16).
template <int S, int kBlocks = 1, int kGroups = 4>
struct QueryBlockWeights {
  alignas(16) uint8_t w8[kPass][kGroups][16 * S * kBlocks];
  float ws[kPass][kGroups][kBlocks];
  __m256 zacc[kPass][kGroups];
  __m256i pick[8];  // pick[k]: bytes (2k, 2k+1) of each 128-bit half, in every int16 lane

  QueryBlockWeights() {
    for (int h = 0; h < kPass; ++h)
      for (int g = 0; g < kGroups; ++g) zacc[h][g] = _mm256_setzero_ps();
    for (int k = 0; k < 8; ++k) pick[k] = _mm256_set1_epi16((short)((2 * k) | (2 * k + 1) << 8));
  }
  // The kBlocks blocks of nb rows in all at `rows`: their scales gathered once, each of nq queries' weights
  // quantized over them (blocks past nb: none).
  void Quantize(const KvRowFormat& f, int ng, size_t code_bytes, int nq, const float* p, size_t p_stride,
                const uint8_t* rows, int nb) {
    constexpr int kRows = 16 * S;
    const int blocks = std::min(kBlocks, (nb + kRows - 1) / kRows);
    BlockScales<kGroups> scales[kBlocks][S];
    for (int k = 0; k < blocks; ++k)
      for (int s = 0; s < S; ++s)
        GatherBlockScales(f, ng, code_bytes, rows + (kRows * k + 16 * s) * f.stride, nb - kRows * k - 16 * s, &scales[k][s]);
    for (int h = 0; h < nq; ++h)
      for (int k = 0; k < blocks; ++k)
        QuantizeBlockWeights<S>(scales[k], ng, p + h * p_stride + kRows * k, w8[h], ws[h], k, zacc[h]);
  }
  // After the last block: acc[h·d + channel[slot]] = fa[h·d + slot] + Σ p·zero of the slot's group, for each of nq
  // queries (fa: the kernel's float sums, slots in its own channel order).
  void Finish(int nq, int d, int group, const int* channel, const float* fa, float* acc) const {
    float zsum[kPass][8];
    static_assert(kGroups <= 8, "PutBackValueSlots' room");
    for (int h = 0; h < nq; ++h)
      for (int g = 0; g < d / group; ++g) zsum[h][g] = Hsum8(zacc[h][g]);
    PutBackValueSlots(nq, d, group, channel, fa, zsum, acc);
  }
};

// INT4 values (and INT3: its codes unpacked into the same two registers, qu4-qu2-kv-scores-avx.h's Int3Unpack).
// Groups of 16 (kGroupsOf16) need only the weights' room for eight groups at head_dim 128: each 128-bit half of the
// int16 sums lies inside one group of 16 already.
template <int BITS, int NC, int NQ, bool kGroupsOf16 = false>
void ValuesInt4(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  static_assert(BITS == 4 || BITS == 3, "INT4 or INT3 codes");
  constexpr int d = 64 * NC;
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  const Int3Unpack* const int3 = BITS == 3 ? &Int3Tables() : nullptr;
  // Accumulator slot (c, v, e) <- int16 lane of register r = v / 2 (A lo/hi, B lo/hi), 128-bit half L = v % 2.
  alignas(32) float fa[kPass][d];
  int channel[d], group_of_vector[NC * 8];
  for (int c = 0; c < NC; ++c)
    for (int v = 0; v < 8; ++v) {
      const int r = v / 2, half = v % 2;
      for (int e = 0; e < 8; ++e) {
        const int slot = (c * 8 + v) * 8 + e;
        channel[slot] = 64 * c + ChunkChannel(r / 2, 16 * half + (r % 2) * 8 + e);
        for (int h = 0; h < NQ; ++h) fa[h][slot] = acc[h * d + channel[slot]];
      }
      group_of_vector[c * 8 + v] = channel[(c * 8 + v) * 8] / group;
    }
  // The weights an int16 lane needs: unpacklo (r even) and unpackhi (r odd) reach different channels, and each
  // 128-bit half its own; per block, a register holds the 16 rows' weights of the group of each half, and one
  // vpshufb per pair of rows spreads (w_t, w_t+1) over the lanes.
  int half_group[NC][2][2];
  for (int c = 0; c < NC; ++c)
    for (int odd = 0; odd < 2; ++odd)
      for (int half = 0; half < 2; ++half) half_group[c][odd][half] = (64 * c + ChunkChannel(0, 16 * half + odd * 8)) / group;
  // A block is 16 rows (KvValueBlockRows(Int4), and Int3's); its int16 sums widen at its end.
  constexpr int kBlock = KvValueBlockRows(BITS == 3 ? KvPrecision::Int3 : KvPrecision::Int4);
  static_assert(kBlock == 16, "one weights register per block");
  constexpr int kBlocks = 4;  // blocks whose weights are quantized together (QueryBlockWeights)
  QueryBlockWeights<1, kBlocks, kGroupsOf16 ? 4 * NC : 4> qw;
  const auto& w8 = qw.w8;
  const auto& ws = qw.ws;
  for (size_t b = 0; b < n; b += kBlock) {
    const int nb = (int)std::min<size_t>(kBlock, n - b);
    const int k = (int)(b / kBlock % kBlocks);  // this block's place in the quantized group
    if (k == 0) AskRowsAhead(rows + b * f.stride, kBlocks * kBlock * f.stride);
    if (k == 0)
      qw.Quantize(f, ng, code_bytes, NQ, p + b, p_stride, rows + b * f.stride, (int)std::min<size_t>(kBlocks * kBlock, n - b));
    __m256i wv[kPass][NC][2], a16[kPass][NC][4];
    for (int h = 0; h < NQ; ++h)
      for (int c = 0; c < NC; ++c) {
        for (int odd = 0; odd < 2; ++odd)
          wv[h][c][odd] = _mm256_inserti128_si256(
              _mm256_castsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(w8[h][half_group[c][odd][0]] + kBlock * k))),
              _mm_load_si128(reinterpret_cast<const __m128i*>(w8[h][half_group[c][odd][1]] + kBlock * k)), 1);
        for (int r = 0; r < 4; ++r) a16[h][c][r] = _mm256_setzero_si256();
      }
    for (int t = 0; t < nb; t += 2) {
      const uint8_t* rt = rows + (b + t) * f.stride;
      const uint8_t* ru = t + 1 < nb ? rt + f.stride : rt;  // its weight is 0 when it is the same row
      for (int c = 0; c < NC; ++c) {
        const Chunk ct = LoadCodes<BITS>(int3, rt, c), cu = LoadCodes<BITS>(int3, ru, c);
        const __m256i a_lo = _mm256_unpacklo_epi8(ct.a, cu.a), a_hi = _mm256_unpackhi_epi8(ct.a, cu.a);
        const __m256i b_lo = _mm256_unpacklo_epi8(ct.b, cu.b), b_hi = _mm256_unpackhi_epi8(ct.b, cu.b);
        for (int h = 0; h < NQ; ++h) {
          const __m256i w_lo = _mm256_shuffle_epi8(wv[h][c][0], qw.pick[t / 2]);
          const __m256i w_hi = _mm256_shuffle_epi8(wv[h][c][1], qw.pick[t / 2]);
          a16[h][c][0] = _mm256_add_epi16(a16[h][c][0], _mm256_maddubs_epi16(a_lo, w_lo));
          a16[h][c][1] = _mm256_add_epi16(a16[h][c][1], _mm256_maddubs_epi16(a_hi, w_hi));
          a16[h][c][2] = _mm256_add_epi16(a16[h][c][2], _mm256_maddubs_epi16(b_lo, w_lo));
          a16[h][c][3] = _mm256_add_epi16(a16[h][c][3], _mm256_maddubs_epi16(b_hi, w_hi));
        }
      }
    }
    for (int h = 0; h < NQ; ++h)
      for (int c = 0; c < NC; ++c)
        for (int r = 0; r < 4; ++r)
          for (int half = 0; half < 2; ++half) {
            const int v = 2 * r + half;
            const __m128i s16 = half ? _mm256_extracti128_si256(a16[h][c][r], 1) : _mm256_castsi256_si128(a16[h][c][r]);
            const __m256 dot = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(s16));
            float* slot = fa[h] + (c * 8 + v) * 8;
            _mm256_store_ps(slot, _mm256_add_ps(_mm256_load_ps(slot),
                                                _mm256_mul_ps(_mm256_set1_ps(ws[h][group_of_vector[c * 8 + v]][k]), dot)));
          }
  }
  qw.Finish(NQ, d, group, channel, fa[0], acc);
}

// The INT2 values kernels' float accumulator (this file's and the AVX-512 VNNI one's): slot (c, k, e) holds channel
// 64c + 4e + k — lane e of phase k of chunk c — for each of NQ queries, starting from acc; channel[slot] maps back.
template <int NC, int NQ>
inline void Int2ValueSlots(const float* acc, float (*fa)[64 * NC], int* channel) {
  constexpr int d = 64 * NC;
  for (int c = 0; c < NC; ++c)
    for (int k = 0; k < 4; ++k)
      for (int e = 0; e < 16; ++e) {
        const int slot = (c * 4 + k) * 16 + e;
        channel[slot] = 64 * c + 4 * e + k;
        for (int h = 0; h < NQ; ++h) fa[h][slot] = acc[h * d + channel[slot]];
      }
}

// INT2 values, two rows per register as in ScoresInt2: rows t and t+1's 16 code bytes of a chunk interleaved byte by
// byte (vpunpcklbw/hbw, bytes 0-7 in the low 128 bits, 8-15 in the high), then the four 2-bit phases with one shift
// each: byte pair j of phase k holds channel 4j+k of both rows, so one vpmaddubsw with (w_t, w_t+1) gives
// w_t·code_t + w_t+1·code_t+1 per channel — the low half's channels 0-31 of the chunk, the high half's 32-63, each
// inside one group, so one vpshufb per pair spreads both groups' weights. Blocks of 64 rows (KvValueBlockRows).
// Groups of 16 (kGroupsOf16; head_dim 128: chunk c's groups 4c..4c+3 as its g0..g3): each half's int16 lanes 0-3
// are one group's channels, 4-7 the next's; a weights register then holds eight rows of each of the chunk's four
// groups, [g0 | g1 || g2 | g3], and the vpshufb picks the pair of g0 or g2 for lanes 0-3 and of g1 or g3 for lanes 4-7.
template <int NC, int NQ, bool kGroupsOf16 = false>
void ValuesInt2(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  constexpr int d = 64 * NC, kBlock = KvValueBlockRows(KvPrecision::Int2), S = kBlock / 16;
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, 2);
  alignas(32) float fa[kPass][d];
  int channel[d];
  Int2ValueSlots<NC, NQ>(acc, fa, channel);
  const __m256i three = _mm256_set1_epi8(3);
  QueryBlockWeights<S, 1, kGroupsOf16 ? 4 * NC : 4> qw;
  const auto& w8 = qw.w8;
  const auto& ws = qw.ws;
  __m256i pick16[4];  // groups of 16: row pair k of eight, int16 lanes 0-3 from bytes 2k, 2k+1, lanes 4-7 from 8 + 2k..
  for (int k = 0; k < 4; ++k) {
    alignas(32) int16_t pairs[16];
    for (int lane = 0; lane < 16; ++lane) {
      const int first = (lane % 8 < 4 ? 0 : 8) + 2 * k;
      pairs[lane] = (int16_t)(first | (first + 1) << 8);
    }
    pick16[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(pairs));
  }
  for (size_t b = 0; b < n; b += kBlock) {
    const int nb = (int)std::min<size_t>(kBlock, n - b);
    AskRowsAhead(rows + b * f.stride, kBlock * f.stride);
    qw.Quantize(f, ng, code_bytes, NQ, p + b, p_stride, rows + b * f.stride, nb);
    __m256i a16[kPass][NC][4];
    for (int h = 0; h < NQ; ++h)
      for (int c = 0; c < NC; ++c)
        for (int k = 0; k < 4; ++k) a16[h][c][k] = _mm256_setzero_si256();
    for (int s = 0; 16 * s < nb; ++s) {
      __m256i wv[kPass][NC];  // [the 16 rows' weights in the group of channels 64c..64c+31 | of 64c+32..64c+63]
      __m256i wv8[kPass][NC][2];  // groups of 16: rows 0-7, rows 8-15 of the sub-block, [g0 | g1 || g2 | g3]
      for (int h = 0; h < NQ; ++h) {
        if constexpr (kGroupsOf16) {
          for (int c = 0; c < NC; ++c) {
            __m128i g[4];
            for (int i = 0; i < 4; ++i) g[i] = _mm_load_si128(reinterpret_cast<const __m128i*>(w8[h][4 * c + i] + 16 * s));
            wv8[h][c][0] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi64(g[0], g[1])), _mm_unpacklo_epi64(g[2], g[3]), 1);
            wv8[h][c][1] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpackhi_epi64(g[0], g[1])), _mm_unpackhi_epi64(g[2], g[3]), 1);
          }
          continue;
        }
        for (int c = 0; c < NC; ++c)
          wv[h][c] = _mm256_inserti128_si256(
              _mm256_castsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(w8[h][64 * c / group] + 16 * s))),
              _mm_load_si128(reinterpret_cast<const __m128i*>(w8[h][(64 * c + 32) / group] + 16 * s)), 1);
      }
      const int end = std::min(16, nb - 16 * s);
      for (int t = 0; t < end; t += 2) {
        const uint8_t* rt = rows + (b + 16 * s + t) * f.stride;
        const uint8_t* ru = t + 1 < end ? rt + f.stride : rt;  // its weight is 0 when it is the same row
        for (int c = 0; c < NC; ++c) {
          const __m128i xt = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rt + 16 * c));
          const __m128i xu = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ru + 16 * c));
          const __m256i x = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(xt, xu)), _mm_unpackhi_epi8(xt, xu), 1);
          const __m256i ph[4] = {_mm256_and_si256(x, three), _mm256_and_si256(_mm256_srli_epi16(x, 2), three),
                                 _mm256_and_si256(_mm256_srli_epi16(x, 4), three), _mm256_and_si256(_mm256_srli_epi16(x, 6), three)};
          for (int h = 0; h < NQ; ++h) {
            const __m256i w = kGroupsOf16 ? _mm256_shuffle_epi8(wv8[h][c][t / 8], pick16[t / 2 % 4])
                                          : _mm256_shuffle_epi8(wv[h][c], qw.pick[t / 2]);
            for (int k = 0; k < 4; ++k) a16[h][c][k] = _mm256_add_epi16(a16[h][c][k], _mm256_maddubs_epi16(ph[k], w));
          }
        }
      }
    }
    for (int h = 0; h < NQ; ++h)
      for (int c = 0; c < NC; ++c) {
        // (groups of 16: a half's lanes 0-3 and 4-7 are two groups)
        const __m256 lo_scale = kGroupsOf16 ? _mm256_set_m128(_mm_set1_ps(ws[h][4 * c + 1][0]), _mm_set1_ps(ws[h][4 * c][0]))
                                            : _mm256_set1_ps(ws[h][64 * c / group][0]);
        const __m256 hi_scale = kGroupsOf16 ? _mm256_set_m128(_mm_set1_ps(ws[h][4 * c + 3][0]), _mm_set1_ps(ws[h][4 * c + 2][0]))
                                            : _mm256_set1_ps(ws[h][(64 * c + 32) / group][0]);
        for (int k = 0; k < 4; ++k) {
          float* slot = fa[h] + (c * 4 + k) * 16;
          const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(a16[h][c][k])));
          const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(a16[h][c][k], 1)));
          _mm256_store_ps(slot, _mm256_fmadd_ps(lo_scale, lo, _mm256_load_ps(slot)));
          _mm256_store_ps(slot + 8, _mm256_fmadd_ps(hi_scale, hi, _mm256_load_ps(slot + 8)));
        }
      }
  }
  qw.Finish(NQ, d, group, channel, fa[0], acc);
}

template <int BITS, int NC>
void ValuesPasses(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  KvForQueryPasses(nq, [&](auto count, int h) {
    constexpr int NQ = decltype(count)::value;
    if constexpr (BITS == 2) {
      if (SixteenChannelGroups(f)) return ValuesInt2<NC, NQ, true>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
      ValuesInt2<NC, NQ>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
    } else {
      if (SixteenChannelGroups(f)) return ValuesInt4<BITS, NC, NQ, true>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
      ValuesInt4<BITS, NC, NQ>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
    }
  });
}

// The entry for the fast shapes (FastShape); the caller sends others elsewhere.
inline void ValuesOfShape(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                          float* acc) {
  const int d = f.head_dim;
  if (f.precision == KvPrecision::Int2)
    return d == 64 ? ValuesPasses<2, 1>(f, nq, p, p_stride, rows, n, acc) : ValuesPasses<2, 2>(f, nq, p, p_stride, rows, n, acc);
  if (f.precision == KvPrecision::Int3)
    return d == 64 ? ValuesPasses<3, 1>(f, nq, p, p_stride, rows, n, acc) : ValuesPasses<3, 2>(f, nq, p, p_stride, rows, n, acc);
  return d == 64 ? ValuesPasses<4, 1>(f, nq, p, p_stride, rows, n, acc) : ValuesPasses<4, 2>(f, nq, p, p_stride, rows, n, acc);
}

}  // namespace
}  // namespace mikv::avx
