// Pieces shared by the INT4/INT2 integer KV kernels (qu4-qu2-kv-avx2.cc, qu4-qu2-kv-avx512vnni.cc). Internal
// linkage on purpose: each file is compiled for its own instruction set, and one copy must not stand in for the
// other's.
#pragma once

#include "kv-avx.h"

namespace mikv::avx {
namespace {

// The shapes the integer kernels (INT8 to INT2) take directly: head_dim 64 or 128 (one or two 64-channel chunks) in
// groups of a multiple of 16 channels — 16, 32, 64 or 128 (each int32 lane they sum lies inside one group). Others go
// to qu-kv-anyshape-avx2.cc.
inline bool FastShape(const KvRowFormat& f) {
  return (f.head_dim == 64 || f.head_dim == 128) && f.group % 16 == 0;
}

// Groups of 16: four to each 64-channel chunk (head_dim 64: four groups, 128: eight, chunk c's being 4c..4c+3), the
// one fast shape whose 32-channel halves are not inside one group. The integer scores take it as the others (every
// int32 lane they sum — eight INT4 channels, sixteen INT2 — lies inside a group of 16, and they keep a sum per group);
// the INT4/INT2 values spread a chunk's four groups' weights where they spread two (the AVX2 INT4/INT3 ones need
// nothing: each 128-bit half of their int16 sums lies inside one group of 16 already). Before, every x86 table sent
// head_dim 64 in groups of 16 to qu-kv-anyshape-avx2.cc until session 38, and head_dim 128 until session 44 (3-27x
// slower than groups of 32 there with three query heads).
inline bool SixteenChannelGroups(const KvRowFormat& f) { return f.group == 16; }

// Eight rows' lane vectors -> their eight sums, in one register.
inline __m256 SumEach(const __m256* r) {
  const __m256 h01 = _mm256_hadd_ps(_mm256_hadd_ps(r[0], r[1]), _mm256_hadd_ps(r[2], r[3]));
  const __m256 h23 = _mm256_hadd_ps(_mm256_hadd_ps(r[4], r[5]), _mm256_hadd_ps(r[6], r[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(h01, h23, 0x20), _mm256_permute2f128_ps(h01, h23, 0x31));
}

// Eight rows' [scales, zeros] as columns of halfs: cols[h] = half h (h < 2·NG) of rows 0-7 (row i at first +
// i·stride; rows at or past nb read as 0). An 8x8 transpose of 16-bit lanes; with NG known the compiler drops what
// nobody reads (12 shuffles for NG = 2). Loads and shuffles rather than vpgatherdd, which is microcoded on the Intel
// parts this runs on (the values kernel took 5% less time without it; a variant loading two rows per ymm by
// broadcast was slower). One to four groups: a row's 2·NG halfs are one load.
template <int NG>
inline void ScaleColumns8(const uint8_t* first, size_t stride, int nb, __m128i* cols) {
  if constexpr (NG == 8) {
    // Eight groups (head_dim 128 in groups of 16): the eight scales, then the eight zeros, each transposed as four
    // groups' halfs are.
    ScaleColumns8<4>(first, stride, nb, cols);
    ScaleColumns8<4>(first + 16, stride, nb, cols + 8);
  } else {
    static_assert(NG <= 4, "a row's scales and zeros in one 128-bit load");
    __m128i x[8], a[8], b[8];
    for (int i = 0; i < 8; ++i) x[i] = i < nb ? ScaleZeroHalfs(first + i * stride, NG) : _mm_setzero_si128();
    for (int i = 0; i < 4; ++i) {
      a[2 * i] = _mm_unpacklo_epi16(x[2 * i], x[2 * i + 1]);      // halfs 0-3 of rows 2i, 2i+1, interleaved
      a[2 * i + 1] = _mm_unpackhi_epi16(x[2 * i], x[2 * i + 1]);  // halfs 4-7
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        b[4 * i + 2 * j] = _mm_unpacklo_epi32(a[4 * i + j], a[4 * i + j + 2]);      // halfs 4j, 4j+1 of rows 4i..4i+3
        b[4 * i + 2 * j + 1] = _mm_unpackhi_epi32(a[4 * i + j], a[4 * i + j + 2]);  // halfs 4j+2, 4j+3
      }
    for (int k = 0; k < NG; ++k) {
      cols[2 * k] = _mm_unpacklo_epi64(b[k], b[4 + k]);
      cols[2 * k + 1] = _mm_unpackhi_epi64(b[k], b[4 + k]);
    }
  }
}

// The scales and zeros of a sub-block of 16 rows (nb of them real; nb <= 0: none), as floats: half h of the rows'
// [scales, zeros] in sz0[h] (rows 0-7) and sz1[h] (rows 8-15); rows past nb are masked out (mask0, mask1). Shared by
// every query that weighs the block. kGroups: the most groups a row has (8 only for head_dim 128 in groups of 16).
template <int kGroups = 4>
struct BlockScales {
  __m256 sz0[2 * kGroups], sz1[2 * kGroups];
  __m256i mask0, mask1;
};

template <int NG, int kGroups>
inline void GatherBlockScalesOf(const uint8_t* first, size_t stride, int nb, BlockScales<kGroups>* b) {
  static_assert(NG <= kGroups, "room for the row's groups");
  __m128i cols[2 * NG];
  ScaleColumns8<NG>(first, stride, nb, cols);
  for (int h = 0; h < 2 * NG; ++h) b->sz0[h] = _mm256_cvtph_ps(cols[h]);
  ScaleColumns8<NG>(first + 8 * stride, stride, nb - 8, cols);
  for (int h = 0; h < 2 * NG; ++h) b->sz1[h] = _mm256_cvtph_ps(cols[h]);
}

template <int kGroups>
inline void GatherBlockScales(const KvRowFormat& f, int ng, size_t code_bytes, const uint8_t* rows, int nb,
                              BlockScales<kGroups>* b) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  nb = std::min(nb, 16);
  b->mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb), iota);
  b->mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb - 8), iota);
  if (nb <= 0) {  // an empty sub-block past the rows: weighs nothing
    for (int h = 0; h < 2 * ng; ++h) b->sz0[h] = b->sz1[h] = _mm256_setzero_ps();
    return;
  }
  if (ng == 1) return GatherBlockScalesOf<1>(rows + code_bytes, f.stride, nb, b);
  if (ng == 2) return GatherBlockScalesOf<2>(rows + code_bytes, f.stride, nb, b);
  if (ng == 4 || kGroups == 4) return GatherBlockScalesOf<4>(rows + code_bytes, f.stride, nb, b);
  return GatherBlockScalesOf<kGroups>(rows + code_bytes, f.stride, nb, b);  // eight groups
}

