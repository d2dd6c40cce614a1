// qu4-kv-scores/values and qu2-kv-scores/values, AVX-512 VNNI + VBMI (vpdpbusd: four unsigned-by-signed byte products
// summed into each int32 lane, no int16 step): the integer definition of kv_kernels.h.
//
// A 64-channel chunk of a row's codes fills one register, one code per byte, in the order Channel64 gives:
//   INT2, 16 code bytes x broadcast to the four 128-bit lanes, lane L shifted by 2L, & 3:  byte 16L+j -> channel 4j+L
//   INT4, 32 code bytes x: low half x & 15, high half x >> 4 & 15:  byte j -> channel 2j, byte 32+j -> channel 2j+1
// Scores: one vpdpbusd of the codes with the query's int8 codes in that order gives sixteen int32 lanes, each inside
// one group; scales and zeros are spread over the lanes with vpermps, as in the AVX2 kernel.
// Values: four rows at a time, their packed bytes interleaved by one vpermb (AVX-512 VBMI) so that each int32 lane
// holds one channel of the four rows after a shift and a mask; one vpdpbusd with the four rows' weights (0..127,
// a vpermd of the block's weight bytes per lane's group) accumulates Σ_t w_t·code_t per channel. Sixteen rows (one
// weights register) are four such steps, a block of KvValueBlockRows (16 or 64 rows) one or four of those; then the
// int32 sums are scaled into the float accumulator.
// Shapes: head_dim 64 or 128, groups of 32, 64 or 128 channels; others go to the AVX2 entry points.
#include "qu4-qu2-kv-avx.h"

namespace mikv::avx {

void F16KvScoresAvx512Entry(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out);
void F16KvValuesAvx512Entry(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);
void QuKvScoresAvx512(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out);
void QuKvValuesAvx512(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);

namespace {

template <int BITS>
constexpr int Channel64(int byte) {
  const int lane = byte / 16, j = byte % 16;
  if (BITS == 2) return 4 * j + lane;
  return lane < 2 ? 2 * (16 * lane + j) : 2 * (16 * (lane - 2) + j) + 1;
}

template <int BITS>
inline __m512i Codes64(const uint8_t* row, int c) {
  if (BITS == 2) {
    const __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * c)));
    const __m512i shifts = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
    return _mm512_and_si512(_mm512_srlv_epi32(x, shifts), _mm512_set1_epi8(3));
  } else {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * c));
    return _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(x), _mm256_srli_epi16(x, 4), 1), _mm512_set1_epi8(15));
  }
}

inline __m256 HalveLanes(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

template <int BITS, int NC>
void Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale, float* out) {
  constexpr int d = 64 * NC;
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  int8_t q8[d];
  float qs[4];
  KvQuantizeQuery(q, d, group, q8, qs);
  alignas(64) int8_t qc[NC][64];
  alignas(64) int32_t gs[NC][16], gz[NC][16];
  alignas(64) float qsl[NC][16], qzl[NC][16];
  int lanes_of_group[4] = {0, 0, 0, 0};
  for (int c = 0; c < NC; ++c) {
    for (int b = 0; b < 64; ++b) qc[c][b] = q8[64 * c + Channel64<BITS>(b)];
    for (int m = 0; m < 16; ++m) {
      gs[c][m] = (64 * c + Channel64<BITS>(4 * m)) / group;
      gz[c][m] = gs[c][m] + ng;
      ++lanes_of_group[gs[c][m]];
    }
  }
  __m512i Q[NC], GS[NC], GZ[NC];
  __m512 QSL[NC], QZL[NC];
  for (int c = 0; c < NC; ++c) {
    for (int m = 0; m < 16; ++m) {
      qsl[c][m] = qs[gs[c][m]];
      qzl[c][m] = qsum[gs[c][m]] / (float)lanes_of_group[gs[c][m]];
    }
    Q[c] = _mm512_load_si512(qc[c]);
    GS[c] = _mm512_load_si512(gs[c]);
    GZ[c] = _mm512_load_si512(gz[c]);
    QSL[c] = _mm512_load_ps(qsl[c]);
    QZL[c] = _mm512_load_ps(qzl[c]);
  }
  auto row_lanes = [&](const uint8_t* row) {
    const __m512 sz = _mm512_castps256_ps512(LoadScalesAndZeros(row + code_bytes, ng));
    __m512 acc = _mm512_setzero_ps();
    for (int c = 0; c < NC; ++c) {
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), Codes64<BITS>(row, c), Q[c]));
      acc = _mm512_fmadd_ps(dot, _mm512_mul_ps(_mm512_permutexvar_ps(GS[c], sz), QSL[c]), acc);
      acc = _mm512_fmadd_ps(_mm512_permutexvar_ps(GZ[c], sz), QZL[c], acc);
    }
    return HalveLanes(acc);
  };
  const __m256 vscale = _mm256_set1_ps(scale);
  size_t t = 0;
  for (; t + 8 <= n; t += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = row_lanes(rows + (t + i) * f.stride);
    _mm256_storeu_ps(out + t, _mm256_mul_ps(SumEach(r), vscale));
  }
  for (; t < n; ++t) out[t] = Hsum8(row_lanes(rows + t * f.stride)) * scale;
}

