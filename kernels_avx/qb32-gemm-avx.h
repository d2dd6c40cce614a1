// qb32-gemm on x86, the parts every variant shares: weights packed eight rows at a time (PackQb32Rows8,
// qb32_gemm.h), lane r of every vector belongs to row r, and an activation dword is broadcast to all eight. Per block
// a variant's SUMS<NB>::Sums gives the eight rows' Σ_j w_j · x_j in int32 lanes for NB activation rows; then one
// multiply and add for the eight rows: those sums as floats times f32(d_w) · f32(d_x). A row's result is the scalar
// reference's bit for bit: the same integer sums and the same float operations in the same order. Up to four
// activation rows share each weight vector (prefill); decode is the one-row case.
// Q4_0's nibbles are multiplied unsigned (0..15) and 8 · Σx of the activation block is taken off:
// Σ (n − 8)·x = Σ n·x − 8·Σx. Q8_0's signed codes become |w| · sign(x, w) on AVX2; AVX-512 has no vpsignb, and its
// variant flips the codes' top bit and takes 128 · Σx off instead. Each variant loads its codes its own way
// (qb32-gemm-avx2.cc, qb32-gemm-avx512vnni.cc); shared here are the layout, the float accumulation (Group, Gemm) and
// the activations' quantizer.
//
// Included by each variant's source, compiled with its flags; everything is in an anonymous namespace so that no
// copy built for one instruction set is linked in place of another's.
#pragma once

#include <immintrin.h>

#include <algorithm>

#include "ggml_blocks.h"
#include "qb32_gemm.h"

namespace mikv::avx {
namespace {

constexpr size_t kRows = 8;                 // rows per packed group: the eight lanes
constexpr size_t kScaleBytes = kRows * 2;   // a packed group-block starts with the rows' f16 scales

inline float Half(const uint8_t* block) {
  uint16_t h;
  __builtin_memcpy(&h, block, 2);
  return _cvtsh_ss(h);
}

// QuantizeActivationsQ8_0 (ggml_blocks.h) bit for bit, 32 floats per block in four registers. Each of the
// reference's std::max / std::min is the vmaxps / vminps that returns its second operand on NaN and on ties, so a
// NaN input is skipped by the block's amax and clamps to −127, as there; vcvtps2dq rounds half to even, as nearbyint
// does in the default rounding mode. The lanes' maxima are of non-negative non-NaN values, so their order is free.
void QuantizeActivations(const float* x, size_t n, uint8_t* blocks, int32_t* sums) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 top = _mm256_set1_ps(127.0f), bottom = _mm256_set1_ps(-127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // vpackssdw/vpacksswb interleave the halves
  for (size_t b = 0; b < n / kQBlock; ++b, x += kQBlock, blocks += kQ8_0BlockBytes) {
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      m = _mm256_max_ps(_mm256_and_ps(v[i], magnitude), m);  // std::max(amax, |x|)
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    const uint16_t d = FloatToHalf(amax / 127.0f);
    __builtin_memcpy(blocks, &d, 2);
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; ++i)  // std::min(127, std::max(-127, x · id)), rounded
      q[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], id), bottom), top));
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blocks + 2), _mm256_permutevar8x32_epi32(bytes, order));
    if (sums) {
      const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      sums[b] = _mm_cvtsi128_si32(_mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1)));
    }
  }
}

// How far ahead of the block being multiplied the weights are asked for. A thread reads its share of a matrix in
// one stream, but a decode step is ~150 matrices of 0.2-1 MB and the hardware prefetcher starts again on each (and,
// on many cores, at every 4 KiB page): asking 8 KiB ahead keeps more lines in flight from the start. Two threads on
// the AMD EPYC here, weights in no cache (copies read in a shuffled order), GB/s without / with, four interleaved
// runs: 3072 x 576 (SmolLM2's gate/up) 46-50 / 47-54, 1536 x 576 39-45 / 44-49, 576 x 576 44-48 / 51-55; 4 KiB ahead
// gained about half of that, 16 KiB less than 8. In decode (SmolLM2 shape, q4_0, two threads, runs alternating with
// the build without it) the five projections took 1,907 -> 1,512 µs a token (medians of six) while other VMs loaded
// the host's memory, and about the same when it was quiet; on the device tool's Xeon 20-50% less at two and four
// threads, level at eight (docs/kernels-sessions.md, session 24). Past the end of a thread's share the asks go on
// into the stream the caller reads next where it says which (Qb32GemmArgs::then: the lockstep decode's next
// projection share), else into the lines that follow (8 KiB per thread and matrix; a prefetch never faults). Going on
// into the next share: a SmolLM2-shape decode step 0.975-1.006x the time at 512, 1k and 4k tokens (14 rounds of steps
// with and without interleaved, median 0.986; docs/bench/ahead-into-next-stream-session40.txt).
constexpr size_t kPrefetchBytes = 8192;