// KvQuantizeBlockWeights for one query's p over a block of S gathered 16-row sub-blocks (S·16 =
// KvValueBlockRows), with the same float operations (so the same bytes), eight rows per register: the block's
// weights at w8[g][16·S·k + t] (rows past the block's end get 0), its scale at ws[g][k] (k: the block's place among
// the K a caller quantizes together). Also adds p·zero of the block's rows into zacc[g] (eight lanes).
template <int S, int W, int K, int kGroups>
inline void QuantizeBlockWeights(const BlockScales<kGroups>* b, int ng, const float* p, uint8_t (*w8)[W], float (*ws)[K], int k,
                                 __m256* zacc) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 p0[S], p1[S];
  for (int s = 0; s < S; ++s) {
    p0[s] = _mm256_maskload_ps(p + 16 * s, b[s].mask0);
    p1[s] = _mm256_maskload_ps(p + 16 * s + 8, b[s].mask1);
  }
  for (int g = 0; g < ng; ++g) {
    __m256 w0[S], w1[S], big = zero;
    for (int s = 0; s < S; ++s) {
      zacc[g] = _mm256_fmadd_ps(p0[s], b[s].sz0[ng + g], _mm256_fmadd_ps(p1[s], b[s].sz1[ng + g], zacc[g]));
      w0[s] = _mm256_max_ps(zero, _mm256_mul_ps(p0[s], b[s].sz0[g]));
      w1[s] = _mm256_max_ps(zero, _mm256_mul_ps(p1[s], b[s].sz1[g]));
      big = _mm256_max_ps(big, _mm256_max_ps(w0[s], w1[s]));
    }
    const float largest = HorizontalMax(big);
    const __m256 inv = _mm256_set1_ps(largest > 0.0f ? 127.0f / largest : 0.0f);
    for (int s = 0; s < S; ++s) {
      const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(w0[s], inv)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(w1[s], inv));
      const __m128i h0 = _mm_packs_epi32(_mm256_castsi256_si128(q0), _mm256_extracti128_si256(q0, 1));
      const __m128i h1 = _mm_packs_epi32(_mm256_castsi256_si128(q1), _mm256_extracti128_si256(q1, 1));
      _mm_store_si128(reinterpret_cast<__m128i*>(w8[g] + 16 * (S * k + s)), _mm_packus_epi16(h0, h1));
    }
    ws[g][k] = largest / 127.0f;
  }
}

// The values kernels' last step for nq queries: acc[h·d + channel[slot]] = fa[h·d + slot] + zsum[h][the slot's
// group] (fa: a kernel's float sums in its own slot order; zsum: each group's Σ p·zero). Walked channel by channel
// through the slots' inverse, a group at a time, so that no slot's group costs an integer division: with one
// division per slot and query, a cost per call, the AVX-512 INT2 attention of three query heads took 1/0.86 the
// time at 256 rows and 1/0.89 at 512 (level at 4k; docs/bench/value-slots-session55.txt).
inline void PutBackValueSlots(int nq, int d, int group, const int* channel, const float* fa, const float (*zsum)[8],
                              float* acc) {
  int slot_of[128];  // head_dim 64 or 128 (FastShape)
  for (int slot = 0; slot < d; ++slot) slot_of[channel[slot]] = slot;
  for (int h = 0; h < nq; ++h)
    for (int first = 0, g = 0; first < d; first += group, ++g)
      for (int c = first; c < first + group; ++c) acc[h * d + c] = fa[h * d + slot_of[c]] + zsum[h][g];
}

}  // namespace
}  // namespace mikv::avx
