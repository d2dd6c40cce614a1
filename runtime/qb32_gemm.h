// Matrix products with weights in ggml's Q8_0 / Q4_0 blocks (ggml_blocks.h) and activations quantized to Q8_0
// blocks, computed as llama.cpp computes them:
//   y[b][o] = Σ_k f32(d_w[o][k]) · f32(d_x[b][k]) · Σ_{j<32} w[o][k][j] · x[b][k][j]
// The inner sums are exact integers; only the order of the float accumulation differs between variants (the
// SIMD ones keep per-lane partial sums, as llama.cpp's do), so variants agree within float rounding.
//
// Variants: scalar reference (qb32_gemm_scalar.cc), AVX2 (kernels_avx/qb32-gemm-avx2.cc), NEON with dotprod
// where the target has it (kernels_neon/qb32-gemm-neon.cc). Chosen like the KV kernels: at run time on x86, at
// compile time on ARM; MIKV_QB32_ISA=scalar|avx2|neon forces one (tests).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mikv {

// Rows [o_begin, o_end) of y for all `batch` activation rows.
//   w: weight rows of `blocks` blocks each (w_row_bytes apart); x: activation rows of `blocks` Q8_0 blocks
//   (x_row_bytes apart); y: batch rows y_stride floats apart.
struct Qb32GemmArgs {
  const uint8_t* w;
  size_t w_row_bytes;
  const uint8_t* x;
  size_t x_row_bytes;
  size_t blocks;
  size_t batch;
  float* y;
  size_t y_stride;
};
using Qb32GemmFn = void (*)(const Qb32GemmArgs& a, size_t o_begin, size_t o_end);

struct Qb32Kernels {
  const char* isa;
  Qb32GemmFn q8_0;  // weights in Q8_0 blocks
  Qb32GemmFn q4_0;  // weights in Q4_0 blocks
};

extern const Qb32Kernels kScalarQb32Kernels;
// The kernels of an ISA name ("scalar", "avx2", "neon"), or nullptr when this build or CPU lacks it.
const Qb32Kernels* GetQb32Kernels(const char* isa);
// The best the CPU runs, unless MIKV_QB32_ISA names another (read once, at first use).
const Qb32Kernels& ActiveQb32Kernels();
// Tests: run the given kernels from now on (nullptr: back to the choice above). Not thread safe.
void OverrideQb32KernelsForTesting(const Qb32Kernels* kernels);

}  // namespace mikv
