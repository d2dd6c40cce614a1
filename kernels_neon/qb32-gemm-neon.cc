// qb32-gemm (Q8_0 and Q4_0 weights × Q8_0 activations -> f32), NEON. With the dotprod extension (armv8.2-a,
// compile-time) a block is two SDOTs; without it, widening multiplies into int16 pairs (|w·x| ≤ 128·127, two
// products per int16 lane fit) summed pairwise into int32. Per block one multiply-add of f32(d_w)·f32(d_x)
// into four lane sums, as llama.cpp's NEON code does.
#if defined(__aarch64__)
#include <arm_neon.h>
#else  // x86: the same source through SIMDe, so the tests run it everywhere
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#endif


#include "ggml_blocks.h"
#include "qb32_gemm.h"

namespace mikv::neon {

namespace {

struct Codes {
  int8x16_t lo, hi;  // elements 0..15 and 16..31
};

inline Codes WeightCodesQ8_0(const uint8_t* block) {
  const int8_t* q = reinterpret_cast<const int8_t*>(block + 2);
  return {vld1q_s8(q), vld1q_s8(q + 16)};
}

inline Codes WeightCodesQ4_0(const uint8_t* block) {
  const uint8x16_t packed = vld1q_u8(block + 2);
  const int8x16_t eight = vdupq_n_s8(8);
  return {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0f))), eight),
          vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight)};
}

inline int32x4_t BlockDot(const Codes& w, const uint8_t* xblock) {
  const int8_t* q = reinterpret_cast<const int8_t*>(xblock + 2);
  const int8x16_t x0 = vld1q_s8(q), x1 = vld1q_s8(q + 16);
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, x0), w.hi, x1);
#else
  int16x8_t p0 = vmull_s8(vget_low_s8(w.lo), vget_low_s8(x0));
  p0 = vmlal_s8(p0, vget_high_s8(w.lo), vget_high_s8(x0));
  int16x8_t p1 = vmull_s8(vget_low_s8(w.hi), vget_low_s8(x1));
  p1 = vmlal_s8(p1, vget_high_s8(w.hi), vget_high_s8(x1));
  return vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1));
#endif
}

template <size_t W_BLOCK_BYTES, Codes (*CODES)(const uint8_t*)>
void Gemm(const Qb32GemmArgs& a, size_t o_begin, size_t o_end) {
  for (size_t o = o_begin; o < o_end; ++o) {
    const uint8_t* wrow = a.w + o * a.w_row_bytes;
    size_t b = 0;
    for (; b + 2 <= a.batch; b += 2) {
      const uint8_t* x0 = a.x + b * a.x_row_bytes;
      const uint8_t* x1 = x0 + a.x_row_bytes;
      float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
      for (size_t k = 0; k < a.blocks; ++k) {
        const uint8_t* wb = wrow + k * W_BLOCK_BYTES;
        const size_t xo = k * kQ8_0BlockBytes;
        const Codes w = CODES(wb);
        const float dw = GgmlBlockScale(wb);
        acc0 = vmlaq_n_f32(acc0, vcvtq_f32_s32(BlockDot(w, x0 + xo)), dw * GgmlBlockScale(x0 + xo));
        acc1 = vmlaq_n_f32(acc1, vcvtq_f32_s32(BlockDot(w, x1 + xo)), dw * GgmlBlockScale(x1 + xo));
      }
      a.y[b * a.y_stride + o] = vaddvq_f32(acc0);
      a.y[(b + 1) * a.y_stride + o] = vaddvq_f32(acc1);
    }
    for (; b < a.batch; ++b) {
      const uint8_t* x0 = a.x + b * a.x_row_bytes;
      float32x4_t acc = vdupq_n_f32(0.0f);
      for (size_t k = 0; k < a.blocks; ++k) {
        const uint8_t* wb = wrow + k * W_BLOCK_BYTES;
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(BlockDot(CODES(wb), x0 + k * kQ8_0BlockBytes)),
                          GgmlBlockScale(wb) * GgmlBlockScale(x0 + k * kQ8_0BlockBytes));
      }
      a.y[b * a.y_stride + o] = vaddvq_f32(acc);
    }
  }
}

}  // namespace
}  // namespace mikv::neon

namespace mikv {
// On AArch64 this is the build's NEON table; on x86 (SIMDe) the tests reach it as kNeonQb32KernelsEmulated.
#if defined(__aarch64__)
extern const Qb32Kernels kNeonQb32Kernels = {
#else
extern const Qb32Kernels kNeonQb32KernelsEmulated = {
#endif
    "neon", neon::Gemm<kQ8_0BlockBytes, neon::WeightCodesQ8_0>, neon::Gemm<kQ4_0BlockBytes, neon::WeightCodesQ4_0>,
    /*packed_rows=*/0};
}  // namespace mikv
