// The scalar reference of the KV attention kernels: the definition every SIMD variant is tested against.
#include <algorithm>
#include <cmath>

#include "fp16.h"
#include "kv_kernels.h"
#include "round_even.h"

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

// INT8/INT4/INT3/INT2 keys: the integer definition of kv_kernels.h (int32 sums: |q8·code| <= 127·255 per channel).
void ScoresInIntegers(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                      float scale, float* out) {
  const int bits = KvPrecisionBits(f.precision), ng = f.head_dim / f.group;
  const size_t code_bytes = KvCodeBytes(f.head_dim, bits);
  int8_t q8[kMaxHeadDim];
  float qs[kMaxHeadDim / 8];
  KvQuantizeQuery(q, f.head_dim, f.group, q8, qs);
  for (size_t t = 0; t < n; ++t) {
    const uint8_t* row = rows + t * f.stride;
    const uint16_t* scales = reinterpret_cast<const uint16_t*>(row + code_bytes);
    float total = 0.0f;
    for (int g = 0; g < ng; ++g) {
      int32_t dot = 0;
      for (int i = g * f.group; i < (g + 1) * f.group; ++i) dot += q8[i] * (int32_t)KvCodeAt(row, i, bits);
      total += HalfToFloat(scales[g]) * qs[g] * (float)dot + HalfToFloat(scales[ng + g]) * qsum[g];
    }
    out[t] = total * scale;
  }
}

