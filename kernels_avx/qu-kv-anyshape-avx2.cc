// qu8/qu4/qu3/qu2-kv-scores and qu4/qu3/qu2-kv-values, AVX2, for every row shape the cache accepts (groups of any
// multiple of 8 channels, any head_dim): the shapes the specialised kernels (qu-kv-avx2.cc, qu4-qu2-kv-*.cc) do not
// take. Until session 33 INT4/INT3/INT2 rows of those shapes (groups of 16, head_dim 48 or 96, more than four groups)
// and INT8 keys in groups of 8 went to the scalar reference, which reads a row ~70x slower than the SIMD kernels.
//
// A row is read 16 channels (a "step") at a time as sixteen int16 codes in channel order (Codes16): the bytes of the
// step broadcast to both halves of a register, each channel's byte pair moved into its 16-bit lane (vpshufb),
// shifted left so the code's top bit is bit 15 (vpmullw by 2^(16 - bits - its bit offset)) and back down (vpsrlw).
// A step is 2·bits bytes, so every step starts on a byte and one shuffle and one multiplier serve a precision.
//   scores: vpmaddwd against the query's int16 channels -> int32 lanes, lanes 0-3 holding channels 0-7 of the step
//           and lanes 4-7 channels 8-15 (so a group of 8 is one half); four rows at a time reduced by two vphaddd,
//           then the reference's float terms for four rows per instruction;
//   values: the definition's quantized weights (KvQuantizeBlockWeights's bytes, eight groups per instruction) times
//           the codes, summed in uint16 lanes over a block (kv_kernels.h sizes blocks so the sums fit), one step at a
//           time, widened and scaled once per block and step; the zeros' sums (KvAddValueZeros's) beside the weights.
// A GQA group's queries share each row's unpacking (since session 46): the scores in passes of up to four queries,
// the values in passes of up to two; each query's results are the one-query kernel's bit for bit.
#include <algorithm>
#include <cstring>

#include "kv-avx.h"

namespace mikv::avx {

namespace {

// Where each of a step's 16 channels lies in its 2·BITS bytes (BITS < 8): the byte pair to gather into the channel's
// 16-bit lane, and the power of two that moves the code to the lane's top.
template <int BITS>
struct Spread {
  __m256i pairs, multipliers;
  Spread() {
    alignas(32) uint8_t idx[32];
    alignas(32) int16_t mul[16];
    for (int c = 0; c < 16; ++c) {
      const int bit = BITS * c;
      idx[2 * c] = (uint8_t)(bit / 8);
      idx[2 * c + 1] = (uint8_t)(bit / 8 + 1);  // at most 2·BITS: a byte read as 0 when past the step
      mul[c] = (int16_t)(1 << (16 - BITS - bit % 8));
    }
    // (vpshufb indexes within each 128-bit half: Codes16 puts the step's bytes in both, so lanes 8-15 find theirs.)
    pairs = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    multipliers = _mm256_load_si256(reinterpret_cast<const __m256i*>(mul));
  }
};

template <>
struct Spread<8> {};

// The codes of channels [i, i + 16) (i a multiple of 8) as int16 lanes. HALF: only [i, i + 8) are the row's (its
// last eight channels); lanes 8-15 then read as 0, and nothing past the channels' own bytes is read.
template <int BITS, bool HALF>
inline __m256i Codes16(const uint8_t* codes, int i, const Spread<BITS>& s) {
  if constexpr (BITS == 8) {
    const __m128i x = HALF ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i))
                           : _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i));
    return _mm256_cvtepu8_epi16(x);
  } else {
    uint64_t w = 0;
    std::memcpy(&w, codes + BITS * i / 8, HALF ? BITS : 2 * BITS);
    const __m256i x = _mm256_set1_epi64x((long long)w);
    return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(x, s.pairs), s.multipliers), 16 - BITS);
  }
}

// Four rows' int32 lane vectors -> [row 0..3] sums of lanes 0-3 (channels 0-7 of a step) in the low half and of lanes
// 4-7 (channels 8-15) in the high half.
inline __m256i HalfSums4(const __m256i* a) {
  return _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
}

