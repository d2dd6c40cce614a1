// qu4-kv-scores, qu3-kv-scores, qu2-kv-scores and their values, AVX-512 VNNI + VL (vpdpbusd: four unsigned-by-signed
// byte products summed into each int32 lane, no int16 step): the integer definition of kv_kernels.h.
//
// Scores: INT4, INT3 and INT2 sixteen rows per 512-bit register (ScoresInt4Rows16, ScoresInt2Rows16): the rows'
// code dwords transposed so that a row's products land in its own lane, the query's bytes broadcast — no horizontal
// sums. They finish with the AVX2 kernels' float operations in their order (qu4-qu2-kv-scores-avx.h's
// FinishScores): the same integer sums, so the same scores. (The first VNNI scores spread each row's scales over its
// lanes one row at a time, and were slower than AVX2's; the next ones were the AVX2 eight-row kernels with vpdpbusd
// on 256-bit registers, and INT2 four rows per register, each row in a 128-bit lane reduced afterwards:
// docs/bench/vnni-kv-rows16-device.txt.)
// Values: INT4, INT3 and INT2 four rows per vpdpbusd on 512-bit registers (ValuesInt4Vnni, ValuesInt2Vnni), dword j
// holding the four rows' codes of one channel, each row read once for a pass of up to four query heads of a GQA
// group. An earlier VNNI values kernel of the same idea, which read the rows once per query head, was measured
// slower than the AVX2 ones on the device's Xeon (docs/bench/avx512-device.json) and removed. Under VBMI the INT3
// codes unpack by vpermb (qu4-qu2-kv-scores-avx.h's Int3Unpack).
// INT8 (below the INT4/INT2 scores): the scores of one query qu8-kv-scores-avx.h's with one 256-bit vpdpbusd per 32
// channels (VnniDot), of two to four sixteen rows per register (ScoresInt8Rows16); the values (float)
// qu8-kv-values-avx.h's AVX2 source with the 32 registers and 512-bit chunks this build has.
// Shapes: head_dim 64 or 128 in groups of 16, 32, 64 or 128 channels (FastShape); others go to the AVX2 entry points.
#include "qu4-qu2-kv-scores-avx.h"
#include "qu4-qu2-kv-values-avx.h"
#include "qu8-kv-scores-avx.h"
#include "qu8-kv-values-avx.h"

// qu4-qu2-kv-avx512vbmi.cc compiles this file again for AVX-512 VBMI, as its own table.
#ifndef MIKV_VNNI_TABLE
#define MIKV_VNNI_TABLE kAvx512VnniKvKernels
#define MIKV_VNNI_TABLE_NAME "avx512vnni"
#endif

namespace mikv::avx {

void F16KvScoresAvx512Entry(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out);
void F16KvValuesAvx512Entry(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
void F16KvScoresGroupAvx512(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                            size_t n, float scale, float* out, size_t out_stride);
void F16KvValuesGroupAvx512(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows,
                            size_t n, float* acc);

namespace {

// acc + the sum of four u8·s8 products in each int32 lane (vpdpbusd), with the accumulator tied to one register: for
// ValuesInt2Vnni, whose twelve accumulators (three queries) GCC 12 copied to other registers and back around every
// vpdpbusd through the intrinsic (a step of four rows: 57 instructions, 12 of them vpdpbusd and 26 register moves; 32
// with this). As an asm whose operand is read and written ("+v"), each sum stays in its register. One thread, 4k INT2
// rows, head_dim 64, groups of 32: the values 0.84-0.90x the time with three to seven query heads, in cache and from
// memory; the attention (scores, softmax, values) 0.91-0.94x. The other kernels keep the intrinsic: where the query
// or weights are a broadcast dword it folds the broadcast into the vpdpbusd as a memory operand (with this asm the
// sixteen-row scores took 1.03-1.09x the time), and the one-query INT8 scores measured level (0.95x in cache, 1.06x
// from memory). scripts/kv-kernel-ab.sh, docs/bench/values-weights-session45.txt.
[[gnu::always_inline]] inline __m512i DpbusdInPlace(__m512i acc, __m512i u8, __m512i s8) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

// Bits shift..shift+bits-1 of every byte as the byte's value: INT2's phases (x >> 2k) & 3, INT4's nibbles. Under GFNI
// (the VBMI table) a field above bit 0 is one gf2p8affineqb — result bit i is the parity of the source byte ANDed
// with the matrix's byte 7 - i, which here holds the one bit shift + i — in place of a shift and a mask.
template <int shift, int bits>
[[gnu::always_inline]]
inline __m512i BitField(__m512i x) {
#if defined(__GFNI__)
  if constexpr (shift > 0) {
    constexpr uint64_t kMatrix = [] {
      uint64_t m = 0;
      for (int i = 0; i < bits; ++i) m |= (uint64_t)(1u << (shift + i)) << (8 * (7 - i));
      return m;
    }();
    return _mm512_gf2p8affine_epi64_epi8(x, _mm512_set1_epi64((long long)kMatrix), 0);
  }
#endif
  return _mm512_and_si512(_mm512_srli_epi16(x, shift), _mm512_set1_epi8((char)((1 << bits) - 1)));
}

// INT2 phase k of every byte left in place, (x & 3 << 2k) = 4^k · code: one vpandd, where taking the code down
// (BitField) is a shift or a gf2p8affineqb, which share the multiply ports with vpdpbusd. A kernel summing such
// bytes gets 4^k times the sum of the codes, exactly, and takes the 4^k out after, exactly too: a block of 64 rows
// (KvValueBlockRows) sums at most 64·127·3·4^3 < 2^21 in a lane, a float's integer, and 4^-k is a power of two.
template <int k>
[[gnu::always_inline]]
inline __m512i PhaseInPlace(__m512i x) {
  return _mm512_and_si512(x, _mm512_set1_epi8((char)(3 << 2 * k)));
}

// Two groups' [scale0, scale1, zero0, zero1] halfs of sixteen rows, one qword a row (rows8[0]: rows 0-7, rows8[1]:
// rows 8-15), as four float columns sz[0..3]: one vpermt2w picks two columns of all sixteen rows.
[[gnu::always_inline]]
inline void ColumnsOfScaleQwords16(const __m512i* rows8, __m512* sz) {
  // Word w of the result: column 2p + w / 16 (pair p) of row w % 16, which is word 4r + column of rows8[r / 8].
  struct Picks {
    alignas(64) int16_t word[2][32];
  };
  static constexpr Picks kPick = [] {
    Picks t{};
    for (int p = 0; p < 2; ++p)
      for (int w = 0; w < 32; ++w) t.word[p][w] = (int16_t)((w % 16 < 8 ? 0 : 32) + 4 * (w % 8) + 2 * p + w / 16);
    return t;
  }();
  for (int p = 0; p < 2; ++p) {
    const __m512i cols = _mm512_permutex2var_epi16(rows8[0], _mm512_load_si512(kPick.word[p]), rows8[1]);
    sz[2 * p] = _mm512_cvtph_ps(_mm512_castsi512_si256(cols));
    sz[2 * p + 1] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(cols, 1));
  }
}

// Sixteen packed INT2 rows of head_dim 64 and groups of 32 — stride 24, the codec's own bytes, as the cache stores
// them: three qwords a row, two of codes, then the two scales and the two zeros — are 384 contiguous bytes: six
// loads, and each column of qwords (qword m of every row) is two permutes per eight rows, in place of sixteen scalar
// loads and inserts. The values' weights take their scale columns so (QueryBlockWeights16), and the values kernel
// its codes likewise, four rows at a time. (The scores took their codes and scales so as well: 9% faster on rows in
// cache, but slower on rows coming from memory, as a decode step's do — two threads, 8k rows of each of 96 kv
// heads in turn, medians 37.1-42.7 µs a kv head against 34.5-37.6 for the sixteen loads, four rounds in
// docs/bench/packed-int2-session31.txt; so the scores keep their code loads, and take only their scale columns so, for
// one or two queries: ScoresInt2Rows16.)
struct PackedInt2Rows16 {
  static bool Takes(size_t stride, size_t code_bytes) { return stride == 24 && code_bytes == 16; }
  __m512i z[6];
  explicit PackedInt2Rows16(const uint8_t* block) {
    for (int i = 0; i < 6; ++i) z[i] = _mm512_loadu_si512(block + 64 * i);
  }
  // Qword m of rows 8h..8h+7: qword 3r + m of z[3h..3h+2], those past the first two registers from the third (the
  // permutes read the index's low bits: 3r + m - 16 for the third).
  template <int m>
  __m512i Column(int h) const {
    const __m512i idx = _mm512_setr_epi64(m, 3 + m, 6 + m, 9 + m, 12 + m, 15 + m, 18 + m, 21 + m);
    constexpr __mmask8 third = m == 0 ? 0xC0 : 0xE0;
    const __m512i a = _mm512_permutex2var_epi64(z[3 * h], idx, z[3 * h + 1]);
    return _mm512_mask_permutexvar_epi64(a, third, idx, z[3 * h + 2]);
  }
  // The scales and zeros as float columns (ScaleColumns16<2>'s).
  void ScaleColumns(__m512* sz) const {
    const __m512i rows8[2] = {Column<2>(0), Column<2>(1)};
    ColumnsOfScaleQwords16(rows8, sz);
  }
};

// Sixteen rows' [scales, zeros] as float columns: sz[h] = half h (h < 2·NG) of rows 0-15 (row i at first +
// i·stride; rows at or past nb read as 0) — ScaleColumns8 twice; for two groups (a row's four halfs are one qword)
// the qwords of eight rows go into one register and one vpermt2w picks two columns of all sixteen rows, 30
// instructions instead of 64 (it took 5% of a decode step's samples at 8k, called for the scores and the values).
// Inlined by force, as FinishScores16 is: as calls, GCC passed the columns and the sums through the stack, and the
// two took a third of the INT4 attention's time at 16k rows; inlined, that attention ran 1.2-1.3x as fast.
template <int NG>
[[gnu::always_inline]]
inline void ScaleColumns16(const uint8_t* first, size_t stride, int nb, __m512* sz) {
  if constexpr (NG == 2) {
    const bool full = nb >= 16;  // the common case: no row to stand in for, straight-line loads
    auto qword = [&](int i) {  // rows past nb read row 0 (always there), then masked to 0
      int64_t v;
      std::memcpy(&v, first + (size_t)(full || i < nb ? i : 0) * stride, 8);
      return v;
    };
    __m512i rows8[2];  // qwords of rows 0-7, rows 8-15
    for (int k = 0; k < 2; ++k) {
      __m512i x = _mm512_castsi128_si512(_mm_set_epi64x(qword(8 * k + 1), qword(8 * k)));
      x = _mm512_inserti32x4(x, _mm_set_epi64x(qword(8 * k + 3), qword(8 * k + 2)), 1);
      x = _mm512_inserti32x4(x, _mm_set_epi64x(qword(8 * k + 5), qword(8 * k + 4)), 2);
      x = _mm512_inserti32x4(x, _mm_set_epi64x(qword(8 * k + 7), qword(8 * k + 6)), 3);
      const int left = nb - 8 * k;
      rows8[k] = _mm512_maskz_mov_epi64(left >= 8 ? (__mmask8)0xff : left > 0 ? (__mmask8)((1u << left) - 1) : (__mmask8)0, x);
    }
    ColumnsOfScaleQwords16(rows8, sz);
  } else {
    __m128i a[2 * NG], b[2 * NG];
    ScaleColumns8<NG>(first, stride, nb, a);
    ScaleColumns8<NG>(first + 8 * stride, stride, nb - 8, b);
    for (int h = 0; h < 2 * NG; ++h) sz[h] = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a[h]), b[h], 1));
  }
}

