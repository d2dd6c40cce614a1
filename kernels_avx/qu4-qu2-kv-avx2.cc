// qu4-kv-scores/values and qu2-kv-scores/values, AVX2: the integer definition of kv_kernels.h with byte
// multiply-adds (vpmaddubsw), reading the codes as they lie in the row.
//
// A row's codes are read 64 channels (a "chunk") at a time into two registers of one code per byte, A and B,
// without reordering them — the query and the weights are reordered once per call instead. Which channel byte j
// (0..31) of A or B holds (ChunkChannel):
//   INT4, 32 code bytes x:             A = x & 15      -> channel 2j        B = x >> 4 & 15  -> channel 2j+1
//   INT2, 16 code bytes x in both      A = x >> {0|2}  -> 4j  | 4(j-16)+1   B = x >> {4|6}   -> 4j+2 | 4(j-16)+3
//         halves of the register:          & 3 (j < 16 | j >= 16)              & 3
// Scores: vpmaddubsw(A, q8 in A's order) + vpmaddubsw(B, ...) -> int16 (|sum| <= 2·15·127·2 < 2^15), vpmaddwd -> eight
// int32 lanes, each within one group (groups are whole multiples of 32 channels); the row's scales and zeros are
// spread over the lanes with one vpermps each, eight rows are summed across lanes together.
// Values: two rows at a time, their codes interleaved byte by byte (vpunpcklbw), times their quantized weights
// interleaved the same way: one vpmaddubsw gives w_t·code_t + w_u·code_u per channel in int16 (a block of 16 rows
// sums to at most 16·15·127 < 2^15); at the end of a block the int16 sums widen to float, times the block's weight
// scale. The float accumulator is kept in that permuted channel order and put back at the end.
//
// The fast path covers head_dim 64 and 128 with groups of 32, 64 or 128 channels (every Llama-family model here);
// other shapes go to the scalar reference.
#include "qu4-qu2-kv-avx.h"

namespace mikv::avx {

namespace {

template <int BITS>
constexpr int ChunkChannel(int reg, int j) {
  if (BITS == 4) return 2 * j + reg;
  return j < 16 ? 4 * j + 2 * reg : 4 * (j - 16) + 1 + 2 * reg;
}

struct Chunk {
  __m256i a, b;
};

template <int BITS>
inline Chunk LoadChunk(const uint8_t* codes, int c) {
  if (BITS == 4) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
    const __m256i m = _mm256_set1_epi8(15);
    return {_mm256_and_si256(x, m), _mm256_and_si256(_mm256_srli_epi16(x, 4), m)};
  } else {
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16 * c)));
    const __m256i m = _mm256_set1_epi8(3);
    return {_mm256_and_si256(_mm256_srlv_epi32(x, _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2)), m),
            _mm256_and_si256(_mm256_srlv_epi32(x, _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6)), m)};
  }
}

// Up to kPass queries of one GQA group share each row's loads, unpacking and scale spreading; the count is a
// template parameter so the per-query accumulators stay in registers.
constexpr int kPass = 4;

