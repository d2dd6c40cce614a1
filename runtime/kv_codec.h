// How one token's key or value vector (head_dim floats) is stored in a KV region: FP16, or INT8/INT4/INT3/INT2
// with asymmetric per-group min/max quantization (scale and zero in FP16, groups of `group` channels).
//
// Range: INT8 groups, and every group of a codec without `fit`, take [min, max]. With `fit` (rotated tiers), at 4
// bits and below, min/max wastes levels on the tails (a rotated vector's
// channels are near Gaussian, and four INT2 levels spread over ±2.4σ leave twice the squared error of the best
// four), so KvFitGroup searches clipped ranges, each refitted by least squares, and keeps the one with the least
// squared error (never more than min/max's). Values outside the range take the end code.
//
// Layout of one quantized vector of d channels, b bits, groups of g:
//   [codes: d·b/8 bytes, channel i at bit i·b, least significant bit first][scale: d/g × fp16][zero: d/g × fp16]
// x ≈ code·scale + zero. A dot product therefore needs Σ q·code per group plus one Σ q per group for the zeros:
// q·x = Σ_g (scale_g · Σ_i q_i code_i + zero_g · Σ_i q_i).
//
// These are the scalar references: the SIMD kernels (kernels_avx/, kernels_neon/) must equal them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mikv {

// The largest head dimension a model may declare (models/llama.cc checks it): the kernels' stack buffers hold one.
constexpr int kMaxHeadDim = 1024;

enum class KvPrecision : uint8_t { F16 = 0, Int8 = 1, Int4 = 2, Int3 = 3, Int2 = 4 };

const char* KvPrecisionName(KvPrecision p);            // "f16", "int8", ...
bool ParseKvPrecision(const char* name, KvPrecision* p);  // inverse of KvPrecisionName
int KvPrecisionBits(KvPrecision p);                     // 16, 8, 4, 3, 2

// Code of channel i in a packed code array of `bits` bits per channel (the layout above). Codes of 2, 4 and 8 bits
// never straddle a byte; 3-bit ones may, so two bytes are read then (d·3/8 is whole, and the second byte is only
// read when the code straddles, which never happens for the last code).
inline uint32_t KvCodeAt(const uint8_t* codes, int i, int bits) {
  if (bits == 8) return codes[i];
  const size_t bit = (size_t)i * bits;
  uint32_t word = codes[bit >> 3];
  if ((bit & 7) + bits > 8) word |= (uint32_t)codes[(bit >> 3) + 1] << 8;
  return (word >> (bit & 7)) & ((1u << bits) - 1);
}

// Bytes of a row's packed codes, padded to an even count so the FP16 scales and zeros after them are 2-byte
// aligned (INT3 at head_dim 8 packs into 3 bytes). Every kernel finds the scales here.
inline size_t KvCodeBytes(int d, int bits) { return ((size_t)d * bits / 8 + 1) & ~(size_t)1; }

// The scale and zero (FP16, as stored) of one group of n values whose min and max are lo and hi — the rule above.
// Every encoder (the reference and the SIMD ones) calls this one function, so all store the same bytes.
// Without `fit` (vectors that were not rotated: clipping an outlier channel of a key costs attention more than its
// squared error says), min/max at every precision.
void KvFitGroup(const float* x, int n, int bits, float lo, float hi, bool fit, uint16_t* scale, uint16_t* zero);

class KvCodec {
 public:
  KvCodec() = default;
  // `fit`: ranges fitted by KvFitGroup (the cache asks for it on rotated tiers), else min/max.
  KvCodec(KvPrecision p, int head_dim, int group, bool fit = false)
      : p_(p), d_(head_dim), g_(group), bits_(KvPrecisionBits(p)), fit_(fit) {}

  KvPrecision precision() const { return p_; }
  bool quantized() const { return p_ != KvPrecision::F16; }
  bool fit() const { return fit_; }
  // Bytes of one stored vector, scales and zeros included.
  size_t bytes() const;

  void Encode(const float* x, uint8_t* dst) const;
  void Decode(const uint8_t* src, float* x) const;
  // (Dot products and weighted sums over stored vectors are the KV kernels': kv_kernels.h.)

  // The largest |x - x̂| Encode may leave for a channel `i` of src whose value lies inside its group's coded range
  // [zero, zero + qmax·scale] (for tests and the docs): half a quantization step, plus what rounding the zero to FP16
  // moved. Values outside the range (clipped by KvFitGroup) decode to the range's end.
  float ErrorBound(const uint8_t* src, int i) const;

 private:
  const uint16_t* Scales(const uint8_t* src) const { return reinterpret_cast<const uint16_t*>(src + CodeBytes()); }
  const uint16_t* Zeros(const uint8_t* src) const { return Scales(src) + d_ / g_; }
  size_t CodeBytes() const { return KvCodeBytes(d_, bits_); }

  KvPrecision p_ = KvPrecision::F16;
  int d_ = 0, g_ = 0, bits_ = 16;
  bool fit_ = false;
};

}  // namespace mikv
