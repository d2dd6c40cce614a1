// qb32-gemm (Q8_0 and Q4_0 weights × Q8_0 activations -> f32), NEON, on weights packed eight rows at a time
// (PackQb32Rows8, qb32_gemm.h): a packed vector's first 16 bytes are rows 0-3 (a dword each), its last 16 rows 4-7,
// so each half is one int32x4 of four rows' sums and one activation dword serves all four.
//
// With the dotprod extension (armv8.2-a, compile time) a dword of four products per lane is one SDOT by lane
// (vdotq_laneq_s32: the activation dword is a lane of the block, no broadcast). Without it, widening multiplies of
// two rows' dwords by the dword repeated, summed in int16 (Q4_0: eight products of at most 15 · 127 per lane, 15,240;
// Q8_0: widened after each, two would reach 32,512) and pairwise into the rows' int32 lanes.
// Q4_0's nibbles are multiplied as they are (0..15) and 8 · Σx of the activation block is taken off.
// Prefill's tokens share each block's codes: a pass over a group's weights takes up to four tokens (SDOT) or two
// (baseline; three spilled), the codes loaded and unpacked once for all of them. Per block and token the compiled
// SDOT loop is 44 instructions for Q4_0 and 38 for Q8_0 four tokens a pass, 60 and 53 for one (a decode step);
// session 40's one token a pass took 72 and 64 (docs/bench/neon-prefill-tokens-session41.txt).
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

// NB tokens' sums of one block (t[i]: token i's), the block's codes loaded and unpacked once for all of them.
template <int NB>
struct TokenSums {
  RowSums t[NB];
};

#if defined(MIKV_QB32_SDOT)
// Lane L of each token's x: the activation dword 4L..4L+3 of that half of its block.
template <int L, int NB>
inline TokenSums<NB> Dot(TokenSums<NB> s, int8x16_t w_lo, int8x16_t w_hi, const int8x16_t* x) {
  for (int i = 0; i < NB; ++i) s.t[i] = {vdotq_laneq_s32(s.t[i].lo, w_lo, x[i], L), vdotq_laneq_s32(s.t[i].hi, w_hi, x[i], L)};
  return s;
}

template <int C, int NB>
inline TokenSums<NB> StepQ4_0(TokenSums<NB> s, const uint8_t* codes, const int8x16_t* e0, const int8x16_t* e1) {
  const uint8x16_t v0 = vld1q_u8(codes + 32 * C), v1 = vld1q_u8(codes + 32 * C + 16);
  const uint8x16_t low = vdupq_n_u8(0x0f);
  s = Dot<C>(s, vreinterpretq_s8_u8(vandq_u8(v0, low)), vreinterpretq_s8_u8(vandq_u8(v1, low)), e0);
  return Dot<C>(s, vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)), e1);
}

template <int NB>
inline TokenSums<NB> BlockQ4_0(const uint8_t* codes, const XBlock* x, const int32_t* x_sum) {
  TokenSums<NB> start;
  int8x16_t e0[NB], e1[NB];
  for (int i = 0; i < NB; ++i) {
    start.t[i] = {vdupq_n_s32(-8 * x_sum[i]), vdupq_n_s32(-8 * x_sum[i])};
    e0[i] = x[i].e0, e1[i] = x[i].e1;
  }
  return Unrolled<4>(start, [&](TokenSums<NB> s, auto c) { return StepQ4_0<decltype(c)::value, NB>(s, codes, e0, e1); });
}

template <int C, int NB>
inline TokenSums<NB> StepQ8_0(TokenSums<NB> s, const uint8_t* codes, const int8x16_t* e) {
  return Dot<C % 4>(s, vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C),
                    vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C + 16), e);
}

template <int NB>
inline TokenSums<NB> BlockQ8_0(const uint8_t* codes, const XBlock* x, const int32_t*) {
  TokenSums<NB> zero;
  int8x16_t e0[NB], e1[NB];
  for (int i = 0; i < NB; ++i) {
    zero.t[i] = {vdupq_n_s32(0), vdupq_n_s32(0)};
    e0[i] = x[i].e0, e1[i] = x[i].e1;
  }
  return Unrolled<8>(zero, [&](TokenSums<NB> s, auto c) {
    constexpr int C = decltype(c)::value;
    return StepQ8_0<C, NB>(s, codes, C < 4 ? e0 : e1);
  });
}
#else
// Products of rows 0-3 in int16: pairs of rows per int16x8 (rows 0-1, 2-3, 4-5, 6-7).
struct Pairs {
  int16x8_t r01, r23, r45, r67;
};