// Chunk c (64 channels) of a row's INT4 or INT3 codes as INT4 packs them: channel 2j in the low nibble of byte j,
// 2j+1 in the high. INT3 rows are unpacked (Int3Unpack) and packed two codes a byte.
template <int BITS>
inline __m256i ChunkAsInt4(const Int3Unpack* int3, const uint8_t* row, int c) {
  if constexpr (BITS == 4) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * c));
  } else {
    const Chunk ch = int3->Load(row, c);
    return _mm256_or_si256(ch.a, _mm256_slli_epi16(ch.b, 4));  // codes <= 7: nothing crosses a byte
  }
}

// The queries of the sixteen-row score kernels below: each of nq queries rounded to int8 per group (scales in qs[h],
// KvQuantizeQuery) and laid out as dwords, qd[h][c][k][j] = its channels 64c + 4P·j + P·b + k for b = 0..3 — the
// channels whose codes byte b of a row's code dword j holds in part k (P parts: INT4's two nibbles, INT2's four
// 2-bit phases), so one broadcast dword meets sixteen rows' dword j.
template <int NC, int P, int NG>
inline void QueryDwords(int nq, const float* q, int32_t (*qd)[NC][P][16 / P], float (*qs)[NG]) {
  constexpr int d = 64 * NC;
  for (int h = 0; h < nq; ++h) {
    int8_t q8[d];
    QuantizeQueryAvx2(q + h * d, d, d / NG, q8, qs[h]);
    for (int c = 0; c < NC; ++c)
      for (int k = 0; k < P; ++k)
        for (int j = 0; j < 16 / P; ++j) {
          uint8_t b4[4];
          for (int b = 0; b < 4; ++b) b4[b] = (uint8_t)q8[64 * c + 4 * P * j + P * b + k];
          std::memcpy(&qd[h][c][k][j], b4, 4);
        }
  }
}

// The end of sixteen rows' scores (the sixteen-row kernels below): per query and group the int32 sums of each row's
// lane (sums[h][g][0] + [1] when the kernel kept two), then the eight-row kernels' FinishScores, its float operations
// in its order, on sixteen rows per register: the scales and zeros as columns (ScaleColumns16), Σ_g zero_g·qsum_g +
// sums_g·(scale_g·qs_g), times the score scale; the first nb stored.
template <int NQ, int NG, int kSplit>
[[gnu::always_inline]]  // (see ScaleColumns16)
inline void FinishScores16(const uint8_t* first_scales, size_t stride, int nb, const __m512i (*sums)[NG][kSplit],
                           const float (*qs)[NG], const float* qsum, float scale, float* out, size_t out_stride,
                           bool packed_int2 = false) {
  __m512 sz[2 * NG < 4 ? 4 : 2 * NG];
  if (packed_int2) PackedInt2Rows16(first_scales - 16).ScaleColumns(sz);
  else ScaleColumns16<NG>(first_scales, stride, nb, sz);
  const __mmask16 keep = nb >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nb) - 1);
  for (int h = 0; h < NQ; ++h) {
    __m512 total = _mm512_setzero_ps();
    for (int g = 0; g < NG; ++g) {
      __m512i s = sums[h][g][0];
      if (kSplit == 2) s = _mm512_add_epi32(s, sums[h][g][kSplit - 1]);
      total = _mm512_fmadd_ps(sz[NG + g], _mm512_set1_ps(qsum[h * NG + g]), total);
      total = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sz[g], _mm512_set1_ps(qs[h][g])), total);
    }
    _mm512_mask_storeu_ps(out + h * out_stride, keep, _mm512_mul_ps(total, _mm512_set1_ps(scale)));
  }
}

