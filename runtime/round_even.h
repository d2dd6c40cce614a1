// std::nearbyint for floats in the default rounding mode (to nearest, ties to even), without a library call.
// Baseline x86-64 (no SSE4.1 roundss) compiles std::nearbyint to a call of nearbyintf, which also makes the caller
// spill its registers around it: in KvFitGroup's range search (kv_codec.cc), run for every token a rotated tier
// stores, that call and its spills were most of the time. Elsewhere the library's one instruction is kept.
#pragma once

#include <cmath>

namespace mikv {

inline float RoundHalfEven(float v) {
#if defined(__x86_64__) && !defined(__SSE4_1__)
  // |v| < 2^23: adding 2^23 leaves a float whose last place is 1, so the addition rounds |v| to an integer, ties to
  // even; subtracting 2^23 again is exact, and the sign goes back on (-0 for small negatives, as nearbyint gives).
  // Larger floats are integers already; NaN and infinities come back as they are.
  const float a = std::fabs(v);
  if (!(a < 0x1p23f)) return v;
  return std::copysign((a + 0x1p23f) - 0x1p23f, v);
#else
  return std::nearbyint(v);
#endif
}

}  // namespace mikv
