// The scalar reference of the KV attention kernels: the definition every SIMD variant is tested against.
#include <cmath>

#include "fp16.h"
#include "kv_kernels.h"

namespace mikv {

namespace {

// Lanes of 8, summed pairwise at the end: the order the SIMD variants keep (up to FMA rounding).
float DotHalf(const float* q, const uint16_t* h, int d) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < d; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += q[i + j] * HalfToFloat(h[i + j]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

void ScoresF16(const KvRowFormat& f, const float* q, const float*, const uint8_t* rows, size_t n, float scale,
               float* out) {
  for (size_t t = 0; t < n; ++t)
    out[t] = DotHalf(q, reinterpret_cast<const uint16_t*>(rows + t * f.stride), f.head_dim) * scale;
}

void ScoresQuantized(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                     float scale, float* out) {
  const int bits = KvPrecisionBits(f.precision), ng = f.head_dim / f.group;
  const size_t code_bytes = KvCodeBytes(f.head_dim, bits);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* scales = reinterpret_cast<const uint16_t*>(row + code_bytes);
    float total = 0.0f;
    for (int g = 0; g < ng; ++g) {
      float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int i = g * f.group; i < (g + 1) * f.group; i += 8)
        for (int j = 0; j < 8; ++j) lane[j] += q[i + j] * (float)KvCodeAt(row, i + j, bits);
      const float qc = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
      total += HalfToFloat(scales[g]) * qc + HalfToFloat(scales[ng + g]) * qsum[g];
    }
    out[t] = total * scale;
  }
}

void ValuesF16(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  for (size_t t = 0; t < n; ++t) {
    if (p[t] == 0.0f) continue;
    const uint16_t* h = reinterpret_cast<const uint16_t*>(rows + t * f.stride);
    for (int i = 0; i < f.head_dim; ++i) acc[i] += p[t] * HalfToFloat(h[i]);
  }
}

void ValuesQuantized(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int bits = KvPrecisionBits(f.precision), ng = f.head_dim / f.group;
  const size_t code_bytes = KvCodeBytes(f.head_dim, bits);
  for (size_t t = 0; t < n; ++t) {
    if (p[t] == 0.0f) continue;
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* scales = reinterpret_cast<const uint16_t*>(row + code_bytes);
    for (int g = 0; g < ng; ++g) {
      const float ps = p[t] * HalfToFloat(scales[g]), pz = p[t] * HalfToFloat(scales[ng + g]);
      for (int i = g * f.group; i < (g + 1) * f.group; ++i) acc[i] += ps * (float)KvCodeAt(row, i, bits) + pz;
    }
  }
}

}  // namespace

void FwhtScalar(float* x, int d) {
  for (int h = 1; h < d; h *= 2)
    for (int i = 0; i < d; i += 2 * h)
      for (int j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

const KvKernels kScalarKvKernels = {
    "scalar",
    {ScoresF16, ScoresQuantized, ScoresQuantized, ScoresQuantized, ScoresQuantized},
    {ValuesF16, ValuesQuantized, ValuesQuantized, ValuesQuantized, ValuesQuantized},
    FwhtScalar,
};

void KvQuerySums(const float* q, int head_dim, int group, float* qsum) {
  for (int g = 0; g < head_dim / group; ++g) {
    float s = 0.0f;
    for (int i = g * group; i < (g + 1) * group; ++i) s += q[i];
    qsum[g] = s;
  }
}

void SoftmaxInPlace(float* s, size_t n) {
  float max_score = -INFINITY;
  for (size_t i = 0; i < n; ++i) max_score = s[i] > max_score ? s[i] : max_score;
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    s[i] = s[i] == -INFINITY ? 0.0f : std::exp(s[i] - max_score);
    sum += s[i];
  }
  const float inv = 1.0f / sum;
  for (size_t i = 0; i < n; ++i) s[i] *= inv;
}

}  // namespace mikv
