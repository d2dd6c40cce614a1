// Shared pieces of the x86 KV kernels (compiled with -mavx2 -mfma -mf16c, or AVX-512 flags for *-avx512.cc).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kv_kernels.h"
#include "prefetch.h"

namespace mikv::avx {

// Helpers have internal linkage: the files including this are compiled for different instruction sets, and the
// linker must not keep one file's copy for all.
namespace {

// ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)): the scalar reference's order.
inline float Hsum8(__m256 v) {
  const __m128 a = _mm_hadd_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 b = _mm_hadd_ps(a, a);
  return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

// The smallest and the largest of eight lanes (exact: min and max do not round).
inline float HorizontalMin(__m256 v) {
  v = _mm256_min_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_min_ps(v, _mm256_shuffle_ps(v, v, 0x4E));
  return _mm_cvtss_f32(_mm256_castps256_ps128(_mm256_min_ps(v, _mm256_shuffle_ps(v, v, 0xB1))));
}

inline float HorizontalMax(__m256 v) {
  v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0x4E));
  return _mm_cvtss_f32(_mm256_castps256_ps128(_mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0xB1))));
}

// The first k of sixteen lanes (k < 16): an AVX-512 loop's last, partial chunk.
inline __mmask16 FirstLanes(size_t k) { return (__mmask16)((1u << k) - 1); }

// The greatest (kGreatest) or the least of n floats and `start`, eight lanes at a time: the softmax's largest score
// (GreatestAvx2) and a full tier's least importance (LeastAvx2). Four independent accumulators, since one would chain
// every step on the previous one's latency; min and max do not round, so any order gives the reference's value.
template <bool kGreatest>
inline float ExtremeOf8s(const float* x, size_t n, float start) {
  auto pick = [](__m256 a, __m256 b) { return kGreatest ? _mm256_max_ps(a, b) : _mm256_min_ps(a, b); };
  const __m256 s = _mm256_set1_ps(start);
  __m256 m4[4] = {s, s, s, s};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 4; ++j) m4[j] = pick(m4[j], _mm256_loadu_ps(x + i + 8 * j));
  for (; i + 8 <= n; i += 8) m4[0] = pick(m4[0], _mm256_loadu_ps(x + i));
  const __m256 all = pick(pick(m4[0], m4[1]), pick(m4[2], m4[3]));
  float e = kGreatest ? HorizontalMax(all) : HorizontalMin(all);
  for (; i < n; ++i) e = kGreatest ? (x[i] > e ? x[i] : e) : (x[i] < e ? x[i] : e);
  return e;
}

#if defined(__AVX512F__)
// ExtremeOf8s sixteen lanes at a time, the last chunk masked (its other lanes `start`).
template <bool kGreatest>
inline float ExtremeOf16s(const float* x, size_t n, float start) {
  auto pick = [](__m512 a, __m512 b) { return kGreatest ? _mm512_max_ps(a, b) : _mm512_min_ps(a, b); };
  const __m512 s = _mm512_set1_ps(start);
  __m512 m4[4] = {s, s, s, s};
  size_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int j = 0; j < 4; ++j) m4[j] = pick(m4[j], _mm512_loadu_ps(x + i + 16 * j));
  for (; i + 16 <= n; i += 16) m4[0] = pick(m4[0], _mm512_loadu_ps(x + i));
  if (i < n) m4[1] = pick(m4[1], _mm512_mask_loadu_ps(s, FirstLanes(n - i), x + i));
  const __m512 all = pick(pick(m4[0], m4[1]), pick(m4[2], m4[3]));
  return kGreatest ? _mm512_reduce_max_ps(all) : _mm512_reduce_min_ps(all);
}
#endif

