// qu8-, qu4-, qu3- and qu2-kv-scores and qu4/qu3/qu2-kv-values, NEON: the integer definition of kv_kernels.h. A row's
// codes are unpacked into bytes in channel order (INT8: as they lie; INT4: zip of low and high nibbles; INT2: two
// rounds of zips of the four 2-bit fields; INT3: Int3Spread below), then
//   scores: int8 products per group — SDOT (vdotq_s32) where the target has dotprod, else vmull_s8 + vpadalq_s16 —
//           four rows at a time, whose int32 lanes reduce to one vector by two rounds of pairwise adds, so the
//           group's scale and zero terms are applied to four rows per instruction (INT8 codes enter as code - 128);
//   values: each row's quantized weight (0..127) times its codes added into uint16 lanes with vmlal_u8 (a block of
//           16 rows sums to at most 16·15·127 < 2^16), in registers over a block's rows one 16-channel chunk at a
//           time, widened to float once per block and chunk. (INT8 values are float: kv-neon.cc.)
// The heads of a GQA group go in passes of up to four (KvForQueryPasses, kv_kernels.h): each row is read and unpacked once per pass, not once
// per head. (Until session 16 the group entry points ran the one-query kernels once per head, and those reduced each
// row's lanes with its own vaddvq and kept the values' sums in memory.)
// Groups go in 16-channel steps; the 8 channels left of a group of an odd count of 8 (groups of 8: llama2.c's heads
// of 8 channels; 24) in a step of 8 with the query's other 8 channels zero (scores), or as a half of a step
// (values).
#include <algorithm>
#include <cstring>

#include "kv-neon.h"

