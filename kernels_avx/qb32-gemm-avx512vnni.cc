// qb32-gemm, AVX-512 VNNI: the integer block sums with vpdpbusd, which adds four unsigned × signed byte products into
// each int32 lane with no int16 step to saturate, on the packed weights of qb32-gemm-avx.h, 512 bits at a time; the
// eight rows' sums then go on in qb32-gemm-avx.h's 256-bit float code, the same for every x86 variant.
#include "qb32-gemm-avx.h"

namespace mikv::avx {
namespace {

// Sums(codes, x, x_sums, sums): as in qb32-gemm-avx2.cc, on 512-bit vectors. A packed group-block's code vectors
// are read 64 bytes at a time, [vector c | vector c + 1], and the activation block's 32 code bytes in one load; one
// vpermd spreads its dwords c and c + 1 over the two halves, and a vpdpbusd adds both halves' products into their
// own lanes. The two halves of a row's partial sums are added at the end: the same integers as the 256-bit chain,
// in about half the instructions (the activation dwords are no longer broadcast one by one). A one-thread 2048 x 2048
// gemv on the Zen 4 here, against the XNNPACK rows of the same runs: Q4_0 +20%, Q8_0 +8%; with four activation rows
// Q4_0 level, Q8_0 +8% (docs/bench/qb32-avx512-session18.txt).

// [dword c of the activation block in lanes 0-7 | dword c + 1 in lanes 8-15], from x = the block's codes in both
// halves. (The maskz forms with all lanes on are the plain instructions; GCC 12 warns on the plain intrinsics'
// undefined upper lanes here.)
inline __m512i PairOf(const __m512i& x, int c) {
  return _mm512_maskz_permutexvar_epi32(
      0xffff, _mm512_setr_epi32(c, c, c, c, c, c, c, c, c + 1, c + 1, c + 1, c + 1, c + 1, c + 1, c + 1, c + 1), x);
}
inline __m512i ActivationCodes(const uint8_t* xblock) {
  return _mm512_maskz_broadcast_i64x4(0xff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xblock + 2)));
}
inline __m256i AddHalves(__m256i start, __m512i acc) {
  return _mm256_add_epi32(start, _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(0xf, acc, 0),
                                                  _mm512_maskz_extracti64x4_epi64(0xf, acc, 1)));
}

// Q4_0: nibbles unsigned (0..15), low ones against dwords c, c + 1 and high ones against c + 4, c + 5; −8 · Σx.
template <size_t NB>
struct Q4_0 {
  static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t* x_sums, __m256i* sums) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    __m512i lo[2], hi[2];
    for (size_t p = 0; p < 2; ++p) {
      const __m512i v = _mm512_loadu_si512(codes + 64 * p);
      lo[p] = _mm512_and_si512(v, low);
      hi[p] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
    }
    for (size_t b = 0; b < NB; ++b) {
      const __m512i xv = ActivationCodes(x[b]);
      __m512i acc = _mm512_setzero_si512();
      for (int p = 0; p < 2; ++p) {
        acc = _mm512_dpbusd_epi32(acc, lo[p], PairOf(xv, 2 * p));
        acc = _mm512_dpbusd_epi32(acc, hi[p], PairOf(xv, 2 * p + 4));
      }
      sums[b] = AddHalves(_mm256_set1_epi32(-8 * x_sums[b]), acc);
    }
  }
};

// Q8_0: AVX-512 has no vpsignb, so the signed codes are made unsigned by flipping their top bit (w + 128) and
// 128 · Σx is taken off: Σ (w + 128)·x − 128·Σx = Σ w·x, exactly (|Σ (w + 128)·x| ≤ 32 · 255 · 127 per block).
template <size_t NB>
struct Q8_0 {
  static void Sums(const uint8_t* codes, const uint8_t* const* x, const int32_t* x_sums, __m256i* sums) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i w[4];
    for (size_t p = 0; p < 4; ++p) w[p] = _mm512_xor_si512(_mm512_loadu_si512(codes + 64 * p), flip);
    for (size_t b = 0; b < NB; ++b) {
      const __m512i xv = ActivationCodes(x[b]);
      __m512i acc = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) acc = _mm512_dpbusd_epi32(acc, w[p], PairOf(xv, 2 * p));
      sums[b] = AddHalves(_mm256_set1_epi32(-128 * x_sums[b]), acc);
    }
  }
};

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const Qb32Kernels kAvx512VnniQb32Kernels = {"avx512vnni", avx::Gemm<kQ8_0BlockBytes, avx::Q8_0>,
                                                   avx::Gemm<kQ4_0BlockBytes, avx::Q4_0>, /*packed_rows=*/8,
                                                   avx::QuantizeActivations};
}  // namespace mikv