// Sixteen rows' 32 bytes each, v[i] = [row i | row i + 8], transposed: x[j] = dword j of the sixteen rows, row r in
// lane r — an 8x8 dword transpose in each 256-bit half (24 shuffles) and one permute per output to join the halves.
struct DwordsOfSixteenRows {
  __m512i w[8];
  explicit DwordsOfSixteenRows(const __m512i* v) {
    __m512i u[8];
    for (int i = 0; i < 4; ++i) {
      u[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
      u[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i)
      for (int k = 0; k < 2; ++k) {
        const __m512 a = _mm512_castsi512_ps(u[4 * i + k]), b = _mm512_castsi512_ps(u[4 * i + k + 2]);
        w[4 * i + 2 * k] = _mm512_castps_si512(_mm512_shuffle_ps(a, b, 0x44));
        w[4 * i + 2 * k + 1] = _mm512_castps_si512(_mm512_shuffle_ps(a, b, 0xEE));
      }
  }
  // w[m] holds, per 128-bit lane L, dword (m % 4) + 4·(L % 2) of rows 4·(m / 4)..+3 (lane L's row half); dword j of
  // all eight rows of each half: w[j % 4] and w[4 + j % 4], the halves' lanes j / 4.
  __m512i Dword(int j) const {
    const __m512i lower_halves = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);   // 128-bit lanes 0 of a, b | 2 of a, b
    const __m512i upper_halves = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);  // lanes 1 of a, b | 3 of a, b
    return _mm512_permutex2var_epi64(w[j % 4], j < 4 ? lower_halves : upper_halves, w[4 + j % 4]);
  }
};

// INT4 and INT3 scores, sixteen rows per register: the rows' chunks in INT4's packing (ChunkAsInt4) are transposed
// so that register j holds dword j of the sixteen rows (rows i and i + 8 share a register, then an 8x8 dword
// transpose in each 256-bit half: 24 shuffles), and one vpdpbusd per nibble and query, the query's four int8
// channels broadcast, adds each row's products of channels 8j + 2b (low nibbles) or 8j + 2b + 1 (high) straight
// into that row's int32 lane. No lane of a row needs a horizontal sum (the eight-row kernel reduces eight lanes a
// row, per query), and a dword's eight channels lie inside one group (groups of 16 channels or more), so a query
// keeps one int32 sum per group and row. Then the scales and zeros as sixteen-row columns, and the eight-row
// kernel's float operations in its order (FinishScores): the same integer sums, so the same scores.
template <int BITS, int NC, int NQ, int NG>
void ScoresInt4Rows16(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out, size_t out_stride) {
  static_assert(BITS == 4 || BITS == 3, "INT4 or INT3 codes");
  constexpr int d = 64 * NC, group = d / NG;
  // Low and high nibbles in separate sums while registers allow: sixteen sums (four queries, two groups) and the
  // transpose's registers spilled — four queries at 16k rows, head_dim 64, groups of 32 took 52 µs, against 20.5 for
  // three; with one sum per group 23.5-24.2 (and two queries of head_dim 128 in groups of 32, 58.4-58.9 -> 51.8-52.7).
  constexpr int kSplit = NQ * NG < 8 ? 2 : 1;
  const size_t code_bytes = KvCodeBytes(d, BITS), stride = f.stride;
  const Int3Unpack* const int3 = BITS == 3 ? &Int3Tables() : nullptr;
  int32_t qd[kPass][NC][2][8];  // [query][chunk][nibble][dword]: channels 64c + 8j + 2b + nibble, b = 0..3
  float qs[kPass][NG];
  QueryDwords<NC, 2, NG>(NQ, q, qd, qs);
  WholeBlocksThenLast<16>(n, [&](size_t t, auto nb) __attribute__((always_inline)) {
    const uint8_t* block = rows + t * stride;
    AskRowsAhead(block, 16 * stride);
    const uint8_t* last = block + (size_t)(nb - 1) * stride;  // stands in for rows past nb (not stored)
    __m512i sums[NQ][NG][kSplit];
    for (int h = 0; h < NQ; ++h)
      for (int g = 0; g < NG; ++g)
        for (int k = 0; k < kSplit; ++k) sums[h][g][k] = _mm512_setzero_si512();
    for (int c = 0; c < NC; ++c) {
      __m512i v[8];  // [row i | row i + 8]
      for (int i = 0; i < 8; ++i) {
        const uint8_t* lo = i < nb ? block + (size_t)i * stride : last;
        const uint8_t* hi = i + 8 < nb ? block + (size_t)(i + 8) * stride : last;
        v[i] = _mm512_inserti64x4(_mm512_castsi256_si512(ChunkAsInt4<BITS>(int3, lo, c)), ChunkAsInt4<BITS>(int3, hi, c), 1);
      }
      const DwordsOfSixteenRows dwords(v);
      for (int j = 0; j < 8; ++j) {
        const __m512i x = dwords.Dword(j);
        const __m512i nib[2] = {BitField<0, 4>(x), BitField<4, 4>(x)};
        const int g = (64 * c + 8 * j) / group;
        for (int h = 0; h < NQ; ++h)
          for (int k = 0; k < 2; ++k)
            sums[h][g][k % kSplit] = _mm512_dpbusd_epi32(sums[h][g][k % kSplit], nib[k], _mm512_set1_epi32(qd[h][c][k][j]));
      }
    }
    FinishScores16<NQ, NG, kSplit>(block + code_bytes, stride, nb, sums, qs, qsum, scale, out + t, out_stride);
  });
}

// INT2 scores, sixteen rows per register (ScoresInt4Rows16's scheme): a chunk's 16 code bytes of rows i, i + 4,
// i + 8 and i + 12 in the four 128-bit lanes of register i, then a 4x4 dword transpose within each lane (8 unpacks)
// leaves register j = dword j of the sixteen rows in order. Byte b of dword j holds channels 16j + 4b + k at bits
// 2k, so the four phases (x >> 2k) & 3 each take one vpdpbusd per query against the query's broadcast channels
// 16j + 4b + k, into the row's lane and the group of channels 16j..16j+15.
template <int NC, int NQ, int NG>
void ScoresInt2Rows16(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out, size_t out_stride) {
  constexpr int d = 64 * NC, group = d / NG;
  constexpr int kSplit = NQ * NG <= 8 ? 2 : 1;
  const size_t code_bytes = KvCodeBytes(d, 2), stride = f.stride;
  // Packed rows' scales and zeros as columns from the sixteen rows' six whole-register loads (PackedInt2Rows16) in
  // place of sixteen scalar loads and inserts — for one or two queries: 16k rows in cache, one query 11.8-12.1 ->
  // 10.5-10.6 µs, two 15.6-15.8 -> 15.4, three 18.9-19.1 -> 19.4-19.6 (so not there); rows from memory level (one
  // query, 96 layers' kv heads in turn on both cores, docs/bench/kv-kernels-session32.txt). The codes keep their loads:
  // session 31 took them packed too and lost ~10% on rows from memory.
  const bool packed_scales = NC == 1 && NG == 2 && NQ <= 2 && PackedInt2Rows16::Takes(stride, code_bytes);
  int32_t qd[kPass][NC][4][4];  // [query][chunk][phase][dword]: channels 64c + 16j + 4b + phase, b = 0..3
  float qs[kPass][NG];
  QueryDwords<NC, 4, NG>(NQ, q, qd, qs);
  WholeBlocksThenLast<16>(n, [&](size_t t, auto nb) __attribute__((always_inline)) {
    const uint8_t* block = rows + t * stride;
    AskRowsAhead(block, 16 * stride);
    const uint8_t* last = block + (size_t)(nb - 1) * stride;  // stands in for rows past nb (not stored)
    __m512i sums[NQ][NG][kSplit];
    for (int h = 0; h < NQ; ++h)
      for (int g = 0; g < NG; ++g)
        for (int k = 0; k < kSplit; ++k) sums[h][g][k] = _mm512_setzero_si512();
    for (int c = 0; c < NC; ++c) {
      __m512i v[4];  // lane L of v[i]: row i + 4L
      for (int i = 0; i < 4; ++i) {
        const uint8_t* r[4];
        for (int L = 0; L < 4; ++L) r[L] = (i + 4 * L < nb ? block + (size_t)(i + 4 * L) * stride : last) + 16 * c;
        __m512i x = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[0])));
        x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[1])), 1);
        x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[2])), 2);
        v[i] = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[3])), 3);
      }
      const __m512i a0 = _mm512_unpacklo_epi32(v[0], v[1]), a1 = _mm512_unpackhi_epi32(v[0], v[1]);
      const __m512i a2 = _mm512_unpacklo_epi32(v[2], v[3]), a3 = _mm512_unpackhi_epi32(v[2], v[3]);
      const __m512i x[4] = {_mm512_unpacklo_epi64(a0, a2), _mm512_unpackhi_epi64(a0, a2), _mm512_unpacklo_epi64(a1, a3),
                            _mm512_unpackhi_epi64(a1, a3)};
      for (int j = 0; j < 4; ++j) {
        const __m512i ph[4] = {BitField<0, 2>(x[j]), BitField<2, 2>(x[j]), BitField<4, 2>(x[j]), BitField<6, 2>(x[j])};
        const int g = (64 * c + 16 * j) / group;
        for (int h = 0; h < NQ; ++h)
          for (int k = 0; k < 4; ++k)
            sums[h][g][k % kSplit] = _mm512_dpbusd_epi32(sums[h][g][k % kSplit], ph[k], _mm512_set1_epi32(qd[h][c][k][j]));
      }
    }
    FinishScores16<NQ, NG, kSplit>(block + code_bytes, stride, nb, sums, qs, qsum, scale, out + t, out_stride,
                                   packed_scales && nb == 16);
  });
}

