// qb32-gemm (Q8_0 and Q4_0 weights × Q8_0 activations -> f32), AVX-512 VNNI on 256-bit vectors (VL), on packed
// weights (qb32-gemm-avx.h). vpdpbusd multiplies unsigned by signed bytes and adds four products into each int32
// lane, with no int16 step to saturate, so a block is one chain of vpdpbusd per activation row.
//
// Q4_0: the chain starts at −8 · Σx of the activation block and takes the nibbles unsigned:
// Σ (n − 8)·x = Σ n·x − 8·Σx. Q8_0: |w| · sign(x, w).
#include "qb32-gemm-avx.h"

namespace mikv::avx {
namespace {

// Sums(codes, x, x_sums, sums): as in qb32-gemm-avx2.cc.
template <size_t NB>
struct Q4_0 {
  static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t* x_sums, __m256i* sums) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (size_t b = 0; b < NB; ++b) sums[b] = _mm256_set1_epi32(-8 * x_sums[b]);
#pragma GCC unroll 4
    for (size_t c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
      const __m256i lo = _mm256_and_si256(v, low);                         // elements 4c..4c+3
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);  // elements 4c+16..4c+19
      for (size_t b = 0; b < NB; ++b) {
        const uint8_t* xc = x[b] + 2 + 4 * c;
        sums[b] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(sums[b], lo, Broadcast4(xc)), hi, Broadcast4(xc + 16));
      }
    }
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
      for (size_t b = 0; b < NB; ++b)
        sums[b] = _mm256_dpbusd_epi32(sums[b], w_abs, _mm256_sign_epi8(Broadcast4(x[b] + 2 + 4 * c), w));
    }
  }
};

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const Qb32Kernels kAvx512VnniQb32Kernels = {"avx512vnni", avx::Gemm<kQ8_0BlockBytes, avx::Q8_0>,
                                                   avx::Gemm<kQ4_0BlockBytes, avx::Q4_0>, /*packed_rows=*/8};
}  // namespace mikv
