// f16-kv-scores/values and qu8-kv-values, NEON (AArch64 baseline). FP16 rows widen with vcvt_f32_f16; INT8 values
// widen eight codes at a time, each row's per-group scale and zero folded into p; values sum in registers
// (ValuesPass). (INT8 scores are read in integers with the narrower codes': qu4-qu2-kv-neon.cc.)
#include <algorithm>

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

// Values (FP16 and INT8 rows) keep their sums in registers: rows go in blocks of kValueBlockRows, and a block is read
// once per chunk of V four-channel registers per head, the chunk's sums loaded before the block's rows and stored
// after (the block's rows stay in L1 between chunks). Until session 33 every row's sums were loaded from and stored to
// memory, four channels at a time, and a GQA group's INT8 values ran the one-query kernel once per head. The
// per-channel operations are unchanged, in the same order: a head's result is the one-query kernel's bit for bit. A
// row a head weighs 0 is skipped for that head, as the reference skips it (its codes may be anything).
constexpr int kValueBlockRows = 64;

// Registers of sums per head and chunk: 64 channels for one head (16 of the 32 registers), 32 for two, 16 for 3-4.
template <int NQ>
constexpr int kValueChunkRegs = NQ == 1 ? 16 : NQ == 2 ? 8 : 4;

// Row t's weight for each of NQ heads into ph; false where every head weighs it 0 (the row is skipped).
template <int NQ>
inline bool RowWeights(const float* p, size_t p_stride, size_t t, float* ph) {
  bool any = false;
  for (int h = 0; h < NQ; ++h) ph[h] = p[h * p_stride + t], any |= ph[h] != 0.0f;
  return any;
}

// An FP16 row's value for every head that weighs it: acc += p·x (one fmla).
struct F16Rows {
  template <int NQ, int V>
  static void Add(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t t0, size_t t1,
                  int i, float32x4_t (*a)[V]) {
    for (size_t t = t0; t < t1; ++t) {
      const uint16_t* r = reinterpret_cast<const uint16_t*>(rows + t * f.stride) + i;
      float ph[NQ];
      if (!RowWeights<NQ>(p, p_stride, t, ph)) continue;
      for (int v = 0; v < V; ++v) {
        const float32x4_t x = HalfToFloat4(r + 4 * v);
        for (int h = 0; h < NQ; ++h)
          if (ph[h] != 0.0f) a[h][v] = vfmaq_f32(a[h][v], vdupq_n_f32(ph[h]), x);
      }
    }
  }
};

// An INT8 row's value for every head that weighs it: acc += (p·zero + p·scale·code) per group, as before.
struct Int8Rows {
  template <int NQ, int V>
  static void Add(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t t0, size_t t1,
                  int i, float32x4_t (*a)[V]) {
    const int ng = f.head_dim / f.group, g0 = i / f.group, g1 = (i + 4 * V - 1) / f.group;
    const size_t code_bytes = KvCodeBytes(f.head_dim, 8);
    constexpr int kMaxGroups = V / 2;  // groups are at least 8 channels: two registers
    int group_of[V / 2];               // the group (from g0) of each register pair, found once per chunk
    for (int v = 0; v < V; v += 2) group_of[v / 2] = (i + 4 * v) / f.group - g0;
    float ps[NQ][kMaxGroups] = {}, pz[NQ][kMaxGroups] = {};  // each row's p·scale, p·zero of groups g0..g1
    for (size_t t = t0; t < t1; ++t) {
      const uint8_t* row = rows + t * f.stride;
      const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
      float ph[NQ];
      if (!RowWeights<NQ>(p, p_stride, t, ph)) continue;
      for (int g = g0; g <= g1; ++g) {
        const float scale = Half(sz[g]), zero = Half(sz[ng + g]);
        for (int h = 0; h < NQ; ++h) ps[h][g - g0] = ph[h] * scale, pz[h][g - g0] = ph[h] * zero;
      }
      for (int v = 0; v < V; v += 2) {
        const int k = group_of[v / 2];
        const F8 c = Codes8<8>(row, i + 4 * v);
        for (int h = 0; h < NQ; ++h) {
          if (ph[h] == 0.0f) continue;
          const float32x4_t s4 = vdupq_n_f32(ps[h][k]), z4 = vdupq_n_f32(pz[h][k]);
          a[h][v] = vaddq_f32(a[h][v], vfmaq_f32(z4, s4, c.lo));
          a[h][v + 1] = vaddq_f32(a[h][v + 1], vfmaq_f32(z4, s4, c.hi));
        }
      }
    }
  }
};