// Halfs [h0, h0 + 4) of a row's 2·ng FP16 scales-and-zeros (sz: their start) in the low 64 bits. Halfs past the row's
// read as anything (they belong to groups past ng), but nothing past the row is read: a chunk that would cross its end
// is read as the row's last four halfs and shifted down.
inline __m128i Load4Halfs(const uint8_t* sz, int h0, int ng) {
  const int total = 2 * ng;
  if (h0 + 4 <= total) return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sz + 2 * h0));
  if (total >= 4)
    return _mm_srl_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sz + 2 * (total - 4))),
                         _mm_cvtsi32_si128(16 * (h0 - (total - 4))));
  return _mm_srl_epi64(ScaleZeroHalfs(sz, 1), _mm_cvtsi32_si128(16 * h0));  // one group: a scale and a zero
}

// Four rows' scales and zeros of groups g0..g0+3 as columns: sc[j] / zc[j] = group g0 + j's scale / zero of rows 0-3
// (groups past ng: anything). A 4x8 transpose of 16-bit lanes, then one F16C conversion per two columns.
inline void ScaleZeroColumns4(const uint8_t* const* r, size_t code_bytes, int g0, int ng, __m128* sc, __m128* zc) {
  __m128i x[4];
  for (int k = 0; k < 4; ++k) {
    const uint8_t* sz = r[k] + code_bytes;
    x[k] = _mm_unpacklo_epi64(Load4Halfs(sz, g0, ng), Load4Halfs(sz, ng + g0, ng));  // 4 scales | 4 zeros
  }
  const __m128i s01 = _mm_unpacklo_epi16(x[0], x[1]), z01 = _mm_unpackhi_epi16(x[0], x[1]);
  const __m128i s23 = _mm_unpacklo_epi16(x[2], x[3]), z23 = _mm_unpackhi_epi16(x[2], x[3]);
  const __m256 c[4] = {_mm256_cvtph_ps(_mm_unpacklo_epi32(s01, s23)), _mm256_cvtph_ps(_mm_unpackhi_epi32(s01, s23)),
                       _mm256_cvtph_ps(_mm_unpacklo_epi32(z01, z23)), _mm256_cvtph_ps(_mm_unpackhi_epi32(z01, z23))};
  for (int j = 0; j < 2; ++j) {
    sc[2 * j] = _mm256_castps256_ps128(c[j]), sc[2 * j + 1] = _mm256_extractf128_ps(c[j], 1);
    zc[2 * j] = _mm256_castps256_ps128(c[2 + j]), zc[2 * j + 1] = _mm256_extractf128_ps(c[2 + j], 1);
  }
}

