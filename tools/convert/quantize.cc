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
    // XNNPACK needs a positive, normal scale: an all-zero row gets 1.
    const float s = amax > 1e-30f ? amax / 127.0f : 1.0f;
    const float inv = 1.0f / s;
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
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t g = 0; g < groups; ++g)
      QuantizeInt4Group(x + r * cols + g * group, group, codes->data() + r * cols + g * group, &(*scales)[r * groups + g]);
}

void QuantizeInt4Group(const float* v, uint32_t n, uint8_t* codes, float* scale) {
  float max_signed = 0.0f;  // the value of largest magnitude, with its sign
  for (uint32_t i = 0; i < n; ++i)
    if (std::fabs(v[i]) > std::fabs(max_signed)) max_signed = v[i];
  // Codes 0..15 stand for -8..7: a negative extreme maps to -8, a positive one to +7. The scale stays
  // positive and normal, as XNNPACK requires (an all-zero group gets scale 1 and codes 8).
  float s = max_signed < 0 ? -max_signed / 8.0f : max_signed / 7.0f;
  if (!(s > 1e-30f)) s = 1.0f;
  const float inv = 1.0f / s;
  for (uint32_t i = 0; i < n; ++i) codes[i] = (uint8_t)std::clamp((int)std::lround(v[i] * inv) + 8, 0, 15);
  *scale = s;
}

std::vector<uint8_t> PackNibbles(const std::vector<uint8_t>& codes) {
  std::vector<uint8_t> packed(codes.size() / 2);
  for (size_t i = 0; i < packed.size(); ++i) packed[i] = (uint8_t)(codes[2 * i] | (codes[2 * i + 1] << 4));
  return packed;
}

}  // namespace mikv::convert
