// Shared pieces of the NEON KV kernels. On AArch64 they compile to NEON; on x86 the same source compiles through
// SIMDe's NEON emulation, so the kernels are tested on every CI machine (tests/test_kv_kernels.cc).
#pragma once

#if defined(__aarch64__)
#include <arm_neon.h>
#else
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kv_kernels.h"

// The namespace of this compilation's kernels: `neon`, or `neon_dot` where kv-neondot.cc compiles the same sources
// again for armv8.2-a+dotprod (a second table, picked at run time), so that no inline function of one build can stand
// in for the other's at link time.
#ifndef MIKV_NEON_NS
#define MIKV_NEON_NS neon
#endif

namespace mikv::MIKV_NEON_NS {

// Eight floats as two halves of four: lanes 0-3 and 4-7 of the reference's eight-lane sums.
struct F8 {
  float32x4_t lo, hi;
};

inline float Hsum8(F8 v) {  // ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))
  const float32x4_t pairs = vpaddq_f32(v.lo, v.hi);  // l0+l1, l2+l3, l4+l5, l6+l7
  const float32x4_t quads = vpaddq_f32(pairs, pairs);
  return vgetq_lane_f32(quads, 0) + vgetq_lane_f32(quads, 1);
}

inline float32x4_t HalfToFloat4(const uint16_t* h) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))); }

// Eight consecutive INT8 codes starting at channel i (a multiple of 8), as floats: INT8 values. (Keys, and narrower
// values, are read by the integer kernels, qu4-qu2-kv-neon.cc.)
template <int BITS>
inline F8 Codes8(const uint8_t* codes, int i) {
  static_assert(BITS == 8, "the float kernels read INT8 rows only");
  const uint16x8_t w = vmovl_u8(vld1_u8(codes + i));
  return {vcvtq_f32_u32(vmovl_u16(vget_low_u16(w))), vcvtq_f32_u32(vmovl_u16(vget_high_u16(w)))};
}

// KvQuantizeQuery's bytes and scales exactly, eight channels at a time (groups are multiples of 8; the scalar loop
// was ~10% of a short context's attention on x86): the same operations per channel. |q| maxima by vmaxnm, which
// skips a NaN as std::max does; the clamp as compare-and-select, which gives 127 / -127 for NaN as the scalar
// comparisons do (vmin/vmax would pass the NaN on); vrndn rounds half to even, RoundHalfEven's result.
inline void QuantizeQuery(const float* q, int head_dim, int group, int8_t* q8, float* qs) {
  const float32x4_t hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-127.0f);
  for (int g = 0; g < head_dim / group; ++g) {
    const float* qg = q + g * group;
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < group; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(qg + i)));
    const float amax = vmaxvq_f32(m);  // (no NaN left in m)
    const float32x4_t inv = vdupq_n_f32(amax > 0.0f ? 127.0f / amax : 0.0f);
    qs[g] = amax / 127.0f;
    for (int i = 0; i < group; i += 8) {
      int32x4_t n[2];
      for (int j = 0; j < 2; ++j) {
        float32x4_t v = vmulq_f32(vld1q_f32(qg + i + 4 * j), inv);
        v = vbslq_f32(vcltq_f32(v, hi), v, hi);  // v < 127 ? v : 127
        v = vbslq_f32(vcgtq_f32(v, lo), v, lo);  // v > -127 ? v : -127
        n[j] = vcvtq_s32_f32(vrndnq_f32(v));
      }
      vst1_s8(q8 + g * group + i, vqmovn_s16(vcombine_s16(vqmovn_s32(n[0]), vqmovn_s32(n[1]))));
    }
  }
}

void KvEncode(const KvRowFormat& f, const float* x, uint8_t* dst);  // kv-encode-neon.cc
// A softmax's two kernels (KvGreatestFn, KvExpSumFn), f32-softmax-neon.cc.
float Greatest(const float* s, size_t n);
float ExpSum(float* s, size_t n, float max);
// Quantized keys (INT8 to INT2) and INT4/INT3/INT2 values, in integers (qu4-qu2-kv-neon.cc).
void Qu4Qu2Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                  float* out);
void Qu4Qu2Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
// The heads of a GQA group in passes of up to four, each row read and unpacked once per pass.
void Qu4Qu2ScoresGroup(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                       float scale, float* out, size_t out_stride);
void Qu4Qu2ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                       float* acc);

inline float Half(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

}  // namespace mikv::MIKV_NEON_NS
