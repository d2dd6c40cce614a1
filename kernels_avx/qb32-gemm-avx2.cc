// qb32-gemm (Q8_0 and Q4_0 weights × Q8_0 activations -> f32), AVX2 + FMA + F16C.
//
// Per block pair: |w| · sign(x, w) with maddubs (unsigned × signed bytes -> pairs of int16; |w| ≤ 128 and
// |x| ≤ 127 cannot saturate), pairs to int32 with madd, to float, then one FMA with f32(d_w) · f32(d_x) into eight
// lane sums — llama.cpp's own sequence. A weight row is applied to four activation rows at a time so Q4_0's
// nibble unpacking and the weight loads are shared.
#include <immintrin.h>

#include "ggml_blocks.h"
#include "qb32_gemm.h"

namespace mikv::avx {

namespace {

inline float Half(const uint8_t* block) {
  uint16_t h;
  __builtin_memcpy(&h, block, 2);
  return _cvtsh_ss(h);
}

inline float Hsum(__m256 v) {
  const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
  return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

// 32 signed codes of a weight block, in element order.
inline __m256i WeightCodesQ8_0(const uint8_t* block) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
}

inline __m256i WeightCodesQ4_0(const uint8_t* block) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);  // high lane: elements 16..31
  return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
}

// Eight int32 partial sums of w · x over one block, as floats.
inline __m256 BlockDot(__m256i w_abs, __m256i w, const uint8_t* xblock) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xblock + 2));
  const __m256i pairs = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// One weight row against one activation row.
template <size_t W_BLOCK_BYTES, __m256i (*CODES)(const uint8_t*)>
inline float RowDot(const uint8_t* wrow, const uint8_t* x, size_t blocks) {
  __m256 acc = _mm256_setzero_ps();
  for (size_t k = 0; k < blocks; ++k) {
    const uint8_t* wb = wrow + k * W_BLOCK_BYTES;
    const __m256i w = CODES(wb);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(Half(wb) * Half(x + k * kQ8_0BlockBytes)),
                          BlockDot(_mm256_sign_epi8(w, w), w, x + k * kQ8_0BlockBytes), acc);
  }
  return Hsum(acc);
}

// Four weight rows against one activation row (decode): four independent FMA chains instead of one, and the
// activation block loaded once for all four.
template <size_t W_BLOCK_BYTES, __m256i (*CODES)(const uint8_t*)>
inline void RowDot4(const uint8_t* w0, size_t w_row_bytes, const uint8_t* x, size_t blocks, float* out) {
  const uint8_t* w1 = w0 + w_row_bytes;
  const uint8_t* w2 = w1 + w_row_bytes;
  const uint8_t* w3 = w2 + w_row_bytes;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (size_t k = 0; k < blocks; ++k) {
    const uint8_t* xb = x + k * kQ8_0BlockBytes;
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 2));
    const float dx = Half(xb);
    const size_t wo = k * W_BLOCK_BYTES;
    auto step = [&](const uint8_t* wb, __m256 acc) {
      const __m256i w = CODES(wb);
      const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
      const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
      return _mm256_fmadd_ps(_mm256_set1_ps(Half(wb) * dx), f, acc);
    };
    acc0 = step(w0 + wo, acc0);
    acc1 = step(w1 + wo, acc1);
    acc2 = step(w2 + wo, acc2);
    acc3 = step(w3 + wo, acc3);
  }
  out[0] = Hsum(acc0);
  out[1] = Hsum(acc1);
  out[2] = Hsum(acc2);
  out[3] = Hsum(acc3);
}

template <size_t W_BLOCK_BYTES, __m256i (*CODES)(const uint8_t*)>
void Gemm(const Qb32GemmArgs& a, size_t o_begin, size_t o_end) {
  if (a.batch < 4) {  // decode: tiles of four weight rows per activation row
    for (size_t b = 0; b < a.batch; ++b) {
      const uint8_t* x = a.x + b * a.x_row_bytes;
      float* y = a.y + b * a.y_stride;
      size_t o = o_begin;
      for (; o + 4 <= o_end; o += 4) RowDot4<W_BLOCK_BYTES, CODES>(a.w + o * a.w_row_bytes, a.w_row_bytes, x, a.blocks, y + o);
      for (; o < o_end; ++o) y[o] = RowDot<W_BLOCK_BYTES, CODES>(a.w + o * a.w_row_bytes, x, a.blocks);
    }
    return;
  }
  for (size_t o = o_begin; o < o_end; ++o) {
    const uint8_t* wrow = a.w + o * a.w_row_bytes;
    size_t b = 0;
    for (; b + 4 <= a.batch; b += 4) {
      const uint8_t* x0 = a.x + b * a.x_row_bytes;
      const uint8_t* x1 = x0 + a.x_row_bytes;
      const uint8_t* x2 = x1 + a.x_row_bytes;
      const uint8_t* x3 = x2 + a.x_row_bytes;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
      for (size_t k = 0; k < a.blocks; ++k) {
        const uint8_t* wb = wrow + k * W_BLOCK_BYTES;
        const size_t xo = k * kQ8_0BlockBytes;
        const __m256i w = CODES(wb);
        const __m256i w_abs = _mm256_sign_epi8(w, w);
        const float dw = Half(wb);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(dw * Half(x0 + xo)), BlockDot(w_abs, w, x0 + xo), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(dw * Half(x1 + xo)), BlockDot(w_abs, w, x1 + xo), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_set1_ps(dw * Half(x2 + xo)), BlockDot(w_abs, w, x2 + xo), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_set1_ps(dw * Half(x3 + xo)), BlockDot(w_abs, w, x3 + xo), acc3);
      }
      a.y[(b + 0) * a.y_stride + o] = Hsum(acc0);
      a.y[(b + 1) * a.y_stride + o] = Hsum(acc1);
      a.y[(b + 2) * a.y_stride + o] = Hsum(acc2);
      a.y[(b + 3) * a.y_stride + o] = Hsum(acc3);
    }
    for (; b < a.batch; ++b) a.y[b * a.y_stride + o] = RowDot<W_BLOCK_BYTES, CODES>(wrow, a.x + b * a.x_row_bytes, a.blocks);
  }
}

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const Qb32Kernels kAvx2Qb32Kernels = {"avx2", avx::Gemm<kQ8_0BlockBytes, avx::WeightCodesQ8_0>,
                                             avx::Gemm<kQ4_0BlockBytes, avx::WeightCodesQ4_0>};
}  // namespace mikv
