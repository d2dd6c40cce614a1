// qb32-gemm, AVX-512 VNNI on 256-bit vectors (VL): the integer block sums with vpdpbusd, which adds four unsigned ×
// signed byte products into each int32 lane with no int16 step to saturate, on the packed weights of
// qb32-gemm-avx.h. A block is one chain of vpdpbusd per activation row; Q4_0's starts at −8 · Σx.
#include "qb32-gemm-avx.h"

namespace mikv::avx {
namespace {

// Sums(codes, x, x_sums, sums): as in qb32-gemm-avx2.cc.
template <size_t NB>
struct Q4_0 {
  static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t* x_sums, __m256i* sums) {
    for (size_t b = 0; b < NB; ++b) sums[b] = _mm256_set1_epi32(-8 * x_sums[b]);
#pragma GCC unroll 4
    for (size_t c = 0; c < 4; ++c) {
      const Nibbles n = LoadNibbles(codes, c);
      for (size_t b = 0; b < NB; ++b)
        sums[b] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(sums[b], n.lo, XDword(x[b], c)), n.hi, XDword(x[b], c + 4));
    }
  }
};

inline __m256i AddDots(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
template <size_t NB>
using Q8_0 = Q8_0Sums<NB, AddDots>;

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const Qb32Kernels kAvx512VnniQb32Kernels = {"avx512vnni", avx::Gemm<kQ8_0BlockBytes, avx::Q8_0>,
                                                   avx::Gemm<kQ4_0BlockBytes, avx::Q4_0>, /*packed_rows=*/8};
}  // namespace mikv