template <int BITS, int NC, int NQ>
void ScoresFast(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                float scale, float* out, size_t out_stride) {
  constexpr int d = 64 * NC;
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  alignas(32) int8_t qa[kPass][NC][32], qb[kPass][NC][32];
  alignas(32) int32_t gs[NC][8], gz[NC][8];
  alignas(32) float qsl[kPass][NC][8], qzl[kPass][NC][8];
  int lanes_of_group[4] = {0, 0, 0, 0};
  for (int c = 0; c < NC; ++c)
    for (int k = 0; k < 8; ++k) {
      gs[c][k] = (64 * c + ChunkChannel<BITS>(0, 4 * k)) / group;
      gz[c][k] = gs[c][k] + ng;
      ++lanes_of_group[gs[c][k]];
    }
  for (int h = 0; h < NQ; ++h) {
    int8_t q8[d];
    float qs[4];
    KvQuantizeQuery(q + h * d, d, group, q8, qs);
    for (int c = 0; c < NC; ++c) {
      for (int j = 0; j < 32; ++j) {
        qa[h][c][j] = q8[64 * c + ChunkChannel<BITS>(0, j)];
        qb[h][c][j] = q8[64 * c + ChunkChannel<BITS>(1, j)];
      }
      for (int k = 0; k < 8; ++k) {
        qsl[h][c][k] = qs[gs[c][k]];
        qzl[h][c][k] = qsum[h * ng + gs[c][k]] / (float)lanes_of_group[gs[c][k]];
      }
    }
  }
  __m256i GS[NC], GZ[NC];
  for (int c = 0; c < NC; ++c) {
    GS[c] = _mm256_load_si256(reinterpret_cast<const __m256i*>(gs[c]));
    GZ[c] = _mm256_load_si256(reinterpret_cast<const __m256i*>(gz[c]));
  }
  const __m256i ones = _mm256_set1_epi16(1);
  // Every query's eight lane sums of one row (lanes[h]); the row is read and unpacked once.
  auto row_lanes = [&](const uint8_t* row, __m256* lanes) {
    const __m256 sz = LoadScalesAndZeros(row + code_bytes, ng);
    for (int h = 0; h < NQ; ++h) lanes[h] = _mm256_setzero_ps();
    for (int c = 0; c < NC; ++c) {
      const Chunk ch = LoadChunk<BITS>(row, c);
      const __m256 s = _mm256_permutevar8x32_ps(sz, GS[c]), z = _mm256_permutevar8x32_ps(sz, GZ[c]);
      for (int h = 0; h < NQ; ++h) {
        const __m256i s16 = _mm256_add_epi16(
            _mm256_maddubs_epi16(ch.a, _mm256_load_si256(reinterpret_cast<const __m256i*>(qa[h][c]))),
            _mm256_maddubs_epi16(ch.b, _mm256_load_si256(reinterpret_cast<const __m256i*>(qb[h][c]))));
        const __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
        lanes[h] = _mm256_fmadd_ps(dot, _mm256_mul_ps(s, _mm256_load_ps(qsl[h][c])), lanes[h]);
        lanes[h] = _mm256_fmadd_ps(z, _mm256_load_ps(qzl[h][c]), lanes[h]);
      }
    }
  };
  const __m256 vscale = _mm256_set1_ps(scale);
  size_t t = 0;
  for (; t + 8 <= n; t += 8) {
    __m256 lanes[8][kPass];  // [row][query]
    for (int i = 0; i < 8; ++i) row_lanes(rows + (t + i) * f.stride, lanes[i]);
    for (int h = 0; h < NQ; ++h) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = lanes[i][h];
      _mm256_storeu_ps(out + h * out_stride + t, _mm256_mul_ps(SumEach(r), vscale));
    }
  }
  for (; t < n; ++t) {
    __m256 lanes[kPass];
    row_lanes(rows + t * f.stride, lanes);
    for (int h = 0; h < NQ; ++h) out[h * out_stride + t] = Hsum8(lanes[h]) * scale;
  }
}

