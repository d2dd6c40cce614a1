// qu8-kv-scores and -values, AVX2 + FMA (INT4, INT3 and INT2 rows: qu4-qu2-kv-avx2.cc, in integers): unsigned codes
// widened eight at a time, per-group scale and zero folded in after the group's dot product (scores) or into
// p (values). The group variants unpack each row once for all the heads of a GQA group.
#include <algorithm>
#include <cmath>

#include "kv-avx.h"

namespace mikv::avx {

namespace {

// Hsum8 of R ≤ 4 registers at once, in lanes 0..R-1, bit for bit: vhaddps pairs the lanes of up to four rows in the
// order Hsum8 pairs one row's, ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), for a quarter of the shuffles per row.
template <int R>
inline __m128 Hsum8Rows(const __m256* v) {
  const __m256 s01 = _mm256_hadd_ps(v[0], v[R > 1 ? 1 : 0]);
  const __m256 s23 = R > 2 ? _mm256_hadd_ps(v[2], v[R > 3 ? 3 : 2]) : s01;
  const __m256 s = _mm256_hadd_ps(s01, s23);
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// R rows (from `rows`, f.stride apart) against NQ queries (the heads of a GQA group: each row's codes are unpacked
// once per chunk of eight channels for all of them): per row and query, score = (Σ_g scale_g · (q_g · codes_g) +
// Σ_g zero_g · qsum_g) · scale, its scales folded in as vectors so the row needs one horizontal sum, not one per group.
// Every row and query gets the same operations in the same order whatever R and NQ are, so the one-query kernel and
// each head of a group agree bit for bit. NQ and R are template parameters so that the sums stay in registers (kept in
// arrays indexed at run time they lived on the stack, and every multiply-add waited for the previous one's store); R
// rows at a time share the query loads and the horizontal sums.
template <int BITS, int NQ, int R>
inline void ScoreRows(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, float scale,
                      float* out, size_t out_stride) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  const uint8_t* row[R];
  const uint16_t* sz[R];
  for (int k = 0; k < R; ++k) {
    row[k] = rows + k * f.stride;
    sz[k] = reinterpret_cast<const uint16_t*>(row[k] + code_bytes);
  }
  __m256 total[NQ][R], a[NQ][R];
  float zeros[NQ][R];
  for (int h = 0; h < NQ; ++h)
    for (int k = 0; k < R; ++k) total[h][k] = _mm256_setzero_ps(), zeros[h][k] = 0.0f;
  for (int g = 0; g < ng; ++g) {
    for (int h = 0; h < NQ; ++h)
      for (int k = 0; k < R; ++k) a[h][k] = _mm256_setzero_ps();
    for (int i = g * group; i < (g + 1) * group; i += 8) {
      __m256 codes[R];
      for (int k = 0; k < R; ++k) codes[k] = Codes8<BITS>(row[k], i);
      for (int h = 0; h < NQ; ++h) {
        const __m256 qi = _mm256_loadu_ps(q + (size_t)h * d + i);
        for (int k = 0; k < R; ++k) a[h][k] = _mm256_fmadd_ps(qi, codes[k], a[h][k]);
      }
    }
    for (int k = 0; k < R; ++k) {
      const __m256 s = _mm256_set1_ps(Half(sz[k][g]));
      const float z = Half(sz[k][ng + g]);
      for (int h = 0; h < NQ; ++h) {
        total[h][k] = _mm256_fmadd_ps(s, a[h][k], total[h][k]);
        zeros[h][k] = std::fma(z, qsum[(size_t)h * ng + g], zeros[h][k]);  // one rounding in every instance
      }
    }
  }
  // R rows of a query, or one row of NQ queries: their sums reduced together, lane k for row or query k. The zeros
  // go in through registers (stored one by one and loaded as a vector they stalled store forwarding).
  constexpr int M = R > 1 ? R : NQ;
  if constexpr (M == 1) {
    out[0] = (Hsum8(total[0][0]) + zeros[0][0]) * scale;
  } else if constexpr (R == 1) {
    const __m256 v[4] = {total[0][0], total[NQ > 1 ? 1 : 0][0], total[NQ > 2 ? 2 : 0][0], total[NQ > 3 ? 3 : 0][0]};
    const __m128 zv = _mm_setr_ps(zeros[0][0], NQ > 1 ? zeros[NQ > 1 ? 1 : 0][0] : 0.0f,
                                  NQ > 2 ? zeros[NQ > 2 ? 2 : 0][0] : 0.0f, NQ > 3 ? zeros[NQ > 3 ? 3 : 0][0] : 0.0f);
    const __m128 s4 = _mm_mul_ps(_mm_add_ps(Hsum8Rows<NQ>(v), zv), _mm_set1_ps(scale));
    out[0] = _mm_cvtss_f32(s4);
    if (NQ > 1) out[out_stride] = _mm_cvtss_f32(_mm_shuffle_ps(s4, s4, 1));
    if (NQ > 2) out[2 * out_stride] = _mm_cvtss_f32(_mm_shuffle_ps(s4, s4, 2));
    if (NQ > 3) out[3 * out_stride] = _mm_cvtss_f32(_mm_shuffle_ps(s4, s4, 3));
  } else {
    for (int h = 0; h < NQ; ++h) {
      const __m128 zv = _mm_setr_ps(zeros[h][0], zeros[h][R > 1 ? 1 : 0], R > 2 ? zeros[h][R > 2 ? 2 : 0] : 0.0f,
                                    R > 3 ? zeros[h][R > 3 ? 3 : 0] : 0.0f);
      const __m128 s4 = _mm_mul_ps(_mm_add_ps(Hsum8Rows<R>(total[h]), zv), _mm_set1_ps(scale));
      if constexpr (R == 4) {
        _mm_storeu_ps(out + (size_t)h * out_stride, s4);
      } else {
        alignas(16) float s[4];
        _mm_store_ps(s, s4);
        for (int k = 0; k < R; ++k) out[(size_t)h * out_stride + k] = s[k];
      }
    }
  }
}

// A pass of NQ queries over all n rows: one query four rows at a time (the rest one by one), more queries row by row
// (two rows of two queries spilled the sixteen registers: 0.7x), their sums reduced together. (Reduced through a
// lambda taking the sums' address, three or four queries ran at half the speed: the arrays left the registers.)
template <int BITS, int NQ>
void ScoresQueries(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                   float* out, size_t out_stride) {
  constexpr int R = NQ == 1 ? 4 : 1;
  size_t t = 0;
  for (; t + R <= n; t += R) ScoreRows<BITS, NQ, R>(f, q, qsum, rows + t * f.stride, scale, out + t, out_stride);
  for (; t < n; ++t) ScoreRows<BITS, NQ, 1>(f, q, qsum, rows + t * f.stride, scale, out + t, out_stride);
}

template <int BITS>
void ScoresGroup(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                 float scale, float* out, size_t out_stride) {
  const int d = f.head_dim, ng = d / f.group;
  for (int h = 0; h < nq; h += 4) {
    const float* qh = q + (size_t)h * d;
    const float* sh = qsum + (size_t)h * ng;
    float* oh = out + (size_t)h * out_stride;
    switch (std::min(4, nq - h)) {
      case 1: ScoresQueries<BITS, 1>(f, qh, sh, rows, n, scale, oh, out_stride); break;
      case 2: ScoresQueries<BITS, 2>(f, qh, sh, rows, n, scale, oh, out_stride); break;
      case 3: ScoresQueries<BITS, 3>(f, qh, sh, rows, n, scale, oh, out_stride); break;
      default: ScoresQueries<BITS, 4>(f, qh, sh, rows, n, scale, oh, out_stride); break;
    }
  }
}

template <int BITS>
void Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale, float* out) {
  ScoresQueries<BITS, 1>(f, q, qsum, rows, n, scale, out, 0);
}

// Values, rows in blocks of kValueBlock: per block and group, each query's p·scale per row (0 where p is 0, so a
// masked row adds nothing whatever it holds) and Σ p·zero; then per chunk of eight channels the block's rows are summed
// into one register per query and added to acc once. (Adding each row into acc in memory made every row wait for the
// previous row's store: ten times slower.)
constexpr int kValueBlock = 32;

// C chunks of eight channels from channel i, over a block's nb rows, for NQ queries: acc += the rows' sum, started from
// Σ p·zero (zsum). Each chunk and query is one chain of multiply-adds over the rows, in row order; C of them per query are
// in flight at once (one chain alone waited on each row's fmadd latency: 1.7x with four), and how many does not change
// any chain's operations, so every C gives the same bits.
// ps[(h · kValueBlock + t) · 8]: query h's weight of row t in this group (each row holds up to eight groups' weights
// side by side, ps pointing at this group's).
template <int BITS, int NQ, int C>
inline void ValueChunks(const uint8_t* block, size_t stride, int nb, const float* ps, const float* zsum, int i, int d,
                        float* acc) {
  __m256 a[NQ][C];
  for (int h = 0; h < NQ; ++h)
    for (int c = 0; c < C; ++c) a[h][c] = _mm256_set1_ps(zsum[h]);
  for (int t = 0; t < nb; ++t) {
    const uint8_t* row = block + t * stride;
    __m256 w[NQ];  // broadcast once per row (inside the chunk loop GCC broadcast again for every chunk)
    for (int h = 0; h < NQ; ++h) w[h] = _mm256_set1_ps(ps[(h * kValueBlock + t) * 8]);
    for (int c = 0; c < C; ++c) {
      const __m256 codes = Codes8<BITS>(row, i + 8 * c);
      for (int h = 0; h < NQ; ++h) a[h][c] = _mm256_fmadd_ps(w[h], codes, a[h][c]);
    }
  }
  for (int h = 0; h < NQ; ++h)
    for (int c = 0; c < C; ++c) {
      float* ah = acc + (size_t)h * d + i + 8 * c;
      _mm256_storeu_ps(ah, _mm256_add_ps(_mm256_loadu_ps(ah), a[h][c]));
    }
}

// A row's scales and zeros as floats when it has at most four groups (d/group ≤ 4: head_dim 64 or 128 with groups of
// 32): lanes 0..ng-1 the scales, ng..2ng-1 the zeros, read with loads of exactly their 4·ng bytes.
inline __m256 ScalesAndZeros(const uint16_t* sz, int ng) {
  int32_t w32;
  __m128i h;
  switch (ng) {
    case 1: __builtin_memcpy(&w32, sz, 4); h = _mm_cvtsi32_si128(w32); break;
    case 2: h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sz)); break;
    case 3:
      __builtin_memcpy(&w32, sz + 4, 4);
      h = _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sz)), w32, 2);
      break;
    default: h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sz)); break;
  }
  return _mm256_cvtph_ps(h);
}