// NB tokens' pairs.
template <int NB>
struct TokenPairs {
  Pairs t[NB];
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

template <int C, int NB>
inline TokenPairs<NB> StepQ4_0(TokenPairs<NB> p, const uint8_t* codes, const XBlock* x) {
  const uint8x16_t v0 = vld1q_u8(codes + 32 * C), v1 = vld1q_u8(codes + 32 * C + 16);
  const uint8x16_t low = vdupq_n_u8(0x0f);
  const int8x16_t l0 = vreinterpretq_s8_u8(vandq_u8(v0, low)), l1 = vreinterpretq_s8_u8(vandq_u8(v1, low));
  const int8x16_t h0 = vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), h1 = vreinterpretq_s8_u8(vshrq_n_u8(v1, 4));
  for (int i = 0; i < NB; ++i) p.t[i] = MulAdd(MulAdd(p.t[i], l0, l1, Dword2<C>(x[i].e0)), h0, h1, Dword2<C>(x[i].e1));
  return p;
}

template <int NB>
inline TokenSums<NB> BlockQ4_0(const uint8_t* codes, const XBlock* x, const int32_t* x_sum) {
  const int16x8_t zero = vdupq_n_s16(0);
  TokenPairs<NB> start;
  for (int i = 0; i < NB; ++i) start.t[i] = Pairs{zero, zero, zero, zero};
  const TokenPairs<NB> p = Unrolled<4>(start, [&](TokenPairs<NB> q, auto c) {
    return StepQ4_0<decltype(c)::value, NB>(q, codes, x);
  });
  TokenSums<NB> s;
  for (int i = 0; i < NB; ++i) {
    const RowSums w = Widen(p.t[i]);
    const int32x4_t correction = vdupq_n_s32(8 * x_sum[i]);
    s.t[i] = {vsubq_s32(w.lo, correction), vsubq_s32(w.hi, correction)};
  }
  return s;
}

template <int C, int NB>
inline TokenSums<NB> StepQ8_0(TokenSums<NB> s, const uint8_t* codes, const XBlock* x) {
  const int8x16_t w0 = vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C);
  const int8x16_t w1 = vld1q_s8(reinterpret_cast<const int8_t*>(codes) + 32 * C + 16);
  const int16x8_t zero = vdupq_n_s16(0);
  for (int i = 0; i < NB; ++i) {
    const RowSums t = Widen(MulAdd({zero, zero, zero, zero}, w0, w1, Dword2<C % 4>(C < 4 ? x[i].e0 : x[i].e1)));
    s.t[i] = {vaddq_s32(s.t[i].lo, t.lo), vaddq_s32(s.t[i].hi, t.hi)};
  }
  return s;
}

template <int NB>
inline TokenSums<NB> BlockQ8_0(const uint8_t* codes, const XBlock* x, const int32_t*) {
  TokenSums<NB> zero;
  for (int i = 0; i < NB; ++i) zero.t[i] = {vdupq_n_s32(0), vdupq_n_s32(0)};
  return Unrolled<8>(zero, [&](TokenSums<NB> s, auto c) { return StepQ8_0<decltype(c)::value, NB>(s, codes, x); });
}
#endif

// An activation block's f16 scale as a float in every lane, converted exactly as GgmlBlockScale converts it but in one
// instruction (GgmlBlockScale's portable conversion took eight of the 72 a block that session 40's SDOT path took).
inline float32x4_t ActivationScale(const uint8_t* xb) {
  uint16_t h;
  __builtin_memcpy(&h, xb, 2);
  return vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h)));
}

// One packed group (rows o..o+n-1, n ≤ 8) against activation rows b0..b0+NB-1: each block's codes unpacked once for
// the NB tokens (prefill's; a decode step's one), the per-token work the block's sums and their scaling.
template <size_t W_BLOCK_BYTES, int NB, TokenSums<NB> (*BLOCK)(const uint8_t*, const XBlock*, const int32_t*)>
void Group(const uint8_t* g, const Qb32GemmArgs& a, size_t b0, size_t o, size_t n) {
  float32x4_t acc_lo[NB], acc_hi[NB];
  const uint8_t* xb[NB];     // each token's block k
  const int32_t* sums[NB];   // and its Σ codes
  for (int i = 0; i < NB; ++i) {
    acc_lo[i] = acc_hi[i] = vdupq_n_f32(0.0f);
    xb[i] = a.x + (b0 + i) * a.x_row_bytes;
    sums[i] = a.x_sums + (b0 + i) * a.blocks;
  }
  for (size_t k = 0; k < a.blocks; ++k, g += kRows * W_BLOCK_BYTES) {
    XBlock x[NB];
    int32_t x_sum[NB];
    for (int i = 0; i < NB; ++i) {
      x[i] = {vld1q_s8(reinterpret_cast<const int8_t*>(xb[i] + 2)), vld1q_s8(reinterpret_cast<const int8_t*>(xb[i] + 18))};
      x_sum[i] = sums[i][k];
    }
    const TokenSums<NB> s = BLOCK(g + kScaleBytes, x, x_sum);
    const float32x4_t dw_lo = Halves4(g), dw_hi = Halves4(g + 8);
    for (int i = 0; i < NB; ++i) {
      const float32x4_t dx = ActivationScale(xb[i]);
      acc_lo[i] = vaddq_f32(acc_lo[i], vmulq_f32(vmulq_f32(dw_lo, dx), vcvtq_f32_s32(s.t[i].lo)));
      acc_hi[i] = vaddq_f32(acc_hi[i], vmulq_f32(vmulq_f32(dw_hi, dx), vcvtq_f32_s32(s.t[i].hi)));
      xb[i] += kQ8_0BlockBytes;
    }
  }
  for (int i = 0; i < NB; ++i) {
    float lanes[kRows];
    vst1q_f32(lanes, acc_lo[i]);
    vst1q_f32(lanes + 4, acc_hi[i]);
    std::copy(lanes, lanes + n, a.y + (b0 + i) * a.y_stride + o);
  }
}