template <int BITS, int NC, int NQ>
void ValuesFast(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  constexpr int d = 64 * NC;
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  // Accumulator slot (c, v, e) <- int16 lane of register r = v / 2 (A lo/hi, B lo/hi), 128-bit half L = v % 2.
  alignas(32) float fa[kPass][d];
  int channel[d], group_of_vector[NC * 8];
  for (int c = 0; c < NC; ++c)
    for (int v = 0; v < 8; ++v) {
      const int r = v / 2, half = v % 2;
      for (int e = 0; e < 8; ++e) {
        const int slot = (c * 8 + v) * 8 + e;
        channel[slot] = 64 * c + ChunkChannel<BITS>(r / 2, 16 * half + (r % 2) * 8 + e);
        for (int h = 0; h < NQ; ++h) fa[h][slot] = acc[h * d + channel[slot]];
      }
      group_of_vector[c * 8 + v] = channel[(c * 8 + v) * 8] / group;
    }
  // The weights an int16 lane needs: unpacklo (r even) and unpackhi (r odd) reach different channels, and each
  // 128-bit half its own; per block, a register holds the 16 rows' weights of the group of each half, and one
  // vpshufb per pair of rows spreads (w_t, w_t+1) over the lanes.
  int half_group[NC][2][2];
  for (int c = 0; c < NC; ++c)
    for (int odd = 0; odd < 2; ++odd)
      for (int half = 0; half < 2; ++half) half_group[c][odd][half] = (64 * c + ChunkChannel<BITS>(0, 16 * half + odd * 8)) / group;
  __m256i pick[8];
  for (int k = 0; k < 8; ++k) pick[k] = _mm256_set1_epi16((short)((2 * k) | (2 * k + 1) << 8));

  alignas(16) uint8_t w8[kPass][4][16];
  float ws[kPass][4];
  __m256 zacc[kPass][4];
  for (int h = 0; h < NQ; ++h)
    for (int g = 0; g < 4; ++g) zacc[h][g] = _mm256_setzero_ps();
  for (size_t b = 0; b < n; b += kKvValueBlock) {
    const int nb = (int)std::min<size_t>(kKvValueBlock, n - b);
    BlockScales scales;
    GatherBlockScales(f, ng, code_bytes, rows + b * f.stride, nb, &scales);
    __m256i wv[kPass][NC][2];
    for (int h = 0; h < NQ; ++h) {
      QuantizeBlockWeights(scales, ng, p + h * p_stride + b, w8[h], ws[h], zacc[h]);
      for (int c = 0; c < NC; ++c)
        for (int odd = 0; odd < 2; ++odd)
          wv[h][c][odd] = _mm256_inserti128_si256(
              _mm256_castsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(w8[h][half_group[c][odd][0]]))),
              _mm_load_si128(reinterpret_cast<const __m128i*>(w8[h][half_group[c][odd][1]])), 1);
    }
    __m256i a16[kPass][NC][4];
    for (int h = 0; h < NQ; ++h)
      for (int c = 0; c < NC; ++c)
        for (int r = 0; r < 4; ++r) a16[h][c][r] = _mm256_setzero_si256();
    for (int t = 0; t < nb; t += 2) {
      const uint8_t* rt = rows + (b + t) * f.stride;
      const uint8_t* ru = t + 1 < nb ? rt + f.stride : rt;  // its weight is 0 when it is the same row
      for (int c = 0; c < NC; ++c) {
        const Chunk ct = LoadChunk<BITS>(rt, c), cu = LoadChunk<BITS>(ru, c);
        const __m256i a_lo = _mm256_unpacklo_epi8(ct.a, cu.a), a_hi = _mm256_unpackhi_epi8(ct.a, cu.a);
        const __m256i b_lo = _mm256_unpacklo_epi8(ct.b, cu.b), b_hi = _mm256_unpackhi_epi8(ct.b, cu.b);
        for (int h = 0; h < NQ; ++h) {
          const __m256i w_lo = _mm256_shuffle_epi8(wv[h][c][0], pick[t / 2]);
          const __m256i w_hi = _mm256_shuffle_epi8(wv[h][c][1], pick[t / 2]);
          a16[h][c][0] = _mm256_add_epi16(a16[h][c][0], _mm256_maddubs_epi16(a_lo, w_lo));
          a16[h][c][1] = _mm256_add_epi16(a16[h][c][1], _mm256_maddubs_epi16(a_hi, w_hi));
          a16[h][c][2] = _mm256_add_epi16(a16[h][c][2], _mm256_maddubs_epi16(b_lo, w_lo));
          a16[h][c][3] = _mm256_add_epi16(a16[h][c][3], _mm256_maddubs_epi16(b_hi, w_hi));
        }
      }
    }
    for (int h = 0; h < NQ; ++h)
      for (int c = 0; c < NC; ++c)
        for (int r = 0; r < 4; ++r)
          for (int half = 0; half < 2; ++half) {
            const int v = 2 * r + half;
            const __m128i s16 = half ? _mm256_extracti128_si256(a16[h][c][r], 1) : _mm256_castsi256_si128(a16[h][c][r]);
            const __m256 dot = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(s16));
            float* slot = fa[h] + (c * 8 + v) * 8;
            _mm256_store_ps(slot, _mm256_add_ps(_mm256_load_ps(slot),
                                                _mm256_mul_ps(_mm256_set1_ps(ws[h][group_of_vector[c * 8 + v]]), dot)));
          }
  }
  for (int h = 0; h < NQ; ++h) {
    float zsum[4];
    for (int g = 0; g < ng; ++g) zsum[g] = Hsum8(zacc[h][g]);
    for (int slot = 0; slot < d; ++slot) acc[h * d + channel[slot]] = fa[h][slot] + zsum[channel[slot] / group];
  }
}

