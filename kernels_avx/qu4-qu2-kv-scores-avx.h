// The integer scores of INT4, INT3 and INT2 rows, eight rows at a time (kernels_avx/qu4-qu2-kv-avx2.cc says how), for
// x86 targets with 256-bit integer byte dot products: the code is written once, and `Dot` supplies the instruction
// sequence for the byte products — AVX2's vpmaddubsw to int16, vpmaddwd to int32 (qu4-qu2-kv-avx2.cc's MaddubsDot).
// It leaves lane m of a register = Σ of byte products 4m..4m+3, exactly (the int16 step cannot overflow:
// kv_kernels.h). The AVX-512 VNNI tables (qu4-qu2-kv-avx512vnni.cc) have their own kernels, sixteen rows per register;
// they take the INT3 unpack from here and finish with FinishScores' float operations in its order, so their scores
// are these bit for bit (KvKernels.X86IntegerScoresAreTheSameOnEveryTable).
//   Dot::Int4(a, b, qa, qb)  = the int32 lanes of a·qa + b·qb       (a, b: unsigned codes; qa, qb: int8 query)
//   Dot::Int2(p, qk)         = the int32 lanes of Σ_k p[k]·qk[k]     (the four 2-bit phases)
// Everything here has internal linkage: each translation unit compiles its own copy for its own target.
#pragma once

#include <type_traits>

#include "qu4-qu2-kv-avx.h"

namespace mikv::avx {
namespace {
// INT4: the channel that byte j (0..31) of register A (reg 0) or B (reg 1) holds.
constexpr int ChunkChannel(int reg, int j) { return 2 * j + reg; }

struct Chunk {
  __m256i a, b;
};

inline Chunk LoadChunk(const uint8_t* codes, int c) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
  const __m256i m = _mm256_set1_epi8(15);
  return {_mm256_and_si256(x, m), _mm256_and_si256(_mm256_srli_epi16(x, 4), m)};
}

#if defined(__AVX512VBMI__)
// INT3 with AVX-512 VBMI (the avx512vbmi table: qu4-qu2-kv-avx512vbmi.cc): a chunk's 24 code bytes (channel i at
// bits 3i..3i+2) into the INT4 chunk's two registers in three instructions. Qword Q of A holds channels 16Q + 2m
// (m = 0..7), whose bits 48Q + 6m all lie in code bytes 6Q..6Q+5; B's channels 16Q + 2m + 1 lie in the same bytes,
// 3 bits on. So one vpermb gathers bytes 6Q..6Q+5 into qword Q, and vpmultishiftqb picks for each byte the 8 bits at
// 6m (A) or 6m + 3 (B) of its qword; & 7 drops the neighbours' bits. The masked load reads the 24 bytes only (the
// chunk may end the arena). The other INT3 unpack below takes ~19 instructions per chunk where INT4 takes 4.
struct Int3Unpack {
  __m256i gather, pick_a, pick_b;
  Int3Unpack() {
    alignas(32) uint8_t g[32], a[32], b[32];
    for (int q = 0; q < 4; ++q)
      for (int m = 0; m < 8; ++m) {
        g[8 * q + m] = (uint8_t)(6 * q + std::min(m, 5));
        a[8 * q + m] = (uint8_t)(6 * m);
        b[8 * q + m] = (uint8_t)(6 * m + 3);
      }
    gather = _mm256_load_si256(reinterpret_cast<const __m256i*>(g));
    pick_a = _mm256_load_si256(reinterpret_cast<const __m256i*>(a));
    pick_b = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
  }
  Chunk Load(const uint8_t* codes, int c) const {
    const __m256i x = _mm256_permutexvar_epi8(gather, _mm256_maskz_loadu_epi8(0xFFFFFF, codes + 24 * c));
    const __m256i seven = _mm256_set1_epi8(7);
    return {_mm256_and_si256(_mm256_multishift_epi64_epi8(pick_a, x), seven),
            _mm256_and_si256(_mm256_multishift_epi64_epi8(pick_b, x), seven)};
  }
};
#else
// INT3: a chunk's 24 code bytes (channel i at bits 3i..3i+2) into the INT4 chunk's two registers (byte j of A ->
// channel 2j, of B -> channel 2j+1), so INT3 takes INT4's dot products and sums. The low 128-bit half reads code
// bytes 0-15 and the high half bytes 8-23 (never past the chunk), vpshufb puts the byte pair holding a channel's code
// into each 16-bit lane (0..7 channels 3·c/8 bytes in), vpmullw by 2^(8 - 3c mod 8) lifts the code to bits 8-10, a
// shift by 8 and vpackuswb make it a byte in A's or B's order, and & 7 drops the neighbours' bits.
struct Int3Unpack {
  __m256i shuffle[4], lift[4];  // 0, 1: A's bytes 0-7 | 16-23 and 8-15 | 24-31; 2, 3: B's, the same
  Int3Unpack() {
    alignas(32) int8_t sh[4][32];
    alignas(32) int16_t mul[4][16];
    for (int k = 0; k < 4; ++k)
      for (int w = 0; w < 16; ++w) {
        const int half = w / 8, j = 16 * half + 8 * (k % 2) + w % 8, channel = 2 * j + k / 2;
        const int byte = 3 * channel / 8 - 8 * half, shift = 3 * channel % 8;
        sh[k][2 * w] = (int8_t)byte;
        sh[k][2 * w + 1] = byte + 1 <= 15 ? (int8_t)(byte + 1) : (int8_t)-128;  // (a code in one byte: none needed)
        mul[k][w] = (int16_t)(1 << (8 - shift));
      }
    for (int k = 0; k < 4; ++k) {
      shuffle[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(sh[k]));
      lift[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(mul[k]));
    }
  }
  Chunk Load(const uint8_t* codes, int c) const {
    const uint8_t* p = codes + 24 * c;
    const __m256i x = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)), 1);
    __m256i w[4];
    for (int k = 0; k < 4; ++k)
      w[k] = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(x, shuffle[k]), lift[k]), 8);
    const __m256i seven = _mm256_set1_epi8(7);
    return {_mm256_and_si256(_mm256_packus_epi16(w[0], w[1]), seven), _mm256_and_si256(_mm256_packus_epi16(w[2], w[3]), seven)};
  }
};
#endif
// Built once, on the first INT3 kernel call (scores and values share it); INT4 kernels never ask.
inline const Int3Unpack& Int3Tables() {
  static const Int3Unpack tables;
  return tables;
}

