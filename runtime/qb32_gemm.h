// Matrix products with weights in ggml's Q8_0 / Q4_0 blocks (ggml_blocks.h) and activations quantized to Q8_0
// blocks, computed as llama.cpp computes them:
//   y[b][o] = Σ_k f32(d_w[o][k]) · f32(d_x[b][k]) · Σ_{j<32} w[o][k][j] · x[b][k][j]
// The inner sums are exact integers; only the order of the float accumulation differs between variants (the
// SIMD ones keep per-lane partial sums, as llama.cpp's do), so variants agree within float rounding.
//
// Variants: scalar reference (qb32_gemm_scalar.cc), AVX2 (kernels_avx/qb32-gemm-avx2.cc), AVX-512 VNNI
// (kernels_avx/qb32-gemm-avx512vnni.cc), NEON baseline and NEON dotprod (kernels_neon/qb32-gemm-neon.cc, built again as
// qb32-gemm-neondot.cc).
// Chosen like the KV kernels: at run time on x86 (VNNI where the KV kernels' dispatch finds it), at compile time on
// ARM, with a dotprod build taken where the CPU reports dotprod; MIKV_QB32_ISA=scalar|avx2|avx512vnni|neon|neon-dotprod
// forces one (tests).
//
// Weight layouts. The scalar reference reads the rows where they lie in the mapped file. The SIMD kernels (x86 and
// NEON) read a copy packed eight rows at a time (PackQb32Rows8), made once when the operator is created: a row-major
// block leaves one row's 32 products in eight lanes, so every block of every row needs a horizontal sum, its own
// scale broadcast and its own multiply-add (~14 instructions per 18-byte Q4_0 block, 11 GB/s on one Zen 4 core
// against XNNPACK's 48 on its packed int4). Interleaved, lane r of a vector belongs to row r: one multiply applies a
// block's scales to eight rows, and the lanes need no reduction until the end of the row.
//
//   packed group of rows 8g..8g+7, block k (groups back to back, blocks back to back within a group):
//     8 × f16 scales d_w of rows 8g..8g+7                                 16 bytes
//     C / 4 vectors of 32 bytes, C = the block's code bytes (Q8_0: 32, Q4_0: 16): dword r of vector c holds code
//     bytes 4c..4c+3 of row 8g+r (Q4_0: its nibbles as in the file — low nibbles elements 4c.., high 4c+16..)
//   Rows past the last are zero (scale 0). The copy is the size of the original (8 × 18 or 8 × 34 bytes per block).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mikv {

// Rows [o_begin, o_end) of y for all `batch` activation rows.
//   w: weight rows of `blocks` blocks each (w_row_bytes apart); x: activation rows of `blocks` Q8_0 blocks
//   (x_row_bytes apart); y: batch rows y_stride floats apart. For packed kernels w is the packed matrix,
//   w_row_bytes is not read, and o_begin is a multiple of 8.
//   x_sums: [batch][blocks] Σ_j x_j of each activation block (QuantizeActivationsQ8_0 writes them): Q4_0's codes
//   are multiplied unsigned, Σ (n − 8)·x = Σ n·x − 8·Σ x. Kernels reading rows in place ignore it.
//   then: where the caller reads weights next, once these rows are done (nullptr: not said): the kernels that ask for
//   their weights ahead go on asking there past their rows' end (a hint; the x86 kernels take it).
struct Qb32GemmArgs {
  const uint8_t* w;
  size_t w_row_bytes;
  const uint8_t* x;
  size_t x_row_bytes;
  size_t blocks;
  size_t batch;
  float* y;
  size_t y_stride;
  const int32_t* x_sums;
  const uint8_t* then = nullptr;
};
using Qb32GemmFn = void (*)(const Qb32GemmArgs& a, size_t o_begin, size_t o_end);
// QuantizeActivationsQ8_0 (ggml_blocks.h) bit for bit: the blocks and sums the products above take.
using Qb32QuantizeFn = void (*)(const float* x, size_t n, uint8_t* blocks, int32_t* sums);

struct Qb32Kernels {
  const char* isa;
  Qb32GemmFn q8_0;  // weights in Q8_0 blocks
  Qb32GemmFn q4_0;  // weights in Q4_0 blocks
  size_t packed_rows;  // 0: weight rows as in the file; 8: packed by PackQb32Rows8
  // The activations' quantizer, on the calling thread before every product (a decode step's serial work: it took
  // 2-4% of a Llama-3.2-1B-shaped step's samples as scalar code, where nearbyint is a library call on x86-64).
  Qb32QuantizeFn quantize_activations;
};

// Bytes of a `rows` × `blocks` matrix of blocks of `w_block_bytes` (kQ8_0BlockBytes or kQ4_0BlockBytes) packed eight
// rows at a time, and the packing (the layout above). w: rows w_row_bytes apart.
size_t Qb32PackedBytes(size_t rows, size_t blocks, size_t w_block_bytes);
void PackQb32Rows8(const uint8_t* w, size_t w_row_bytes, size_t rows, size_t blocks, size_t w_block_bytes,
                   uint8_t* out);

extern const Qb32Kernels kScalarQb32Kernels;
// The kernels of an ISA name ("scalar", "avx2", "avx512vnni", "neon", "neon-dotprod"), or nullptr when this build or
// CPU lacks it.
const Qb32Kernels* GetQb32Kernels(const char* isa);
// The best the CPU runs, unless MIKV_QB32_ISA names another (read once, at first use).
const Qb32Kernels& ActiveQb32Kernels();
// Tests: run the given kernels from now on (nullptr: back to the choice above). Not thread safe.
void OverrideQb32KernelsForTesting(const Qb32Kernels* kernels);

}  // namespace mikv