template <size_t W_BLOCK_BYTES, int NB>
inline TokenSums<NB> BlockOf(const uint8_t* codes, const XBlock* x, const int32_t* x_sum) {
  if constexpr (W_BLOCK_BYTES == kQ4_0BlockBytes) return BlockQ4_0<NB>(codes, x, x_sum);
  else return BlockQ8_0<NB>(codes, x, x_sum);
}

// Tokens a pass over a group's weights takes at most (the rest in one smaller pass): as many as the registers hold
// their sums, codes and accumulators for. (MIKV_QB32_TOKENS_A_PASS: other counts, for comparing compiled loops.)
#if defined(MIKV_QB32_TOKENS_A_PASS)
constexpr int kTokensAPass = MIKV_QB32_TOKENS_A_PASS;
#elif defined(MIKV_QB32_SDOT)
constexpr int kTokensAPass = 4;
#else
constexpr int kTokensAPass = 2;
#endif
// (The pass after the whole ones takes the rest, 1 to 3 tokens: Gemm.)
static_assert(kTokensAPass >= 1 && kTokensAPass <= 4, "a pass takes one to four tokens");

template <size_t W_BLOCK_BYTES>
void Gemm(const Qb32GemmArgs& a, size_t o_begin, size_t o_end) {
  const size_t group_bytes = a.blocks * kRows * W_BLOCK_BYTES;
  for (size_t o = o_begin; o < o_end; o += kRows) {
    const uint8_t* g = a.w + o / kRows * group_bytes;
    const size_t n = std::min(kRows, o_end - o);
    size_t b = 0;
    constexpr int T = kTokensAPass;
    for (; b + T <= a.batch; b += T) Group<W_BLOCK_BYTES, T, BlockOf<W_BLOCK_BYTES, T>>(g, a, b, o, n);
    switch (a.batch - b) {
      case 0: break;
      case 1: Group<W_BLOCK_BYTES, 1, BlockOf<W_BLOCK_BYTES, 1>>(g, a, b, o, n); break;
      case 2: Group<W_BLOCK_BYTES, 2, BlockOf<W_BLOCK_BYTES, 2>>(g, a, b, o, n); break;
      default: Group<W_BLOCK_BYTES, 3, BlockOf<W_BLOCK_BYTES, 3>>(g, a, b, o, n); break;
    }
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
// On AArch64 this is the build's NEON table, and qb32-gemm-neondot.cc's compilation its dotprod table; on x86 (SIMDe)
// the tests reach it as kNeonQb32KernelsEmulated, and its SDOT form as kNeonDotQb32KernelsEmulated.
#if defined(MIKV_QB32_NEON_TABLE)
extern const Qb32Kernels MIKV_QB32_NEON_TABLE = {
#elif defined(__aarch64__)
extern const Qb32Kernels kNeonQb32Kernels = {
#elif defined(MIKV_NEON_EMULATE_DOTPROD)
extern const Qb32Kernels kNeonDotQb32KernelsEmulated = {
#else
extern const Qb32Kernels kNeonQb32KernelsEmulated = {
#endif
#if defined(MIKV_QB32_SDOT)
    "neon-dotprod",
#else
    "neon",
#endif
    MIKV_NEON_NS::Gemm<kQ8_0BlockBytes>, MIKV_NEON_NS::Gemm<kQ4_0BlockBytes>,
    /*packed_rows=*/8, MIKV_NEON_NS::QuantizeActivations};
}  // namespace mikv
