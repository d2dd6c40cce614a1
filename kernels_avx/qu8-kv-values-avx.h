// qu8-kv-values: INT8 values in floats (kv_kernels.h keeps INT8 values float), for x86 targets with AVX2+FMA+F16C:
// unsigned codes widened eight at a time, each row's per-group scale and zero folded into p. The group variants read
// each row once for all the heads of a GQA group. qu-kv-avx2.cc compiles it for the AVX2 and AVX-512 tables,
// qu4-qu2-kv-avx512vnni.cc again for the VNNI/VBMI ones, where AVX-512VL gives 32 vector registers and so more
// multiply-add chains in flight (kValueChains), and 512-bit registers sixteen channels each (Chunk16: the same
// instructions a row in half the number, 1.5x at 16k rows with one to four queries). The operations on each channel are
// the same in every build and whatever the number of chains, so every x86 table gives the same values bit for bit
// (KvKernels.X86Int8ValuesAreTheSameOnEveryTable). Everything here has internal linkage: each translation unit compiles
// its own copy for its own target.
#pragma once

#include "kv-avx.h"

namespace mikv::avx {
namespace {

// Values, rows in blocks of kValueBlock: per block and group, each query's p·scale per row (0 where p is 0, so a
// masked row adds nothing whatever it holds) and Σ p·zero; then per chunk of eight channels the block's rows are summed
// into one register per query and added to acc once. (Adding each row into acc in memory made every row wait for the
// previous row's store: ten times slower.)
constexpr int kValueBlock = 32;

// Multiply-add chains in flight per pass (chunks of eight channels times queries): what the registers hold beside the
// weights and the codes — 8 in AVX2's 16 registers (one query: 8 chunks; two: 4 each; three, four: 2), 12 in
// AVX-512VL's 32 (three queries: 4 chunks each). Side by side at 16k rows, head_dim 64, groups of 32, against the
// AVX2 build: one query 1.09x, two 1.09x (the same chains, more registers), three 1.19-1.24x, four 1.00x; four
// queries of 4 chunks (16 chains) ran at 0.62x.
#if defined(__AVX512VL__)
constexpr int kValueChains = 12;
#else
constexpr int kValueChains = 8;
#endif

// The registers a chunk of channels is summed in: eight channels a __m256 (every build), sixteen a __m512 (AVX-512:
// the same instructions a row in half the number). Each channel's operations are the same either way.
struct Chunk8 {
  using V = __m256;
  static constexpr int kChannels = 8;
  static V Set1(float x) { return _mm256_set1_ps(x); }
  static V Codes(const uint8_t* row, int i) { return Codes8<8>(row, i); }
  static V Fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void AddTo(float* p, V a) { _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), a)); }
};
#if defined(__AVX512F__)
struct Chunk16 {
  using V = __m512;
  static constexpr int kChannels = 16;
  static V Set1(float x) { return _mm512_set1_ps(x); }
  static V Codes(const uint8_t* row, int i) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i))));
  }
  static V Fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void AddTo(float* p, V a) { _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), a)); }
};
#endif

// C chunks (Chunk8 or Chunk16) from channel i, over a block's nb rows, for NQ queries: acc += the rows' sum, started
// from Σ p·zero. Each chunk and query is one chain of multiply-adds over the rows, in row order; C of them per query
// are in flight at once (one chain alone waited on each row's fmadd latency: 1.7x with four), and how many does not
// change any chain's operations, so every C gives the same bits.
// The C chunks span C / CPG groups of CPG chunks each (CPG = C: all in one group). Spanning groups is what keeps one
// query's eight chains in flight when a group is only four chunks (head_dim 64 in groups of 32): group by group, four
// chains waited on the fmadd latency (INT8 values at 16k rows, one query: 21 GB/s, under half of its scores' speed).
// ps[(h · kValueBlock + t) · 8 + j]: query h's weight of row t in the span's group j (each row holds up to eight
// groups' weights side by side, ps pointing at the span's first); zsum[h · zsum_stride + j]: its Σ p·zero.
template <class Chunk, int NQ, int C, int CPG = C>
inline void ValueChunks(const uint8_t* block, size_t stride, int nb, const float* ps, const float* zsum, int zsum_stride,
                        int i, int d, float* acc) {
  static_assert(C % CPG == 0, "a span holds whole groups, or part of one");
  constexpr int G = C / CPG, kWidth = Chunk::kChannels;
  typename Chunk::V a[NQ][C];
  for (int h = 0; h < NQ; ++h)
    for (int c = 0; c < C; ++c) a[h][c] = Chunk::Set1(zsum[h * zsum_stride + c / CPG]);
  for (int t = 0; t < nb; ++t) {
    const uint8_t* row = block + t * stride;
    // Broadcast once per row and group (inside the chunk loop GCC broadcast again for every chunk).
    typename Chunk::V w[NQ][G];
    for (int h = 0; h < NQ; ++h)
      for (int j = 0; j < G; ++j) w[h][j] = Chunk::Set1(ps[(h * kValueBlock + t) * 8 + j]);
    for (int c = 0; c < C; ++c) {
      const typename Chunk::V codes = Chunk::Codes(row, i + kWidth * c);
      for (int h = 0; h < NQ; ++h) a[h][c] = Chunk::Fmadd(w[h][c / CPG], codes, a[h][c]);
    }
  }
  for (int h = 0; h < NQ; ++h)
    for (int c = 0; c < C; ++c) Chunk::AddTo(acc + (size_t)h * d + i + kWidth * c, a[h][c]);
}

