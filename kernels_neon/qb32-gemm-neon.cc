// qb32-gemm (Q8_0 and Q4_0 weights × Q8_0 activations -> f32), NEON, on weights packed eight rows at a time
// (PackQb32Rows8, qb32_gemm.h): a packed vector's first 16 bytes are rows 0-3 (a dword each), its last 16 rows 4-7,
// so each half is one int32x4 of four rows' sums and one activation dword serves all four.
//
// With the dotprod extension (armv8.2-a, compile time) a dword of four products per lane is one SDOT by lane
// (vdotq_laneq_s32: the activation dword is a lane of the block, no broadcast). Without it, widening multiplies of
// two rows' dwords by the dword repeated, summed in int16 (Q4_0: eight products of at most 15 · 127 per lane, 15,240;
// Q8_0: widened after each, two would reach 32,512) and pairwise into the rows' int32 lanes.
// With the int8 matrix-multiply extension (i8mm: armv8.6-a, optional from 8.2; qb32-gemm-neoni8mm.cc) tokens go in
// pairs: one SMMLA multiplies two tokens' eight codes (2 x 8) by two rows' eight (8 x 2) into the four sums
// [t0·r0, t0·r1, t1·r0, t1·r1], 32 products an instruction against SDOT's 16, and each row pair's codes, once
// unpacked, serve two pairs of tokens. The packed layout needs no copy of its own: zipping the dwords of two vectors
// (rows 0-3's dwords c and c+1) gives rows 0 and 1's eight consecutive codes, and rows 2 and 3's. A decode step's
// single token (and an odd batch's last) takes the SDOT path, so i8mm speeds up prefill, not decode.
// Q4_0's nibbles are multiplied as they are (0..15) and 8 · Σx of the activation block is taken off.
// Per block the rows' sums as floats times f32(d_w) · f32(d_x), then added: the scalar reference's operations in its
// order, so each row's result is the reference's bit for bit (this file is compiled without fused multiply-adds).
#if defined(__aarch64__)
#include <arm_neon.h>
#else  // x86: the same source through SIMDe, so the tests run it everywhere
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#endif

#include <algorithm>
#include <type_traits>
#include <utility>

#include "ggml_blocks.h"
#include "qb32_gemm.h"

// The tests also compile this file through SIMDe with MIKV_NEON_EMULATE_DOTPROD, so the SDOT path runs on x86 too.
#if defined(__ARM_FEATURE_DOTPROD) || defined(MIKV_NEON_EMULATE_DOTPROD)
#define MIKV_QB32_SDOT 1
#endif
// And with MIKV_NEON_EMULATE_I8MM (qb32-gemm-neon-i8mm-emulated.cc), its SMMLA path, SMMLA defined below.
#if defined(MIKV_QB32_SDOT) && (defined(__ARM_FEATURE_MATMUL_INT8) || defined(MIKV_NEON_EMULATE_I8MM))
#define MIKV_QB32_SMMLA 1
#endif

#if defined(MIKV_NEON_EMULATE_I8MM) && !defined(__aarch64__)
// SIMDe 0.7 has no SMMLA. Its definition (Arm ARM, SMMLA (vector)): r[2i + j] += Σ_k a[8i + k] · b[8j + k], a and b
// each two rows of eight int8.
static inline int32x4_t vmmlaq_s32(int32x4_t r, int8x16_t a, int8x16_t b) {
  int32_t acc[4];
  int8_t x[16], y[16];
  vst1q_s32(acc, r);
  vst1q_s8(x, a);
  vst1q_s8(y, b);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 8; ++k) acc[2 * i + j] += (int32_t)x[8 * i + k] * (int32_t)y[8 * j + k];
  return vld1q_s32(acc);
}
#endif

// This compilation's namespace: qb32-gemm-neondot.cc compiles the file again for armv8.2-a+dotprod as `neon_dot`.
#ifndef MIKV_NEON_NS
#define MIKV_NEON_NS neon
#endif