// Groups of 16 (SixteenChannelGroups): the sixteen-row scores keep one int32 sum per group, row and query, so the
// finer groups change only which sum a dword goes to; the values spread a chunk's four groups' weights over their
// lanes (ValuesInt2Vnni, ValuesInt4Vnni). Before session 38 head_dim 64 in groups of 16 went to
// qu-kv-anyshape-avx2.cc, 7-11x slower than groups of 32 with three query heads (INT3 ~35x); head_dim 128 in groups
// of 16 went there until session 44.
template <int BITS>
void ScoresRows16OfShape(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                             size_t n, float scale, float* out, size_t out_stride) {
  ForScoreShape(f, nq, [&](auto nc, auto ng, auto count, int h) {
    constexpr int NG = decltype(ng)::value;
    constexpr int NC = decltype(nc)::value, NQ = decltype(count)::value;
    const float* qh = q + h * f.head_dim;
    if constexpr (BITS == 2) ScoresInt2Rows16<NC, NQ, NG>(f, qh, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
    else ScoresInt4Rows16<BITS, NC, NQ, NG>(f, qh, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
  });
}

void Qu4Qu2ScoresGroupVnni(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                           float scale, float* out, size_t out_stride) {
  if (!FastShape(f)) return Qu4Qu2KvScoresGroupAvx2(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int2) return ScoresRows16OfShape<2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int3) return ScoresRows16OfShape<3>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  return ScoresRows16OfShape<4>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void Qu4Qu2ScoresVnni(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out) {
  Qu4Qu2ScoresGroupVnni(f, 1, q, qsum, rows, n, scale, out, n);
}

// INT8 scores (qu8-kv-scores-avx.h): one vpdpbusd per 32 channels, the codes unsigned as they lie and the query's int8
// channels in their order (four products per int32 lane, at most 4·255·127). The same integer sums as the AVX2
// widening dot, so the same scores.
struct VnniDot {
  using Codes = __m256i;
  using Query = __m256i;
  static Codes Load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static Query Prepare(const int8_t* q8) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8)); }
  static __m256i Add(__m256i acc, Codes c, Query q) { return _mm256_dpbusd_epi32(acc, c, q); }
  // 16 channels in the low half, zeros above (their products add 0 to lanes 4-7).
  static __m256i Load16(const uint8_t* p) { return _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m256i Prepare16(const int8_t* q8) { return _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8))); }
  static __m256i Add16(__m256i acc, __m256i c, __m256i q) { return _mm256_dpbusd_epi32(acc, c, q); }
};

// INT8 scores, sixteen rows per register (ScoresInt4Rows16's scheme): 32 code bytes of rows i and i + 8 (channels
// 32c..32c+31 of each) in register i, the same 24 shuffles and eight permutes leave register j = dword j of the sixteen
// rows — channels 32c + 4j..+3, inside one group (groups are multiples of 16) — and one vpdpbusd per query adds them
// against the query's four int8 channels, broadcast, into each row's own lane: no horizontal sums, where the eight-row
// kernel reduced eight lanes a row for every query. The same integer sums and FinishScores' float operations, so the
// same scores. Two to four queries a pass only: the transposes cost about what they save per query (one thread, 16k
// rows, head_dim 64, groups of 32, medians of two runs each against the eight-row kernel with VnniDot, µs: one query
// 28.0-28.2 against 24.5-25.0, two 36.4-37.4 against 42.1-42.2, three 43.8-45.7 against 57.3-57.4, four 54.3-55.5
// against 80.8-81.3).
template <int NC, int NQ, int NG>
void ScoresInt8Rows16(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out, size_t out_stride) {
  constexpr int d = 64 * NC, group = d / NG;
  constexpr int kSplit = NQ * NG <= 8 ? 2 : 1;  // alternate dwords into two sums while registers allow (shorter chains)
  const size_t code_bytes = KvCodeBytes(d, 8), stride = f.stride;
  int32_t qd[kPass][2 * NC][8];  // [query][32 channels][dword]: the query's int8 channels in order, four a dword
  float qs[kPass][NG];
  for (int h = 0; h < NQ; ++h) {
    int8_t q8[d];
    QuantizeQueryAvx2(q + h * d, d, group, q8, qs[h]);
    std::memcpy(qd[h], q8, d);
  }
  // Whole blocks with a constant row count (WholeBlocksThenLast) for one or two queries only: for three and four
  // the two bodies were slower (4k rows in cache, 10.2 -> 10.7 and 12.4 -> 13.5 µs).
  WholeBlocksThenLast<16, (NQ <= 2)>(n, [&](size_t t, auto nb) __attribute__((always_inline)) {
    const uint8_t* block = rows + t * stride;
    AskRowsAhead(block, 16 * stride);
    const uint8_t* last = block + (size_t)(nb - 1) * stride;  // stands in for rows past nb (not stored)
    __m512i sums[NQ][NG][kSplit];
    for (int h = 0; h < NQ; ++h)
      for (int g = 0; g < NG; ++g)
        for (int k = 0; k < kSplit; ++k) sums[h][g][k] = _mm512_setzero_si512();
    for (int c = 0; c < 2 * NC; ++c) {
      __m512i v[8];  // [row i | row i + 8]
      for (int i = 0; i < 8; ++i) {
        const uint8_t* lo = (i < nb ? block + (size_t)i * stride : last) + 32 * c;
        const uint8_t* hi = (i + 8 < nb ? block + (size_t)(i + 8) * stride : last) + 32 * c;
        v[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo))),
                                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi)), 1);
      }
      const DwordsOfSixteenRows dwords(v);
      for (int j = 0; j < 8; ++j) {
        const __m512i x = dwords.Dword(j);
        const int g = (32 * c + 4 * j) / group;
        for (int h = 0; h < NQ; ++h)
          sums[h][g][j % kSplit] = _mm512_dpbusd_epi32(sums[h][g][j % kSplit], x, _mm512_set1_epi32(qd[h][c][j]));
      }
    }
    FinishScores16<NQ, NG, kSplit>(block + code_bytes, stride, nb, sums, qs, qsum, scale, out + t, out_stride);
  });
}

