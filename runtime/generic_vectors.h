// Four floats or int32 lanes in the compiler's generic vectors: one SSE register on x86 (the baseline build's), one
// NEON register on AArch64 — for the runtime's own small loops that no kernel table holds.
#pragma once

#include <cstdint>
#include <cstring>

namespace mikv {

typedef float F32x4 __attribute__((vector_size(16)));
typedef int32_t I32x4 __attribute__((vector_size(16)));

inline F32x4 Load4(const float* x) {
  F32x4 v;
  std::memcpy(&v, x, sizeof v);
  return v;
}

}  // namespace mikv