namespace mikv::MIKV_NEON_NS {

namespace {

constexpr size_t kRows = 8;
constexpr size_t kScaleBytes = kRows * 2;

inline float32x4_t Halves4(const uint8_t* p) {
  uint16_t h[4];
  __builtin_memcpy(h, p, sizeof(h));
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

// Int32 sums of one block for rows 0-3 (lo) and 4-7 (hi) of a packed group-block.
struct RowSums {
  int32x4_t lo, hi;
};

// An activation block's 32 codes: elements 0-15 and 16-31.
struct XBlock {
  int8x16_t e0, e1;
};

// s = step(s, C) for C = 0..N-1 in order, C a constant (the lane of an SDOT or a dup must be one).
template <typename S, typename STEP, int... C>
inline S UnrolledSteps(S s, STEP step, std::integer_sequence<int, C...>) {
  ((s = step(s, std::integral_constant<int, C>{})), ...);
  return s;
}
template <int N, typename S, typename STEP>
inline S Unrolled(S s, STEP step) {
  return UnrolledSteps(s, step, std::make_integer_sequence<int, N>{});
}

#if defined(MIKV_QB32_SDOT)
// Lane L of x: the activation dword 4L..4L+3 of that half of the block.
template <int L>
inline RowSums Dot(RowSums s, int8x16_t w_lo, int8x16_t w_hi, int8x16_t x) {
  return {vdotq_laneq_s32(s.lo, w_lo, x, L), vdotq_laneq_s32(s.hi, w_hi, x, L)};
}

template <int C>
inline RowSums StepQ4_0(RowSums s, const uint8_t* codes, const XBlock& x) {
  const uint8x16_t v0 = vld1q_u8(codes + 32 * C), v1 = vld1q_u8(codes + 32 * C + 16);
  const uint8x16_t low = vdupq_n_u8(0x0f);
  s = Dot<C>(s, vreinterpretq_s8_u8(vandq_u8(v0, low)), vreinterpretq_s8_u8(vandq_u8(v1, low)), x.e0);
  return Dot<C>(s, vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)), x.e1);
}

inline RowSums BlockQ4_0(const uint8_t* codes, const XBlock& x, int32_t x_sum) {
  const RowSums start{vdupq_n_s32(-8 * x_sum), vdupq_n_s32(-8 * x_sum)};
  return Unrolled<4>(start, [&](RowSums s, auto c) { return StepQ4_0<decltype(c)::value>(s, codes, x); });
}

template <int C>
inline RowSums StepQ8_0(RowSums s, const uint8_t* codes, const XBlock& x) {
  return Dot<C % 4>(s, vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C),
                    vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C + 16), C < 4 ? x.e0 : x.e1);
}

inline RowSums BlockQ8_0(const uint8_t* codes, const XBlock& x, int32_t) {
  const RowSums zero{vdupq_n_s32(0), vdupq_n_s32(0)};
  return Unrolled<8>(zero, [&](RowSums s, auto c) { return StepQ8_0<decltype(c)::value>(s, codes, x); });
}
#else
// Products of rows 0-3 in int16: pairs of rows per int16x8 (rows 0-1, 2-3, 4-5, 6-7).
struct Pairs {
  int16x8_t r01, r23, r45, r67;
};

// Activation dword L of x, twice (the two rows of a half vector).
template <int L>
inline int8x8_t Dword2(int8x16_t x) {
  return vreinterpret_s8_s32(vdup_laneq_s32(vreinterpretq_s32_s8(x), L));
}

inline Pairs MulAdd(Pairs p, int8x16_t w_lo, int8x16_t w_hi, int8x8_t x2) {
  return {vmlal_s8(p.r01, vget_low_s8(w_lo), x2), vmlal_s8(p.r23, vget_high_s8(w_lo), x2),
          vmlal_s8(p.r45, vget_low_s8(w_hi), x2), vmlal_s8(p.r67, vget_high_s8(w_hi), x2)};
}

// Rows 0-3 and 4-7 from pairs of rows: [r0 r0 r1 r1] + [r2 r2 r3 r3] -> [r0 r1 r2 r3].
inline RowSums Widen(const Pairs& p) {
  return {vpaddq_s32(vpaddlq_s16(p.r01), vpaddlq_s16(p.r23)), vpaddq_s32(vpaddlq_s16(p.r45), vpaddlq_s16(p.r67))};
}