// Channels [i, i + 4V) of NQ heads over rows [t0, t1): the sums in registers in between.
template <class Rows, int NQ, int V>
inline void ValuesChunk(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t t0,
                        size_t t1, int i, float* acc) {
  const int d = f.head_dim;
  float32x4_t a[NQ][V];
  for (int h = 0; h < NQ; ++h)
    for (int v = 0; v < V; ++v) a[h][v] = vld1q_f32(acc + h * d + i + 4 * v);
  Rows::template Add<NQ, V>(f, p, p_stride, rows, t0, t1, i, a);
  for (int h = 0; h < NQ; ++h)
    for (int v = 0; v < V; ++v) vst1q_f32(acc + h * d + i + 4 * v, a[h][v]);
}

template <class Rows, int NQ>
void ValuesPass(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  constexpr int V = kValueChunkRegs<NQ>;
  const int d = f.head_dim;
  for (size_t b = 0; b < n; b += kValueBlockRows) {
    const size_t e = std::min(n, b + kValueBlockRows);
    int i = 0;
    for (; i + 4 * V <= d; i += 4 * V) ValuesChunk<Rows, NQ, V>(f, p, p_stride, rows, b, e, i, acc);
    for (; i < d; i += 8) ValuesChunk<Rows, NQ, 2>(f, p, p_stride, rows, b, e, i, acc);  // head_dim is a multiple of 8
  }
}

template <class Rows>
void ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                 float* acc) {
  KvForQueryPasses(nq, [&](auto count, int h) {
    ValuesPass<Rows, decltype(count)::value>(f, p + (size_t)h * p_stride, p_stride, rows, n,
                                             acc + (size_t)h * f.head_dim);
  });
}

void F16ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                    float* acc) {
  ValuesGroup<F16Rows>(f, nq, p, p_stride, rows, n, acc);
}

void F16Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  ValuesPass<F16Rows, 1>(f, p, 0, rows, n, acc);
}

void QuValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                   float* acc) {
  ValuesGroup<Int8Rows>(f, nq, p, p_stride, rows, n, acc);
}

void QuValues(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  ValuesPass<Int8Rows, 1>(f, p, 0, rows, n, acc);
}

// f32-fwht: stages h = 1, 2 inside each register of four floats (as many as the block has), the later ones between
// registers; the same operations in the same order as the scalar reference.
void Fwht(float* x, int d, int block) {
  if (d % 4 != 0) return FwhtScalar(x, d, block);
  if (block < 2) return;
  for (int i = 0; i < d; i += 4) {
    float32x4_t v = vld1q_f32(x + i);
    float32x4_t r = vrev64q_f32(v);                                   // x1 x0 x3 x2
    v = vtrn1q_f32(vaddq_f32(v, r), vsubq_f32(v, r));                 // x0+x1 x0-x1 x2+x3 x2-x3
    if (block > 2) {
      r = vextq_f32(v, v, 2);                                         // swap pairs
      v = vcombine_f32(vget_low_f32(vaddq_f32(v, r)), vget_low_f32(vsubq_f32(v, r)));
    }
    vst1q_f32(x + i, v);
  }
  for (int h = 4; h < block; h *= 2)
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
    {nk::F16ValuesGroup, nk::QuValuesGroup, nk::Qu4Qu2ValuesGroup,
     nk::Qu4Qu2ValuesGroup, nk::Qu4Qu2ValuesGroup},
    nk::QuantizeQuery,
    nk::ExpSum,
    nk::Greatest,
    AddImportance,  // (the reference: the compiler vectorizes it for NEON)
    LeastValue,
};
}  // namespace mikv
