#include "hadamard.h"

#include <cmath>

#include "kv_kernels.h"

namespace mikv {

namespace {

constexpr int kMaxD = 1024;
// The largest Paley factor taken: its dense part costs m additions per channel.
constexpr int kMaxPaley = 64;

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

bool IsPowerOfTwo(int n) { return n >= 1 && (n & (n - 1)) == 0; }

bool IsPrime(int n) {
  if (n < 2) return false;
  for (int k = 2; k * k <= n; ++k)
    if (n % k == 0) return false;
  return true;
}

// Paley's construction (type I) exists for m = q + 1, q a prime ≡ 3 (mod 4).
bool PaleyOk(int m) { return m <= kMaxPaley && m >= 4 && IsPrime(m - 1) && (m - 1) % 4 == 3; }

// The Paley factor of d: 1 when d is a power of two, else the smallest m with PaleyOk(m) and d/m a power of two
// (0 when there is none).
int PaleyFactor(int d) {
  if (IsPowerOfTwo(d)) return 1;
  for (int m = 4; m <= kMaxPaley && m <= d; m += 4)
    if (d % m == 0 && IsPowerOfTwo(d / m) && PaleyOk(m)) return m;
  return 0;
}

// H_m = I + S, S = [[0, 1ᵀ], [-1, Q]], Q[i][j] = χ(j - i) the Jacobsthal matrix of q = m - 1 (χ the quadratic
// character mod q; Q is skew-symmetric because q ≡ 3 mod 4, so H_m·H_mᵀ = m·I). Rows as ±1 floats into h[m·m].
void PaleyMatrix(int m, float* h) {
  const int q = m - 1;
  bool residue[kMaxPaley] = {};
  for (int x = 1; x < q; ++x) residue[(x * x) % q] = true;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      float e;
      if (i == j) e = 1.0f;
      else if (i == 0) e = 1.0f;
      else if (j == 0) e = -1.0f;
      else e = residue[((j - i) % q + q) % q] ? 1.0f : -1.0f;
      h[i * m + j] = e;
    }
}

// x viewed as m blocks of p channels: x_block(i) <- Σ_k H_m[i][k] x_block(k) (transposed: H_m[k][i]), channel by
// channel of the blocks. The sums run over k in order, the same on every CPU.
void PaleyAcrossBlocks(float* x, int m, int p, bool transposed) {
  float h[kMaxPaley * kMaxPaley];
  PaleyMatrix(m, h);
  float col[kMaxPaley];
  for (int j = 0; j < p; ++j) {
    for (int k = 0; k < m; ++k) col[k] = x[k * p + j];
    for (int i = 0; i < m; ++i) {
      float s = 0.0f;
      for (int k = 0; k < m; ++k) s += (transposed ? h[k * m + i] : h[i * m + k]) * col[k];
      x[i * p + j] = s;
    }
  }
}

// The unnormalised H x (H_m ⊗ H_p) or Hᵀ x: the Walsh–Hadamard transform of each block (the KV kernels', in-register
// SIMD where the CPU has it; H_p is symmetric), and the Paley factor across blocks.
void Transform(float* x, int d, bool transposed) {
  const int m = PaleyFactor(d), p = d / m;
  if (p > 1)
    for (int b = 0; b < m; ++b) ActiveKvKernels().fwht(x + b * p, p);
  if (m > 1) PaleyAcrossBlocks(x, m, p, transposed);
}

}  // namespace

bool HadamardSizeOk(int d) { return d >= 2 && d <= kMaxD && PaleyFactor(d) != 0; }

void HadamardRotate(float* x, int d) {
  const float* sign = SignTable();
  for (int i = 0; i < d; ++i) x[i] *= sign[i];
  Transform(x, d, false);
  const float norm = 1.0f / std::sqrt((float)d);
  for (int i = 0; i < d; ++i) x[i] *= norm;
}

void HadamardUnrotate(float* x, int d) {
  const float* sign = SignTable();
  Transform(x, d, true);  // Rᵀ = D·Hᵀ / sqrt(d)
  const float norm = 1.0f / std::sqrt((float)d);
  for (int i = 0; i < d; ++i) x[i] *= norm * sign[i];
}

}  // namespace mikv