template <int C>
inline Pairs StepQ4_0(Pairs p, const uint8_t* codes, const XBlock& x) {
  const uint8x16_t v0 = vld1q_u8(codes + 32 * C), v1 = vld1q_u8(codes + 32 * C + 16);
  const uint8x16_t low = vdupq_n_u8(0x0f);
  p = MulAdd(p, vreinterpretq_s8_u8(vandq_u8(v0, low)), vreinterpretq_s8_u8(vandq_u8(v1, low)), Dword2<C>(x.e0));
  return MulAdd(p, vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)), Dword2<C>(x.e1));
}

inline RowSums BlockQ4_0(const uint8_t* codes, const XBlock& x, int32_t x_sum) {
  const int16x8_t zero = vdupq_n_s16(0);
  const RowSums s = Widen(Unrolled<4>(Pairs{zero, zero, zero, zero},
                                      [&](Pairs p, auto c) { return StepQ4_0<decltype(c)::value>(p, codes, x); }));
  const int32x4_t correction = vdupq_n_s32(8 * x_sum);
  return {vsubq_s32(s.lo, correction), vsubq_s32(s.hi, correction)};
}

template <int C>
inline RowSums StepQ8_0(RowSums s, const uint8_t* codes, const XBlock& x) {
  const int8x16_t w0 = vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C);
  const int8x16_t w1 = vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C + 16);
  const int16x8_t zero = vdupq_n_s16(0);
  const RowSums t = Widen(MulAdd({zero, zero, zero, zero}, w0, w1, Dword2<C % 4>(C < 4 ? x.e0 : x.e1)));
  return {vaddq_s32(s.lo, t.lo), vaddq_s32(s.hi, t.hi)};
}

inline RowSums BlockQ8_0(const uint8_t* codes, const XBlock& x, int32_t) {
  const RowSums zero{vdupq_n_s32(0), vdupq_n_s32(0)};
  return Unrolled<8>(zero, [&](RowSums s, auto c) { return StepQ8_0<decltype(c)::value>(s, codes, x); });
}
#endif

// An activation block's f16 scale as a float in every lane, converted exactly as GgmlBlockScale converts it but in one
// instruction (GgmlBlockScale's portable conversion took eight of the ~72 a block of the SDOT path).
inline float32x4_t ActivationScale(const uint8_t* xb) {
  uint16_t h;
  __builtin_memcpy(&h, xb, 2);
  return vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h)));
}

// One packed group (rows o..o+n-1, n ≤ 8) against activation row b.
template <size_t W_BLOCK_BYTES, RowSums (*BLOCK)(const uint8_t*, const XBlock&, int32_t)>
void Group(const uint8_t* g, const Qb32GemmArgs& a, size_t b, size_t o, size_t n) {
  float32x4_t acc_lo = vdupq_n_f32(0.0f), acc_hi = acc_lo;
  const uint8_t* xrow = a.x + b * a.x_row_bytes;
  for (size_t k = 0; k < a.blocks; ++k, g += kRows * W_BLOCK_BYTES) {
    const uint8_t* xb = xrow + k * kQ8_0BlockBytes;
    const XBlock x{vld1q_s8(reinterpret_cast<const int8_t*>(xb + 2)), vld1q_s8(reinterpret_cast<const int8_t*>(xb + 18))};
    const RowSums s = BLOCK(g + kScaleBytes, x, a.x_sums[b * a.blocks + k]);
    const float32x4_t dx = ActivationScale(xb);
    acc_lo = vaddq_f32(acc_lo, vmulq_f32(vmulq_f32(Halves4(g), dx), vcvtq_f32_s32(s.lo)));
    acc_hi = vaddq_f32(acc_hi, vmulq_f32(vmulq_f32(Halves4(g + 8), dx), vcvtq_f32_s32(s.hi)));
  }
  float lanes[kRows];
  vst1q_f32(lanes, acc_lo);
  vst1q_f32(lanes + 4, acc_hi);
  std::copy(lanes, lanes + n, a.y + b * a.y_stride + o);
}

