#include "weights.h"

#include <limits>

#include "fp16.h"
#include "ggml_blocks.h"

namespace mikv {

const char* WeightTypeName(WeightType type) {
  switch (type) {
    case WeightType::F32: return "f32";
    case WeightType::F16: return "f16";
    case WeightType::Int8PerChannel: return "int8";
    case WeightType::Int4Group: return "int4";
    case WeightType::Q8_0: return "q8_0";
    case WeightType::Q4_0: return "q4_0";
  }
  return "unknown";
}

uint64_t TensorView::elements() const {
  uint64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= shape[i];
  return n;
}

static bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
  *out = a * b;
  return false;
}

uint64_t WeightDataBytes(WeightType type, uint64_t rows, uint64_t cols, uint32_t group_size) {
  uint64_t n;
  if (MulOverflows(rows, cols, &n)) return 0;
  switch (type) {
    case WeightType::F32: return MulOverflows(n, 4, &n) ? 0 : n;
    case WeightType::F16: return MulOverflows(n, 2, &n) ? 0 : n;
    case WeightType::Int8PerChannel: return n;
    case WeightType::Int4Group:
      if (cols % 2 != 0 || group_size == 0 || cols % group_size != 0) return 0;
      return n / 2;
    case WeightType::Q8_0:
      return cols % kQBlock != 0 ? 0 : n / kQBlock * kQ8_0BlockBytes;
    case WeightType::Q4_0:
      return cols % kQBlock != 0 ? 0 : n / kQBlock * kQ4_0BlockBytes;
  }
  return 0;
}

uint64_t WeightScaleCount(WeightType type, uint64_t rows, uint64_t cols, uint32_t group_size) {
  switch (type) {
    case WeightType::Int8PerChannel: return rows;
    case WeightType::Int4Group: return group_size ? rows * (cols / group_size) : 0;
    default: return 0;
  }
}

void DequantizeRow(const TensorView& t, uint64_t r, float* out) {
  const uint64_t cols = t.cols();
  switch (t.type) {
    case WeightType::F32: {
      const float* src = reinterpret_cast<const float*>(t.data) + r * cols;
      for (uint64_t c = 0; c < cols; ++c) out[c] = src[c];
      break;
    }
    case WeightType::F16: {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(t.data) + r * cols;
      for (uint64_t c = 0; c < cols; ++c) out[c] = HalfToFloat(src[c]);
      break;
    }
    case WeightType::Int8PerChannel: {
      const int8_t* src = reinterpret_cast<const int8_t*>(t.data) + r * cols;
      const float s = t.scales[r];
      for (uint64_t c = 0; c < cols; ++c) out[c] = s * src[c];
      break;
    }
    case WeightType::Int4Group: {
      const uint8_t* src = t.data + r * cols / 2;
      const uint64_t groups = cols / t.group_size;
      const float* scales = t.scales + r * groups;
      for (uint64_t c = 0; c < cols; ++c) {
        const uint8_t byte = src[c / 2];
        const int q = (c % 2 == 0) ? (byte & 0xf) : (byte >> 4);
        out[c] = scales[c / t.group_size] * (float)(q - 8);
      }
      break;
    }
    case WeightType::Q8_0:
      DequantizeRowQ8_0(t.data + r * (cols / kQBlock) * kQ8_0BlockBytes, cols, out);
      break;
    case WeightType::Q4_0:
      DequantizeRowQ4_0(t.data + r * (cols / kQBlock) * kQ4_0BlockBytes, cols, out);
      break;
  }
}

}  // namespace mikv
