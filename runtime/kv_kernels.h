// The attention micro-kernels over one region's rows of cached tokens, and the one place that picks them.
//
// A "row" is one token's key or value vector in a KvCodec layout (kv_codec.h), rows `stride` bytes apart.
//   scores:  out[t] = scale · q · decode(row t)                       for t in [0, n)
//   values:  acc   += Σ_t p[t] · decode(row t)   (rows with p[t] == 0 are skipped)
// For quantized rows, decode(row)_i = code_i · scale_g + zero_g, so a score is
//   Σ_g scale_g · (Σ_{i∈g} q_i · code_i) + zero_g · qsum_g,  with qsum_g = Σ_{i∈g} q_i computed once per query.
//
// Variants: the scalar reference (kv_kernels_scalar.cc, the definition), AVX2+FMA+F16C and AVX-512
// (kernels_avx/), NEON and NEON dotprod (kernels_neon/). Every variant equals the reference within float
// rounding (tests/test_kv_kernels.cc). On x86 the best variant is chosen at run time from the CPU's features; on
// ARM at compile time. MIKV_KV_ISA=scalar|avx2|avx512|neon forces one (tests and benchmarks).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kv_codec.h"

namespace mikv {

struct KvRowFormat {
  KvPrecision precision;
  int head_dim, group;
  size_t stride;  // bytes from one row to the next (>= the codec's bytes)
};

using KvScoresFn = void (*)(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out);
using KvValuesFn = void (*)(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
// In place, unnormalised fast Walsh–Hadamard transform of x[d], d a power of two: stages h = 1, 2, 4, ... of
// butterflies (x[j], x[j+h]) <- (x[j] + x[j+h], x[j] - x[j+h]). Every variant does the same additions in the same
// order, so they agree bit for bit (hadamard.h builds the rotation on it).
using KvFwhtFn = void (*)(float* x, int d);

struct KvKernels {
  const char* isa;
  KvScoresFn scores[5];  // by KvPrecision
  KvValuesFn values[5];
  KvFwhtFn fwht;
};

enum class KvIsa : uint8_t { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };
const char* KvIsaName(KvIsa isa);

// The kernels of an ISA, or nullptr when this build or this CPU lacks it.
const KvKernels* GetKvKernels(KvIsa isa);
// The kernels every cache uses: the best the CPU runs, unless MIKV_KV_ISA names another.
const KvKernels& ActiveKvKernels();

// qsum[g] = Σ q over group g (what quantized scores need once per query).
void KvQuerySums(const float* q, int head_dim, int group, float* qsum);

// In place: s = softmax(s) over n scores (-inf entries become 0).
void SoftmaxInPlace(float* s, size_t n);

// The scalar reference kernels (also the fallback for precisions a SIMD variant does not cover).
extern const KvKernels kScalarKvKernels;
void FwhtScalar(float* x, int d);

}  // namespace mikv
