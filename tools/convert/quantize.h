// Weight quantizers for the converter (the encodings XNNPACK's fully-connected operators consume).
#pragma once

#include <cstdint>
#include <vector>

namespace mikv::convert {

// Symmetric int8, one scale per row: q = round(x / s), s = max|x_row| / 127.
void QuantizeInt8PerRow(const float* x, uint64_t rows, uint64_t cols, std::vector<uint8_t>* data,
                        std::vector<float>* scales);
// Int4 with zero point 8 in groups of `group` columns: codes 0..15, x ≈ s * (q - 8), s > 0.
void QuantizeInt4Group(const float* v, uint32_t n, uint8_t* codes, float* scale);
void QuantizeInt4Groups(const float* x, uint64_t rows, uint64_t cols, uint32_t group, std::vector<uint8_t>* codes,
                        std::vector<float>* scales);
// Packs codes[rows * cols] (one per byte) two per byte, even column in the low nibble.
std::vector<uint8_t> PackNibbles(const std::vector<uint8_t>& codes);

}  // namespace mikv::convert
