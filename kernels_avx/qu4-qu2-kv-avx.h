// Pieces shared by the INT4/INT2 integer KV kernels (qu4-qu2-kv-avx2.cc, qu4-qu2-kv-avx512vnni.cc). Internal
// linkage on purpose: each file is compiled for its own instruction set, and one copy must not stand in for the
// other's.
#pragma once

#include "kv-avx.h"

namespace mikv::avx {
namespace {

// The shapes the integer kernels take directly: head_dim 64 or 128 (one or two 64-channel chunks), groups of 32, 64
// or 128 channels (each int32 lane stays inside one group), at most four groups. Others go to the scalar reference.
inline bool FastShape(const KvRowFormat& f) {
  return (f.head_dim == 64 || f.head_dim == 128) && f.group % 32 == 0 && f.head_dim / f.group <= 4;
}

// A row's ng scales then ng zeros (ng = 1, 2 or 4) as floats in the low lanes.
inline __m256 LoadScalesAndZeros(const uint8_t* p, int ng) {
  __m128i h;
  if (ng == 1) {
    int32_t v;
    std::memcpy(&v, p, 4);
    h = _mm_cvtsi32_si128(v);
  } else if (ng == 2) {
    h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  } else {
    h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  }
  return _mm256_cvtph_ps(h);
}

// Eight rows' lane vectors -> their eight sums, in one register.
inline __m256 SumEach(const __m256* r) {
  const __m256 h01 = _mm256_hadd_ps(_mm256_hadd_ps(r[0], r[1]), _mm256_hadd_ps(r[2], r[3]));
  const __m256 h23 = _mm256_hadd_ps(_mm256_hadd_ps(r[4], r[5]), _mm256_hadd_ps(r[6], r[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(h01, h23, 0x20), _mm256_permute2f128_ps(h01, h23, 0x31));
}

// Eight rows' halfs h and h+1 of their scales-and-zeros (a dword each, gathered) as two registers of floats.
inline void GatherHalfPair(const uint8_t* base, __m256i offsets, __m256i mask, __m256* even, __m256* odd) {
  const __m256i d = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), reinterpret_cast<const int*>(base), offsets, mask, 1);
  const __m256i packed = _mm256_permute4x64_epi64(
      _mm256_packus_epi32(_mm256_and_si256(d, _mm256_set1_epi32(0xFFFF)), _mm256_srli_epi32(d, 16)), 0xD8);
  *even = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
  *odd = _mm256_cvtph_ps(_mm256_extracti128_si256(packed, 1));
}

// The scales and zeros of a block of nb <= 16 rows, as floats: half h of the rows' [scales, zeros] in sz0[h] (rows
// 0-7) and sz1[h] (rows 8-15); rows past nb read as 0. Shared by every query that weighs the block.
struct BlockScales {
  __m256 sz0[8], sz1[8];
  __m256i mask0, mask1;
  int nb;
};

inline void GatherBlockScales(const KvRowFormat& f, int ng, size_t code_bytes, const uint8_t* rows, int nb, BlockScales* b) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  b->nb = nb;
  b->mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb), iota);
  b->mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb - 8), iota);
  const __m256i off0 = _mm256_mullo_epi32(iota, _mm256_set1_epi32((int)f.stride));
  const __m256i off1 = _mm256_add_epi32(off0, _mm256_set1_epi32((int)(8 * f.stride)));
  for (int h = 0; h < 2 * ng; h += 2) {
    GatherHalfPair(rows + code_bytes + 2 * h, off0, b->mask0, &b->sz0[h], &b->sz0[h + 1]);
    GatherHalfPair(rows + code_bytes + 2 * h, off1, b->mask1, &b->sz1[h], &b->sz1[h + 1]);
  }
}

// KvQuantizeBlockWeights for one query's p over a gathered block, with the same float operations (so the same
// bytes), eight rows per register: w8[g][t] (rows nb..15 get 0), ws[g]. Also adds p·zero of the block's rows into
// zacc[g] (eight lanes).
inline void QuantizeBlockWeights(const BlockScales& b, int ng, const float* p, uint8_t (*w8)[16], float* ws, __m256* zacc) {
  const __m256 p0 = _mm256_maskload_ps(p, b.mask0), p1 = _mm256_maskload_ps(p + 8, b.mask1), zero = _mm256_setzero_ps();
  for (int g = 0; g < ng; ++g) {
    zacc[g] = _mm256_fmadd_ps(p0, b.sz0[ng + g], _mm256_fmadd_ps(p1, b.sz1[ng + g], zacc[g]));
    const __m256 w0 = _mm256_max_ps(zero, _mm256_mul_ps(p0, b.sz0[g]));
    const __m256 w1 = _mm256_max_ps(zero, _mm256_mul_ps(p1, b.sz1[g]));
    const float largest = HorizontalMax(_mm256_max_ps(w0, w1));
    const __m256 inv = _mm256_set1_ps(largest > 0.0f ? 127.0f / largest : 0.0f);
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(w0, inv)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(w1, inv));
    const __m128i h0 = _mm_packs_epi32(_mm256_castsi256_si128(q0), _mm256_extracti128_si256(q0, 1));
    const __m128i h1 = _mm_packs_epi32(_mm256_castsi256_si128(q1), _mm256_extracti128_si256(q1, 1));
    _mm_store_si128(reinterpret_cast<__m128i*>(w8[g]), _mm_packus_epi16(h0, h1));
    ws[g] = largest / 127.0f;
  }
}

inline void BlockWeights(const KvRowFormat& f, int ng, size_t code_bytes, const float* p, const uint8_t* rows, int nb,
                         uint8_t (*w8)[16], float* ws, __m256* zacc) {
  BlockScales b;
  GatherBlockScales(f, ng, code_bytes, rows, nb, &b);
  QuantizeBlockWeights(b, ng, p, w8, ws, zacc);
}

}  // namespace
}  // namespace mikv::avx
