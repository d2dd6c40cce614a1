// qu8-kv-scores and -values, AVX2 + FMA (INT4, INT3 and INT2 rows: qu4-qu2-kv-avx2.cc, in integers): unsigned codes
// widened eight at a time, per-group scale and zero folded in after the group's dot product (scores) or into
// p (values). The group variants unpack each row once for all the heads of a GQA group.
#include <algorithm>

#include "kv-avx.h"

namespace mikv::avx {

namespace {

template <int BITS>
void Scores(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale, float* out) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    // Scales are folded in as vectors, so the row needs one horizontal sum, not one per group.
    __m256 total = _mm256_setzero_ps();
    float zeros = 0.0f;
    for (int g = 0; g < ng; ++g) {
      __m256 a = _mm256_setzero_ps();
      for (int i = g * group; i < (g + 1) * group; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), Codes8<BITS>(row, i), a);
      total = _mm256_fmadd_ps(_mm256_set1_ps(Half(sz[g])), a, total);
      zeros += Half(sz[ng + g]) * qsum[g];
    }
    out[t] = (Hsum8(total) + zeros) * scale;
  }
}


// The heads of a GQA group against each row: the row's codes are unpacked once per chunk of eight channels and used
// by every query, each query doing the one-query kernel's operations in its order (the same results bit for bit).
// NQ queries at a time, a template parameter so that their accumulators stay in registers (kept in an array indexed
// at run time they lived on the stack, and every multiply-add waited for the previous one's store).
template <int BITS, int NQ>
void ScoresQueries(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                   float* out, size_t out_stride) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* sz = reinterpret_cast<const uint16_t*>(row + code_bytes);
    __m256 total[NQ], a[NQ];
    float zeros[NQ];
    for (int h = 0; h < NQ; ++h) total[h] = _mm256_setzero_ps(), zeros[h] = 0.0f;
    for (int g = 0; g < ng; ++g) {
      for (int h = 0; h < NQ; ++h) a[h] = _mm256_setzero_ps();
      for (int i = g * group; i < (g + 1) * group; i += 8) {
        const __m256 codes = Codes8<BITS>(row, i);
        for (int h = 0; h < NQ; ++h) a[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)h * d + i), codes, a[h]);
      }
      const __m256 s = _mm256_set1_ps(Half(sz[g]));
      const float z = Half(sz[ng + g]);
      for (int h = 0; h < NQ; ++h) {
        total[h] = _mm256_fmadd_ps(s, a[h], total[h]);
        zeros[h] += z * qsum[(size_t)h * ng + g];
      }
    }
    for (int h = 0; h < NQ; ++h) out[(size_t)h * out_stride + t] = (Hsum8(total[h]) + zeros[h]) * scale;
  }
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

// Values, rows in blocks of kValueBlock: per block and group, each query's p·scale per row (0 where p is 0, so a
// masked row adds nothing whatever it holds) and Σ p·zero; then per eight channels the block's rows are summed into
// one register per query and added to acc once. (Adding each row into acc in memory made every row wait for the
// previous row's store: ten times slower.)
constexpr int kValueBlock = 32;

// NQ queries (a template parameter, so that their accumulators stay in registers).
template <int BITS, int NQ>
void ValuesQueries(const KvRowFormat& f, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  alignas(32) float ps[NQ][kValueBlock];
  for (size_t t0 = 0; t0 < n; t0 += kValueBlock) {
    const int nb = (int)std::min<size_t>(kValueBlock, n - t0);
    const uint8_t* block = rows + t0 * f.stride;
    for (int g = 0; g < ng; ++g) {
      float zsum[NQ] = {};
      for (int t = 0; t < nb; ++t) {
        const uint16_t* sz = reinterpret_cast<const uint16_t*>(block + t * f.stride + code_bytes);
        const float scale = Half(sz[g]), zero = Half(sz[ng + g]);
        for (int h = 0; h < NQ; ++h) {
          const float ph = p[(size_t)h * p_stride + t0 + t];
          ps[h][t] = ph == 0.0f ? 0.0f : ph * scale;
          if (ph != 0.0f) zsum[h] += ph * zero;
        }
      }
      for (int i = g * group; i < (g + 1) * group; i += 8) {
        __m256 a[NQ];
        for (int h = 0; h < NQ; ++h) a[h] = _mm256_set1_ps(zsum[h]);
        for (int t = 0; t < nb; ++t) {
          const __m256 codes = Codes8<BITS>(block + t * f.stride, i);
          for (int h = 0; h < NQ; ++h) a[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(&ps[h][t]), codes, a[h]);
        }
        for (int h = 0; h < NQ; ++h) {
          float* ah = acc + (size_t)h * d + i;
          _mm256_storeu_ps(ah, _mm256_add_ps(_mm256_loadu_ps(ah), a[h]));
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
