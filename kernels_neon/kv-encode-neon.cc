// f32 -> f16 / qu8 / qu4 / qu2 KV row encoding, NEON: the codec's definition (kv_codec.h, KvCodec::Encode) with
// the same float operations, so the bytes are identical: per group min and max (vminvq/vmaxvq), scale and zero
// from the codec's KvFitGroup, code = round-half-even of (x - zero)·(1 / scale) (vrndnq) clamped to [0, qmax], eight codes at
// a time narrowed to bytes and packed with shifts and ORs. INT3 (codes straddle bytes) goes to the reference.
#include "fp16.h"
#include "kv-neon.h"

namespace mikv::MIKV_NEON_NS {

namespace {

template <int BITS>
void EncodeQuantized(const KvRowFormat& f, const float* x, uint8_t* dst) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  constexpr int qmax = (1 << BITS) - 1;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  uint16_t* scales = reinterpret_cast<uint16_t*>(dst + code_bytes);
  uint16_t* zeros = scales + ng;
  for (int g = 0; g < ng; ++g) {
    const float* xg = x + (size_t)g * group;
    float32x4_t vlo = vld1q_f32(xg), vhi = vlo;
    for (int i = 4; i < group; i += 4) {
      const float32x4_t v = vld1q_f32(xg + i);
      vlo = vminq_f32(vlo, v);
      vhi = vmaxq_f32(vhi, v);
    }
    const float lo = vminvq_f32(vlo), hi = vmaxvq_f32(vhi);
    KvFitGroup(xg, group, BITS, lo, hi, f.fit, &scales[g], &zeros[g]);
    const float s = HalfToFloat(scales[g]), z = HalfToFloat(zeros[g]);
    const float32x4_t inv = vdupq_n_f32(s > 0 ? 1.0f / s : 0.0f), vz = vdupq_n_f32(z);
    const int32x4_t zero = vdupq_n_s32(0), top = vdupq_n_s32(qmax);
    for (int i = 0; i < group; i += 8) {
      const int32x4_t a = vminq_s32(vmaxq_s32(vcvtq_s32_f32(vrndnq_f32(vmulq_f32(vsubq_f32(vld1q_f32(xg + i), vz), inv))), zero), top);
      const int32x4_t b = vminq_s32(vmaxq_s32(vcvtq_s32_f32(vrndnq_f32(vmulq_f32(vsubq_f32(vld1q_f32(xg + i + 4), vz), inv))), zero), top);
      const uint8x8_t c8 = vmovn_u16(vcombine_u16(vqmovun_s32(a), vqmovun_s32(b)));  // eight codes
      uint8_t* out = dst + (size_t)(g * group + i) * BITS / 8;
      if (BITS == 8) {
        vst1_u8(out, c8);
      } else if (BITS == 4) {
        const uint16x4_t c16 = vreinterpret_u16_u8(c8);
        const uint8x8_t packed = vmovn_u16(vcombine_u16(vorr_u16(c16, vshr_n_u16(c16, 4)), vdup_n_u16(0)));
        const uint32_t word = vget_lane_u32(vreinterpret_u32_u8(packed), 0);
        std::memcpy(out, &word, 4);
      } else {
        const uint16x4_t c16 = vreinterpret_u16_u8(c8);
        const uint32x2_t pairs = vreinterpret_u32_u16(vorr_u16(c16, vshr_n_u16(c16, 6)));  // byte 2k: c[2k] | c[2k+1] << 2
        const uint32x2_t quads = vorr_u32(pairs, vshr_n_u32(pairs, 12));                     // byte 4m: four codes
        out[0] = (uint8_t)vget_lane_u32(quads, 0);
        out[1] = (uint8_t)vget_lane_u32(quads, 1);
      }
    }
  }
}

}  // namespace

void KvEncode(const KvRowFormat& f, const float* x, uint8_t* dst) {
  switch (f.precision) {
    case KvPrecision::F16: {
      uint16_t* h = reinterpret_cast<uint16_t*>(dst);
      int i = 0;
      for (; i + 4 <= f.head_dim; i += 4) vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
      for (; i < f.head_dim; ++i) h[i] = FloatToHalf(x[i]);
      return;
    }
    case KvPrecision::Int8: return f.group % 8 == 0 ? EncodeQuantized<8>(f, x, dst) : KvEncodeScalar(f, x, dst);
    case KvPrecision::Int4: return f.group % 8 == 0 ? EncodeQuantized<4>(f, x, dst) : KvEncodeScalar(f, x, dst);
    case KvPrecision::Int2: return f.group % 8 == 0 ? EncodeQuantized<2>(f, x, dst) : KvEncodeScalar(f, x, dst);
    default: return KvEncodeScalar(f, x, dst);
  }
}

}  // namespace mikv::MIKV_NEON_NS
