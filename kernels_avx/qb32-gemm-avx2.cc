// qb32-gemm, AVX2 + FMA + F16C: the integer block sums with maddubs (unsigned × signed bytes -> int16 pairs), on
// the packed weights of qb32-gemm-avx.h.
//
// Q4_0: a block's eight products of pairs are summed in int16 (at most 8 · 2 · 15 · 128 = 30,720), widened once
// with madd, less 8 · Σx of the activation block. Q8_0: each product of pairs widened with madd (below).
#include "qb32-gemm-avx.h"

namespace mikv::avx {
namespace {

inline __m256i Broadcast4(const uint8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Activation dword c of a Q8_0 block (elements 4c..4c+3), in every lane.
inline __m256i XDword(const uint8_t* xblock, size_t c) { return Broadcast4(xblock + 2 + 4 * c); }

// Vector c of a packed Q4_0 group-block's codes as unsigned bytes 0..15: lo holds elements 4c..4c+3 of each row,
// hi elements 4c+16..4c+19 (XDword c and c + 4).
struct Nibbles {
  __m256i lo, hi;
};
inline Nibbles LoadNibbles(const uint8_t* codes, size_t c) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
  const __m256i low = _mm256_set1_epi8(0x0f);
  return {_mm256_and_si256(v, low), _mm256_and_si256(_mm256_srli_epi16(v, 4), low)};
}

// Vector c of a packed Q8_0 group-block's codes (elements 4c..4c+3 of each row), as the unsigned magnitudes that
// multiply x · sign(w): |w| · sign(x, w) = w · x, the form an unsigned-by-signed byte product takes.
struct SignedCodes {
  __m256i w, abs;
  __m256i SignedX(__m256i x) const { return _mm256_sign_epi8(x, w); }
};
inline SignedCodes LoadSignedCodes(const uint8_t* codes, size_t c) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
  return {w, _mm256_sign_epi8(w, w)};
}

// Sums(codes, x, x_sums, sums): Σ_j w_j · x_j of one block for the eight rows of a packed group-block (its codes,
// after the scales) against NB activation blocks x[b] (block starts; x_sums[b]: Σ of x[b]'s codes).
template <size_t NB>
struct Q4_0 {
  static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t* x_sums, __m256i* sums) {
    __m256i pairs[NB];
    for (size_t b = 0; b < NB; ++b) pairs[b] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (size_t c = 0; c < 4; ++c) {
      const Nibbles n = LoadNibbles(codes, c);
      for (size_t b = 0; b < NB; ++b)
        pairs[b] = _mm256_add_epi16(pairs[b], _mm256_add_epi16(_mm256_maddubs_epi16(n.lo, XDword(x[b], c)),
                                                               _mm256_maddubs_epi16(n.hi, XDword(x[b], c + 4))));
    }
    for (size_t b = 0; b < NB; ++b)
      sums[b] = _mm256_sub_epi32(_mm256_madd_epi16(pairs[b], _mm256_set1_epi16(1)), _mm256_set1_epi32(8 * x_sums[b]));
  }
};

// Q8_0: |w| ≤ 128 by |x| ≤ 127 cannot saturate a pair, but two pairs could reach 65,024: each is widened.
inline __m256i AddDots(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
template <size_t NB>
struct Q8_0 {
  static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t*, __m256i* sums) {
    for (size_t b = 0; b < NB; ++b) sums[b] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (size_t c = 0; c < 8; ++c) {
      const SignedCodes w = LoadSignedCodes(codes, c);
      for (size_t b = 0; b < NB; ++b) sums[b] = AddDots(sums[b], w.abs, w.SignedX(XDword(x[b], c)));
    }
  }
};

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const Qb32Kernels kAvx2Qb32Kernels = {"avx2", avx::Gemm<kQ8_0BlockBytes, avx::Q8_0>,
                                             avx::Gemm<kQ4_0BlockBytes, avx::Q4_0>, /*packed_rows=*/8,
                                             avx::QuantizeActivations};
}  // namespace mikv