#if defined(MIKV_QB32_SMMLA)
// Two rows' eight consecutive codes, SMMLA's operand: dwords c and c+1 of rows 0-3 (a, b) zipped give rows 0 and 1's
// (first) or rows 2 and 3's (second).
inline int8x16_t Zip32(int8x16_t a, int8x16_t b, bool second) {
  const int32x4_t x = vreinterpretq_s32_s8(a), y = vreinterpretq_s32_s8(b);
  return vreinterpretq_s8_s32(second ? vzip2q_s32(x, y) : vzip1q_s32(x, y));
}

// T pairs of tokens' sums over one block: s[t][i] = [t0·r2i, t0·r2i+1, t1·r2i, t1·r2i+1] of rows 2i, 2i+1. xc[2t],
// xc[2t+1]: pair t's 32 codes, loaded eight at a time as a step needs them (held for the whole block, the operands
// took registers the sums needed). Step j (codes 8j..8j+7) takes its row pairs from the vectors holding dwords 2j
// and 2j+1 of the rows (lo: rows 0-3, hi: rows 4-7); Q4_0's low nibbles are codes 0-15, its high ones 16-31.
template <size_t W_BLOCK_BYTES, int T>
inline void BlockPairs(const uint8_t* codes, const int8_t* const* xc, int32x4_t (*s)[4]) {
  auto step = [&](int8x16_t a_lo, int8x16_t a_hi, int8x16_t b_lo, int8x16_t b_hi, int j) {
    const int8x16_t w[4] = {Zip32(a_lo, b_lo, false), Zip32(a_lo, b_lo, true), Zip32(a_hi, b_hi, false),
                            Zip32(a_hi, b_hi, true)};
    for (int t = 0; t < T; ++t) {
      const int8x16_t x = vcombine_s8(vld1_s8(xc[2 * t] + 8 * j), vld1_s8(xc[2 * t + 1] + 8 * j));
      for (int i = 0; i < 4; ++i) s[t][i] = vmmlaq_s32(s[t][i], x, w[i]);
    }
  };
  if constexpr (W_BLOCK_BYTES == kQ4_0BlockBytes) {
    const uint8x16_t low = vdupq_n_u8(0x0f);
    auto lo = [&](uint8x16_t v) { return vreinterpretq_s8_u8(vandq_u8(v, low)); };
    auto hi = [](uint8x16_t v) { return vreinterpretq_s8_u8(vshrq_n_u8(v, 4)); };
    for (int j = 0; j < 2; ++j) {
      const uint8_t* c = codes + 64 * j;
      const uint8x16_t a_lo = vld1q_u8(c), a_hi = vld1q_u8(c + 16), b_lo = vld1q_u8(c + 32), b_hi = vld1q_u8(c + 48);
      step(lo(a_lo), lo(a_hi), lo(b_lo), lo(b_hi), j);
      step(hi(a_lo), hi(a_hi), hi(b_lo), hi(b_hi), j + 2);
    }
  } else {
    for (int j = 0; j < 4; ++j) {
      const int8_t* c = reinterpret_cast<const int8_t*>(codes) + 64 * j;
      step(vld1q_s8(c), vld1q_s8(c + 16), vld1q_s8(c + 32), vld1q_s8(c + 48), j);
    }
  }
}

