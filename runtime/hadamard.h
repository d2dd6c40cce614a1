// An orthonormal rotation of a head's channels before low-bit quantization: R = H·D / sqrt(d), with H a Hadamard
// matrix (entries ±1, H·Hᵀ = d·I) and D a fixed diagonal of random signs. Rotating keys and queries alike leaves q·k
// unchanged (R is orthonormal); rotated values give a rotated attention output, turned back with Rᵀ.
// What it buys: a channel with a large outlier spreads over all channels, so a group's scale is no longer set by
// one value and INT2/INT3 codes resolve the rest (QuaRot, QuIP#).
//
// H for d = m·p, p a power of two: the Kronecker product H_m ⊗ H_p, with H_p the Walsh–Hadamard matrix (the `fwht`
// KV kernel, O(log p) per channel) and H_m (m > 1) Paley's construction from the quadratic residues of the prime
// q = m - 1 ≡ 3 (mod 4), applied densely (m additions per channel). Heads that are a power of two take m = 1, the
// plain Walsh–Hadamard transform; 48 = 12·4, 80 = 20·4, 96 = 12·8 and 120 = 60·2 take a Paley factor (QuaRot does
// the same for non-power-of-two sizes). In place, no allocation. On this project's host a rotation takes ~0.04 µs at 64
// channels, ~0.07 at 48, ~0.14 at 80, ~0.12 at 96 and ~0.64 at 120 (docs/bench/rotate-paley-session48.txt): the
// Paley factor's m sums per channel, four rows of H_m a vector, against log p.
#pragma once

#include <cstdint>

namespace mikv {

// True when R exists for d channels: 2 <= d <= 1024, d = m·p as above.
bool HadamardSizeOk(int d);

// x <- R x and x <- Rᵀ x for one vector of d channels (HadamardSizeOk(d)).
void HadamardRotate(float* x, int d);
void HadamardUnrotate(float* x, int d);

}  // namespace mikv
