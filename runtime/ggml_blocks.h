// ggml's Q8_0 and Q4_0 blocks, bit for bit, and the arithmetic llama.cpp does with them.
//
//   Q8_0 block (34 bytes): f16 scale d, then 32 int8 codes q[j];              value_j = d · q[j]
//   Q4_0 block (18 bytes): f16 scale d, then 16 bytes; byte j holds element j in its low nibble and
//                          element j + 16 in its high nibble;                 value_j = d · (nibble_j − 8)
//
// A matrix row of `cols` columns is cols / 32 blocks back to back. GGUF files carry weights this way, and
// llama.cpp multiplies them with activations it first quantizes to Q8_0 blocks as well, so a dot product is
//   Σ_blocks f32(d_w) · f32(d_x) · Σ_j w_j · x_j       (the inner sum in integers)
// mikv keeps such weights as they are (no re-quantization) and computes the same sums (qb32_gemm.h), which
// is what makes a Q4_0/Q8_0 GGUF give llama.cpp's tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fp16.h"

namespace mikv {

inline constexpr size_t kQBlock = 32;           // values per block
inline constexpr size_t kQ8_0BlockBytes = 34;   // f16 + 32 int8
inline constexpr size_t kQ4_0BlockBytes = 18;   // f16 + 16 bytes of nibbles

// The f16 scale every block starts with, as a float.
inline float GgmlBlockScale(const uint8_t* block) {
  uint16_t h;
  std::memcpy(&h, block, 2);
  return HalfToFloat(h);
}

// Activations: x[n] (n a multiple of 32) -> n / 32 Q8_0 blocks, as llama.cpp's x86 and ARM code quantizes the
// input of a Q8_0/Q4_0 matrix product: d = amax / 127 stored as f16, codes round-half-even(x · 127 / amax).
// sums (n / 32 of them, or nullptr): each block's Σ codes, which the packed Q4_0 kernels need (qb32_gemm.h).
void QuantizeActivationsQ8_0(const float* x, size_t n, uint8_t* blocks, int32_t* sums = nullptr);

// Weights, as llama.cpp's quantize tool writes them (ggml's reference quantizers):
//   Q8_0: d = amax / 127, codes round-half-away(x / d);
//   Q4_0: d = (the value of largest magnitude) / −8, codes min(15, trunc(x / d + 8.5)).
void QuantizeRowQ8_0(const float* x, size_t n, uint8_t* blocks);
void QuantizeRowQ4_0(const float* x, size_t n, uint8_t* blocks);

// The values a row of blocks stands for.
void DequantizeRowQ8_0(const uint8_t* blocks, size_t n, float* out);
void DequantizeRowQ4_0(const uint8_t* blocks, size_t n, float* out);

}  // namespace mikv