// Chunk c of a row's INT4 or INT3 codes in the INT4 chunk's two registers (int3: Int3Tables(), for INT3 only).
template <int BITS>
inline Chunk LoadCodes(const Int3Unpack* int3, const uint8_t* codes, int c) {
  if constexpr (BITS == 3) return int3->Load(codes, c);
  else return LoadChunk(codes, c);
}

// Up to kPass queries of one GQA group share each row's loads, unpacking and scale spreading (KvForQueryPasses,
// kv_kernels.h); the count is a template parameter so the per-query accumulators stay in registers.
constexpr int kPass = kKvQueryPass;

// INT4: eight rows' int32 lane vectors of one unit (a 64-channel chunk, or both chunks when a group spans them) ->
// the rows' sums per group of the unit, rows in order. Lane k holds channels 8k..8k+7 of the chunk, so groups of 32
// are the two 128-bit halves (GU = 2), larger groups the whole unit (GU = 1), and groups of 16 lane pairs (GU = 4).
template <int GU>
inline void GroupSums8(const __m256i* r, __m256i* sums) {
  const __m256i h0 = _mm256_hadd_epi32(r[0], r[1]), h1 = _mm256_hadd_epi32(r[2], r[3]);
  const __m256i h2 = _mm256_hadd_epi32(r[4], r[5]), h3 = _mm256_hadd_epi32(r[6], r[7]);
  if constexpr (GU == 4) {
    // h0 = [row 0: g0 g1, row 1: g0 g1 | row 0: g2 g3, row 1: g2 g3] already: pick each group's lanes of rows 0-3
    // and 4-7 (shufps), then join the halves.
    auto even = [](__m256i a, __m256i b) {  // lanes 0, 2 of a, then of b, in each half
      return _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), 0x88));
    };
    auto odd = [](__m256i a, __m256i b) {  // lanes 1, 3
      return _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), 0xDD));
    };
    const __m256i even03 = even(h0, h1), odd03 = odd(h0, h1);  // [rows 0-3: g0 | g2], [rows 0-3: g1 | g3]
    const __m256i even47 = even(h2, h3), odd47 = odd(h2, h3);
    sums[0] = _mm256_permute2x128_si256(even03, even47, 0x20);
    sums[1] = _mm256_permute2x128_si256(odd03, odd47, 0x20);
    sums[2] = _mm256_permute2x128_si256(even03, even47, 0x31);
    sums[3] = _mm256_permute2x128_si256(odd03, odd47, 0x31);
    return;
  }
  // [rows 0-3: lanes 0-3 | rows 0-3: lanes 4-7], then rows 4-7.
  const __m256i q0 = _mm256_hadd_epi32(h0, h1), q1 = _mm256_hadd_epi32(h2, h3);
  const __m256i lo = _mm256_permute2x128_si256(q0, q1, 0x20), hi = _mm256_permute2x128_si256(q0, q1, 0x31);
  if (GU == 1) {
    sums[0] = _mm256_add_epi32(lo, hi);
  } else {
    sums[0] = lo;
    sums[GU - 1] = hi;
  }
}