// The scores of a pass of NQ queries (KvForQueryPasses): each row's steps are unpacked once and dotted with every
// query, and its scales and zeros made columns once, as the specialised kernels do for a GQA group. (Until session 46
// each query unpacked every row again: with four query heads of 96 channels the scores were 46% of the INT2
// attention.) The integer dots and float terms of each query are the one-query kernel's, so its scores bit for bit.
// On the device tool's Xeon, 4k rows in cache, one thread: two to four queries 0.58-0.76x the time (passes of four
// beat two passes of two for four queries); one query 1.02-1.03x (docs/bench/anyshape-passes-session46.txt).
template <int BITS, int NQ>
void ScoresAnyShapePass(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                        float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, group = f.group, ng = d / group, full_steps = d / 16;
  // Only with groups of an odd count of 8 channels: groups of a multiple of 16 divide d into whole steps.
  const bool half_tail = d % 16 != 0;
  const int steps = full_steps + half_tail;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  const Spread<BITS> spread;
  __m256i q16[NQ][kMaxHeadDim / 16 + 1];
  float qs[NQ][kMaxHeadDim / 8];
  for (int h = 0; h < NQ; ++h) {
    int8_t q8[kMaxHeadDim + 16];
    QuantizeQueryAvx2(q + (size_t)h * d, d, group, q8, qs[h]);
    std::memset(q8 + d, 0, 16);  // the half step's channels past d weigh nothing
    for (int s = 0; s < steps; ++s)
      q16[h][s] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + 16 * s)));
  }
  for (size_t t = 0; t < n; t += 4) {
    const int nb = (int)std::min<size_t>(4, n - t);
    const uint8_t* r[4];  // rows past n repeat the last one; their scores are not stored
    for (int k = 0; k < 4; ++k) r[k] = rows + (t + std::min(k, nb - 1)) * f.stride;
    // The integer dots of each query and group for the four rows.
    __m128i dots[NQ][kMaxHeadDim / 8];
    if (group % 16 == 0) {
      for (int g = 0; g < ng; ++g) {
        __m256i acc[NQ][4];
        for (int h = 0; h < NQ; ++h)
          for (int k = 0; k < 4; ++k) acc[h][k] = _mm256_setzero_si256();
        for (int s = g * group / 16; s < (g + 1) * group / 16; ++s)
          for (int k = 0; k < 4; ++k) {
            const __m256i c = Codes16<BITS, false>(r[k], 16 * s, spread);
            for (int h = 0; h < NQ; ++h) acc[h][k] = _mm256_add_epi32(acc[h][k], _mm256_madd_epi16(c, q16[h][s]));
          }
        for (int h = 0; h < NQ; ++h) {
          const __m256i h4 = HalfSums4(acc[h]);
          dots[h][g] = _mm_add_epi32(_mm256_castsi256_si128(h4), _mm256_extracti128_si256(h4, 1));
        }
      }
    } else {
      // Groups of an odd count of 8 channels (8, 24, 40, ...): a step's halves are eight-channel spans 2s and 2s + 1,
      // and a group the sum of its group / 8 spans' integer dots (exact: the same integers in another order). A
      // group of 24 taken as whole steps mixed channels 16-23 into the next group (fixed in session 46).
      __m128i spans[NQ][kMaxHeadDim / 8];
      for (int s = 0; s < steps; ++s) {
        const bool half = s == full_steps;
        __m256i acc[NQ][4];
        for (int k = 0; k < 4; ++k) {
          const __m256i c =
              half ? Codes16<BITS, true>(r[k], 16 * s, spread) : Codes16<BITS, false>(r[k], 16 * s, spread);
          for (int h = 0; h < NQ; ++h) acc[h][k] = _mm256_madd_epi16(c, q16[h][s]);
        }
        for (int h = 0; h < NQ; ++h) {
          const __m256i h4 = HalfSums4(acc[h]);
          spans[h][2 * s] = _mm256_castsi256_si128(h4);
          if (!half) spans[h][2 * s + 1] = _mm256_extracti128_si256(h4, 1);
        }
      }
      const int per_group = group / 8;
      for (int h = 0; h < NQ; ++h)
        for (int g = 0; g < ng; ++g) {
          dots[h][g] = spans[h][g * per_group];
          for (int j = 1; j < per_group; ++j) dots[h][g] = _mm_add_epi32(dots[h][g], spans[h][g * per_group + j]);
        }
    }
    // The reference's float terms, group by group, four rows per instruction, in FinishScores' operations and order
    // (zero_g·qsum_g, then sums_g·(scale_g·qs_g), each one fmadd into the total): the AVX-512 VNNI kernels take
    // head_dim 64 in groups of 16 with those, and give these scores bit for bit.
    __m128 total[NQ];
    for (int h = 0; h < NQ; ++h) total[h] = _mm_setzero_ps();
    for (int g0 = 0; g0 < ng; g0 += 4) {
      __m128 sc[4], zc[4];
      ScaleZeroColumns4(r, code_bytes, g0, ng, sc, zc);
      for (int h = 0; h < NQ; ++h) {
        const float* qsum_h = qsum + (size_t)h * ng;
        for (int g = g0; g < std::min(ng, g0 + 4); ++g) {
          total[h] = _mm_fmadd_ps(zc[g - g0], _mm_set1_ps(qsum_h[g]), total[h]);
          total[h] = _mm_fmadd_ps(_mm_cvtepi32_ps(dots[h][g]), _mm_mul_ps(sc[g - g0], _mm_set1_ps(qs[h][g])), total[h]);
        }
      }
    }
    for (int h = 0; h < NQ; ++h) {
      alignas(16) float sc4[4];
      _mm_store_ps(sc4, _mm_mul_ps(total[h], _mm_set1_ps(scale)));
      for (int k = 0; k < nb; ++k) out[(size_t)h * out_stride + t + k] = sc4[k];
    }
  }
}

template <int BITS>
void ScoresAnyShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                    float scale, float* out, size_t out_stride) {
  const int ng = f.head_dim / f.group;
  KvForQueryPasses(nq, [&](auto count, int h) {
    ScoresAnyShapePass<BITS, decltype(count)::value>(f, q + (size_t)h * f.head_dim, qsum + (size_t)h * ng, rows, n,
                                                     scale, out + (size_t)h * out_stride, out_stride);
  });
}