// The f16 scales of N ≤ 4 activation blocks (lane i: xb[i]'s, converted exactly as GgmlBlockScale converts them) in
// one conversion, where one at a time took a third of the pairs' non-multiply instructions.
template <int N>
inline float32x4_t ActivationScales(const uint8_t* const* xb) {
  uint16_t h[4] = {0, 0, 0, 0};
  for (int i = 0; i < N; ++i) __builtin_memcpy(&h[i], xb[i], 2);
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

// [u0, u1, v0, v1] (first) or [u2, u3, v2, v3]: row pair i's scales for both tokens of a pair.
inline float32x4_t Halves2(float32x4_t u, float32x4_t v, bool second) {
  const int64x2_t x = vreinterpretq_s64_f32(u), y = vreinterpretq_s64_f32(v);
  return vreinterpretq_f32_s64(second ? vzip2q_s64(x, y) : vzip1q_s64(x, y));
}

// One packed group (rows o..o+n-1, n ≤ 8) against activation rows b..b+2T-1, a pair of them per SMMLA. Per block
// and output the float operations are Group's: acc + (f32(d_w) · d_x) · f32(sum).
template <size_t W_BLOCK_BYTES, int T>
void GroupPairs(const uint8_t* g, const Qb32GemmArgs& a, size_t b, size_t o, size_t n) {
  static_assert(T == 1 || T == 2, "one or two pairs: four activation scales a conversion");
  float32x4_t acc[T][4];
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < 4; ++i) acc[t][i] = vdupq_n_f32(0.0f);
  for (size_t k = 0; k < a.blocks; ++k, g += kRows * W_BLOCK_BYTES) {
    const uint8_t* xb[2 * T];  // each token's block k
    const int8_t* xc[2 * T];   // and its codes
    for (int i = 0; i < 2 * T; ++i) {
      xb[i] = a.x + (b + i) * a.x_row_bytes + k * kQ8_0BlockBytes;
      xc[i] = reinterpret_cast<const int8_t*>(xb[i] + 2);
    }
    int32x4_t s[T][4];
    for (int t = 0; t < T; ++t) {
      int32x4_t start = vdupq_n_s32(0);
      if constexpr (W_BLOCK_BYTES == kQ4_0BlockBytes)
        start = vcombine_s32(vdup_n_s32(-8 * a.x_sums[(b + 2 * t) * a.blocks + k]),
                             vdup_n_s32(-8 * a.x_sums[(b + 2 * t + 1) * a.blocks + k]));
      for (int i = 0; i < 4; ++i) s[t][i] = start;
    }
    BlockPairs<W_BLOCK_BYTES, T>(g + kScaleBytes, xc, s);
    const float32x4_t dw_lo = Halves4(g), dw_hi = Halves4(g + 8), dx = ActivationScales<2 * T>(xb);
    for (int t = 0; t < T; ++t) {
      const float32x4_t lo0 = vmulq_laneq_f32(dw_lo, dx, 0 + 2 * (t == 1)), lo1 = vmulq_laneq_f32(dw_lo, dx, 1 + 2 * (t == 1));
      const float32x4_t hi0 = vmulq_laneq_f32(dw_hi, dx, 0 + 2 * (t == 1)), hi1 = vmulq_laneq_f32(dw_hi, dx, 1 + 2 * (t == 1));
      const float32x4_t scale[4] = {Halves2(lo0, lo1, false), Halves2(lo0, lo1, true), Halves2(hi0, hi1, false),
                                    Halves2(hi0, hi1, true)};
      for (int i = 0; i < 4; ++i) acc[t][i] = vaddq_f32(acc[t][i], vmulq_f32(scale[i], vcvtq_f32_s32(s[t][i])));
    }
  }
  for (int t = 0; t < T; ++t) {
    float first[kRows], second[kRows];  // the pair's two tokens
    for (int i = 0; i < 4; ++i) {
      vst1_f32(first + 2 * i, vget_low_f32(acc[t][i]));
      vst1_f32(second + 2 * i, vget_high_f32(acc[t][i]));
    }
    std::copy(first, first + n, a.y + (b + 2 * t) * a.y_stride + o);
    std::copy(second, second + n, a.y + (b + 2 * t + 1) * a.y_stride + o);
  }
}
#endif

template <size_t W_BLOCK_BYTES, RowSums (*BLOCK)(const uint8_t*, const XBlock&, int32_t)>
void Gemm(const Qb32GemmArgs& a, size_t o_begin, size_t o_end) {
  const size_t group_bytes = a.blocks * kRows * W_BLOCK_BYTES;
  for (size_t o = o_begin; o < o_end; o += kRows) {
    const uint8_t* g = a.w + o / kRows * group_bytes;
    const size_t n = std::min(kRows, o_end - o);
    size_t b = 0;
#if defined(MIKV_QB32_SMMLA)
    // Four tokens at a time (two pairs: each row pair's codes unpacked once for both), then a pair.
    for (; b + 4 <= a.batch; b += 4) GroupPairs<W_BLOCK_BYTES, 2>(g, a, b, o, n);
    for (; b + 2 <= a.batch; b += 2) GroupPairs<W_BLOCK_BYTES, 1>(g, a, b, o, n);
#endif
    for (; b < a.batch; ++b) Group<W_BLOCK_BYTES, BLOCK>(g, a, b, o, n);
  }
}