// The end of eight rows' scores, shared by INT4 and INT2: their scales and zeros loaded as columns, and per query
// Σ_g sums_g·(scale_g·qs_g) + zero_g·qsum_g for eight rows per instruction, stored (the first nb). group_sums(h, u,
// sums) gives query h's int32 group sums of unit u, rows in order.
template <int NQ, int U, int GU, int NG, typename GroupSumsFn>
inline void FinishScores(const uint8_t* first_scales, size_t stride, int nb, const float (*qs)[NG], const float* qsum,
                         float scale, GroupSumsFn group_sums, float* out, size_t out_stride) {
  __m128i cols[2 * NG];
  ScaleColumns8<NG>(first_scales, stride, nb, cols);
  __m256 sc[NG], zc[NG];
  for (int g = 0; g < NG; ++g) {
    sc[g] = _mm256_cvtph_ps(cols[g]);
    zc[g] = _mm256_cvtph_ps(cols[NG + g]);
  }
  for (int h = 0; h < NQ; ++h) {
    __m256 total = _mm256_setzero_ps();
    for (int u = 0; u < U; ++u) {
      __m256i sums[GU];
      group_sums(h, u, sums);
      for (int j = 0; j < GU; ++j) {
        const int g = u * GU + j;
        total = _mm256_fmadd_ps(zc[g], _mm256_set1_ps(qsum[h * NG + g]), total);
        total = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[j]), _mm256_mul_ps(sc[g], _mm256_set1_ps(qs[h][g])), total);
      }
    }
    total = _mm256_mul_ps(total, _mm256_set1_ps(scale));
    float* o = out + h * out_stride;
    if (nb == 8) {
      _mm256_storeu_ps(o, total);
    } else {
      alignas(32) float tail[8];
      _mm256_store_ps(tail, total);
      std::memcpy(o, tail, nb * sizeof(float));
    }
  }
}

// INT4 (and INT3) scores. Rows go eight at a time: per row and query only the integer dot products (int32 lanes);
// then per eight rows the lanes are reduced to group sums, and the scales and zeros (loaded as columns) are applied to
// eight rows per instruction. n need not be a multiple of 8: the last rows repeat row n-1 and their scores are not
// stored.
template <class Dot, int BITS, int NC, int NQ, int NG>
void ScoresInt4(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                float scale, float* out, size_t out_stride) {
  static_assert(BITS == 4 || BITS == 3, "INT4 or INT3 codes");
  constexpr int d = 64 * NC, group = d / NG;
  constexpr int U = group <= 64 ? NC : 1, GU = group <= 64 ? 64 / group : 1;  // units, groups per unit
  const size_t code_bytes = KvCodeBytes(d, BITS);
  const Int3Unpack* const int3 = BITS == 3 ? &Int3Tables() : nullptr;
  alignas(32) int8_t qa[kPass][NC][32], qb[kPass][NC][32];
  float qs[kPass][NG];
  for (int h = 0; h < NQ; ++h) {
    int8_t q8[d];
    QuantizeQueryAvx2(q + h * d, d, group, q8, qs[h]);
    for (int c = 0; c < NC; ++c)
      for (int j = 0; j < 32; ++j) {
        qa[h][c][j] = q8[64 * c + ChunkChannel(0, j)];
        qb[h][c][j] = q8[64 * c + ChunkChannel(1, j)];
      }
  }
  WholeBlocksThenLast<8>(n, [&](size_t t, auto nb) __attribute__((always_inline)) {
    AskRowsAhead(rows + t * f.stride, 8 * f.stride);
    __m256i lanes[NQ][U][8];
    for (int i = 0; i < 8; ++i) {
      const uint8_t* row = rows + (t + std::min(i, nb - 1)) * f.stride;
      for (int c = 0; c < NC; ++c) {
        const Chunk ch = LoadCodes<BITS>(int3, row, c);
        for (int h = 0; h < NQ; ++h) {
          const __m256i dot = Dot::Int4(ch.a, ch.b, _mm256_load_si256(reinterpret_cast<const __m256i*>(qa[h][c])),
                                        _mm256_load_si256(reinterpret_cast<const __m256i*>(qb[h][c])));
          if (U == NC || c == 0) lanes[h][c][i] = dot;
          else lanes[h][0][i] = _mm256_add_epi32(lanes[h][0][i], dot);
        }
      }
    }
    FinishScores<NQ, U, GU, NG>(rows + t * f.stride + code_bytes, f.stride, nb, qs, qsum, scale,
                                [&](int h, int u, __m256i* sums) { GroupSums8<GU>(lanes[h][u], sums); }, out + t, out_stride);
  });
}