// Values, four rows at a time: their packed code bytes side by side in the four 128-bit lanes, one vpermb so that
// dword j holds byte j of the four rows, then shifts and masks give registers R_s whose dword j holds one channel
// of the four rows (ChannelOf) — ready for vpdpbusd with the four rows' weights.
template <int BITS>
constexpr int ChannelOf(int c, int s, int j) {
  if (BITS == 2) return 64 * c + 4 * j + s;  // byte j holds channels 4j..4j+3; R_s takes bits 2s, 2s+1
  return 64 * c + 32 * (s / 2) + 2 * j + s % 2;  // bytes 0-15 (s = 0, 1) then 16-31 (s = 2, 3); low nibble even
}

inline __m512i FourRows(const uint8_t* const* row, size_t offset) {
  __m512i x = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row[0] + offset)));
  x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row[1] + offset)), 1);
  x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row[2] + offset)), 2);
  return _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row[3] + offset)), 3);
}

template <int BITS, int NC>
void Values(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  constexpr int d = 64 * NC;
  const int group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  alignas(64) float fa_init[NC][4][16];
  alignas(64) int32_t gq[NC][4][16];
  alignas(64) uint8_t interleave[64];
  for (int j = 0; j < 16; ++j)
    for (int i = 0; i < 4; ++i) interleave[4 * j + i] = (uint8_t)(16 * i + j);
  for (int c = 0; c < NC; ++c)
    for (int s = 0; s < 4; ++s)
      for (int j = 0; j < 16; ++j) {
        const int ch = ChannelOf<BITS>(c, s, j);
        fa_init[c][s][j] = acc[ch];
        gq[c][s][j] = 4 * (ch / group);  // dword 4g + k of the weight register: group g, rows 4k..4k+3
      }
  const __m512i spread = _mm512_load_si512(interleave);
  __m512 fa[NC][4];
  __m512i GQ[NC][4], GW[NC][4];
  for (int c = 0; c < NC; ++c)
    for (int s = 0; s < 4; ++s) {
      fa[c][s] = _mm512_load_ps(fa_init[c][s]);
      GQ[c][s] = _mm512_load_si512(gq[c][s]);
      GW[c][s] = _mm512_srli_epi32(GQ[c][s], 2);  // the lane's group, for the weight scales
    }

  // A block of KvValueBlockRows (64 INT2 rows, 16 INT4) shares one weight scale per group; it is weighed 16 rows
  // (one weights register) at a time.
  constexpr int kBlock = KvValueBlockRows(BITS == 2 ? KvPrecision::Int2 : KvPrecision::Int4), S = kBlock / 16;
  alignas(64) uint8_t wb[4][16 * S] = {};
  alignas(64) uint8_t w8[4][16] = {};
  alignas(16) float ws[4] = {0, 0, 0, 0};
  __m256 zacc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const __m512i mask = _mm512_set1_epi8(BITS == 2 ? 3 : 15);
  for (size_t b = 0; b < n; b += kBlock) {
    const int nb = (int)std::min<size_t>(kBlock, n - b);
    BlockWeights<S>(f, ng, code_bytes, p + b, rows + b * f.stride, nb, wb, ws, zacc);
    __m512i sums[NC][4];
    for (int c = 0; c < NC; ++c)
      for (int s = 0; s < 4; ++s) sums[c][s] = _mm512_setzero_si512();
    for (int sb = 0; 16 * sb < nb; ++sb) {
      for (int g = 0; g < ng; ++g) std::memcpy(w8[g], wb[g] + 16 * sb, 16);
      const __m512i weights = _mm512_load_si512(w8);
      const int first = 16 * sb, rows_here = std::min(16, nb - first);
      for (int k = 0; 4 * k < rows_here; ++k) {
        const uint8_t* row[4];
        for (int i = 0; i < 4; ++i)  // padding rows weigh 0
          row[i] = rows + (b + first + std::min(4 * k + i, rows_here - 1)) * f.stride;
        const __m512i kk = _mm512_set1_epi32(k);
        for (int c = 0; c < NC; ++c) {
          __m512i r[4];
          if (BITS == 2) {
            const __m512i x = _mm512_permutexvar_epi8(spread, FourRows(row, 16 * c));
            for (int s = 0; s < 4; ++s) r[s] = _mm512_and_si512(_mm512_srli_epi32(x, 2 * s), mask);
          } else {
            const __m512i x0 = _mm512_permutexvar_epi8(spread, FourRows(row, 32 * c));
            const __m512i x1 = _mm512_permutexvar_epi8(spread, FourRows(row, 32 * c + 16));
            r[0] = _mm512_and_si512(x0, mask);
            r[1] = _mm512_and_si512(_mm512_srli_epi32(x0, 4), mask);
            r[2] = _mm512_and_si512(x1, mask);
            r[3] = _mm512_and_si512(_mm512_srli_epi32(x1, 4), mask);
          }
          for (int s = 0; s < 4; ++s)
            sums[c][s] = _mm512_dpbusd_epi32(sums[c][s], r[s], _mm512_permutexvar_epi32(_mm512_add_epi32(GQ[c][s], kk), weights));
        }
      }
    }
    const __m512 wsv = _mm512_castps128_ps512(_mm_load_ps(ws));
    for (int c = 0; c < NC; ++c)
      for (int s = 0; s < 4; ++s)
        fa[c][s] = _mm512_add_ps(fa[c][s], _mm512_mul_ps(_mm512_permutexvar_ps(GW[c][s], wsv), _mm512_cvtepi32_ps(sums[c][s])));
  }
  float zsum[4];
  for (int g = 0; g < ng; ++g) zsum[g] = Hsum8(zacc[g]);
  for (int c = 0; c < NC; ++c)
    for (int s = 0; s < 4; ++s) {
      _mm512_store_ps(fa_init[c][s], fa[c][s]);
      for (int j = 0; j < 16; ++j) {
        const int ch = ChannelOf<BITS>(c, s, j);
        acc[ch] = fa_init[c][s][j] + zsum[ch / group];
      }
    }
}