void Qu8ScoresGroupVnni(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                        float scale, float* out, size_t out_stride) {
  if (!FastShape(f)) return QuKvScoresGroupAvx2(f, nq, q, qsum, rows, n, scale, out, out_stride);  // the same scores
  ForScoreShape(f, nq, [&](auto nc, auto ng, auto count, int h) {
    constexpr int NC = decltype(nc)::value, NG = decltype(ng)::value, NQ = decltype(count)::value;
    const float* qh = q + h * f.head_dim;
    if constexpr (NQ == 1) ScoresInt8<VnniDot, NC, 1, NG>(f, qh, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
    else ScoresInt8Rows16<NC, NQ, NG>(f, qh, qsum + h * NG, rows, n, scale, out + h * out_stride, out_stride);
  });
}

void Qu8ScoresVnni(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                   float* out) {
  Qu8ScoresGroupVnni(f, 1, q, qsum, rows, n, scale, out, n);
}

// INT8 values (qu8-kv-values-avx.h), compiled here for its 32 registers: the AVX2 build's operations, more chains.
void Qu8ValuesGroupVnni(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                        float* acc) {
  ValuesGroup<8>(f, nq, p, p_stride, rows, n, acc);
}

void Qu8ValuesVnni(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Values<8>(f, p, rows, n, acc);
}

// The weights side of the INT2 and INT4 values kernels below, sixteen rows per register: QueryBlockWeights (the AVX2 kernels')
// with the same float operations on each row, so the same bytes w8[h][g][t] and scales ws[h][g][k]. For a block of 64
// rows its per-row work is half the instructions of the eight-row one, which took as much time as the integer sums
// once those went four rows per vpdpbusd. The sums p·zero are taken in sixteen lanes (another order of the same
// terms: equal to the reference's within float rounding).
// A call quantizes kBlocks consecutive blocks (kSub 16-row sub-blocks each): INT4's 16-row blocks go four at a time.
// One block's chain — the largest weight, the two divisions, the codes — is long against its 16 rows of integer
// sums, and four independent chains in one stretch of code overlap. How the largest weights become vectors for the
// divisions depends on how many there are (below, in Quantize).
// kGroups: the most groups a row has (8 only for head_dim 128 in groups of 16).
template <int kSub, int kBlocks = 1, int kGroups = 4>  // kSub: 4 for INT2's 64-row blocks, 1 for INT4's 16
struct QueryBlockWeights16 {
  static_assert(kGroups == 4 || kGroups == 8, "up to four groups, or eight");
  static constexpr int kSubBlocks = kSub * kBlocks;
  alignas(64) uint8_t w8[kPass][kGroups][16 * kSubBlocks];  // block k's weights from 16 · kSub · k
  float ws[kPass][kGroups][kBlocks];
  __m512 zacc[kPass][kGroups];

  QueryBlockWeights16() {
    for (int h = 0; h < kPass; ++h)
      for (int g = 0; g < kGroups; ++g) zacc[h][g] = _mm512_setzero_ps();
  }
  // The kBlocks blocks of nb rows in all at `rows`: their scales and zeros as 16-row columns once, then each of nq
  // queries' weights.
  void Quantize(const KvRowFormat& f, int ng, size_t code_bytes, int nq, const float* p, size_t p_stride,
                const uint8_t* rows, int nb) {
    __m512 sz[kSubBlocks][2 * kGroups];
    __mmask16 mask[kSubBlocks];
    for (int s = 0; s < kSubBlocks; ++s) {
      const int left = nb - 16 * s;
      mask[s] = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
      const uint8_t* first = rows + 16 * s * f.stride + code_bytes;
      if (left <= 0) {
        for (int h = 0; h < 2 * ng; ++h) sz[s][h] = _mm512_setzero_ps();
      } else if (ng == 1) {
        ScaleColumns16<1>(first, f.stride, left, sz[s]);
      } else if (ng == 2 && left >= 16 && PackedInt2Rows16::Takes(f.stride, code_bytes)) {
        PackedInt2Rows16(first - code_bytes).ScaleColumns(sz[s]);
      } else if (ng == 2) {
        ScaleColumns16<2>(first, f.stride, left, sz[s]);
      } else if (ng == 4) {
        ScaleColumns16<4>(first, f.stride, left, sz[s]);
      } else {  // eight groups (kGroups 8)
        ScaleColumns16<kGroups>(first, f.stride, left, sz[s]);
      }
    }
    const __m512 zero = _mm512_setzero_ps();
    __m512 w[kPass][kGroups][kSubBlocks];
    constexpr int kVectors = (kPass * kGroups * kBlocks + 15) / 16;
    // The largest weights, entry e = (h·ng + g)·kBlocks + k in lane e % 16 of vector e / 16. For one query, and
    // one block per call (INT2's passes of several queries), they are merged into registers: stored one by one and
    // reloaded as a vector, they stalled the store forwarding (a quarter of INT4's samples at 16k rows when every
    // 16-row block did it). INT4's passes of
    // several queries have 32-64 entries, each merge waited on the last, and storing them as floats and loading
    // each vector once costs one store-forwarding stall per call instead (two queries 1.17x, three 1.10x, four
    // 1.07x; where the entries are few the stall cost more).
    const bool through_memory = kBlocks > 1 && nq > 1;
    __m512 largest[kVectors];
    alignas(64) float stored[16 * kVectors];
    for (int v = 0; v < kVectors; ++v) {
      largest[v] = zero;
      if (through_memory) _mm512_store_ps(stored + 16 * v, zero);
    }
    for (int h = 0; h < nq; ++h) {
      __m512 ph[kSubBlocks];
      for (int s = 0; s < kSubBlocks; ++s) ph[s] = _mm512_maskz_loadu_ps(mask[s], p + h * p_stride + 16 * s);
      for (int g = 0; g < ng; ++g)
        for (int k = 0; k < kBlocks; ++k) {
          __m512 big = zero;
          for (int s = k * kSub; s < (k + 1) * kSub; ++s) {
            zacc[h][g] = _mm512_fmadd_ps(ph[s], sz[s][ng + g], zacc[h][g]);
            w[h][g][s] = _mm512_max_ps(zero, _mm512_mul_ps(ph[s], sz[s][g]));
            big = _mm512_max_ps(big, w[h][g][s]);
          }
          const int e = (h * ng + g) * kBlocks + k;
          const float m = _mm512_reduce_max_ps(big);
          if (through_memory) stored[e] = m;
          else largest[e / 16] = _mm512_mask_broadcastss_ps(largest[e / 16], (__mmask16)(1u << (e % 16)), _mm_set_ss(m));
        }
    }
    // The reference's divisions (127 / largest where largest > 0, else 0; largest / 127) for every entry at once:
    // two vdivps per sixteen, where one scalar division each took a sixth of the kernel's time.
    alignas(64) float inv[16 * kVectors], scale[16 * kVectors];
    for (int v = 0; v < kVectors && 16 * v < nq * ng * kBlocks; ++v) {
      if (through_memory) largest[v] = _mm512_load_ps(stored + 16 * v);
      _mm512_store_ps(inv + 16 * v, _mm512_maskz_div_ps(_mm512_cmp_ps_mask(largest[v], zero, _CMP_GT_OQ),
                                                        _mm512_set1_ps(127.0f), largest[v]));
      _mm512_store_ps(scale + 16 * v, _mm512_div_ps(largest[v], _mm512_set1_ps(127.0f)));
    }
    for (int h = 0; h < nq; ++h)
      for (int g = 0; g < ng; ++g)
        for (int k = 0; k < kBlocks; ++k) {
          const int e = (h * ng + g) * kBlocks + k;
          const __m512 to_codes = _mm512_set1_ps(inv[e]);
          if constexpr (kSub == 4) {
            // A block's 64 weights in one store: two rounds of packs (the codes are 0..127, so no saturation),
            // which leave sub-block i's rows 4L..4L+3 in dword 4L + i, and one vpermd, in place of a vpmovusdb (two
            // µops) and a store per sixteen rows (one query, 16k INT2 rows in cache: the values 14.6 -> 13.9 µs).
            const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            __m512i n4[4];
            for (int i = 0; i < 4; ++i) n4[i] = _mm512_cvtps_epi32(_mm512_mul_ps(w[h][g][4 * k + i], to_codes));
            const __m512i bytes = _mm512_packus_epi16(_mm512_packus_epi32(n4[0], n4[1]), _mm512_packus_epi32(n4[2], n4[3]));
            _mm512_store_si512(w8[h][g] + 64 * k, _mm512_permutexvar_epi32(order, bytes));
          } else {
            for (int s = k * kSub; s < (k + 1) * kSub; ++s)
              _mm_store_si128(reinterpret_cast<__m128i*>(w8[h][g] + 16 * s),
                              _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(w[h][g][s], to_codes))));
          }
          ws[h][g][k] = scale[e];
        }
  }
  // After the last block: acc[h·d + channel[slot]] = fa[h·d + slot] + Σ p·zero of the slot's group.
  void Finish(int nq, int d, int group, const int* channel, const float* fa, float* acc) const {
    float zsum[kPass][8];
    static_assert(kGroups <= 8, "PutBackValueSlots' room");
    for (int h = 0; h < nq; ++h)
      for (int g = 0; g < d / group; ++g) zsum[h][g] = _mm512_reduce_add_ps(zacc[h][g]);
    PutBackValueSlots(nq, d, group, channel, fa, zsum, acc);
  }
};