// The INT2 scores' queries: each of nq queries rounded to int8 per group (scales in qs[h]) and laid out by phase,
// qp[h][c][k][j] = code of channel 64c + 4(j % 16) + k — the phase's 16 channels repeated over the W bytes of a
// register, one copy per row the register holds (W = 32: two rows).
template <int NC, int NG, int W>
inline void Int2QueryPhases(int nq, const float* q, int8_t (*qp)[NC][4][W], float (*qs)[NG]) {
  constexpr int d = 64 * NC;
  for (int h = 0; h < nq; ++h) {
    int8_t q8[d];
    QuantizeQueryAvx2(q + h * d, d, d / NG, q8, qs[h]);
    for (int c = 0; c < NC; ++c)
      for (int k = 0; k < 4; ++k)
        for (int j = 0; j < W; ++j) qp[h][c][k][j] = q8[64 * c + 4 * (j % 16) + k];
  }
}

// INT2 scores, two rows per register: row t's 16 code bytes of a chunk in the low 128 bits, row t+1's in the high,
// and the four 2-bit phases as four registers (x >> 2k & 3, one shift each) against the query's channels 4j+k.
// One vpmaddwd then leaves [row t | row t+1] x four int32 lanes, lane k = channels 16k..16k+15 of the chunk, and
// one vphaddd of two such pairs is already the rows' group sums for groups of 32; for groups of 16 each lane is one,
// and a 4x4 transpose of the four pairs gives them.
template <class Dot, int NC, int NQ, int NG>
void ScoresInt2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                float scale, float* out, size_t out_stride) {
  constexpr int d = 64 * NC, group = d / NG;
  constexpr int U = group <= 64 ? NC : 1, GU = group <= 64 ? 64 / group : 1;
  const size_t code_bytes = KvCodeBytes(d, 2);
  alignas(32) int8_t qp[kPass][NC][4][32];  // [query][chunk][phase], channels 64c + 4j + phase, j = 0..15, twice
  float qs[kPass][NG];
  Int2QueryPhases<NC, NG, 32>(NQ, q, qp, qs);
  const __m256i three = _mm256_set1_epi8(3);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // rows 0 2 4 6 1 3 5 7 -> 0..7
  WholeBlocksThenLast<8>(n, [&](size_t t, auto nb) __attribute__((always_inline)) {
    AskRowsAhead(rows + t * f.stride, 8 * f.stride);
    __m256i pairs[NQ][U][4];  // [row 2i | row 2i+1] lanes
    for (int i = 0; i < 4; ++i) {
      const uint8_t* r0 = rows + (t + std::min(2 * i, nb - 1)) * f.stride;
      const uint8_t* r1 = rows + (t + std::min(2 * i + 1, nb - 1)) * f.stride;
      for (int c = 0; c < NC; ++c) {
        const __m256i x = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + 16 * c))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + 16 * c)), 1);
        const __m256i p0 = _mm256_and_si256(x, three), p1 = _mm256_and_si256(_mm256_srli_epi16(x, 2), three);
        const __m256i p2 = _mm256_and_si256(_mm256_srli_epi16(x, 4), three), p3 = _mm256_and_si256(_mm256_srli_epi16(x, 6), three);
        for (int h = 0; h < NQ; ++h) {
          const __m256i* qk = reinterpret_cast<const __m256i*>(qp[h][c]);
          const __m256i phases[4] = {p0, p1, p2, p3};
          const __m256i qks[4] = {_mm256_load_si256(qk), _mm256_load_si256(qk + 1), _mm256_load_si256(qk + 2),
                                  _mm256_load_si256(qk + 3)};
          const __m256i dot = Dot::Int2(phases, qks);
          if (U == NC || c == 0) pairs[h][c][i] = dot;
          else pairs[h][0][i] = _mm256_add_epi32(pairs[h][0][i], dot);
        }
      }
    }
    // [r0g0 r0g1 r2g0 r2g1 | r1g0 r1g1 r3g0 r3g1] and rows 4-7 likewise (GU = 2); for GU = 1 one more level.
    auto group_sums = [&](int h, int u, __m256i* sums) {
      if constexpr (GU == 4) {  // pairs[i] = [row 2i: g0..g3 | row 2i+1: g0..g3]
        const __m256i* p = pairs[h][u];
        const __m256i a0 = _mm256_unpacklo_epi32(p[0], p[1]), a1 = _mm256_unpackhi_epi32(p[0], p[1]);
        const __m256i a2 = _mm256_unpacklo_epi32(p[2], p[3]), a3 = _mm256_unpackhi_epi32(p[2], p[3]);
        // [r0 r2 r4 r6 | r1 r3 r5 r7] of each group, then rows in order
        sums[0] = _mm256_permutevar8x32_epi32(_mm256_unpacklo_epi64(a0, a2), order);
        sums[1] = _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi64(a0, a2), order);
        sums[2] = _mm256_permutevar8x32_epi32(_mm256_unpacklo_epi64(a1, a3), order);
        sums[3] = _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi64(a1, a3), order);
        return;
      }
      const __m256i h0 = _mm256_hadd_epi32(pairs[h][u][0], pairs[h][u][1]);
      const __m256i h1 = _mm256_hadd_epi32(pairs[h][u][2], pairs[h][u][3]);
      if (GU == 1) {
        sums[0] = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(h0, h1), order);
      } else {
        sums[0] = _mm256_permutevar8x32_epi32(
            _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(h0), _mm256_castsi256_ps(h1), 0x88)), order);
        sums[GU - 1] = _mm256_permutevar8x32_epi32(
            _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(h0), _mm256_castsi256_ps(h1), 0xDD)), order);
      }
    };
    FinishScores<NQ, U, GU, NG>(rows + t * f.stride + code_bytes, f.stride, nb, qs, qsum, scale, group_sums, out + t,
                                out_stride);
  });
}