// One step's weighted code sums over a block's nb rows for each of a pass's NQ queries, added into acc[h][i, i + 8 or
// 16): groups g0 (channels i..i+7) and g1 (i+8..i+15; the same group unless groups are 8 wide). Each row's codes are
// unpacked once for every query of the pass; each query's sums are the one-query kernel's.
template <int BITS, bool HALF, int NQ>
inline void ValuesStep(const KvRowFormat& f, int pitch, const uint8_t* block_rows, int nb, const uint8_t* const* w8,
                       const float* const* ws, int i, const Spread<BITS>& spread, float* const* acc) {
  const int g0 = i / f.group, g1 = HALF ? g0 : (i + 8) / f.group;
  __m256i sum[NQ];  // uint16 lanes: a block's Σ w8·code stays below 2^15 (kv_kernels.h)
  for (int h = 0; h < NQ; ++h) sum[h] = _mm256_setzero_si256();
  for (int t = 0; t < nb; ++t) {
    const __m256i c = Codes16<BITS, HALF>(block_rows + t * f.stride, i, spread);
    for (int h = 0; h < NQ; ++h) {
      const uint8_t* w = w8[h] + (size_t)t * pitch;
      const __m256i wt = g0 == g1 ? _mm256_set1_epi16(w[g0])
                                  : _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(w[g0])),
                                                            _mm_set1_epi16(w[g1]), 1);
      sum[h] = _mm256_add_epi16(sum[h], _mm256_mullo_epi16(c, wt));
    }
  }
  for (int h = 0; h < NQ; ++h) {
    float* a = acc[h];
    const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(sum[h])));
    _mm256_storeu_ps(a + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_mul_ps(_mm256_set1_ps(ws[h][g0]), lo)));
    if (HALF) continue;
    const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(sum[h], 1)));
    _mm256_storeu_ps(a + i + 8,
                     _mm256_add_ps(_mm256_loadu_ps(a + i + 8), _mm256_mul_ps(_mm256_set1_ps(ws[h][g1]), hi)));
  }
}

// A block's quantized weights as KvQuantizeBlockWeights makes them, with its float operations (so its bytes), eight
// groups per instruction: w = max(0, p·scale) (maxps with 0 second: a NaN product gives 0, as std::max(0, NaN)), the
// block's largest per group, then min(127, w·127/largest) (minps: a NaN gives 127, as fmin), max 0, rounded half to
// even (vcvtps2dq, nearbyint's default mode). Row t's weights at w8[t·pitch + g]: pitch = ng rounded up to 8, so a
// row's eight-group chunks never reach the next row. Also adds the block's p·zero into zsum per group, rows in order,
// skipping p = 0 (KvAddValueZeros's sums).
void QuantizeBlockWeights(const KvRowFormat& f, int ng, int pitch, size_t code_bytes, const float* p,
                          const uint8_t* rows, int nb, uint8_t* w8, float* ws, float* zsum) {
  float w[kKvValueBlockMax * (kMaxHeadDim / 8)];
  const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(127.0f);
  for (int g0 = 0; g0 < ng; g0 += 8) {
    __m256 largest = zero, z = _mm256_loadu_ps(zsum + g0);
    for (int t = 0; t < nb; ++t) {
      const uint8_t* sz = rows + t * f.stride + code_bytes;
      const __m256 pt = _mm256_set1_ps(p[t]);
      const __m256 v = _mm256_max_ps(_mm256_mul_ps(pt, Load8HalfsAsFloats(sz, g0, ng)), zero);
      _mm256_storeu_ps(w + t * pitch + g0, v);
      largest = _mm256_max_ps(largest, v);
      if (p[t] != 0.0f) z = _mm256_add_ps(z, _mm256_mul_ps(pt, Load8HalfsAsFloats(sz, ng + g0, ng)));
    }
    _mm256_storeu_ps(zsum + g0, z);
    const __m256 inv = _mm256_and_ps(_mm256_cmp_ps(largest, zero, _CMP_GT_OQ), _mm256_div_ps(top, largest));
    alignas(32) float big[8];
    _mm256_store_ps(big, _mm256_div_ps(largest, top));
    std::memcpy(ws + g0, big, 4 * std::min(8, ng - g0));
    for (int t = 0; t < nb; ++t) {
      const __m256 x = _mm256_max_ps(_mm256_min_ps(_mm256_mul_ps(_mm256_loadu_ps(w + t * pitch + g0), inv), top), zero);
      const __m256i n = _mm256_cvtps_epi32(x);
      const __m128i n16 = _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(w8 + t * pitch + g0), _mm_packus_epi16(n16, n16));
    }
  }
}

