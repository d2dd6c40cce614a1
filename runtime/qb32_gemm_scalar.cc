// The reference: one block at a time, the integer sum first, then one float multiply-add per block.
#include "ggml_blocks.h"
#include "qb32_gemm.h"

namespace mikv {

namespace {

// Σ_j w_j · x_j of one block pair, in integers.
int32_t BlockDotQ8_0(const uint8_t* w, const uint8_t* x) {
  const int8_t* a = reinterpret_cast<const int8_t*>(w + 2);
  const int8_t* b = reinterpret_cast<const int8_t*>(x + 2);
  int32_t s = 0;
  for (size_t j = 0; j < kQBlock; ++j) s += (int32_t)a[j] * b[j];
  return s;
}

int32_t BlockDotQ4_0(const uint8_t* w, const uint8_t* x) {
  const int8_t* b = reinterpret_cast<const int8_t*>(x + 2);
  int32_t s = 0;
  for (size_t j = 0; j < kQBlock / 2; ++j) {
    s += ((w[2 + j] & 0xf) - 8) * b[j];
    s += ((w[2 + j] >> 4) - 8) * b[j + 16];
  }
  return s;
}

template <size_t W_BLOCK_BYTES, int32_t (*BLOCK_DOT)(const uint8_t*, const uint8_t*)>
void Gemm(const Qb32GemmArgs& a, size_t o_begin, size_t o_end) {
  for (size_t o = o_begin; o < o_end; ++o) {
    const uint8_t* wrow = a.w + o * a.w_row_bytes;
    for (size_t b = 0; b < a.batch; ++b) {
      const uint8_t* xrow = a.x + b * a.x_row_bytes;
      float sum = 0.0f;
      for (size_t k = 0; k < a.blocks; ++k) {
        const uint8_t* wb = wrow + k * W_BLOCK_BYTES;
        const uint8_t* xb = xrow + k * kQ8_0BlockBytes;
        sum += GgmlBlockScale(wb) * GgmlBlockScale(xb) * (float)BLOCK_DOT(wb, xb);
      }
      a.y[b * a.y_stride + o] = sum;
    }
  }
}

}  // namespace

const Qb32Kernels kScalarQb32Kernels = {"scalar", Gemm<kQ8_0BlockBytes, BlockDotQ8_0>,
                                        Gemm<kQ4_0BlockBytes, BlockDotQ4_0>, /*packed_rows=*/0,
                                        QuantizeActivationsQ8_0};

}  // namespace mikv