// Runs kernel(nc, ng, count, first) for head_dim 64 in 1, 2 or 4 groups or 128 in 1, 2, 4 or 8 over nq queries: the
// chunks (NC: head_dim 64 or 128) and groups (NG) of the shape and the pass's query count (KvForQueryPasses) as
// std::integral_constant, for the kernel's template; first is the pass's first query. Which of these shapes a kernel
// takes its caller decides (FastShape). (Eight groups keep the passes of up to four queries, though a query's sums
// then take eight registers and some spill: passes of at most two were slower on the VBMI table,
// docs/bench/eight-groups-session44.txt.)
template <typename Kernel>
inline void ForScoreShape(const KvRowFormat& f, int nq, Kernel&& kernel) {
  auto passes = [&](auto nc, auto ng) { KvForQueryPasses(nq, [&](auto count, int h) { kernel(nc, ng, count, h); }); };
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  using Four = std::integral_constant<int, 4>;
  const int ng = f.head_dim / f.group;
  if (f.head_dim == 64) return ng == 1 ? passes(One(), One()) : ng == 2 ? passes(One(), Two()) : passes(One(), Four());
  if (ng == 1) return passes(Two(), One());
  if (ng == 2) return passes(Two(), Two());
  if (ng == 4) return passes(Two(), Four());
  passes(Two(), std::integral_constant<int, 8>());
}

template <class Dot, int BITS>
void ScoresOfShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                   float* out, size_t out_stride) {
  ForScoreShape(f, nq, [&](auto nc, auto ng, auto count, int h) {
    constexpr int NC = decltype(nc)::value, NG = decltype(ng)::value, NQ = decltype(count)::value;
    const float* qh = q + h * f.head_dim;
    if constexpr (BITS == 2) ScoresInt2<Dot, NC, NQ, NG>(f, qh, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
    else ScoresInt4<Dot, BITS, NC, NQ, NG>(f, qh, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
  });
}

}  // namespace
}  // namespace mikv::avx
