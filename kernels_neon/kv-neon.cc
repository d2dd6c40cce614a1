// f16-kv-scores/values and qu8-kv-values, NEON (AArch64 baseline). FP16 rows widen with vcvt_f32_f16; INT8 values
// widen eight codes at a time, each row's per-group scale and zero folded into p. (INT8 scores are read in integers
// with the narrower codes': qu4-qu2-kv-neon.cc.)
#include "kv-neon.h"

namespace mikv::MIKV_NEON_NS {

namespace {

// FP16 rows for NQ heads of a GQA group (a pass of KvForQueryPasses; one for the one-query kernels): each row's chunks
// are converted once for every head, each head with its own fmadd chain and Hsum8, so every head of a group gets the
// one-query result bit for bit.
template <int NQ>
void F16ScoresPass(const KvRowFormat& f, const float* q, const uint8_t* rows, size_t n, float scale, float* out,
                   size_t out_stride) {
  const int d = f.head_dim;
  for (size_t t = 0; t < n; ++t) {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    F8 a[NQ];
    for (int h = 0; h < NQ; ++h) a[h] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int i = 0; i < d; i += 8) {
      const float32x4_t lo = HalfToFloat4(r + i), hi = HalfToFloat4(r + i + 4);
      for (int h = 0; h < NQ; ++h) {
        a[h].lo = vfmaq_f32(a[h].lo, vld1q_f32(q + h * d + i), lo);
        a[h].hi = vfmaq_f32(a[h].hi, vld1q_f32(q + h * d + i + 4), hi);
      }
    }
    for (int h = 0; h < NQ; ++h) out[h * out_stride + t] = Hsum8(a[h]) * scale;
  }
}

void F16ScoresGroup(const KvRowFormat& f, int nq, const float* q, const float*, const uint8_t* rows, size_t n,
                    float scale, float* out, size_t out_stride) {
  KvForQueryPasses(nq, [&](auto count, int h) {
    F16ScoresPass<decltype(count)::value>(f, q + (size_t)h * f.head_dim, rows, n, scale, out + (size_t)h * out_stride, out_stride);
  });
}

void F16ScoresImpl(const KvRowFormat& f, const float* q, const float*, const uint8_t* rows, size_t n, float scale,
                   float* out) {
  F16ScoresPass<1>(f, q, rows, n, scale, out, 0);
}

// Values: the row's 4-channel chunk converted once, then added into the sums (in memory: d floats per head) of every
// head that gives the row a weight; a row weighing 0 is skipped, as the reference skips it. nq = 1 is the one-query
// kernel.
void F16ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                    float* acc) {
  const int d = f.head_dim;
  for (size_t t = 0; t < n; ++t) {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    for (int i = 0; i < d; i += 4) {
      const float32x4_t x = HalfToFloat4(r + i);
      for (int h = 0; h < nq; ++h) {
        const float ph = p[h * p_stride + t];
        if (ph == 0.0f) continue;
        float* a = acc + (size_t)h * d + i;
        vst1q_f32(a, vfmaq_f32(vld1q_f32(a), vdupq_n_f32(ph), x));
      }
    }
  }
}

void F16Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  F16ValuesGroup(f, 1, p, 0, rows, n, acc);
}

template <int BITS>
void Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (size_t t = 0; t < n; ++t) {
    if (p[t] == 0.0f) continue;
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    for (int g = 0; g < ng; ++g) {
      const float32x4_t ps = vdupq_n_f32(p[t] * Half(sz[g])), pz = vdupq_n_f32(p[t] * Half(sz[ng + g]));
      for (int i = g * group; i < (g + 1) * group; i += 8) {
        const F8 c = Codes8<BITS>(row, i);
        vst1q_f32(acc + i, vaddq_f32(vld1q_f32(acc + i), vfmaq_f32(pz, ps, c.lo)));
        vst1q_f32(acc + i + 4, vaddq_f32(vld1q_f32(acc + i + 4), vfmaq_f32(pz, ps, c.hi)));
      }
    }
  }
}

void QuValues(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Values<8>(f, p, rows, n, acc);
}

// f32-fwht: stages h = 1, 2 inside each register of four floats, the later ones between registers; the same
// operations in the same order as the scalar reference.
void Fwht(float* x, int d) {
  if (d < 4) return FwhtScalar(x, d);
  for (int i = 0; i < d; i += 4) {
    float32x4_t v = vld1q_f32(x + i);
    float32x4_t r = vrev64q_f32(v);                                   // x1 x0 x3 x2
    v = vtrn1q_f32(vaddq_f32(v, r), vsubq_f32(v, r));                 // x0+x1 x0-x1 x2+x3 x2-x3
    r = vextq_f32(v, v, 2);                                           // swap pairs
    v = vcombine_f32(vget_low_f32(vaddq_f32(v, r)), vget_low_f32(vsubq_f32(v, r)));
    vst1q_f32(x + i, v);
  }
  for (int h = 4; h < d; h *= 2)
    for (int i = 0; i < d; i += 2 * h)
      for (int j = i; j < i + h; j += 4) {
        const float32x4_t a = vld1q_f32(x + j), b = vld1q_f32(x + j + h);
        vst1q_f32(x + j, vaddq_f32(a, b));
        vst1q_f32(x + j + h, vsubq_f32(a, b));
      }
}

}  // namespace
}  // namespace mikv::MIKV_NEON_NS

namespace mikv {
namespace nk = MIKV_NEON_NS;  // this compilation's kernels

// On AArch64 this is the build's NEON table (kv-neondot.cc names its dotprod build's own); on x86 (SIMDe) the tests
// reach it as kNeonKvKernelsEmulated.
#if defined(MIKV_NEON_KV_TABLE)
extern const KvKernels MIKV_NEON_KV_TABLE = {
    MIKV_NEON_KV_TABLE_NAME,
#elif defined(__aarch64__)
extern const KvKernels kNeonKvKernels = {
    "neon",
#else
extern const KvKernels kNeonKvKernelsEmulated = {
    "neon",
#endif
    {nk::F16ScoresImpl, nk::Qu4Qu2Scores, nk::Qu4Qu2Scores, nk::Qu4Qu2Scores, nk::Qu4Qu2Scores},
    {nk::F16Values, nk::QuValues, nk::Qu4Qu2Values, nk::Qu4Qu2Values, nk::Qu4Qu2Values},
    nk::Fwht,
    nk::KvEncode,
    {nk::F16ScoresGroup, nk::Qu4Qu2ScoresGroup, nk::Qu4Qu2ScoresGroup,
     nk::Qu4Qu2ScoresGroup, nk::Qu4Qu2ScoresGroup},
    {nk::F16ValuesGroup, KvValuesEachQuery<nk::QuValues>, nk::Qu4Qu2ValuesGroup,
     nk::Qu4Qu2ValuesGroup, nk::Qu4Qu2ValuesGroup},
    nk::QuantizeQuery,
    nk::ExpSum,
    nk::Greatest,
};
}  // namespace mikv