// NQ queries (a template parameter, so that their accumulators stay in registers): up to eight chains in flight, as
// many chunks at a time as divide the group, or spans of whole groups where a group has fewer chunks than that (rows of
// at most eight groups, whose weights lie side by side). The weights of a block: rows of at most eight groups have
// every group's p·scale and Σ p·zero from one or two conversions and one multiply (and multiply-add) per row; others
// group by group. (Rows of five to eight groups, head_dim 64 in groups of 8 or 128 in groups of 16, went group by
// group until session 33, one chain of eight channels each: ~6x slower than groups of 32.)
// Either way each weight is p·scale, or 0 where p is 0, and each Σ p·zero adds its rows in order with one rounding.
template <int BITS, int NQ>
void ValuesQueries(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  constexpr int kMaxChunks = kValueChains / NQ >= 8 ? 8 : kValueChains / NQ >= 4 ? 4 : 2;
  const int chunks = group / 8;
  const int c = kMaxChunks >= 8 && chunks % 8 == 0 ? 8 : kMaxChunks >= 4 && chunks % 4 == 0 ? 4 : chunks % 2 == 0 ? 2 : 1;
  int span = 0;  // chunks per span of whole groups (0: group by group)
  const bool side_by_side = ng <= 8;  // every group's weight of a row in one vector
  if (side_by_side)
    for (int s : {8, 4, 2})
      if (s <= kMaxChunks && s > chunks && s % chunks == 0 && (d / 8) % s == 0) {
        span = s;
        break;
      }
#if defined(__AVX512F__)
  // Sixteen-channel chunks (Chunk16) where groups are whole chunks and the rows' weights lie side by side: spans
  // of 64 channels, or 128 where two or fewer queries leave the registers for sixteen chains.
  constexpr int kWide = NQ <= 2 ? 8 : 4;
  const bool wide = side_by_side && group % 16 == 0 && d % 64 == 0;
  const int c16 = d % (16 * kWide) == 0 ? kWide : 4, cpg16 = std::min(group / 16, c16);
#endif
  alignas(32) float ps[NQ][kValueBlock][8];
  alignas(32) float zsums[NQ][16];  // [ng, 2ng): the Σ p·zero of groups 0..ng-1 (below ng: the scales' lanes)
  for (size_t t0 = 0; t0 < n; t0 += kValueBlock) {
    const int nb = (int)std::min<size_t>(kValueBlock, n - t0);
    const uint8_t* block = rows + t0 * f.stride;
    AskRowsAhead(block, (size_t)kValueBlock * f.stride);
    if (side_by_side) {
      // Rows of up to four groups hold their scales and zeros in one vector (zeros in lanes ng..2ng-1, whose sums so
      // land at zsums[h][ng + g] when stored from 0); rows of five to eight in two (zeros in lanes 0..ng-1, stored
      // from ng).
      const bool one_vector = ng <= 4;
      __m256 zacc[NQ];
      for (int h = 0; h < NQ; ++h) zacc[h] = _mm256_setzero_ps();
      for (int t = 0; t < nb; ++t) {
        const uint8_t* sz = block + t * f.stride + code_bytes;
        __m256 scales, zeros;  // (kv-avx.h's loads: nothing past the row read)
        if (one_vector) scales = zeros = _mm256_cvtph_ps(ScaleZeroHalfs(sz, ng));
        else scales = Load8HalfsAsFloats(sz, 0, ng), zeros = Load8HalfsAsFloats(sz, ng, ng);
        for (int h = 0; h < NQ; ++h) {
          const float ph = p[(size_t)h * p_stride + t0 + t];
          const __m256 pv = _mm256_set1_ps(ph);
          const __m256 weighed = _mm256_cmp_ps(pv, _mm256_setzero_ps(), _CMP_NEQ_UQ);  // all lanes, or none
          _mm256_store_ps(ps[h][t], _mm256_and_ps(_mm256_mul_ps(pv, scales), weighed));
          zacc[h] = _mm256_blendv_ps(zacc[h], _mm256_fmadd_ps(pv, zeros, zacc[h]), weighed);
        }
      }
      for (int h = 0; h < NQ; ++h) _mm256_storeu_ps(zsums[h] + (one_vector ? 0 : ng), zacc[h]);
    }
#if defined(__AVX512F__)
    if (wide) {
      for (int i = 0; i < d; i += 16 * c16) {
        const float* pg = &ps[0][0][i / group];
        const float* zg = &zsums[0][ng + i / group];
        switch (c16 * 16 + cpg16) {
          case 8 * 16 + 1: ValueChunks<Chunk16, NQ, kWide, 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 8 * 16 + 2: ValueChunks<Chunk16, NQ, kWide, 2>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 8 * 16 + 4: ValueChunks<Chunk16, NQ, kWide, 4>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 8 * 16 + 8: ValueChunks<Chunk16, NQ, kWide, kWide>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 4 * 16 + 1: ValueChunks<Chunk16, NQ, 4, 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 4 * 16 + 2: ValueChunks<Chunk16, NQ, 4, 2>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          default: ValueChunks<Chunk16, NQ, 4, 4>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
        }
      }
      continue;
    }
#endif
    if (span != 0) {
      for (int i = 0; i < d; i += 8 * span) {
        const float* pg = &ps[0][0][i / group];
        const float* zg = &zsums[0][ng + i / group];
        switch (span * 16 + chunks) {
          case 8 * 16 + 4: ValueChunks<Chunk8, NQ, kMaxChunks >= 8 ? 8 : 1, kMaxChunks >= 8 ? 4 : 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 8 * 16 + 2: ValueChunks<Chunk8, NQ, kMaxChunks >= 8 ? 8 : 1, kMaxChunks >= 8 ? 2 : 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 8 * 16 + 1: ValueChunks<Chunk8, NQ, kMaxChunks >= 8 ? 8 : 1, 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 4 * 16 + 2: ValueChunks<Chunk8, NQ, kMaxChunks >= 4 ? 4 : 1, kMaxChunks >= 4 ? 2 : 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          case 4 * 16 + 1: ValueChunks<Chunk8, NQ, kMaxChunks >= 4 ? 4 : 1, 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;
          default: ValueChunks<Chunk8, NQ, 2, 1>(block, f.stride, nb, pg, zg, 16, i, d, acc); break;  // 2 chunks, groups of 8
        }
      }
      continue;
    }
    for (int g = 0; g < ng; ++g) {
      float zsum[NQ];
      if (side_by_side) {
        for (int h = 0; h < NQ; ++h) zsum[h] = zsums[h][ng + g];
      } else {
        for (int h = 0; h < NQ; ++h) zsum[h] = 0.0f;
        for (int t = 0; t < nb; ++t) {
          const uint16_t* sz = reinterpret_cast<const uint16_t*>(block + t * f.stride + code_bytes);
          const float scale = Half(sz[g]), zero = Half(sz[ng + g]);
          for (int h = 0; h < NQ; ++h) {
            const float ph = p[(size_t)h * p_stride + t0 + t];
            ps[h][t][0] = ph == 0.0f ? 0.0f : ph * scale;
            if (ph != 0.0f) zsum[h] = std::fma(ph, zero, zsum[h]);  // one rounding in every instance
          }
        }
      }
      // This group's weights: column g of the rows' vectors, or column 0 where they were made group by group.
      const float* pg = &ps[0][0][side_by_side ? g : 0];
      for (int i = g * group; i < (g + 1) * group; i += 8 * c) {
        switch (c) {
          case 8: ValueChunks<Chunk8, NQ, kMaxChunks >= 8 ? 8 : 1>(block, f.stride, nb, pg, zsum, 1, i, d, acc); break;
          case 4: ValueChunks<Chunk8, NQ, kMaxChunks >= 4 ? 4 : 1>(block, f.stride, nb, pg, zsum, 1, i, d, acc); break;
          case 2: ValueChunks<Chunk8, NQ, 2>(block, f.stride, nb, pg, zsum, 1, i, d, acc); break;
          default: ValueChunks<Chunk8, NQ, 1>(block, f.stride, nb, pg, zsum, 1, i, d, acc); break;
        }
      }
    }
  }
}

template <int BITS>
void ValuesGroup(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                 float* acc) {
  for (int h = 0; h < nq; h += 4) {
    const float* ph = p + (size_t)h * p_stride;
    float* ah = acc + (size_t)h * f.head_dim;
    switch (std::min(4, nq - h)) {
      case 1: ValuesQueries<BITS, 1>(f, ph, p_stride, rows, n, ah); break;
      case 2: ValuesQueries<BITS, 2>(f, ph, p_stride, rows, n, ah); break;
      case 3: ValuesQueries<BITS, 3>(f, ph, p_stride, rows, n, ah); break;
      default: ValuesQueries<BITS, 4>(f, ph, p_stride, rows, n, ah); break;
    }
  }
}

template <int BITS>
void Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  ValuesGroup<BITS>(f, 1, p, n, rows, n, acc);
}

}  // namespace
}  // namespace mikv::avx