// Eight consecutive INT8 codes starting at channel i (a multiple of 8), as floats: INT8 values. (Keys, and narrower
// values, are read in integers: qu8-kv-scores-avx.h, qu4-qu2-kv-*.)
template <int BITS>
inline __m256 Codes8(const uint8_t* codes, int i) {
  static_assert(BITS == 8, "the float kernels read INT8 rows only");
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i))));
}

inline float Half(uint16_t h) { return _cvtsh_ss(h); }

// Asks for the `bytes` that lie kKvRowsAskedAhead (kv_kernels.h) past `first`: each kernel does, for each block of
// rows it starts. A decode step reads each kv head's rows once, from memory (the layer's weights and every other
// stream came in between), and the hardware prefetcher alone left the kernels waiting on them. With the asks, a decode
// step of SmolLM2's shape took 0.91-0.92x the time at 4k cached tokens with an FP16 + INT2 cache, 0.84-0.87x with the
// tiered default, 0.89x at 16k, 0.99x at 512 (the AVX2 table at 4k: 0.96x) — steps with and without them interleaved
// in one process, every four tokens; 2-6 KiB ahead measured alike (docs/bench/kv-prefetch-session37.txt). Session
// 34's harness of kv heads attended in turn had found asking 2 KiB ahead level; the model's steps are what count.
// A hint: it never faults, so past the rows' end is harmless. Inlined by force, as PrefetchLines is (prefetch.h says
// why).
static_assert(kKvRowsAskedAhead > 0, "the x86 kernels ask ahead");
[[gnu::always_inline]] inline void AskRowsAhead(const uint8_t* first, size_t bytes) {
  PrefetchLines(first + kKvRowsAskedAhead, bytes);
}

// block(t, nb) for each block of B rows from t = 0, nb its row count: for a whole block std::integral_constant<int,
// B>, a constant, so the compiler drops the row pointers' stand-ins for rows past the end (a compare and a cmov each,
// sixteen a block) and the stores' masks; for the last, partial one an int. (The VNNI INT2 scores of one query at 16k
// rows in cache spent a third of their samples on those and the masked store.) With kWhole false every block gets an
// int: where the two bodies measured slower than one (the VNNI INT8 scores of three and four queries).
template <int B, bool kWhole = true, class Block>
[[gnu::always_inline]]
inline void WholeBlocksThenLast(size_t n, Block&& block) {
  size_t t = 0;
  if constexpr (kWhole)
    for (; t + B <= n; t += B) block(t, std::integral_constant<int, B>());
  for (; t < n; t += B) block(t, (int)std::min<size_t>(B, n - t));
}

// A row's scales and zeros — ng FP16 scales then ng zeros, after its codes — as the INT8/INT4/INT3/INT2 kernels read
// them. Nothing past the row is read: the cache packs rows back to back, and the last row of a block may end a
// mapping.
//
// Rows of one to four groups: the 4·ng bytes as the low halfs (the rest 0), with loads of exactly those bytes.
inline __m128i ScaleZeroHalfs(const uint8_t* sz, int ng) {
  int32_t w32;
  switch (ng) {
    case 1: std::memcpy(&w32, sz, 4); return _mm_cvtsi32_si128(w32);
    case 2: return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sz));
    case 3:
      std::memcpy(&w32, sz + 8, 4);
      return _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sz)), w32, 2);
    default: return _mm_loadu_si128(reinterpret_cast<const __m128i*>(sz));
  }
}

// Rows of any count of groups: halfs [h0, h0 + 8) of the 2·ng as floats; halfs past the row's read as anything (they
// belong to groups past ng). A chunk that would cross the row's end is read as the row's last eight halfs (or, under
// four groups, all of them) moved down with a byte shuffle.
inline __m256 Load8HalfsAsFloats(const uint8_t* sz, int h0, int ng) {
  const int total = 2 * ng;
  if (h0 + 8 <= total) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sz + 2 * h0)));
  const int first = total >= 8 ? total - 8 : 0;  // x holds halfs [first, first + 8)
  const __m128i x = total >= 8 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(sz + 2 * first)) : ScaleZeroHalfs(sz, ng);
  const __m128i down = _mm_add_epi8(_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                    _mm_set1_epi8((char)(2 * (h0 - first))));
  return _mm256_cvtph_ps(_mm_shuffle_epi8(x, down));
}

