// A view of one tensor inside a loaded model: where its bytes are and how they are encoded.
// Views point into the mapped file; they are valid while the ModelFile lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mikv {

enum class WeightType : uint8_t { F32 = 0, F16 = 1, Int8PerChannel = 2, Int4Group = 3, Q8_0 = 4, Q4_0 = 5 };

const char* WeightTypeName(WeightType type);

struct TensorView {
  std::string name;
  WeightType type = WeightType::F32;
  int rank = 0;
  uint64_t shape[4] = {1, 1, 1, 1};  // outermost first
  const uint8_t* data = nullptr;
  uint64_t data_size = 0;
  const float* scales = nullptr;     // Int8PerChannel: [rows]; Int4Group: [rows][cols / group]
  uint64_t scale_count = 0;
  uint32_t group_size = 0;

  uint64_t rows() const { return rank >= 2 ? shape[0] : 1; }
  uint64_t cols() const { return shape[rank - 1]; }
  uint64_t elements() const;
};

// Bytes the data part of a tensor of this type and shape occupies; 0 when the shape is invalid for
// the type (odd columns for int4, group not dividing the columns) or the size overflows 64 bits.
uint64_t WeightDataBytes(WeightType type, uint64_t rows, uint64_t cols, uint32_t group_size);
// Number of f32 scales a quantized tensor carries (0 for float types).
uint64_t WeightScaleCount(WeightType type, uint64_t rows, uint64_t cols, uint32_t group_size);

// Decode row r of a 2-D tensor into out[cols] (embedding lookups, tests, converters).
void DequantizeRow(const TensorView& t, uint64_t r, float* out);

}  // namespace mikv
