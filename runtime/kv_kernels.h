// The attention micro-kernels over one region's rows of cached tokens, and the one place that picks them.
//
// A "row" is one token's key or value vector in a KvCodec layout (kv_codec.h), rows `stride` bytes apart.
//   scores:  out[t] = scale · q · decode(row t)                       for t in [0, n)
//   values:  acc   += Σ_t p[t] · decode(row t)   (rows with p[t] == 0 are skipped)
// For quantized rows, decode(row)_i = code_i · scale_g + zero_g, so a score is
//   Σ_g scale_g · (Σ_{i∈g} q_i · code_i) + zero_g · qsum_g,  with qsum_g = Σ_{i∈g} q_i computed once per query.
//
// Quantized rows are read in integers — what lets a 2-bit token cost less to read than a 16-bit one:
//   scores (INT8, INT4, INT3, INT2): the query is quantized once per call to int8 per group (KvQuantizeQuery:
//            qs_g = max|q_i| / 127, q8_i = round(q_i / qs_g)), and
//            score = scale · Σ_g (scale_g · qs_g · Σ_{i∈g} q8_i·code_i + zero_g · qsum_g);
//   values (INT4, INT3, INT2): rows go in blocks of KvValueBlockRows; in a block, each row's weight in group g,
//            w = p·scale_g, is quantized to 0..127 against the block's largest (KvQuantizeBlockWeights), and per block
//            acc_i += ws_g · Σ_t w8_{t,g}·code_{t,i}; after the last block acc_i += Σ_t p_t·zero_{t,g}.
// The integer sums are exact in every variant (SIMD ones use int8 multiply-adds); what differs is float rounding.
// The query's int8 rounding moves a score by at most Σ_i qs_g/2·|k_i|, the weights' by ws/2 per row and channel —
// far inside INT4/INT2's own quantization step. For INT8 keys the query's rounding is about as large as the keys'
// own (a 1.5-2x larger score error, under 1% of the score: docs/kernels-sessions.md, "INT8 scores in integers");
// INT8 values keep the float definition above: their weights' rounding would be as large as INT8's step and buys
// less (a row of INT8 values already costs one widening and one multiply-add per eight channels, no unpacking).
//
// Variants: the scalar reference (kv_kernels_scalar.cc, the definition), AVX2+FMA+F16C, AVX-512, AVX-512 with VNNI, and
// with VNNI + VBMI + GFNI (cheaper INT3 unpacks, transposes and bit fields) (kernels_avx/), NEON and NEON dotprod
// (kernels_neon/). Every variant equals the reference within float rounding (tests/test_kv_kernels.cc). On x86 the best
// variant is chosen at run time from the CPU's features; on ARM the NEON tables are compiled in (NEON is part of every
// AArch64 core) and the dotprod one, built from the same sources for armv8.2-a+dotprod, is taken where the CPU reports
// dotprod at run time (Linux/Android HWCAP_ASIMDDP).
// MIKV_KV_ISA=scalar|avx2|avx512|avx512vnni|avx512vbmi|neon|neon-dotprod forces one (tests and benchmarks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kv_codec.h"

