// An orthonormal rotation of a head's channels before low-bit quantization: R = H·D / sqrt(d), with H the
// Walsh–Hadamard matrix (d a power of two) and D a fixed diagonal of random signs. Rotating keys and queries alike
// leaves q·k unchanged (R is orthonormal); rotated values give a rotated attention output, turned back with Rᵀ.
// What it buys: a channel with a large outlier spreads over all channels, so a group's scale is no longer set by
// one value and INT2/INT3 codes resolve the rest (QuaRot, QuIP#). O(d log d) per vector, in place.
#pragma once

#include <cstdint>

namespace mikv {

// True when d is a power of two in [2, 1024] (what the transform needs).
bool HadamardSizeOk(int d);

// x <- R x and x <- Rᵀ x for one vector of d channels.
void HadamardRotate(float* x, int d);
void HadamardUnrotate(float* x, int d);

}  // namespace mikv
