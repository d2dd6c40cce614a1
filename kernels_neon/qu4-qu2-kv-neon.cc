// qu4-, qu3- and qu2-kv-scores/values, NEON: the integer definition of kv_kernels.h. A row's
// codes are unpacked into bytes in channel order (INT4: zip of low and high nibbles; INT2: two rounds of zips of the
// four 2-bit fields; INT3: Int3Spread below), then
//   scores: int8 products per group — SDOT (vdotq_s32) where the target has dotprod, else vmull_s8 + vpadalq_s16;
//   values: each row's quantized weight (0..127) times its codes added into uint16 lanes with vmlal_u8 (a block of
//           16 rows sums to at most 16·15·127 < 2^16), widened to float once per block.
// Groups must be whole multiples of 16 channels (every Llama-family shape); others go to the scalar reference.
#include <algorithm>

#include "kv-neon.h"

namespace mikv::neon {

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
  if (BITS == 3) {
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

inline int32x4_t DotAccumulate(int32x4_t acc, uint8x16_t codes, int8x16_t q) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, vreinterpretq_s8_u8(codes), q);
#else
  const int8x16_t c = vreinterpretq_s8_u8(codes);
  const int16x8_t prod = vmlal_s8(vmull_s8(vget_low_s8(c), vget_low_s8(q)), vget_high_s8(c), vget_high_s8(q));
  return vpadalq_s16(acc, prod);
#endif
}

template <int BITS>
void Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
            float* out) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  int8_t q8[kMaxHeadDim];
  float qs[kMaxHeadDim / 8];
  KvQuantizeQuery(q, d, group, q8, qs);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    float total = 0.0f;
    for (int g = 0; g < ng; ++g) {
      int32x4_t acc = vdupq_n_s32(0);
      for (int i = g * group; i < (g + 1) * group; i += 16) acc = DotAccumulate(acc, Codes16<BITS>(row, i), vld1q_s8(q8 + i));
      total += Half(sz[g]) * qs[g] * (float)vaddvq_s32(acc) + Half(sz[ng + g]) * qsum[g];
    }
    out[t] = total * scale;
  }
}

template <int BITS>
void Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  uint8_t w8[kKvValueBlockMax * (kMaxHeadDim / 8)];
  float ws[kMaxHeadDim / 8];
  uint16_t sums[kMaxHeadDim];  // a block's sums stay below 2^15 (KvValueBlockRows)
  const size_t block = KvValueBlockRows(f.precision);
  for (size_t b = 0; b < n; b += block) {
    const int nb = (int)std::min(block, n - b);
    KvQuantizeBlockWeights(f, p + b, rows + b * f.stride, nb, w8, ws);
    std::memset(sums, 0, sizeof(uint16_t) * d);
    for (int t = 0; t < nb; ++t) {
      const uint8_t* row = rows + (b + t) * f.stride;
      for (int g = 0; g < ng; ++g) {
        const uint8x8_t w = vdup_n_u8(w8[t * ng + g]);
        for (int i = g * group; i < (g + 1) * group; i += 16) {
          const uint8x16_t c = Codes16<BITS>(row, i);
          vst1q_u16(sums + i, vmlal_u8(vld1q_u16(sums + i), vget_low_u8(c), w));
          vst1q_u16(sums + i + 8, vmlal_u8(vld1q_u16(sums + i + 8), vget_high_u8(c), w));
        }
      }
    }
    for (int g = 0; g < ng; ++g) {
      const float32x4_t s = vdupq_n_f32(ws[g]);
      for (int i = g * group; i < (g + 1) * group; i += 8) {
        const uint16x8_t v = vld1q_u16(sums + i);
        const float32x4_t lo = vcvtq_f32_u32(vmovl_u16(vget_low_u16(v))), hi = vcvtq_f32_u32(vmovl_u16(vget_high_u16(v)));
        vst1q_f32(acc + i, vaddq_f32(vld1q_f32(acc + i), vmulq_f32(s, lo)));
        vst1q_f32(acc + i + 4, vaddq_f32(vld1q_f32(acc + i + 4), vmulq_f32(s, hi)));
      }
    }
  }
  KvAddValueZeros(f, p, rows, n, acc);
}

}  // namespace

void Qu4Qu2Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                  float* out) {
  if (f.group % 16 != 0) return kScalarKvKernels.scores[(int)f.precision](f, q, qsum, rows, n, scale, out);
  if (f.precision == KvPrecision::Int4) return Scores<4>(f, q, qsum, rows, n, scale, out);
  if (f.precision == KvPrecision::Int3) return Scores<3>(f, q, qsum, rows, n, scale, out);
  return Scores<2>(f, q, qsum, rows, n, scale, out);
}

void Qu4Qu2Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  if (f.group % 16 != 0) return kScalarKvKernels.values[(int)f.precision](f, p, rows, n, acc);
  if (f.precision == KvPrecision::Int4) return Values<4>(f, p, rows, n, acc);
  if (f.precision == KvPrecision::Int3) return Values<3>(f, p, rows, n, acc);
  return Values<2>(f, p, rows, n, acc);
}

}  // namespace mikv::neon
