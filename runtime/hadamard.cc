#include "hadamard.h"

#include <cmath>

#include "kv_kernels.h"

namespace mikv {

namespace {

constexpr int kMaxD = 1024;

// The fixed signs: bits of a xorshift stream from a constant seed, so every build and every model agrees.
struct Signs {
  float v[kMaxD];
  Signs() {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < kMaxD; ++i) {
      if (i % 64 == 0) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
      }
      v[i] = (s >> (i % 64)) & 1 ? -1.0f : 1.0f;
    }
  }
};

const float* SignTable() {
  static const Signs signs;
  return signs.v;
}

// The unnormalised transform, from the KV kernels (in-register SIMD where the CPU has it).
void Fwht(float* x, int d) { ActiveKvKernels().fwht(x, d); }

}  // namespace

bool HadamardSizeOk(int d) { return d >= 2 && d <= 1024 && (d & (d - 1)) == 0; }

void HadamardRotate(float* x, int d) {
  const float* sign = SignTable();
  for (int i = 0; i < d; ++i) x[i] *= sign[i];
  Fwht(x, d);
  const float norm = 1.0f / std::sqrt((float)d);
  for (int i = 0; i < d; ++i) x[i] *= norm;
}

void HadamardUnrotate(float* x, int d) {
  const float* sign = SignTable();
  Fwht(x, d);  // H is symmetric, so Rᵀ = D·H / sqrt(d)
  const float norm = 1.0f / std::sqrt((float)d);
  for (int i = 0; i < d; ++i) x[i] *= norm * sign[i];
}

}  // namespace mikv
