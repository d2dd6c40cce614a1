// Q8_0/Q4_0 weights packed eight rows at a time for the SIMD qb32 kernels (the layout: qb32_gemm.h).
#include <cstring>

#include "qb32_gemm.h"

namespace mikv {

namespace {
constexpr size_t kRows = 8;
constexpr size_t kScaleBytes = 2;
}  // namespace

size_t Qb32PackedBytes(size_t rows, size_t blocks, size_t w_block_bytes) {
  return (rows + kRows - 1) / kRows * blocks * kRows * w_block_bytes;
}

void PackQb32Rows8(const uint8_t* w, size_t w_row_bytes, size_t rows, size_t blocks, size_t w_block_bytes,
                   uint8_t* out) {
  const size_t code_bytes = w_block_bytes - kScaleBytes;
  for (size_t g = 0; g < rows; g += kRows)
    for (size_t k = 0; k < blocks; ++k) {
      uint8_t* scales = out;
      uint8_t* codes = out + kRows * kScaleBytes;
      std::memset(out, 0, kRows * w_block_bytes);  // rows past the last: scale 0, codes 0
      for (size_t r = 0; r < kRows && g + r < rows; ++r) {
        const uint8_t* block = w + (g + r) * w_row_bytes + k * w_block_bytes;
        std::memcpy(scales + r * kScaleBytes, block, kScaleBytes);
        for (size_t c = 0; c < code_bytes / 4; ++c)  // dword r of vector c: code bytes 4c..4c+3 of row r
          std::memcpy(codes + c * kRows * 4 + r * 4, block + kScaleBytes + c * 4, 4);
      }
      out += kRows * w_block_bytes;
    }
}

}  // namespace mikv