// NQ queries (a template parameter, so that their accumulators stay in registers): up to eight chains in flight, as
// many chunks at a time as divide the group. The weights of a block: rows of at most four groups have every group's
// p·scale and Σ p·zero from one conversion and one multiply (and multiply-add) per row; others group by group.
// Either way each weight is p·scale, or 0 where p is 0, and each Σ p·zero adds its rows in order with one rounding.
template <int BITS, int NQ>
void ValuesQueries(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  constexpr int kMaxChunks = NQ == 1 ? 8 : NQ == 2 ? 4 : 2;
  const int chunks = group / 8;
  const int c = kMaxChunks >= 8 && chunks % 8 == 0 ? 8 : kMaxChunks >= 4 && chunks % 4 == 0 ? 4 : chunks % 2 == 0 ? 2 : 1;
  alignas(32) float ps[NQ][kValueBlock][8];
  alignas(32) float zsums[NQ][8];
  for (size_t t0 = 0; t0 < n; t0 += kValueBlock) {
    const int nb = (int)std::min<size_t>(kValueBlock, n - t0);
    const uint8_t* block = rows + t0 * f.stride;
    if (ng <= 4) {
      __m256 zacc[NQ];
      for (int h = 0; h < NQ; ++h) zacc[h] = _mm256_setzero_ps();
      for (int t = 0; t < nb; ++t) {
        const __m256 sz = ScalesAndZeros(reinterpret_cast<const uint16_t*>(block + t * f.stride + code_bytes), ng);
        for (int h = 0; h < NQ; ++h) {
          const float ph = p[(size_t)h * p_stride + t0 + t];
          const __m256 pv = _mm256_set1_ps(ph);
          const __m256 weighed = _mm256_cmp_ps(pv, _mm256_setzero_ps(), _CMP_NEQ_UQ);  // all lanes, or none
          _mm256_store_ps(ps[h][t], _mm256_and_ps(_mm256_mul_ps(pv, sz), weighed));
          zacc[h] = _mm256_blendv_ps(zacc[h], _mm256_fmadd_ps(pv, sz, zacc[h]), weighed);
        }
      }
      for (int h = 0; h < NQ; ++h) _mm256_store_ps(zsums[h], zacc[h]);
    }
    for (int g = 0; g < ng; ++g) {
      float zsum[NQ];
      if (ng <= 4) {
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
      const float* pg = &ps[0][0][ng <= 4 ? g : 0];
      for (int i = g * group; i < (g + 1) * group; i += 8 * c) {
        switch (c) {
          case 8: ValueChunks<BITS, NQ, kMaxChunks >= 8 ? 8 : 1>(block, f.stride, nb, pg, zsum, i, d, acc); break;
          case 4: ValueChunks<BITS, NQ, kMaxChunks >= 4 ? 4 : 1>(block, f.stride, nb, pg, zsum, i, d, acc); break;
          case 2: ValueChunks<BITS, NQ, 2>(block, f.stride, nb, pg, zsum, i, d, acc); break;
          default: ValueChunks<BITS, NQ, 1>(block, f.stride, nb, pg, zsum, i, d, acc); break;
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

void QuKvScoresGroupAvx2(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                         float scale, float* out, size_t out_stride) {
  ScoresGroup<8>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void QuKvValuesGroupAvx2(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                         float* acc) {
  ValuesGroup<8>(f, nq, p, p_stride, rows, n, acc);
}

void QuKvScoresAvx2(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                    float* out) {
  Scores<8>(f, q, qsum, rows, n, scale, out);
}

void QuKvValuesAvx2(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Values<8>(f, p, rows, n, acc);
}

}  // namespace mikv::avx

namespace mikv {
extern const KvKernels kAvx2KvKernels = {
    "avx2",
    {avx::F16KvScoresAvx2, avx::QuKvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2, avx::Qu4Qu2KvScoresAvx2},
    {avx::F16KvValuesAvx2, avx::QuKvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2, avx::Qu4Qu2KvValuesAvx2},
    avx::FwhtAvx2,
    avx::SoftmaxAvx2,
    avx::KvEncodeAvx2,
    {KvScoresEachQuery<avx::F16KvScoresAvx2>, avx::QuKvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2,
     avx::Qu4Qu2KvScoresGroupAvx2, avx::Qu4Qu2KvScoresGroupAvx2},
    {KvValuesEachQuery<avx::F16KvValuesAvx2>, avx::QuKvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2,
     avx::Qu4Qu2KvValuesGroupAvx2, avx::Qu4Qu2KvValuesGroupAvx2},
};
}  // namespace mikv