// QuantizeActivationsQ8_0 (ggml_blocks.h) bit for bit, 32 floats per block in eight registers. The reference's
// std::max / std::min skip a NaN operand in favour of the other, as FMAXNM / FMINNM do (a NaN input is left out of
// the block's amax and clamps to −127); FRINTN rounds half to even, as nearbyint does in the default rounding mode,
// and the integral result converts exactly.
// The lanes' maxima are of non-negative non-NaN values, so their order is free.
void QuantizeActivations(const float* x, size_t n, uint8_t* blocks, int32_t* sums) {
  const float32x4_t top = vdupq_n_f32(127.0f), bottom = vdupq_n_f32(-127.0f);
  for (size_t b = 0; b < n / kQBlock; ++b, x += kQBlock, blocks += kQ8_0BlockBytes) {
    float32x4_t v[8], m = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; ++i) {
      v[i] = vld1q_f32(x + 4 * i);
      m = vmaxnmq_f32(m, vabsq_f32(v[i]));  // std::max(amax, |x|)
    }
    const float amax = vmaxvq_f32(m);
    const uint16_t d = FloatToHalf(amax / 127.0f);
    __builtin_memcpy(blocks, &d, 2);
    const float32x4_t id = vdupq_n_f32(amax != 0.0f ? 127.0f / amax : 0.0f);
    int32x4_t q[8];
    for (int i = 0; i < 8; ++i)  // std::min(127, std::max(-127, x · id)), rounded
      q[i] = vcvtq_s32_f32(vrndnq_f32(vminnmq_f32(vmaxnmq_f32(vmulq_f32(v[i], id), bottom), top)));
    int8x8_t bytes[4];
    for (int i = 0; i < 4; ++i) bytes[i] = vqmovn_s16(vcombine_s16(vqmovn_s32(q[2 * i]), vqmovn_s32(q[2 * i + 1])));
    vst1q_s8(reinterpret_cast<int8_t*>(blocks + 2), vcombine_s8(bytes[0], bytes[1]));
    vst1q_s8(reinterpret_cast<int8_t*>(blocks + 18), vcombine_s8(bytes[2], bytes[3]));
    if (sums) {
      int32x4_t s = q[0];
      for (int i = 1; i < 8; ++i) s = vaddq_s32(s, q[i]);
      sums[b] = vaddvq_s32(s);
    }
  }
}

}  // namespace
}  // namespace mikv::MIKV_NEON_NS

namespace mikv {
// On AArch64 this is the build's NEON table, and qb32-gemm-neondot.cc's and qb32-gemm-neoni8mm.cc's compilations its
// dotprod and i8mm tables; on x86 (SIMDe) the tests reach it as kNeonQb32KernelsEmulated, its SDOT form as
// kNeonDotQb32KernelsEmulated and its SMMLA form as kNeonI8mmQb32KernelsEmulated.
#if defined(MIKV_QB32_NEON_TABLE)
extern const Qb32Kernels MIKV_QB32_NEON_TABLE = {
#elif defined(__aarch64__)
extern const Qb32Kernels kNeonQb32Kernels = {
#elif defined(MIKV_NEON_EMULATE_I8MM)
extern const Qb32Kernels kNeonI8mmQb32KernelsEmulated = {
#elif defined(MIKV_NEON_EMULATE_DOTPROD)
extern const Qb32Kernels kNeonDotQb32KernelsEmulated = {
#else
extern const Qb32Kernels kNeonQb32KernelsEmulated = {
#endif
#if defined(MIKV_QB32_SMMLA)
    "neon-i8mm",
#elif defined(MIKV_QB32_SDOT)
    "neon-dotprod",
#else
    "neon",
#endif
    MIKV_NEON_NS::Gemm<kQ8_0BlockBytes, MIKV_NEON_NS::BlockQ8_0>, MIKV_NEON_NS::Gemm<kQ4_0BlockBytes, MIKV_NEON_NS::BlockQ4_0>,
    /*packed_rows=*/8, MIKV_NEON_NS::QuantizeActivations};
}  // namespace mikv
