// f32-softmax, NEON: max, exp and sum in chunks of eight scores (two registers), as the AVX2 kernel
// (kernels_avx/f32-softmax-avx2.cc) does: exp(x) = 2^n · e^r with n = round(x·log2 e), r = x - n·ln 2 (ln 2 split in
// two), e^r by Cephes' degree-6 polynomial; -inf scores (masked) give exactly 0, and scores whose exp would be
// subnormal give 0. Chunk c adds into sum2[c % 2] (the tail padded with -inf), so the sum depends on the scores alone,
// not on where the array ends. (Until session 16 the NEON tables took the scalar reference with std::exp, whose
// float sum in order drifted past the 1e-6 test bound on 1,001 scores.)
#include "kv-neon.h"

namespace mikv::MIKV_NEON_NS {

namespace {

inline float32x4_t Exp4(float32x4_t x) {
  const float32x4_t lo = vdupq_n_f32(-87.33654f);  // below this e^x is subnormal: flushed to 0
  const uint32x4_t small = vcltq_f32(x, lo);
  x = vmaxq_f32(x, lo);
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  float32x4_t r = vfmaq_f32(x, n, vdupq_n_f32(-0.693359375f));  // x - n·ln 2 (vfmaq with -c: SIMDe has no vfmsq)
  r = vfmaq_f32(r, n, vdupq_n_f32(2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  const float32x4_t v = vmulq_f32(p, vreinterpretq_f32_s32(e));
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), small));
}

// Eight scores at s, less the max, through exp; stored back and returned.
inline F8 Exp8(float* s, float32x4_t m) {
  const F8 e = {Exp4(vsubq_f32(vld1q_f32(s), m)), Exp4(vsubq_f32(vld1q_f32(s + 4), m))};
  vst1q_f32(s, e.lo);
  vst1q_f32(s + 4, e.hi);
  return e;
}

inline F8 Add8(F8 a, F8 b) { return {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }

}  // namespace

float ExpSum(float* s, size_t n, float max) {
  const float32x4_t m = vdupq_n_f32(max);
  const F8 zero = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
  F8 sum2[2] = {zero, zero};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 2; ++j) sum2[j] = Add8(sum2[j], Exp8(s + i + 8 * j, m));
  int odd = 0;  // the next chunk's accumulator
  if (i + 8 <= n) {
    sum2[0] = Add8(sum2[0], Exp8(s + i, m));
    i += 8;
    odd = 1;
  }
  if (i < n) {  // the tail through the same vector code, padded with -inf
    float tail[8];
    for (int j = 0; j < 8; ++j) tail[j] = i + j < n ? s[i + j] : -INFINITY;
    sum2[odd] = Add8(sum2[odd], Exp8(tail, m));
    for (size_t j = i; j < n; ++j) s[j] = tail[j - i];
  }
  return Hsum8(Add8(sum2[0], sum2[1]));
}

float Greatest(const float* s, size_t n) {
  // Four independent accumulators (ExpSum keeps two): one would chain every step on the previous one's latency.
  float32x4_t m4[4] = {vdupq_n_f32(-INFINITY), vdupq_n_f32(-INFINITY), vdupq_n_f32(-INFINITY), vdupq_n_f32(-INFINITY)};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; ++j) m4[j] = vmaxq_f32(m4[j], vld1q_f32(s + i + 4 * j));
  for (; i + 4 <= n; i += 4) m4[0] = vmaxq_f32(m4[0], vld1q_f32(s + i));
  float max_score = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m4[0], m4[1]), vmaxq_f32(m4[2], m4[3])));
  for (size_t j = i; j < n; ++j) max_score = s[j] > max_score ? s[j] : max_score;
  return max_score;
}

}  // namespace mikv::MIKV_NEON_NS