namespace mikv {

struct KvRowFormat {
  KvPrecision precision;
  int head_dim, group;
  size_t stride;  // bytes from one row to the next (>= the codec's bytes)
  bool fit = false;  // encode only: KvCodec's `fit` (fitted ranges below 8 bits)
};

using KvScoresFn = void (*)(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out);
using KvValuesFn = void (*)(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
// In place, unnormalised fast Walsh–Hadamard transform of each block of `block` channels of x[d] (block a power of
// two dividing d; block = d: the whole vector): stages h = 1, 2, 4, ..., block / 2 of butterflies
// (x[j], x[j+h]) <- (x[j] + x[j+h], x[j] - x[j+h]) over all d channels, whose pairs never cross a block's edge. So a
// head of 48 = 12·4 channels takes its twelve transforms of four in one call (hadamard.h builds the rotation on it).
// Every variant does the same additions in the same order, so they agree bit for bit.
using KvFwhtFn = void (*)(float* x, int d, int block);
// A softmax in two kernels, its normalization left to the caller: the attention weighs the values by the exps and
// multiplies its outputs (and the importance it adds) by 1 / their sum, rather than scaling every probability; a split
// kv head's blocks each take their own max, and join by their maxima and sums.
// The greatest of n scores (-inf when n is 0 or every score is -inf).
using KvGreatestFn = float (*)(const float* s, size_t n);
// In place: s[i] = exp(s[i] - max) (-inf entries become exactly 0), returning their sum. max > -inf, >= every s[i].
// Variants compute exp their own way, within a few ulp of the reference's std::exp.
using KvExpSumFn = float (*)(float* s, size_t n, float max);
// The heavy-hitter policy's bookkeeping, beside the values: each row's accumulated importance gains the group's
// weighted probabilities, imp[i] = ((imp[i] + f[0]·p[i]) + f[1]·p[stride + i]) + ..., every product rounded before
// it is added, heads in order (no fused multiply-add: every variant gives the reference's sums bit for bit).
using KvAddImportanceFn = void (*)(float* imp, const float* p, size_t stride, const float* f, int group, size_t n);
// The least of n > 0 values (the policy's next row to demote); values are never NaN. A minimum is the same in any
// order, so every variant equals the reference exactly.
using KvLeastFn = float (*)(const float* x, size_t n);
// One token's key or value vector (head_dim floats) into a row of f's precision: KvCodec::Encode's bytes exactly
// (every variant does the same float operations; tests compare bytes).
using KvEncodeFn = void (*)(const KvRowFormat& f, const float* x, uint8_t* dst);
// A query head's head_dim floats rounded to int8 per group of channels, with each group's scale (KvQuantizeQuery):
// what the integer scores kernels take. Every variant gives the reference's bytes and scales exactly.
using KvQuantizeQueryFn = void (*)(const float* q, int head_dim, int group, int8_t* q8, float* qs);

// The heads of one GQA group against the same rows, in one call: nq queries q[h·head_dim + i] with group sums
// qsum[h·ng + g] (nullptr for FP16 rows) into out[h·out_stride + t]; values: weights p[h·p_stride + t] into
// acc[h·head_dim + i]. Each query's result is what the one-query kernel gives; the batched INT4/INT2 kernels read and
// unpack each row once for all the queries.
using KvScoresGroupFn = void (*)(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                                 size_t n, float scale, float* out, size_t out_stride);
using KvValuesGroupFn = void (*)(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows,
                                 size_t n, float* acc);

template <KvScoresFn F>
void KvScoresEachQuery(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                       float scale, float* out, size_t out_stride) {
  const int ng = f.head_dim / f.group;
  for (int h = 0; h < nq; ++h)
    F(f, q + (size_t)h * f.head_dim, qsum ? qsum + (size_t)h * ng : nullptr, rows, n, scale, out + h * out_stride);
}

template <KvValuesFn F>
void KvValuesEachQuery(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                       float* acc) {
  for (int h = 0; h < nq; ++h) F(f, p + h * p_stride, rows, n, acc + (size_t)h * f.head_dim);
}

// The batched kernels take a GQA group's heads in passes of up to kKvQueryPass, the pass's count a template parameter
// so that each head's accumulators stay in registers. KvForQueryPasses runs pass(count, first) over nq heads, count a
// std::integral_constant.
// (kMax: a kernel whose passes pay for fewer heads at once, as the x86 any-shape values' passes of two.)
constexpr int kKvQueryPass = 4;
template <int kMax = kKvQueryPass, typename Pass>
inline void KvForQueryPasses(int nq, Pass&& pass) {
  static_assert(kMax >= 1 && kMax <= 4, "passes of one to four heads");
  for (int h = 0; h < nq; h += kMax) {
    switch (nq - h < kMax ? nq - h : kMax) {
      case 1: pass(std::integral_constant<int, 1>(), h); break;
      case 2: if constexpr (kMax >= 2) pass(std::integral_constant<int, 2>(), h); break;
      case 3: if constexpr (kMax >= 3) pass(std::integral_constant<int, 3>(), h); break;
      default: if constexpr (kMax >= 4) pass(std::integral_constant<int, 4>(), h); break;
    }
  }
}

struct KvKernels {
  const char* isa;
  KvScoresFn scores[5];  // by KvPrecision
  KvValuesFn values[5];
  KvFwhtFn fwht;
  KvEncodeFn encode;
  KvScoresGroupFn scores_group[5];
  KvValuesGroupFn values_group[5];
  KvQuantizeQueryFn quantize_query;
  KvExpSumFn exp_sum;
  KvGreatestFn greatest;
  KvAddImportanceFn add_importance;
  KvLeastFn least;
};

enum class KvIsa : uint8_t { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3, Avx512Vnni = 4, Avx512Vbmi = 5, NeonDotprod = 6 };
const char* KvIsaName(KvIsa isa);
// Every variant, the preferred first (ActiveKvKernels takes the first this build and CPU run; the scalar reference,
// last, always runs). AVX-512 VBMI leads: the VNNI table with a cheaper INT3 unpack, 1.3x on INT3 attention on the
// device's Xeon. VNNI's INT4/INT2 scores (vpdpbusd) are at least as fast as the AVX2 integer kernels the AVX-512
// table takes, the rest being the same (docs/bench/avx512-device.json: 3-6% ahead at 16k tokens by medians of
// interleaved rounds, level with three query heads).
// On AArch64 the dotprod table (SDOT in the integer scores) where the CPU has it, else the baseline NEON one.
inline constexpr KvIsa kKvIsasPreferredFirst[] = {KvIsa::Avx512Vbmi, KvIsa::Avx512Vnni, KvIsa::Avx512,
                                                  KvIsa::Avx2,       KvIsa::NeonDotprod, KvIsa::Neon,
                                                  KvIsa::Scalar};

// The kernels of an ISA, or nullptr when this build or this CPU lacks it.
const KvKernels* GetKvKernels(KvIsa isa);
// The kernels every cache uses: the best the CPU runs, unless MIKV_KV_ISA names another.
const KvKernels& ActiveKvKernels();

// How far past the rows they are reading the kernels ask for the next ones, in bytes: builds with the x86 kernels
// ask (kernels_avx/kv-avx.h says why; every x86 kernel but the any-shape ones, not measured yet), builds without
// (AArch64) leave it to the hardware: 0. A cache asks for the first bytes of each run of rows
// itself, where no kernel does (MixedKvCache::PrefetchStream).
#if defined(MIKV_HAVE_AVX_KERNELS)
constexpr size_t kKvRowsAskedAhead = 4096;
#else
constexpr size_t kKvRowsAskedAhead = 0;
#endif

// Rows per block of quantized weights in the integer values kernels: as many as keep a block's Σ_t w8·code inside
// int16 (the SIMD kernels sum in int16): 16 INT4 or INT3 rows (16·15·127 = 30,480), 64 INT2 rows (64·3·127 = 24,384). Fewer
// blocks per token means fewer weight scales to find and fewer widenings — what INT2 needs to read faster than INT4.
constexpr int KvValueBlockRows(KvPrecision p) { return p == KvPrecision::Int2 ? 64 : 16; }
constexpr int kKvValueBlockMax = 64;  // a multiple of every block: where a split of the rows may cut
// Which rows the kernels read in integers (the definition above): keys of every quantized precision, values of INT4,
// INT3 and INT2.
inline bool KvValuesInIntegers(KvPrecision p) {
  return p == KvPrecision::Int4 || p == KvPrecision::Int3 || p == KvPrecision::Int2;
}
inline bool KvScoresInIntegers(KvPrecision p) { return p == KvPrecision::Int8 || KvValuesInIntegers(p); }

// q8[i] = round(q[i] / qs[g]) with qs[g] = max |q| over group g / 127 (0 when the group is all zeros).
void KvQuantizeQuery(const float* q, int head_dim, int group, int8_t* q8, float* qs);
// For nb <= KvValueBlockRows(f.precision) rows (stride f.stride, codes of `bits`): w8[t * ng + g] = round(w / ws[g]) with
// w = max(0, p[t]·scale_{t,g}) and ws[g] = the block's largest w in group g / 127.
void KvQuantizeBlockWeights(const KvRowFormat& f, const float* p, const uint8_t* rows, int nb, uint8_t* w8, float* ws);

// acc_i += Σ_t p[t]·zero_{t,g}: the zeros' part of the integer values kernels, after their blocks (row order).
void KvAddValueZeros(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);

// qsum[g] = Σ q over group g (what quantized scores need once per query).
void KvQuerySums(const float* q, int head_dim, int group, float* qsum);

// In place: s = softmax(s) over n scores (-inf entries become 0), with std::exp: GreatestScore, ExpSumInPlace, and a
// multiply by 1 / the sum (the plain cache's f32 attention; every -inf gives NaN).
void SoftmaxInPlace(float* s, size_t n);
// In place: s[i] = exp(s[i] - max) with std::exp (-inf entries 0), returning the sum: the reference's KvExpSumFn.
float ExpSumInPlace(float* s, size_t n, float max);
// The greatest of n scores, one at a time: the reference's KvGreatestFn.
float GreatestScore(const float* s, size_t n);
// The references of KvAddImportanceFn and KvLeastFn, in generic vectors the compiler makes SSE on x86, NEON on AArch64
// (the NEON tables take them).
void AddImportance(float* imp, const float* p, size_t stride, const float* f, int group, size_t n);
float LeastValue(const float* x, size_t n);

// The scalar reference kernels (also the fallback for precisions a SIMD variant does not cover).
extern const KvKernels kScalarKvKernels;
void FwhtScalar(float* x, int d, int block);
void KvEncodeScalar(const KvRowFormat& f, const float* x, uint8_t* dst);  // KvCodec::Encode

}  // namespace mikv
