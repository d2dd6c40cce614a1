#include "quantize.h"

#include <algorithm>
#include <cmath>

namespace mikv::convert {

void QuantizeInt8PerRow(const float* x, uint64_t rows, uint64_t cols, std::vector<uint8_t>* data,
                        std::vector<float>* scales) {
  data->resize(rows * cols);
  scales->resize(rows);
  for (uint64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    float amax = 0.0f;
    for (uint64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(row[c]));
    const float s = amax / 127.0f;
    const float inv = s > 0 ? 1.0f / s : 0.0f;
    (*scales)[r] = s;
    for (uint64_t c = 0; c < cols; ++c) {
      const int q = (int)std::lround(row[c] * inv);
      (*data)[r * cols + c] = (uint8_t)(int8_t)std::clamp(q, -127, 127);
    }
  }
}

void QuantizeInt4Groups(const float* x, uint64_t rows, uint64_t cols, uint32_t group, std::vector<uint8_t>* codes,
                        std::vector<float>* scales) {
  const uint64_t groups = cols / group;
  codes->resize(rows * cols);
  scales->resize(rows * groups);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t g = 0; g < groups; ++g) {
      const float* v = x + r * cols + g * group;
      float max_signed = 0.0f;  // the value of largest magnitude, with its sign
      for (uint32_t i = 0; i < group; ++i)
        if (std::fabs(v[i]) > std::fabs(max_signed)) max_signed = v[i];
      const float s = max_signed / -8.0f;
      const float inv = s != 0.0f ? 1.0f / s : 0.0f;
      (*scales)[r * groups + g] = s;
      for (uint32_t i = 0; i < group; ++i) {
        const int q = (int)std::floor(v[i] * inv + 8.5f);
        (*codes)[r * cols + g * group + i] = (uint8_t)std::clamp(q, 0, 15);
      }
    }
  }
}

std::vector<uint8_t> PackNibbles(const std::vector<uint8_t>& codes) {
  std::vector<uint8_t> packed(codes.size() / 2);
  for (size_t i = 0; i < packed.size(); ++i) packed[i] = (uint8_t)(codes[2 * i] | (codes[2 * i + 1] << 4));
  return packed;
}

}  // namespace mikv::convert
