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
int PaleyFactorOf(int d) {
  if (IsPowerOfTwo(d)) return 1;
  for (int m = 4; m <= kMaxPaley && m <= d; m += 4)
    if (d % m == 0 && IsPowerOfTwo(d / m) && PaleyOk(m)) return m;
  return 0;
}

// Every head's Paley factor and every H_m's rows, worked out once (a function's static: built by the first caller,
// thread-safe, no allocation). A rotation sits on the decode path (a query, key and value per kv head and layer): the
// factor's search and the residues took ~30 integer divisions a call, a sixth to a half of a rotation's time at 48
// channels in two rounds (docs/bench/rotate-paley-session48.txt).
//
// H_m = I + S, S = [[0, 1ᵀ], [-1, Q]], Q[i][j] = χ(j - i) the Jacobsthal matrix of q = m - 1 (χ the quadratic
// character mod q; Q is skew-symmetric because q ≡ 3 mod 4, so H_m·H_mᵀ = m·I). Hᵀ = I - S. Row i of each as bits:
// bit k set where the entry is -1.
struct PaleyTables {
  uint8_t factor[kMaxD + 1];
  uint64_t negative[2][kMaxPaley / 4 + 1][kMaxPaley];  // [transposed][m / 4][row]

  PaleyTables() : factor{}, negative{} {
    for (int d = 1; d <= kMaxD; ++d) factor[d] = (uint8_t)PaleyFactorOf(d);
    for (int m = 4; m <= kMaxPaley; m += 4) {
      if (!PaleyOk(m)) continue;
      const int q = m - 1;
      bool residue[kMaxPaley] = {};
      for (int v = 1; v < q; ++v) residue[v * v % q] = true;
      for (int i = 0; i < m; ++i)
        for (int k = 0; k < m; ++k) {
          // S[i][k]: row 0 is [0, 1, ..., 1], column 0 below it -1, then χ(k - i) off the diagonal.
          const int s = i == k ? 0 : i == 0 ? 1 : k == 0 ? -1 : residue[(k - i + q) % q] ? 1 : -1;
          if (s < 0) negative[0][m / 4][i] |= uint64_t{1} << k;  // H = I + S
          if (s > 0) negative[1][m / 4][i] |= uint64_t{1} << k;  // Hᵀ = I - S
        }
    }
  }
};

const PaleyTables& Paley() {
  static const PaleyTables tables;
  return tables;
}

using F32x4 = float __attribute__((vector_size(16)));

// The ±1 of four rows at one column, from their four sign bits (bit r set: row r's entry is -1).
F32x4 SignsOf(uint64_t nibble) {
  alignas(16) static constexpr float kSigns[16][4] = {
      {1, 1, 1, 1},  {-1, 1, 1, 1},  {1, -1, 1, 1},  {-1, -1, 1, 1},  {1, 1, -1, 1},  {-1, 1, -1, 1},
      {1, -1, -1, 1}, {-1, -1, -1, 1}, {1, 1, 1, -1},  {-1, 1, 1, -1},  {1, -1, 1, -1}, {-1, -1, 1, -1},
      {1, 1, -1, -1}, {-1, 1, -1, -1}, {1, -1, -1, -1}, {-1, -1, -1, -1}};
  F32x4 v;
  std::memcpy(&v, kSigns[nibble], sizeof v);
  return v;
}

// x viewed as m blocks of P channels (P = 0: p, known at run time only): block i <- Σ_k H_m[i][k] · block k. Four
// output blocks at a time (m = q + 1 is a multiple of 4), one vector lane each: for every channel j, lane r sums
// sign(i + r, k) · x[k·p + j] over k, whose four signs are bits i..i+3 of column k (row k of the other orientation).
// The sums run over k in order for every channel, the same on every CPU (a product by ±1 is exact, so a fused
// multiply-add rounds as the add would).
template <int P>
void PaleyAcrossBlocks(float* x, int m, int p, bool transposed) {
  if constexpr (P != 0) p = P;
  const uint64_t* column = Paley().negative[!transposed][m / 4];
  float in[kMaxD];
  std::memcpy(in, x, sizeof(float) * m * p);
  for (int i = 0; i < m; i += 4) {
    if constexpr (P != 0) {  // the block's channels' sums in registers
      F32x4 acc[P] = {};
      for (int k = 0; k < m; ++k) {
        const F32x4 s = SignsOf((column[k] >> i) & 15);
        for (int j = 0; j < P; ++j) acc[j] += s * in[k * P + j];
      }
      for (int j = 0; j < P; ++j)
        for (int r = 0; r < 4; ++r) x[(i + r) * P + j] = acc[j][r];
    } else {
      for (int j = 0; j < p; ++j) {
        F32x4 acc = {};
        for (int k = 0; k < m; ++k) acc += SignsOf((column[k] >> i) & 15) * in[k * p + j];
        for (int r = 0; r < 4; ++r) x[(i + r) * p + j] = acc[r];
      }
    }
  }
}

// The unnormalised H x (H_m ⊗ H_p) or Hᵀ x: the Walsh–Hadamard transform of each block of p channels (H_p is
// symmetric), all m blocks in one call of the KV kernels' `fwht` (in-register SIMD where the CPU has it), then the
// Paley factor across blocks.
void Transform(float* x, int d, bool transposed) {
  const int m = Paley().factor[d], p = d / m;
  ActiveKvKernels().fwht(x, d, p);
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

bool HadamardSizeOk(int d) { return d >= 2 && d <= kMaxD && Paley().factor[d] != 0; }

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