// The values of a pass of NQ queries (KvForQueryPasses): each query's block weights, then every step's code sums
// for all of them (ValuesStep), so a row is unpacked once a pass rather than once a query (until session 46).
template <int BITS, int NQ>
void ValuesAnyShapePass(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                        float* acc) {
  const int d = f.head_dim, ng = d / f.group, pitch = (ng + 7) / 8 * 8, full_steps = d / 16;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  const Spread<BITS> spread;
  alignas(32) uint8_t w8[NQ][kKvValueBlockMax * (kMaxHeadDim / 8)];
  float ws[NQ][kMaxHeadDim / 8], zsum[NQ][kMaxHeadDim / 8 + 8] = {};
  const uint8_t* w8_of[NQ];
  const float* ws_of[NQ];
  float* acc_of[NQ];
  for (int h = 0; h < NQ; ++h) w8_of[h] = w8[h], ws_of[h] = ws[h], acc_of[h] = acc + (size_t)h * d;
  const size_t block = KvValueBlockRows(f.precision);
  for (size_t b = 0; b < n; b += block) {
    const int nb = (int)std::min(block, n - b);
    const uint8_t* block_rows = rows + b * f.stride;
    for (int h = 0; h < NQ; ++h)
      QuantizeBlockWeights(f, ng, pitch, code_bytes, p + (size_t)h * p_stride + b, block_rows, nb, w8[h], ws[h],
                           zsum[h]);
    for (int s = 0; s < full_steps; ++s)
      ValuesStep<BITS, false, NQ>(f, pitch, block_rows, nb, w8_of, ws_of, 16 * s, spread, acc_of);
    if (d % 16 != 0)
      ValuesStep<BITS, true, NQ>(f, pitch, block_rows, nb, w8_of, ws_of, 16 * full_steps, spread, acc_of);
  }
  for (int h = 0; h < NQ; ++h)
    for (int i = 0; i < d; ++i) acc_of[h][i] += zsum[h][i / f.group];  // after the blocks, as KvAddValueZeros
}

// Passes of at most two queries: with four, each row's four weight broadcasts outweighed the one unpacking they share
// (on the device tool's Xeon, 4k rows in cache, INT2, head_dim 96, four queries: 0.88x the old time in passes of
// four, 0.72-0.75x in passes of two; docs/bench/anyshape-passes-session46.txt).
template <int BITS>
void ValuesAnyShape(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                    float* acc) {
  KvForQueryPasses<2>(nq, [&](auto count, int h) {
    ValuesAnyShapePass<BITS, decltype(count)::value>(f, p + (size_t)h * p_stride, p_stride, rows, n,
                                                     acc + (size_t)h * f.head_dim);
  });
}

}  // namespace

void QuKvScoresAnyShapeAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                            size_t n, float scale, float* out, size_t out_stride) {
  switch (f.precision) {
    case KvPrecision::Int8: return ScoresAnyShape<8>(f, nq, q, qsum, rows, n, scale, out, out_stride);
    case KvPrecision::Int4: return ScoresAnyShape<4>(f, nq, q, qsum, rows, n, scale, out, out_stride);
    case KvPrecision::Int3: return ScoresAnyShape<3>(f, nq, q, qsum, rows, n, scale, out, out_stride);
    case KvPrecision::Int2: return ScoresAnyShape<2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
    default: return kScalarKvKernels.scores_group[(int)f.precision](f, nq, q, qsum, rows, n, scale, out, out_stride);
  }
}

void QuKvValuesAnyShapeAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows,
                            size_t n, float* acc) {
  switch (f.precision) {
    case KvPrecision::Int4: return ValuesAnyShape<4>(f, nq, p, p_stride, rows, n, acc);
    case KvPrecision::Int3: return ValuesAnyShape<3>(f, nq, p, p_stride, rows, n, acc);
    case KvPrecision::Int2: return ValuesAnyShape<2>(f, nq, p, p_stride, rows, n, acc);
    default:
      for (int h = 0; h < nq; ++h)
        kScalarKvKernels.values[(int)f.precision](f, p + (size_t)h * p_stride, rows, n, acc + (size_t)h * f.head_dim);
  }
}

}  // namespace mikv::avx
