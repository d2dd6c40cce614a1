#include "kv_codec.h"

#include <cmath>
#include <cstring>

#include "fp16.h"

namespace mikv {

namespace {
const char* const kNames[] = {"f16", "int8", "int4", "int3", "int2"};
const int kBits[] = {16, 8, 4, 3, 2};
}  // namespace

const char* KvPrecisionName(KvPrecision p) { return kNames[(int)p]; }
int KvPrecisionBits(KvPrecision p) { return kBits[(int)p]; }

bool ParseKvPrecision(const char* name, KvPrecision* p) {
  for (int i = 0; i < 5; ++i)
    if (std::strcmp(name, kNames[i]) == 0) {
      *p = (KvPrecision)i;
      return true;
    }
  return false;
}

size_t KvCodec::bytes() const {
  if (!quantized()) return (size_t)d_ * 2;
  return CodeBytes() + (size_t)(d_ / g_) * 4;
}

void KvCodec::Encode(const float* x, uint8_t* dst) const {
  if (!quantized()) {
    uint16_t* h = reinterpret_cast<uint16_t*>(dst);
    for (int i = 0; i < d_; ++i) h[i] = FloatToHalf(x[i]);
    return;
  }
  const uint32_t qmax = (1u << bits_) - 1;
  uint8_t* codes = dst;
  std::memset(codes, 0, CodeBytes());
  uint16_t* scales = reinterpret_cast<uint16_t*>(dst + CodeBytes());
  uint16_t* zeros = scales + d_ / g_;
  for (int g = 0; g < d_ / g_; ++g) {
    const float* xg = x + (size_t)g * g_;
    float lo = xg[0], hi = xg[0];
    for (int i = 1; i < g_; ++i) {
      lo = std::fmin(lo, xg[i]);
      hi = std::fmax(hi, xg[i]);
    }
    // Scale and zero are stored in FP16; quantize against the stored (rounded) values so decode is consistent.
    scales[g] = FloatToHalf((hi - lo) / (float)qmax);
    zeros[g] = FloatToHalf(lo);
    const float s = HalfToFloat(scales[g]), z = HalfToFloat(zeros[g]);
    const float inv = s > 0 ? 1.0f / s : 0.0f;
    for (int i = 0; i < g_; ++i) {
      float c = std::nearbyint((xg[i] - z) * inv);
      c = c < 0 ? 0 : c > (float)qmax ? (float)qmax : c;
      const size_t bit = (size_t)(g * g_ + i) * bits_;
      const uint32_t v = (uint32_t)c << (bit & 7);
      codes[bit >> 3] |= (uint8_t)v;
      if ((bit & 7) + bits_ > 8) codes[(bit >> 3) + 1] |= (uint8_t)(v >> 8);
    }
  }
}

void KvCodec::Decode(const uint8_t* src, float* x) const {
  if (!quantized()) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
    for (int i = 0; i < d_; ++i) x[i] = HalfToFloat(h[i]);
    return;
  }
  for (int i = 0; i < d_; ++i) {
    const int g = i / g_;
    x[i] = (float)KvCodeAt(src, i, bits_) * HalfToFloat(Scales(src)[g]) + HalfToFloat(Zeros(src)[g]);
  }
}

float KvCodec::ErrorBound(const uint8_t* src, int i) const {
  if (!quantized()) return 0.0f;
  const int g = i / g_;
  const float s = HalfToFloat(Scales(src)[g]), z = HalfToFloat(Zeros(src)[g]);
  // Half a step from rounding; the zero and the scale were rounded to FP16 (relative 2^-11 each), which can
  // move the top of the range by up to |z|·2^-11 + qmax·s·2^-11 — the top codes then clamp by that much.
  const float qmax = (float)((1u << bits_) - 1);
  return 0.5f * s + (std::fabs(z) + qmax * s) * 0.0005f + 1e-7f;
}

}  // namespace mikv