template <int BITS, int NC>
void ScoresPasses(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                  float* out, size_t out_stride) {
  const int d = f.head_dim, ng = d / f.group;
  for (int h = 0; h < nq; h += kPass) {
    const float* qh = q + h * d;
    const float* sh = qsum + h * ng;
    float* oh = out + h * out_stride;
    switch (std::min(kPass, nq - h)) {
      case 1: ScoresFast<BITS, NC, 1>(f, qh, sh, rows, n, scale, oh, out_stride); break;
      case 2: ScoresFast<BITS, NC, 2>(f, qh, sh, rows, n, scale, oh, out_stride); break;
      case 3: ScoresFast<BITS, NC, 3>(f, qh, sh, rows, n, scale, oh, out_stride); break;
      default: ScoresFast<BITS, NC, 4>(f, qh, sh, rows, n, scale, oh, out_stride); break;
    }
  }
}

template <int BITS, int NC>
void ValuesPasses(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim;
  for (int h = 0; h < nq; h += kPass) {
    const float* ph = p + h * p_stride;
    float* ah = acc + h * d;
    switch (std::min(kPass, nq - h)) {
      case 1: ValuesFast<BITS, NC, 1>(f, ph, p_stride, rows, n, ah); break;
      case 2: ValuesFast<BITS, NC, 2>(f, ph, p_stride, rows, n, ah); break;
      case 3: ValuesFast<BITS, NC, 3>(f, ph, p_stride, rows, n, ah); break;
      default: ValuesFast<BITS, NC, 4>(f, ph, p_stride, rows, n, ah); break;
    }
  }
}

}  // namespace

void Qu4Qu2KvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows,
                             size_t n, float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, ng = d / f.group;
  if (!FastShape(f)) {
    for (int h = 0; h < nq; ++h)
      kScalarKvKernels.scores[(int)f.precision](f, q + h * d, qsum + h * ng, rows, n, scale, out + h * out_stride);
    return;
  }
  const bool two = f.precision == KvPrecision::Int2;
  if (d == 64)
    return two ? ScoresPasses<2, 1>(f, nq, q, qsum, rows, n, scale, out, out_stride)
               : ScoresPasses<4, 1>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  return two ? ScoresPasses<2, 2>(f, nq, q, qsum, rows, n, scale, out, out_stride)
             : ScoresPasses<4, 2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void Qu4Qu2KvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                             float* acc) {
  const int d = f.head_dim;
  if (!FastShape(f)) {
    for (int h = 0; h < nq; ++h) kScalarKvKernels.values[(int)f.precision](f, p + h * p_stride, rows, n, acc + h * d);
    return;
  }
  const bool two = f.precision == KvPrecision::Int2;
  if (d == 64) return two ? ValuesPasses<2, 1>(f, nq, p, p_stride, rows, n, acc) : ValuesPasses<4, 1>(f, nq, p, p_stride, rows, n, acc);
  return two ? ValuesPasses<2, 2>(f, nq, p, p_stride, rows, n, acc) : ValuesPasses<4, 2>(f, nq, p, p_stride, rows, n, acc);
}

void Qu4Qu2KvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                        float scale, float* out) {
  Qu4Qu2KvScoresGroupAvx2(f, 1, q, qsum, rows, n, scale, out, n);
}

void Qu4Qu2KvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Qu4Qu2KvValuesGroupAvx2(f, 1, p, n, rows, n, acc);
}

}  // namespace mikv::avx