// KvQuantizeQuery's bytes and scales exactly, eight channels at a time (groups are multiples of 8): the scalar loop,
// with a compare and a branch per channel, was ~10% of a 512-token decode step's attention (three query heads per kv
// head, one call each). The same operations per channel: |q| maxima (taken so that a NaN channel is skipped, as
// std::max skips it), one multiply by 127 / max, the clamp as minps/maxps (which return 127 / -127 for NaN, as the
// scalar comparisons do), and vcvtps2dq under the default round-half-even mode, RoundHalfEven's result.
inline void QuantizeQueryAvx2(const float* q, int head_dim, int group, int8_t* q8, float* qs) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  for (int g = 0; g < head_dim / group; ++g) {
    const float* qg = q + g * group;
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < group; i += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(qg + i), magnitude), m);
    const float amax = HorizontalMax(m);
    const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    qs[g] = amax / 127.0f;
    for (int i = 0; i < group; i += 8) {
      const __m256 v = _mm256_max_ps(_mm256_min_ps(_mm256_mul_ps(_mm256_loadu_ps(qg + i), inv), hi), lo);
      const __m256i n = _mm256_cvtps_epi32(v);
      const __m128i n16 = _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q8 + g * group + i), _mm_packs_epi16(n16, n16));
    }
  }
}

}  // namespace

// AVX2 entry points (QuKv*: INT8 rows; Qu4Qu2Kv*: INT4, INT3 and INT2 rows) (kernels_avx/*-avx2.cc), reused by the AVX-512 table where a shape does not fit 16 lanes.
void FwhtAvx2(float* x, int d, int block);
// A softmax's two kernels (KvGreatestFn, KvExpSumFn): f32-softmax-avx2.cc, f32-softmax-avx512.cc (AVX-512F).
float GreatestAvx2(const float* s, size_t n);
float GreatestAvx512(const float* s, size_t n);
float ExpSumAvx2(float* s, size_t n, float max);
float ExpSumAvx512(float* s, size_t n, float max);
// The heavy-hitter bookkeeping (KvAddImportanceFn, KvLeastFn): f32-kv-importance-avx2.cc, f32-kv-importance-avx512.cc.
void AddImportanceAvx2(float* imp, const float* p, size_t stride, const float* f, int group, size_t n);
void AddImportanceAvx512(float* imp, const float* p, size_t stride, const float* f, int group, size_t n);
float LeastAvx2(const float* x, size_t n);
float LeastAvx512(const float* x, size_t n);
void QuantizeQueryAvx2Entry(const float* q, int head_dim, int group, int8_t* q8, float* qs);  // QuantizeQueryAvx2
void KvEncodeAvx2(const KvRowFormat& f, const float* x, uint8_t* dst);
void F16KvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                     float* out);
void F16KvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
void QuKvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                    float* out);
void QuKvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
void QuKvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                         float scale, float* out, size_t out_stride);
void QuKvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                         float* acc);
void Qu4Qu2KvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                        float scale, float* out);
void Qu4Qu2KvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
void Qu4Qu2KvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                             size_t n, float scale, float* out, size_t out_stride);
void Qu4Qu2KvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                             float* acc);
// Every row shape (qu-kv-anyshape-avx2.cc): the shapes the kernels above do not specialise. Scores of INT8, INT4, INT3
// and INT2 rows, values of INT4, INT3 and INT2 rows.
void QuKvScoresAnyShapeAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                            size_t n, float scale, float* out, size_t out_stride);
void QuKvValuesAnyShapeAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows,
                            size_t n, float* acc);

}  // namespace mikv::avx