// Asks for the lines of [p + kPrefetchBytes, p + kPrefetchBytes + n): every line of the stream once the blocks
// follow each other; from the stream's `end` on, the lines as far into `then` (when given).
inline void PrefetchAhead(const uint8_t* p, size_t n, const uint8_t* end, const uint8_t* then) {
  const uint8_t* a = p + kPrefetchBytes;
  if (then && a >= end) a = then + (a - end);
  const char* ahead = reinterpret_cast<const char*>(a);
  for (size_t l = 0; l < n; l += 64) _mm_prefetch(ahead + l, _MM_HINT_T0);
  _mm_prefetch(ahead + n - 1, _MM_HINT_T0);
}

// One packed group (rows o..o+n-1, n ≤ 8) against activation rows b0..b0+NB-1.
template <size_t NB, size_t W_BLOCK_BYTES, void (*BLOCK_SUMS)(const uint8_t*, const uint8_t* const*, const int32_t*,
                                                              __m256i*)>
void Group(const uint8_t* g, const Qb32GemmArgs& a, size_t b0, size_t o, size_t n, const uint8_t* end) {
  __m256 acc[NB];
  for (size_t b = 0; b < NB; ++b) acc[b] = _mm256_setzero_ps();
  for (size_t k = 0; k < a.blocks; ++k, g += kRows * W_BLOCK_BYTES) {
    PrefetchAhead(g, kRows * W_BLOCK_BYTES, end, a.then);
    const uint8_t* x[NB];
    int32_t x_sums[NB];
    for (size_t b = 0; b < NB; ++b) {
      x[b] = a.x + (b0 + b) * a.x_row_bytes + k * kQ8_0BlockBytes;
      x_sums[b] = a.x_sums[(b0 + b) * a.blocks + k];
    }
    __m256i sums[NB];
    BLOCK_SUMS(g + kScaleBytes, x, x_sums, sums);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    // (d_w · d_x) · sum, rounded, then added: the scalar reference's operations in its order, so each row's result
    // is the reference's bit for bit (an FMA would round once less and move codes quantized from it downstream).
    for (size_t b = 0; b < NB; ++b)
      acc[b] = _mm256_add_ps(acc[b], _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(Half(x[b]))), _mm256_cvtepi32_ps(sums[b])));
  }
  for (size_t b = 0; b < NB; ++b) {
    float* y = a.y + (b0 + b) * a.y_stride + o;
    if (n == kRows) {
      _mm256_storeu_ps(y, acc[b]);
    } else {  // the last group: only its real rows
      float lanes[kRows];
      _mm256_storeu_ps(lanes, acc[b]);
      std::copy(lanes, lanes + n, y);
    }
  }
}

template <size_t W_BLOCK_BYTES, template <size_t> class BLOCK_SUMS>
void Gemm(const Qb32GemmArgs& a, size_t o_begin, size_t o_end) {
  const size_t group_bytes = a.blocks * kRows * W_BLOCK_BYTES;
  const uint8_t* end = a.w + (o_end + kRows - 1) / kRows * group_bytes;  // where the rows' stream ends
  for (size_t o = o_begin; o < o_end; o += kRows) {
    const uint8_t* g = a.w + o / kRows * group_bytes;
    const size_t n = std::min(kRows, o_end - o);
    size_t b = 0;
    for (; b + 4 <= a.batch; b += 4) Group<4, W_BLOCK_BYTES, BLOCK_SUMS<4>::Sums>(g, a, b, o, n, end);
    switch (a.batch - b) {
      case 3: Group<3, W_BLOCK_BYTES, BLOCK_SUMS<3>::Sums>(g, a, b, o, n, end); break;
      case 2: Group<2, W_BLOCK_BYTES, BLOCK_SUMS<2>::Sums>(g, a, b, o, n, end); break;
      case 1: Group<1, W_BLOCK_BYTES, BLOCK_SUMS<1>::Sums>(g, a, b, o, n, end); break;
      default: break;
    }
  }
}

}  // namespace
}  // namespace mikv::avx
