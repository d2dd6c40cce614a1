// qb32-gemm (Q8_0 and Q4_0 weights × Q8_0 activations -> f32), AVX2 + FMA + F16C, on packed weights
// (qb32-gemm-avx.h).
//
// Q4_0: the nibbles are multiplied unsigned (maddubs: unsigned × signed bytes -> pairs in int16); a block's eight
// vectors of pairs are summed in int16 (at most 8 · 2 · 15 · 128 = 30,720), widened once with madd, and 8 · Σx of
// the activation block is taken off: Σ (n − 8)·x = Σ n·x − 8·Σx.
// Q8_0: |w| · sign(x, w) with maddubs (|w| ≤ 128, |x| ≤ 127 cannot saturate), widened with madd per vector (two
// vectors' pairs could reach 65,024).
#include "qb32-gemm-avx.h"

namespace mikv::avx {
namespace {

// Sums(codes, x, x_sums, sums): Σ_j w_j · x_j of one block for the eight rows of a packed group-block (its codes,
// after the scales) against NB activation blocks x[b] (block starts; x_sums[b]: Σ of x[b]'s codes).
template <size_t NB>
struct Q4_0 {
static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t* x_sums, __m256i* sums) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i pairs[NB];
  for (size_t b = 0; b < NB; ++b) pairs[b] = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (size_t c = 0; c < 4; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
    const __m256i lo = _mm256_and_si256(v, low);                          // elements 4c..4c+3
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);   // elements 4c+16..4c+19
    for (size_t b = 0; b < NB; ++b) {
      const uint8_t* xc = x[b] + 2 + 4 * c;
      const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, Broadcast4(xc)),
                                         _mm256_maddubs_epi16(hi, Broadcast4(xc + 16)));
      pairs[b] = _mm256_add_epi16(pairs[b], p);
    }
  }
  for (size_t b = 0; b < NB; ++b)
    sums[b] = _mm256_sub_epi32(_mm256_madd_epi16(pairs[b], _mm256_set1_epi16(1)), _mm256_set1_epi32(8 * x_sums[b]));
}
};

template <size_t NB>
struct Q8_0 {
static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t*, __m256i* sums) {
  for (size_t b = 0; b < NB; ++b) sums[b] = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (size_t c = 0; c < 8; ++c) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
    const __m256i w_abs = _mm256_sign_epi8(w, w);
    for (size_t b = 0; b < NB; ++b) {
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(Broadcast4(x[b] + 2 + 4 * c), w)),
                                          _mm256_set1_epi16(1));
      sums[b] = _mm256_add_epi32(sums[b], p);
    }
  }
}
};

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const Qb32Kernels kAvx2Qb32Kernels = {"avx2", avx::Gemm<kQ8_0BlockBytes, avx::Q8_0>,
                                             avx::Gemm<kQ4_0BlockBytes, avx::Q4_0>, /*packed_rows=*/8};
}  // namespace mikv
