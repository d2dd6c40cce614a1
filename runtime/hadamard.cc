#include "hadamard.h"

#include <cmath>
#include <cstring>

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
// character mod q; Q is skew-symmetric because q ≡ 3 mod 4, so H_m·H_mᵀ = m·I). Row i (column i when transposed) as
// ±1 floats into row[m], from the residues of q as bits of one word (q < 64): nothing is stored between calls.
void PaleyRow(int m, uint64_t residues, int i, bool transposed, float* row) {
  const int q = m - 1;
  const float sign = transposed ? -1.0f : 1.0f;  // Hᵀ = I - S: S is skew-symmetric
  if (i == 0) {
    row[0] = 1.0f;
    for (int k = 1; k < m; ++k) row[k] = sign;
    return;
  }
  row[0] = -sign;
  // Entries k >= 1: χ(k - i), rotated so that the loop has no branch on the residues (which would be mispredicted).
  const uint64_t rotated = (residues >> ((q + 1 - i) % q)) | (residues << (q - (q + 1 - i) % q));
  for (int k = 1; k < m; ++k) row[k] = sign * (float)(2 * (int)((rotated >> (k - 1)) & 1) - 1);
  row[i] = 1.0f;  // the diagonal
}

// x viewed as m blocks of P channels (P = 0: p, known at run time only): block i <- Σ_k H_m[i][k] · block k. The sums
// run over k in order for every channel, the same on every CPU; a block's channels are independent lanes, so the
// compiler may vectorise them without changing a result (a product by ±1 is exact: a fused multiply-add rounds as
// the add would).
template <int P>
void PaleyAcrossBlocks(float* x, int m, int p, bool transposed) {
  if constexpr (P != 0) p = P;
  const int q = m - 1;
  uint64_t residues = 0;  // bit r: r is a nonzero square mod q
  for (int v = 1; v < q; ++v) residues |= uint64_t{1} << (v * v % q);
  float in[kMaxD], row[4][kMaxPaley];
  std::memcpy(in, x, sizeof(float) * m * p);
  for (int i = 0; i < m; i += 4) {  // four output blocks at a time (m = q + 1 is a multiple of 4): four sums in flight
    for (int r = 0; r < 4; ++r) PaleyRow(m, residues, i + r, transposed, row[r]);
    if constexpr (P != 0) {  // the blocks' sums in registers
      float acc[4][P] = {};
      for (int k = 0; k < m; ++k)
        for (int r = 0; r < 4; ++r)
          for (int j = 0; j < P; ++j) acc[r][j] += row[r][k] * in[k * P + j];
      for (int r = 0; r < 4; ++r)
        for (int j = 0; j < P; ++j) x[(i + r) * P + j] = acc[r][j];
    } else {
      for (int r = 0; r < 4; ++r) {
        float* out = x + (i + r) * p;
        for (int j = 0; j < p; ++j) out[j] = 0.0f;
        for (int k = 0; k < m; ++k)
          for (int j = 0; j < p; ++j) out[j] += row[r][k] * in[k * p + j];
      }
    }
  }
}

// The unnormalised H x (H_m ⊗ H_p) or Hᵀ x: the Walsh–Hadamard transform of each block (the KV kernels', in-register
// SIMD where the CPU has it; H_p is symmetric), and the Paley factor across blocks.
void Transform(float* x, int d, bool transposed) {
  const int m = PaleyFactor(d), p = d / m;
  if (p > 1)
    for (int b = 0; b < m; ++b) ActiveKvKernels().fwht(x + b * p, p);
  switch (m == 1 ? 0 : p) {
    case 0: return;
    case 1: return PaleyAcrossBlocks<1>(x, m, p, transposed);
    case 2: return PaleyAcrossBlocks<2>(x, m, p, transposed);
    case 4: return PaleyAcrossBlocks<4>(x, m, p, transposed);
    case 8: return PaleyAcrossBlocks<8>(x, m, p, transposed);
    default: return PaleyAcrossBlocks<0>(x, m, p, transposed);
  }
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