void Qu4Qu2ScoresVnni(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out) {
  if (!FastShape(f)) return Qu4Qu2KvScoresAvx2(f, q, qsum, rows, n, scale, out);
  const bool two = f.precision == KvPrecision::Int2;
  if (f.head_dim == 64) return two ? Scores<2, 1>(f, q, qsum, rows, n, scale, out) : Scores<4, 1>(f, q, qsum, rows, n, scale, out);
  return two ? Scores<2, 2>(f, q, qsum, rows, n, scale, out) : Scores<4, 2>(f, q, qsum, rows, n, scale, out);
}

void Qu4Qu2ValuesVnni(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  if (!FastShape(f)) return Qu4Qu2KvValuesAvx2(f, p, rows, n, acc);
  const bool two = f.precision == KvPrecision::Int2;
  if (f.head_dim == 64) return two ? Values<2, 1>(f, p, rows, n, acc) : Values<4, 1>(f, p, rows, n, acc);
  return two ? Values<2, 2>(f, p, rows, n, acc) : Values<4, 2>(f, p, rows, n, acc);
}

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const KvKernels kAvx512VnniKvKernels = {
    "avx512vnni",
    {avx::F16KvScoresAvx512Entry, avx::QuKvScoresAvx512, avx::Qu4Qu2ScoresVnni, avx::QuKvScoresAvx512, avx::Qu4Qu2ScoresVnni},
    {avx::F16KvValuesAvx512Entry, avx::QuKvValuesAvx512, avx::Qu4Qu2ValuesVnni, avx::QuKvValuesAvx512, avx::Qu4Qu2ValuesVnni},
    avx::FwhtAvx2,
    avx::SoftmaxAvx2,
    avx::KvEncodeAvx2,
    {KvScoresEachQuery<avx::F16KvScoresAvx512Entry>, KvScoresEachQuery<avx::QuKvScoresAvx512>,
     KvScoresEachQuery<avx::Qu4Qu2ScoresVnni>, KvScoresEachQuery<avx::QuKvScoresAvx512>,
     KvScoresEachQuery<avx::Qu4Qu2ScoresVnni>},
    {KvValuesEachQuery<avx::F16KvValuesAvx512Entry>, KvValuesEachQuery<avx::QuKvValuesAvx512>,
     KvValuesEachQuery<avx::Qu4Qu2ValuesVnni>, KvValuesEachQuery<avx::QuKvValuesAvx512>,
     KvValuesEachQuery<avx::Qu4Qu2ValuesVnni>},
};
}  // namespace mikv