#if defined(__AVX512VBMI__)  // (only the VBMI build reads it: clang warns of an unused constant in the other)
// ValuesInt2Vnni's transposes of four rows as one byte permute each (VBMI): byte 16L + 4j + r of the result is row
// r's byte 4L + j — from lane r of four rows' 16 code bytes (`lanes`), or from 24r + 4L + j of four packed rows'
// 96 bytes (`packed`, two registers).
struct Int2TransposeBytes {
  alignas(64) uint8_t lanes[64];
  alignas(64) uint8_t packed[64];
};
inline constexpr Int2TransposeBytes kInt2Transposes = [] {
  Int2TransposeBytes t{};
  for (int L = 0; L < 4; ++L)
    for (int j = 0; j < 4; ++j)
      for (int r = 0; r < 4; ++r) {
        t.lanes[16 * L + 4 * j + r] = (uint8_t)(16 * r + 4 * L + j);
        t.packed[16 * L + 4 * j + r] = (uint8_t)(24 * r + 4 * L + j);
      }
  return t;
}();
#endif

// INT2 values, four rows per vpdpbusd, 512-bit. A step of four rows t..t+3 and one 64-channel chunk: the rows' 16
// code bytes go into the four 128-bit lanes of one register and are transposed to byte j of every row in dword j
// (vpermd: dword L of each row into lane L; vpshufb: 4x4 bytes within each lane). Phase k, x & 3 << 2k
// (PhaseInPlace), then holds in dword j the four rows' codes of channel 4j+k times 4^k, and one vpdpbusd per phase and
// query adds 4^k·(w_t·code_t + ... + w_t+3·code_t+3) into int32 lane j (the 4^k taken out where the block's sums are
// widened) — the weights are the block's quantized bytes w8[g][t..t+3], one dword, spread over the lanes of each
// channel's group by one vpermt2d. The same integer sums as the AVX2 kernel (which takes two
// rows per vpmaddubsw and needs an add after each), widened at the end of each block of 64 rows and scaled by the
// same fmadd (only the p·zero terms are summed in another order, QueryBlockWeights16); the float slots are the AVX2
// INT2 kernel's (channel 64c + 4j + k at (4c + k)·16 + j). A chunk at a time over the block's rows (the rows stay in
// L1), so a query needs 4 accumulators and 2 weight registers, and a pass of four queries fits the 32 registers.
// Groups of 16 (kGroupsOf16; head_dim 128: chunk c's groups 4c..4c+3 as its g = 0..3): lanes 4g..4g+3 hold group g's
// channels, so a step's weights are four
// dwords, one of each group's; the two registers then hold half a block's — [group 0 | group 1] and [group 2 | group 3]
// dwords of rows 0-31, then of rows 32-63 (one vshufi64x2 each) — and one vpermt2d still spreads a step's.
template <int NC, int NQ, bool kGroupsOf16 = false>
void ValuesInt2Vnni(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  constexpr int d = 64 * NC, kBlock = KvValueBlockRows(KvPrecision::Int2);
  static_assert(kBlock == 64, "a block's weights of one group are one 64-byte register");
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, 2), stride = f.stride;
  alignas(64) float fa[kPass][d];
  int channel[d];
  Int2ValueSlots<NC, NQ>(acc, fa, channel);  // the AVX2 INT2 kernel's slots
  const bool packed = NC == 1 && PackedInt2Rows16::Takes(stride, code_bytes);
#if !defined(__AVX512VBMI__)  // (VBMI: one byte permute each, kInt2Transposes)
  // vpermd: lane L <- dword L of each row (row r's bytes are in lane r); vpshufb: byte 4j + r <- byte 4r + j.
  const __m512i rows_to_lanes = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i transpose4x4 = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  // Packed rows (six dwords a row): lane L <- dword L of rows 0-3, dword 6r + L of the 96 bytes.
  const __m512i packed_rows_to_lanes = _mm512_setr_epi32(0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20, 3, 9, 15, 21);
#endif
  // vpermt2d: lanes 0-7 (channels 0-31 of the chunk) take dword m of the first group's weights, 8-15 of the second's;
  // in groups of 16, lanes 4g..4g+3 dword m % 8 of group g's in the half block's pair of registers.
  const __m512i second_half = kGroupsOf16 ? _mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24)
                                          : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
  // Blocks whose weights are quantized together (QueryBlockWeights16): two for one query; for a pass of more, one
  // block's chains are already several, and two blocks' weights no longer fit the registers (measured slower).
  constexpr int kBlocks = NQ == 1 ? 2 : 1;
  QueryBlockWeights16<kBlock / 16, kBlocks, kGroupsOf16 ? 4 * NC : 4> qw;
  WholeBlocksThenLast<kBlock>(n, [&](size_t b, auto nb) __attribute__((always_inline)) {
    const int kb = (int)(b / kBlock % kBlocks);  // this block's place among those quantized together
    AskRowsAhead(rows + b * stride, kBlock * stride);
    if (kb == 0)
      qw.Quantize(f, ng, code_bytes, NQ, p + b, p_stride, rows + b * stride, (int)std::min<size_t>(kBlocks * kBlock, n - b));
    const uint8_t* block = rows + b * stride;
    const uint8_t* last = block + (size_t)(nb - 1) * stride;  // stands in for rows past nb (their weights are 0)
    for (int c = 0; c < NC; ++c) {
      const int g_lo = 64 * c / group, g_hi = (64 * c + 32) / group;
      __m512i wlo[NQ], whi[NQ], a32[NQ][4];
      // Each query's weights for rows 32·half on (groups of 16), or the whole block's.
      auto take_weights = [&](int half) __attribute__((always_inline)) {
        for (int h = 0; h < NQ; ++h) {
          if constexpr (kGroupsOf16) {
            __m512i w[4];
            for (int g = 0; g < 4; ++g) w[g] = _mm512_load_si512(qw.w8[h][4 * c + g] + kb * kBlock);
            // dwords 8·half.. of each (the immediate a constant in each branch: clang requires it)
            wlo[h] = half ? _mm512_shuffle_i64x2(w[0], w[1], 0xEE) : _mm512_shuffle_i64x2(w[0], w[1], 0x44);
            whi[h] = half ? _mm512_shuffle_i64x2(w[2], w[3], 0xEE) : _mm512_shuffle_i64x2(w[2], w[3], 0x44);
          } else {
            wlo[h] = _mm512_load_si512(qw.w8[h][g_lo] + kb * kBlock);
            whi[h] = _mm512_load_si512(qw.w8[h][g_hi] + kb * kBlock);
          }
        }
      };
      take_weights(0);
      for (int h = 0; h < NQ; ++h)
        for (int k = 0; k < 4; ++k) a32[h][k] = _mm512_setzero_si512();
      // Rows t..t+3 (codes x, transposed: byte 4j + r of each lane is row r's byte j of that lane's dword) into each
      // query's sums.
      auto step = [&](int t, __m512i x) __attribute__((always_inline)) {
        if (kGroupsOf16 && t == 32) take_weights(1);
        const __m512i ph[4] = {PhaseInPlace<0>(x), PhaseInPlace<1>(x), PhaseInPlace<2>(x), PhaseInPlace<3>(x)};
        const __m512i pick = _mm512_add_epi32(second_half, _mm512_set1_epi32(kGroupsOf16 ? t / 4 % 8 : t / 4));
        for (int h = 0; h < NQ; ++h) {
          const __m512i w = _mm512_permutex2var_epi32(wlo[h], pick, whi[h]);
          for (int k = 0; k < 4; ++k) a32[h][k] = DpbusdInPlace(a32[h][k], ph[k], w);
        }
      };
      if (packed && nb == kBlock) {
        // A whole block of packed rows (PackedInt2Rows16): four rows are 96 contiguous bytes, two loads, and one
        // vpermt2d puts dword L of each row into lane L, as the four loads and vpermd below do. A loop of its own, so
        // that the partial block's clamped row pointers below stay out of it.
        for (int t = 0; t < kBlock; t += 4) {
          const uint8_t* r0 = block + (size_t)t * stride;
          const __m512i a = _mm512_loadu_si512(r0);
          const __m512i b = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + 64)));
#if defined(__AVX512VBMI__)
          step(t, _mm512_permutex2var_epi8(a, _mm512_load_si512(kInt2Transposes.packed), b));  // both permutes in one
#else
          step(t, _mm512_shuffle_epi8(_mm512_permutex2var_epi32(a, packed_rows_to_lanes, b), transpose4x4));
#endif
        }
      } else {
        for (int t = 0; t < nb; t += 4) {
          const uint8_t* r0 = block + (size_t)t * stride + 16 * c;
          const uint8_t* r1 = t + 1 < nb ? r0 + stride : last + 16 * c;
          const uint8_t* r2 = t + 2 < nb ? r0 + 2 * stride : last + 16 * c;
          const uint8_t* r3 = t + 3 < nb ? r0 + 3 * stride : last + 16 * c;
          __m512i x = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r0)));
          x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1)), 1);
          x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r2)), 2);
          x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r3)), 3);