void ValuesInIntegers(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int bits = KvPrecisionBits(f.precision), ng = f.head_dim / f.group;
  uint8_t w8[kKvValueBlockMax * (kMaxHeadDim / 8)];
  float ws[kMaxHeadDim / 8];
  const size_t block = KvValueBlockRows(f.precision);
  for (size_t b = 0; b < n; b += block) {
    const int nb = (int)std::min(block, n - b);
    KvQuantizeBlockWeights(f, p + b, rows + b * f.stride, nb, w8, ws);
    for (int i = 0; i < f.head_dim; ++i) {
      const int g = i / f.group;
      int32_t dot = 0;
      for (int t = 0; t < nb; ++t) dot += w8[t * ng + g] * (int32_t)KvCodeAt(rows + (b + t) * f.stride, i, bits);
      acc[i] += ws[g] * (float)dot;
    }
  }
  KvAddValueZeros(f, p, rows, n, acc);
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

void FwhtScalar(float* x, int d, int block) {
  for (int h = 1; h < block; h *= 2)
    for (int i = 0; i < d; i += 2 * h)
      for (int j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

const KvKernels kScalarKvKernels = {
    "scalar",
    {ScoresF16, ScoresInIntegers, ScoresInIntegers, ScoresInIntegers, ScoresInIntegers},
    {ValuesF16, ValuesQuantized, ValuesInIntegers, ValuesInIntegers, ValuesInIntegers},
    FwhtScalar,
    KvEncodeScalar,
    {KvScoresEachQuery<ScoresF16>, KvScoresEachQuery<ScoresInIntegers>, KvScoresEachQuery<ScoresInIntegers>,
     KvScoresEachQuery<ScoresInIntegers>, KvScoresEachQuery<ScoresInIntegers>},
    {KvValuesEachQuery<ValuesF16>, KvValuesEachQuery<ValuesQuantized>, KvValuesEachQuery<ValuesInIntegers>,
     KvValuesEachQuery<ValuesInIntegers>, KvValuesEachQuery<ValuesInIntegers>},
    KvQuantizeQuery,
    ExpSumInPlace,
    GreatestScore,
    AddImportance,
    LeastValue,
};

void KvEncodeScalar(const KvRowFormat& f, const float* x, uint8_t* dst) {
  KvCodec(f.precision, f.head_dim, f.group, f.fit).Encode(x, dst);
}

void KvQuantizeQuery(const float* q, int head_dim, int group, int8_t* q8, float* qs) {
  for (int g = 0; g < head_dim / group; ++g) {
    float amax = 0.0f;
    for (int i = g * group; i < (g + 1) * group; ++i) amax = std::max(amax, std::fabs(q[i]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    qs[g] = amax / 127.0f;
    // The clamp changes nothing for finite queries (|q·inv| <= 127); it keeps a NaN (to 127) or inf from an
    // overflowing model out of undefined float-to-int conversion. Written as comparisons, as RoundHalfEven is written
    // without nearbyint: std::fmin, std::fmax and std::nearbyint were three library calls per channel on baseline
    // x86-64, and the SIMD kernels call this once per query and call (3% of a 512-token decode step).
    for (int i = g * group; i < (g + 1) * group; ++i) {
      float v = q[i] * inv;
      v = v < 127.0f ? v : 127.0f;    // std::fmin(127, v), NaN included
      v = v > -127.0f ? v : -127.0f;  // std::fmax(-127, v)
      q8[i] = (int8_t)RoundHalfEven(v);
    }
  }
}

void KvAddValueZeros(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  const int ng = f.head_dim / f.group;
  const size_t code_bytes = KvCodeBytes(f.head_dim, KvPrecisionBits(f.precision));
  float zsum[kMaxHeadDim / 8] = {};
  for (size_t t = 0; t < n; ++t) {
    if (p[t] == 0.0f) continue;
    const uint16_t* zeros = reinterpret_cast<const uint16_t*>(rows + t * f.stride + code_bytes) + ng;
    for (int g = 0; g < ng; ++g) zsum[g] += p[t] * HalfToFloat(zeros[g]);
  }
  for (int i = 0; i < f.head_dim; ++i) acc[i] += zsum[i / f.group];
}

void KvQuantizeBlockWeights(const KvRowFormat& f, const float* p, const uint8_t* rows, int nb, uint8_t* w8, float* ws) {
  const int ng = f.head_dim / f.group;
  const size_t code_bytes = KvCodeBytes(f.head_dim, KvPrecisionBits(f.precision));
  float w[kKvValueBlockMax * (kMaxHeadDim / 8)];
  for (int g = 0; g < ng; ++g) ws[g] = 0.0f;
  for (int t = 0; t < nb; ++t) {
    const uint16_t* scales = reinterpret_cast<const uint16_t*>(rows + t * f.stride + code_bytes);
    for (int g = 0; g < ng; ++g) {
      const float v = std::max(0.0f, p[t] * HalfToFloat(scales[g]));
      w[t * ng + g] = v;
      ws[g] = std::max(ws[g], v);
    }
  }
  for (int g = 0; g < ng; ++g) {
    const float inv = ws[g] > 0.0f ? 127.0f / ws[g] : 0.0f;
    for (int t = 0; t < nb; ++t) w8[t * ng + g] = (uint8_t)std::nearbyint(std::fmax(0.0f, std::fmin(127.0f, w[t * ng + g] * inv)));
    ws[g] /= 127.0f;
  }
}

void KvQuerySums(const float* q, int head_dim, int group, float* qsum) {
  for (int g = 0; g < head_dim / group; ++g) {
    float s = 0.0f;
    for (int i = g * group; i < (g + 1) * group; ++i) s += q[i];
    qsum[g] = s;
  }
}

float ExpSumInPlace(float* s, size_t n, float max) {
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    s[i] = s[i] == -INFINITY ? 0.0f : std::exp(s[i] - max);
    sum += s[i];
  }
  return sum;
}

float GreatestScore(const float* s, size_t n) {
  float max_score = -INFINITY;
  for (size_t i = 0; i < n; ++i) max_score = s[i] > max_score ? s[i] : max_score;
  return max_score;
}

void SoftmaxInPlace(float* s, size_t n) {
  const float max_score = GreatestScore(s, n);
  const float inv = 1.0f / ExpSumInPlace(s, n, max_score);
  for (size_t i = 0; i < n; ++i) s[i] *= inv;
}

}  // namespace mikv
