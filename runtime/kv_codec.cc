#include "kv_codec.h"

#include <cmath>
#include <cstring>

#include "fp16.h"
#include "round_even.h"

namespace mikv {

namespace {
const char* const kNames[] = {"f16", "int8", "int4", "int3", "int2"};
const int kBits[] = {16, 8, 4, 3, 2};
// Codes of x against (scale s, zero z) as Decode reads them: their squared error and the sums a least-squares
// refit of scale and zero needs (x ≈ s'·code + z').
struct Trial {
  double sse = 0, c = 0, cc = 0, cx = 0, x = 0;
};

Trial TryRange(const float* x, int n, float qmax, uint16_t scale, uint16_t zero) {
  const float s = HalfToFloat(scale), z = HalfToFloat(zero), inv = s > 0 ? 1.0f / s : 0.0f;
  Trial t;
  for (int i = 0; i < n; ++i) {
    float c = RoundHalfEven((x[i] - z) * inv);
    c = c < 0 ? 0 : c > qmax ? qmax : c;
    const double e = (double)(c * s + z) - x[i];
    t.sse += e * e;
    t.c += c;
    t.cc += (double)c * c;
    t.cx += (double)c * x[i];
    t.x += x[i];
  }
  return t;
}

// Shrinks of [min, max] about its middle that KvFitGroup starts from (1: min/max itself, refitted).
constexpr float kShrinks[] = {1.0f, 0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
}  // namespace

void KvFitGroup(const float* x, int n, int bits, float lo, float hi, bool fit, uint16_t* scale, uint16_t* zero) {
  const float qmax = (float)((1u << bits) - 1);
  *scale = FloatToHalf((hi - lo) / qmax);
  *zero = FloatToHalf(lo);
  if (!fit || bits > 4 || !(hi > lo) || !std::isfinite(hi - lo)) return;
  double best = INFINITY;
  const float mid = 0.5f * (lo + hi), half = 0.5f * (hi - lo);
  for (float shrink : kShrinks) {
    // (Shrink 1 is min/max itself, the range set above: tried once, then refitted.)
    const uint16_t s0 = shrink == 1.0f ? *scale : FloatToHalf(2.0f * half * shrink / qmax),
                   z0 = shrink == 1.0f ? *zero : FloatToHalf(mid - half * shrink);
    const Trial t = TryRange(x, n, qmax, s0, z0);
    if (t.sse < best) best = t.sse, *scale = s0, *zero = z0;
    // One least-squares refit: the scale and zero that best fit x to these codes.
    const double det = n * t.cc - t.c * t.c;
    if (!(det > 0)) continue;
    const double s = (n * t.cx - t.c * t.x) / det;
    if (!(s > 0)) continue;
    const uint16_t s1 = FloatToHalf((float)s), z1 = FloatToHalf((float)((t.x - s * t.c) / n));
    const double e = TryRange(x, n, qmax, s1, z1).sse;
    if (e < best) best = e, *scale = s1, *zero = z1;
  }
}

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
    KvFitGroup(xg, g_, bits_, lo, hi, fit_, &scales[g], &zeros[g]);
    const float s = HalfToFloat(scales[g]), z = HalfToFloat(zeros[g]);
    const float inv = s > 0 ? 1.0f / s : 0.0f;
    for (int i = 0; i < g_; ++i) {
      float c = RoundHalfEven((xg[i] - z) * inv);
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