#if defined(__AVX512VBMI__)
          step(t, _mm512_permutexvar_epi8(_mm512_load_si512(kInt2Transposes.lanes), x));  // both permutes in one
#else
          step(t, _mm512_shuffle_epi8(_mm512_permutexvar_epi32(rows_to_lanes, x), transpose4x4));
#endif
        }
      }
      for (int h = 0; h < NQ; ++h) {
        const __m512 scale =
            kGroupsOf16 ? _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                                _mm512_castps128_ps512(_mm_setr_ps(qw.ws[h][4 * c][kb], qw.ws[h][4 * c + 1][kb],
                                                                                   qw.ws[h][4 * c + 2][kb], qw.ws[h][4 * c + 3][kb])))
                        : _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(qw.ws[h][g_lo][kb]), _mm512_set1_ps(qw.ws[h][g_hi][kb]));
        for (int k = 0; k < 4; ++k) {
          float* slot = fa[h] + (c * 4 + k) * 16;
          const __m512 sums = _mm512_mul_ps(_mm512_cvtepi32_ps(a32[h][k]), _mm512_set1_ps(1.0f / (float)(1 << 2 * k)));
          _mm512_store_ps(slot, _mm512_fmadd_ps(scale, sums, _mm512_load_ps(slot)));
        }
      }
    }
  });
  qw.Finish(NQ, d, group, channel, fa[0], acc);
}

template <int NC>
void ValuesInt2VnniPasses(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                          float* acc) {
  KvForQueryPasses(nq, [&](auto count, int h) {
    constexpr int NQ = decltype(count)::value;
    if (SixteenChannelGroups(f)) return ValuesInt2Vnni<NC, NQ, true>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
    ValuesInt2Vnni<NC, NQ>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
  });
}

// Rows r[0..3]'s code bytes 0-15 (x[0]) and 16-31 (x[1]) of chunk c in INT4's packing (channel 2j in the low
// nibble of byte j, 2j+1 in the high), each in the 128-bit lanes of one register, row i in lane i. INT3 rows are
// unpacked (Int3Unpack) and packed two codes a byte first.
template <int BITS>
inline void FourRowsAsInt4(const Int3Unpack* int3, const uint8_t* const* r, int c, __m512i* x) {
  if constexpr (BITS == 4) {
    for (int half = 0; half < 2; ++half) {
      const int at = 32 * c + 16 * half;
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[0] + at)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[1] + at)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[2] + at)), 2);
      x[half] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[3] + at)), 3);
    }
  } else {
    __m256i packed[4];
    for (int i = 0; i < 4; ++i) packed[i] = ChunkAsInt4<BITS>(int3, r[i], c);
    const __m512i r01 = _mm512_inserti64x4(_mm512_castsi256_si512(packed[0]), packed[1], 1);
    const __m512i r23 = _mm512_inserti64x4(_mm512_castsi256_si512(packed[2]), packed[3], 1);
    x[0] = _mm512_shuffle_i32x4(r01, r23, _MM_SHUFFLE(2, 0, 2, 0));  // the rows' bytes 0-15
    x[1] = _mm512_shuffle_i32x4(r01, r23, _MM_SHUFFLE(3, 1, 3, 1));  // bytes 16-31
  }
}

// Four INT4 rows' 32 code bytes of chunk c transposed as ValuesInt4Vnni takes them: y[half] dword m = byte 16·half + m
// of rows r[0..3], row i in byte i. Rows 0 and 1, 2 and 3 share a register (one load and one insert each), and one
// two-source permute per half does the rest: under VBMI vpermt2b, byte for byte; else vpermt2d (dword L of each row's
// half into lane L) and the vpshufb of a 4x4 byte transpose in each lane — in place of FourRowsAsInt4's eight loads,
// six inserts and a vpermd per half.
[[gnu::always_inline]]
inline void FourInt4RowsTransposed(const uint8_t* const* r, int c, __m512i* y) {
  auto rows2 = [&](int i) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[i] + 32 * c))),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[i + 1] + 32 * c)), 1);
  };
  const __m512i r01 = rows2(0), r23 = rows2(2);  // row i's bytes at 32·(i % 2) of its register
  struct Picks {
    alignas(64) uint8_t byte[2][64];
    alignas(64) uint32_t dword[2][16];
  };
  static constexpr Picks kPick = [] {
    Picks t{};
    for (int half = 0; half < 2; ++half) {
      for (int m = 0; m < 16; ++m)
        for (int i = 0; i < 4; ++i) t.byte[half][4 * m + i] = (uint8_t)(64 * (i / 2) + 32 * (i % 2) + 16 * half + m);
      for (int L = 0; L < 4; ++L)
        for (int i = 0; i < 4; ++i) t.dword[half][4 * L + i] = (uint32_t)(16 * (i / 2) + 8 * (i % 2) + 4 * half + L);
    }
    return t;
  }();
  for (int half = 0; half < 2; ++half) {
#if defined(__AVX512VBMI__)
    y[half] = _mm512_permutex2var_epi8(r01, _mm512_load_si512(kPick.byte[half]), r23);
#else
    const __m512i transpose4x4 = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    y[half] = _mm512_shuffle_epi8(_mm512_permutex2var_epi32(r01, _mm512_load_si512(kPick.dword[half]), r23), transpose4x4);
#endif
  }
}