namespace mikv::MIKV_NEON_NS {

namespace {

// INT3: the byte pair that holds each of 16 channels' codes (vqtbl1q_u8 into 16-bit lanes), shifted right by
// 3·k mod 8 (vshlq_u16 by a negative count), masked and narrowed. The 6 code bytes of [i, i + 16) are read as 8: a
// row's scales and zeros follow its codes, so the 2 extra bytes are the row's own.
struct Int3Spread {
  uint8x16_t pairs[2];
  int16x8_t shifts[2];
  Int3Spread() {
    uint8_t idx[2][16];
    int16_t sh[2][8];
    for (int k = 0; k < 16; ++k) {
      idx[k / 8][2 * (k % 8)] = (uint8_t)(3 * k / 8);
      idx[k / 8][2 * (k % 8) + 1] = (uint8_t)(3 * k / 8 + 1);
      sh[k / 8][k % 8] = (int16_t)-(3 * k % 8);
    }
    for (int h = 0; h < 2; ++h) pairs[h] = vld1q_u8(idx[h]), shifts[h] = vld1q_s16(sh[h]);
  }
};

// Codes of channels [i, i + 16) as bytes, in channel order.
template <int BITS>
inline uint8x16_t Codes16(const uint8_t* codes, int i) {
  if (BITS == 8) {
    return vld1q_u8(codes + i);
  } else if (BITS == 3) {
    static const Int3Spread spread;
    const uint8x8_t x8 = vld1_u8(codes + 3 * i / 8);
    const uint8x16_t x = vcombine_u8(x8, x8);
    const uint16x8_t seven = vdupq_n_u16(7);
    const uint16x8_t a = vandq_u16(vshlq_u16(vreinterpretq_u16_u8(vqtbl1q_u8(x, spread.pairs[0])), spread.shifts[0]), seven);
    const uint16x8_t b = vandq_u16(vshlq_u16(vreinterpretq_u16_u8(vqtbl1q_u8(x, spread.pairs[1])), spread.shifts[1]), seven);
    return vcombine_u8(vmovn_u16(a), vmovn_u16(b));
  } else if (BITS == 4) {
    const uint8x8_t x = vld1_u8(codes + i / 2);
    const uint8x8x2_t z = vzip_u8(vand_u8(x, vdup_n_u8(15)), vshr_n_u8(x, 4));
    return vcombine_u8(z.val[0], z.val[1]);
  } else {
    uint32_t w;
    std::memcpy(&w, codes + i / 4, 4);
    const uint8x8_t x = vreinterpret_u8_u32(vdup_n_u32(w));  // four code bytes, twice; the low half is used
    const uint8x8_t m = vdup_n_u8(3);
    const uint8x8_t c0 = vand_u8(x, m), c1 = vand_u8(vshr_n_u8(x, 2), m), c2 = vand_u8(vshr_n_u8(x, 4), m),
                    c3 = vshr_n_u8(x, 6);
    const uint8x8_t p01 = vzip_u8(c0, c1).val[0], p23 = vzip_u8(c2, c3).val[0];  // (c0 c1) pairs of bytes 0-3
    const uint16x4x2_t quad = vzip_u16(vreinterpret_u16_u8(p01), vreinterpret_u16_u8(p23));
    return vcombine_u8(vreinterpret_u8_u16(quad.val[0]), vreinterpret_u8_u16(quad.val[1]));
  }
}

// Channels [i, i + 8) in bytes 0-7: a step of a group of 8 channels (bytes 8-15 are multiplied by a zero query). INT8
// reads those 8 bytes only (bytes 8-15 are 0), since a row of head_dim 8 ends 4 bytes after them. The packed codes go
// through Codes16, which reads at most 4 (INT4), 2 (INT2) or 5 (INT3) bytes past the step's: the row's next codes, or
// its scales and zeros (at least 4 bytes; INT3 at head_dim 8 also pads its 3 code bytes to 4).
template <int BITS>
inline uint8x16_t Codes8Of16(const uint8_t* codes, int i) {
  if constexpr (BITS == 8) return vcombine_u8(vld1_u8(codes + i), vdup_n_u8(0));
  else return Codes16<BITS>(codes, i);
}

inline int32x4_t DotAccumulate(int32x4_t acc, uint8x16_t codes, int8x16_t q) {
#if defined(__ARM_FEATURE_DOTPROD) || defined(MIKV_NEON_EMULATE_DOTPROD)
  return vdotq_s32(acc, vreinterpretq_s8_u8(codes), q);
#else
  const int8x16_t c = vreinterpretq_s8_u8(codes);
  const int16x8_t prod = vmlal_s8(vmull_s8(vget_low_s8(c), vget_low_s8(q)), vget_high_s8(c), vget_high_s8(q));
  return vpadalq_s16(acc, prod);
#endif
}

// Lanes 0-3: half `index` of rows r[0..3] (a row's scales and zeros follow its codes), as floats.
inline float32x4_t HalfOf4Rows(const uint8_t* const* r, size_t code_bytes, int index) {
  uint16_t h[4];
  for (int i = 0; i < 4; ++i) std::memcpy(&h[i], r[i] + code_bytes + 2 * index, 2);
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

// The rows t..t+3 (those past n stand in as row n - 1; their results are dropped).
inline void FourRows(const uint8_t* rows, size_t stride, size_t t, size_t n, const uint8_t** r) {
  for (size_t i = 0; i < 4; ++i) r[i] = rows + std::min(t + i, n - 1) * stride;
}

// Scores of NQ queries (int8 q8[h·d], scales qs[h·ng], sums qsum[h·ng]) four rows at a time: per group, each row's
// 16-channel chunks are unpacked once and dotted with every query; the four rows' int32 lanes reduce to one vector
// (two rounds of pairwise adds), and the group's float terms are applied to the four rows in lanes.
template <int BITS, int NQ>
void ScoresPass(const KvRowFormat& f, const int8_t* q8, const float* qs, const float* qsum, const uint8_t* rows,
                size_t n, float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  // INT8 codes go into the signed products as code - 128 (s8·s8: SDOT, or vmull_s8 pairs of at most 2·128·127 in
  // int16), and each group's sum gets back 128·Σ q8 over the group: the same integer as Σ q8·code.
  int32_t offset[NQ][kMaxHeadDim / 8] = {};
  if constexpr (BITS == 8)
    for (int h = 0; h < NQ; ++h)
      for (int i = 0; i < d; ++i) offset[h][i / group] += 128 * q8[h * d + i];
  for (size_t t = 0; t < n; t += 4) {
    const uint8_t* r[4];
    FourRows(rows, f.stride, t, n, r);
    float32x4_t total[NQ];
    for (int h = 0; h < NQ; ++h) total[h] = vdupq_n_f32(0.0f);
    for (int g = 0; g < ng; ++g) {
      int32x4_t acc[NQ][4];
      for (int h = 0; h < NQ; ++h)
        for (int k = 0; k < 4; ++k) acc[h][k] = vdupq_n_s32(0);
      // The group's channels in steps of 16, and where 8 are left (groups of 8, 24, 40, ...) a step of those 8, the
      // query's other 8 zero (they weigh nothing). Until session 46 a group of 24 took a second 16-channel step, whose
      // channels 24-31 belonged to the next group.
      for (int i = g * group, end = (g + 1) * group; i < end;) {
        const bool eight = end - i < 16;
        int8x16_t q[NQ];
        for (int h = 0; h < NQ; ++h)
          q[h] = eight ? vcombine_s8(vld1_s8(q8 + h * d + i), vdup_n_s8(0)) : vld1q_s8(q8 + h * d + i);
        for (int k = 0; k < 4; ++k) {
          uint8x16_t c = eight ? Codes8Of16<BITS>(r[k], i) : Codes16<BITS>(r[k], i);
          if constexpr (BITS == 8) c = veorq_u8(c, vdupq_n_u8(0x80));  // code - 128, as int8
          for (int h = 0; h < NQ; ++h) acc[h][k] = DotAccumulate(acc[h][k], c, q[h]);
        }
        i += eight ? 8 : 16;
      }
      const float32x4_t s = HalfOf4Rows(r, code_bytes, g), z = HalfOf4Rows(r, code_bytes, ng + g);
      for (int h = 0; h < NQ; ++h) {
        int32x4_t sums = vpaddq_s32(vpaddq_s32(acc[h][0], acc[h][1]), vpaddq_s32(acc[h][2], acc[h][3]));
        if constexpr (BITS == 8) sums = vaddq_s32(sums, vdupq_n_s32(offset[h][g]));
        const float32x4_t term = vaddq_f32(vmulq_f32(vmulq_n_f32(s, qs[h * ng + g]), vcvtq_f32_s32(sums)),
                                           vmulq_n_f32(z, qsum[h * ng + g]));
        total[h] = vaddq_f32(total[h], term);
      }
    }
    for (int h = 0; h < NQ; ++h) {
      float lanes[4];
      vst1q_f32(lanes, vmulq_n_f32(total[h], scale));
      std::copy(lanes, lanes + std::min<size_t>(4, n - t), out + h * out_stride + t);
    }
  }
}

// A block's weights for NQ queries, four rows per instruction: w = max(0, p·scale_g), w8 = round(w / ws_g) against the
// block's largest w per query and group, ws_g = that largest / 127 (KvQuantizeBlockWeights' rule and roundings), and
// the zeros' terms Σ_t p·zero_g summed in four lanes over every block (added to acc after the last one).
template <int NQ>
struct BlockWeights {
  static constexpr int kMaxGroups = kMaxHeadDim / 8;  // groups are at least 8 channels
  uint8_t w8[NQ][kMaxGroups][kKvValueBlockMax];
  float ws[NQ][kMaxGroups];
  float32x4_t zsum[NQ][kMaxGroups];

  explicit BlockWeights(int ng) {
    for (int h = 0; h < NQ; ++h)
      for (int g = 0; g < ng; ++g) zsum[h][g] = vdupq_n_f32(0.0f);
  }

  // Rows first..first + nb - 1 (nb <= kKvValueBlockMax), weights p[h·p_stride + t].
  void Quantize(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* first, int nb) {
    const int ng = f.head_dim / f.group;
    const size_t code_bytes = KvCodeBytes(f.head_dim, KvPrecisionBits(f.precision));
    float w[kKvValueBlockMax];
    for (int h = 0; h < NQ; ++h) {
      const float* ph = p + h * p_stride;
      for (int g = 0; g < ng; ++g) {
        float32x4_t largest = vdupq_n_f32(0.0f);
        for (int t = 0; t < nb; t += 4) {
          const uint8_t* r[4];
          FourRows(first, f.stride, t, nb, r);
          float p4[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // rows past nb weigh 0
          std::copy(ph + t, ph + std::min(t + 4, nb), p4);
          const float32x4_t pv = vld1q_f32(p4);
          const float32x4_t wv = vmaxnmq_f32(vdupq_n_f32(0.0f), vmulq_f32(pv, HalfOf4Rows(r, code_bytes, g)));
          vst1q_f32(w + t, wv);
          largest = vmaxq_f32(largest, wv);
          zsum[h][g] = vaddq_f32(zsum[h][g], vmulq_f32(pv, HalfOf4Rows(r, code_bytes, ng + g)));
        }
        const float top = vmaxvq_f32(largest);
        const float32x4_t inv = vdupq_n_f32(top > 0.0f ? 127.0f / top : 0.0f);
        for (int t = 0; t < nb; t += 4) {
          const float32x4_t q = vminnmq_f32(vdupq_n_f32(127.0f), vmaxnmq_f32(vdupq_n_f32(0.0f), vmulq_f32(vld1q_f32(w + t), inv)));
          const uint32x4_t u = vcvtq_u32_f32(vrndnq_f32(q));  // to nearest, ties to even: std::nearbyint's rounding
          uint8_t b[8];
          vst1_u8(b, vmovn_u16(vcombine_u16(vmovn_u32(u), vmovn_u32(u))));
          std::copy(b, b + 4, w8[h][g] + t);  // (entries past nb are written and never read)
        }
        ws[h][g] = top / 127.0f;
      }
    }
  }
};

// Values of NQ queries (weights p[h·p_stride + t]) into acc[h·d]: per block of rows, the queries' weights
// (BlockWeights); then a 16-channel chunk at a time over the block's rows (they stay in L1), each row's chunk is
// unpacked once and multiplied into every query's uint16 sums in registers (vmlal_u8), which are widened and scaled
// once per block and chunk.
template <int BITS, int NQ>
void ValuesPass(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  BlockWeights<NQ> bw(ng);
  const size_t block = KvValueBlockRows(f.precision);
  for (size_t b = 0; b < n; b += block) {
    const int nb = (int)std::min(block, n - b);
    const uint8_t* first = rows + b * f.stride;
    bw.Quantize(f, p + b, p_stride, first, nb);
    for (int i = 0; i < d; i += 16) {
      // Channels i..i+7 are of group g_lo, i+8..i+15 of g_hi (the same group unless groups are 8 wide); a head_dim of
      // an odd count of 8 ends in a half step, whose upper half (the bytes after the codes) is neither used nor stored.
      const bool half = i + 16 > d;
      const int g_lo = i / group, g_hi = half ? g_lo : (i + 8) / group;
      uint16x8_t lo[NQ], hi[NQ];
      for (int h = 0; h < NQ; ++h) lo[h] = hi[h] = vdupq_n_u16(0);
      for (int t = 0; t < nb; ++t) {
        const uint8x16_t c = Codes16<BITS>(first + t * f.stride, i);
        for (int h = 0; h < NQ; ++h) {
          lo[h] = vmlal_u8(lo[h], vget_low_u8(c), vdup_n_u8(bw.w8[h][g_lo][t]));
          hi[h] = vmlal_u8(hi[h], vget_high_u8(c), vdup_n_u8(bw.w8[h][g_hi][t]));
        }
      }
      for (int h = 0; h < NQ; ++h) {
        float* a = acc + h * d + i;
        const uint16x8_t v[2] = {lo[h], hi[h]};
        for (int j = 0; j < (half ? 1 : 2); ++j) {
          const float32x4_t s = vdupq_n_f32(bw.ws[h][j == 0 ? g_lo : g_hi]);
          const float32x4_t l = vcvtq_f32_u32(vmovl_u16(vget_low_u16(v[j]))), u = vcvtq_f32_u32(vmovl_u16(vget_high_u16(v[j])));
          vst1q_f32(a + 8 * j, vaddq_f32(vld1q_f32(a + 8 * j), vmulq_f32(s, l)));
          vst1q_f32(a + 8 * j + 4, vaddq_f32(vld1q_f32(a + 8 * j + 4), vmulq_f32(s, u)));
        }
      }
    }
  }
  for (int h = 0; h < NQ; ++h)
    for (int g = 0; g < ng; ++g) {
      const float z = vaddvq_f32(bw.zsum[h][g]);
      for (int i = g * group; i < (g + 1) * group; ++i) acc[h * d + i] += z;
    }
}

// Passes of up to kKvQueryPass queries (each row's 16 code bytes, the queries' sums and four rows' accumulators then
// fit the 32 vector registers); the one-query kernels are the group kernels with nq = 1, so each head of a group gets
// exactly the one-query result.
template <int BITS>
void ScoresGroup(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                 float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, ng = d / f.group;
  int8_t q8[kKvQueryPass * kMaxHeadDim];
  float qs[kKvQueryPass * (kMaxHeadDim / 8)];
  KvForQueryPasses(nq, [&](auto count, int h0) {
    for (int h = 0; h < decltype(count)::value; ++h) QuantizeQuery(q + (size_t)(h0 + h) * d, d, f.group, q8 + h * d, qs + h * ng);
    ScoresPass<BITS, decltype(count)::value>(f, q8, qs, qsum + (size_t)h0 * ng, rows, n, scale, out + (size_t)h0 * out_stride, out_stride);
  });
}

template <int BITS>
void ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                 float* acc) {
  KvForQueryPasses(nq, [&](auto count, int h0) {
    ValuesPass<BITS, decltype(count)::value>(f, p + (size_t)h0 * p_stride, p_stride, rows, n, acc + (size_t)h0 * f.head_dim);
  });
}

}  // namespace

void Qu4Qu2ScoresGroup(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                       float scale, float* out, size_t out_stride) {
  if (n == 0) return;
  if (f.precision == KvPrecision::Int8) return ScoresGroup<8>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int4) return ScoresGroup<4>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int3) return ScoresGroup<3>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  return ScoresGroup<2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void Qu4Qu2ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                       float* acc) {
  if (f.precision == KvPrecision::Int4) return ValuesGroup<4>(f, nq, p, p_stride, rows, n, acc);
  if (f.precision == KvPrecision::Int3) return ValuesGroup<3>(f, nq, p, p_stride, rows, n, acc);
  return ValuesGroup<2>(f, nq, p, p_stride, rows, n, acc);
}

void Qu4Qu2Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                  float* out) {
  Qu4Qu2ScoresGroup(f, 1, q, qsum, rows, n, scale, out, 0);
}

void Qu4Qu2Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Qu4Qu2ValuesGroup(f, 1, p, 0, rows, n, acc);
}

}  // namespace mikv::MIKV_NEON_NS
