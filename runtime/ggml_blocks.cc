#include "ggml_blocks.h"

#include <cmath>
#include <cstring>
#include <algorithm>

#include "fp16.h"

namespace mikv {

namespace {

void PutScale(uint8_t* block, float d) {
  const uint16_t h = FloatToHalf(d);
  std::memcpy(block, &h, 2);
}

}  // namespace

void QuantizeActivationsQ8_0(const float* x, size_t n, uint8_t* blocks, int32_t* sums) {
  for (size_t b = 0; b < n / kQBlock; ++b, x += kQBlock, blocks += kQ8_0BlockBytes) {
    float amax = 0.0f;
    for (size_t j = 0; j < kQBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    PutScale(blocks, amax / 127.0f);
    // llama.cpp multiplies by 127 / amax (not by 1 / d) and rounds to nearest even (_mm256_round_ps,
    // vcvtnq_s32_f32); the same here, so codes match theirs exactly.
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int8_t* q = reinterpret_cast<int8_t*>(blocks + 2);
    // The clamp only matters for non-finite input (NaN -> -127), which must not be undefined behaviour.
    for (size_t j = 0; j < kQBlock; ++j) q[j] = (int8_t)std::nearbyint(std::min(127.0f, std::max(-127.0f, x[j] * id)));
    if (sums) {
      int32_t s = 0;
      for (size_t j = 0; j < kQBlock; ++j) s += q[j];
      sums[b] = s;
    }
  }
}

void QuantizeRowQ8_0(const float* x, size_t n, uint8_t* blocks) {
  for (size_t b = 0; b < n / kQBlock; ++b, x += kQBlock, blocks += kQ8_0BlockBytes) {
    float amax = 0.0f;
    for (size_t j = 0; j < kQBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    PutScale(blocks, d);
    int8_t* q = reinterpret_cast<int8_t*>(blocks + 2);
    for (size_t j = 0; j < kQBlock; ++j) q[j] = (int8_t)std::round(x[j] * id);
  }
}

void QuantizeRowQ4_0(const float* x, size_t n, uint8_t* blocks) {
  for (size_t b = 0; b < n / kQBlock; ++b, x += kQBlock, blocks += kQ4_0BlockBytes) {
    float amax = 0.0f, max = 0.0f;
    for (size_t j = 0; j < kQBlock; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    PutScale(blocks, d);
    for (size_t j = 0; j < kQBlock / 2; ++j) {
      const uint8_t lo = (uint8_t)std::min(15, (int)(int8_t)(x[j] * id + 8.5f));
      const uint8_t hi = (uint8_t)std::min(15, (int)(int8_t)(x[j + 16] * id + 8.5f));
      blocks[2 + j] = (uint8_t)(lo | (hi << 4));
    }
  }
}

void DequantizeRowQ8_0(const uint8_t* blocks, size_t n, float* out) {
  for (size_t b = 0; b < n / kQBlock; ++b, blocks += kQ8_0BlockBytes, out += kQBlock) {
    const float d = GgmlBlockScale(blocks);
    const int8_t* q = reinterpret_cast<const int8_t*>(blocks + 2);
    for (size_t j = 0; j < kQBlock; ++j) out[j] = d * (float)q[j];
  }
}

void DequantizeRowQ4_0(const uint8_t* blocks, size_t n, float* out) {
  for (size_t b = 0; b < n / kQBlock; ++b, blocks += kQ4_0BlockBytes, out += kQBlock) {
    const float d = GgmlBlockScale(blocks);
    for (size_t j = 0; j < kQBlock / 2; ++j) {
      out[j] = d * (float)((blocks[2 + j] & 0xf) - 8);
      out[j + 16] = d * (float)((blocks[2 + j] >> 4) - 8);
    }
  }
}

}  // namespace mikv