// INT4 and INT3 values, four rows per vpdpbusd, 512-bit: ValuesInt2Vnni's scheme. A step of four rows t..t+3 and
// one 64-channel chunk: the rows' code bytes 0-15 (channels 0-31) and 16-31 (channels 32-63) in INT4's packing
// (FourRowsAsInt4) are transposed as there, so dword j holds the four rows' byte j: its low nibbles are channel 2j,
// its high nibbles channel 2j+1 — four rows' codes of one channel — and a query needs four vpdpbusd, w_t·code_t +
// ... + w_t+3·code_t+3 into int32 lane j. A 32-channel half lies inside one group of 32 channels or more, so
// its weights are one broadcast dword, w8[g][t..t+3]. The int32 sums of a block of 16 rows
// (KvValueBlockRows) are the AVX2 kernel's int16 ones, widened and scaled by one fmadd at the block's end; the
// weights are QueryBlockWeights16's (the same bytes). The AVX2 kernel takes two rows per vpmaddubsw, a vpshufb per
// row pair and query to spread the weights, and an add after each. Float slot (c, k, j), k = 2·half + nibble, holds
// channel 64c + 32·half + 2j + nibble. Groups of 16 (kGroupsOf16; head_dim 128: chunk c's groups 4c..4c+3 as its g =
// 0..3): lanes 0-7 of a half are group 2·half,
// lanes 8-15 group 2·half + 1, so its weights are two dwords, one broadcast and one masked broadcast over it.
template <int BITS, int NC, int NQ, bool kGroupsOf16 = false>
void ValuesInt4Vnni(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  static_assert(BITS == 4 || BITS == 3, "INT4 or INT3 codes");
  constexpr int d = 64 * NC, kBlock = KvValueBlockRows(BITS == 3 ? KvPrecision::Int3 : KvPrecision::Int4);
  static_assert(kBlock == 16, "a block is four steps of four rows");
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS), stride = f.stride;
  const Int3Unpack* const int3 = BITS == 3 ? &Int3Tables() : nullptr;
  alignas(64) float fa[kPass][d];
  int channel[d];
  for (int c = 0; c < NC; ++c)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 16; ++j) {
        const int slot = (c * 4 + k) * 16 + j;
        channel[slot] = 64 * c + 32 * (k / 2) + 2 * j + k % 2;
        for (int h = 0; h < NQ; ++h) fa[h][slot] = acc[h * d + channel[slot]];
      }
  // As in ValuesInt2Vnni: vpermd puts dword L of each row into lane L, vpshufb byte 4j + r <- byte 4r + j.
  const __m512i rows_to_lanes = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i transpose4x4 = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  constexpr int kBlocks = 4;  // blocks whose weights are quantized together (QueryBlockWeights16)
  QueryBlockWeights16<1, kBlocks, kGroupsOf16 ? 4 * NC : 4> qw;
  WholeBlocksThenLast<kBlock>(n, [&](size_t b, auto nb) __attribute__((always_inline)) {
    const int k = (int)(b / kBlock % kBlocks);  // this block's place among those quantized together
    if (k == 0) AskRowsAhead(rows + b * stride, kBlocks * kBlock * stride);
    if (k == 0)
      qw.Quantize(f, ng, code_bytes, NQ, p + b, p_stride, rows + b * stride, (int)std::min<size_t>(kBlocks * kBlock, n - b));
    const uint8_t* block = rows + b * stride;
    const uint8_t* last = block + (size_t)(nb - 1) * stride;  // stands in for rows past nb (their weights are 0)
    for (int c = 0; c < NC; ++c) {
      const int g_lo = 64 * c / group, g_hi = (64 * c + 32) / group;
      __m512i a32[NQ][4];
      for (int h = 0; h < NQ; ++h)
        for (int j = 0; j < 4; ++j) a32[h][j] = _mm512_setzero_si512();
      for (int t = 0; t < nb; t += 4) {
        const uint8_t* r[4];
        for (int i = 0; i < 4; ++i) r[i] = t + i < nb ? block + (size_t)(t + i) * stride : last;
        __m512i y[2], nib[4];
        if constexpr (BITS == 4) {
          FourInt4RowsTransposed(r, c, y);
        } else {
          __m512i x[2];
          FourRowsAsInt4<BITS>(int3, r, c, x);
          for (int half = 0; half < 2; ++half)
            y[half] = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(rows_to_lanes, x[half]), transpose4x4);
        }
        for (int half = 0; half < 2; ++half) {
          nib[2 * half] = BitField<0, 4>(y[half]);
          nib[2 * half + 1] = BitField<4, 4>(y[half]);
        }
        for (int h = 0; h < NQ; ++h) {
          auto weights = [&](int g) {  // group g's dword of rows t..t+3
            int32_t w;
            std::memcpy(&w, qw.w8[h][g] + k * kBlock + t, 4);
            return w;
          };
          __m512i wlo, whi;
          if constexpr (kGroupsOf16) {
            wlo = _mm512_mask_set1_epi32(_mm512_set1_epi32(weights(4 * c)), 0xff00, weights(4 * c + 1));
            whi = _mm512_mask_set1_epi32(_mm512_set1_epi32(weights(4 * c + 2)), 0xff00, weights(4 * c + 3));
          } else {
            wlo = _mm512_set1_epi32(weights(g_lo));
            whi = _mm512_set1_epi32(weights(g_hi));
          }
          a32[h][0] = _mm512_dpbusd_epi32(a32[h][0], nib[0], wlo);
          a32[h][1] = _mm512_dpbusd_epi32(a32[h][1], nib[1], wlo);
          a32[h][2] = _mm512_dpbusd_epi32(a32[h][2], nib[2], whi);
          a32[h][3] = _mm512_dpbusd_epi32(a32[h][3], nib[3], whi);
        }
      }
      for (int h = 0; h < NQ; ++h)
        for (int j = 0; j < 4; ++j) {
          float* slot = fa[h] + (c * 4 + j) * 16;
          const int half = j / 2;
          const __m512 scale = kGroupsOf16 ? _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(qw.ws[h][4 * c + 2 * half][k]),
                                                                  _mm512_set1_ps(qw.ws[h][4 * c + 2 * half + 1][k]))
                                           : _mm512_set1_ps(qw.ws[h][half ? g_hi : g_lo][k]);
          _mm512_store_ps(slot, _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(a32[h][j]), _mm512_load_ps(slot)));
        }
    }
  });
  qw.Finish(NQ, d, group, channel, fa[0], acc);
}

template <int BITS, int NC>
void ValuesInt4VnniPasses(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                          float* acc) {
  KvForQueryPasses(nq, [&](auto count, int h) {
    constexpr int NQ = decltype(count)::value;
    if (SixteenChannelGroups(f)) return ValuesInt4Vnni<BITS, NC, NQ, true>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
    ValuesInt4Vnni<BITS, NC, NQ>(f, p + h * p_stride, p_stride, rows, n, acc + h * f.head_dim);
  });
}

void Qu4Qu2ValuesGroupVnni(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                           float* acc) {
  if (!FastShape(f)) return Qu4Qu2KvValuesGroupAvx2(f, nq, p, p_stride, rows, n, acc);
  if (f.precision == KvPrecision::Int2)
    return f.head_dim == 64 ? ValuesInt2VnniPasses<1>(f, nq, p, p_stride, rows, n, acc)
                            : ValuesInt2VnniPasses<2>(f, nq, p, p_stride, rows, n, acc);
  if (f.precision == KvPrecision::Int3)
    return f.head_dim == 64 ? ValuesInt4VnniPasses<3, 1>(f, nq, p, p_stride, rows, n, acc)
                            : ValuesInt4VnniPasses<3, 2>(f, nq, p, p_stride, rows, n, acc);
  return f.head_dim == 64 ? ValuesInt4VnniPasses<4, 1>(f, nq, p, p_stride, rows, n, acc)
                          : ValuesInt4VnniPasses<4, 2>(f, nq, p, p_stride, rows, n, acc);
}

void Qu4Qu2ValuesVnni(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Qu4Qu2ValuesGroupVnni(f, 1, p, n, rows, n, acc);
}

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const KvKernels MIKV_VNNI_TABLE = {
    MIKV_VNNI_TABLE_NAME,
    {avx::F16KvScoresAvx512Entry, avx::Qu8ScoresVnni, avx::Qu4Qu2ScoresVnni, avx::Qu4Qu2ScoresVnni, avx::Qu4Qu2ScoresVnni},
    {avx::F16KvValuesAvx512Entry, avx::Qu8ValuesVnni, avx::Qu4Qu2ValuesVnni, avx::Qu4Qu2ValuesVnni, avx::Qu4Qu2ValuesVnni},
    avx::FwhtAvx2,
    avx::KvEncodeAvx2,
    {avx::F16KvScoresGroupAvx512, avx::Qu8ScoresGroupVnni,
     avx::Qu4Qu2ScoresGroupVnni, avx::Qu4Qu2ScoresGroupVnni, avx::Qu4Qu2ScoresGroupVnni},
    {avx::F16KvValuesGroupAvx512, avx::Qu8ValuesGroupVnni,
     avx::Qu4Qu2ValuesGroupVnni, avx::Qu4Qu2ValuesGroupVnni, avx::Qu4Qu2ValuesGroupVnni},
    avx::QuantizeQueryAvx2Entry,
    avx::ExpSumAvx512,
    avx::GreatestAvx512,
    avx::AddImportanceAvx512,
    avx::LeastAvx512,
};
}  // namespace mikv
