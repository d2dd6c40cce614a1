// Linear: y[batch][out] = x[batch][in] · Wᵀ + b through one XNNPACK fully-connected operator.
// The operator is chosen from the weight encoding:
//   f32  -> fully_connected_nc_f32         f16  -> fully_connected_nc_f32_f16
//   int8 -> fully_connected_nc_qd8_f32_qc8w (activations quantized per row to int8 at run time)
//   int4 -> fully_connected_nc_qd8_f32_qb4w (blocks of group_size columns, bf16 block scales)
//   q8_0, q4_0 -> mikv's qb32 kernels (qb32_gemm.h) on activations quantized to Q8_0 blocks, as llama.cpp does
// XNNPACK packs the weights when the operator is created, and the mapped file is not read afterwards. q8_0 and
// q4_0 weights are read where they lie in the mapped file (no copy) by kernels that take rows as they are (the
// scalar reference), and packed eight rows at a time, into a copy of the same size, for those that take that (the
// x86 and NEON ones); that copy is counted with XNNPACK's (xnn_memory.h), so a session's operator bytes are all its
// packed weights.
#pragma once

#include <xnnpack.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "qb32_gemm.h"
#include "status.h"
#include "weights.h"

namespace mikv {

// One batch of activations, in f32 and (when some weight needs it) dynamically quantized to int8.
// Quantizing once serves every projection that reads the same input (q/k/v, gate/up).
struct LinearInput {
  const float* f32 = nullptr;
  const int8_t* qd8 = nullptr;  // [batch][in], followed by XNN_EXTRA_BYTES of slack
  const xnn_quantization_params* qd8_params = nullptr;  // [batch + XNN_EXTRA_QUANTIZATION_PARAMS]
  size_t batch = 0;
  const uint8_t* q8_blocks = nullptr;  // [batch][in / 32] Q8_0 blocks (ggml_blocks.h), for q8_0/q4_0 weights
  const int32_t* q8_sums = nullptr;    // [batch][in / 32] Σ codes of each of those blocks
};

// Converts f32 rows to XNNPACK's qd8 (int8 + per-row zero point and scale). Buffers come from the arena.
class DynamicQuantizer {
 public:
  DynamicQuantizer() = default;
  ~DynamicQuantizer();
  DynamicQuantizer(const DynamicQuantizer&) = delete;
  DynamicQuantizer& operator=(const DynamicQuantizer&) = delete;

  Status Create();
  // Fills in->qd8 / in->qd8_params from in->f32 (in->batch rows of `channels`).
  Status Quantize(size_t channels, int8_t* qd8, xnn_quantization_params* params, LinearInput* in,
                  pthreadpool_t pool);

 private:
  xnn_operator_t op_ = nullptr;
};

class Linear {
 public:
  Linear() = default;
  ~Linear();
  Linear(const Linear&) = delete;
  Linear& operator=(const Linear&) = delete;
  Linear(Linear&& other) noexcept;

  // w: [out][in] (packed now; may be released after Create). bias: [out] floats or nullptr, kept by
  // pointer (it lives in the model file).
  Status Create(const TensorView& w, const float* bias);
  // One operator for matrices that read the same input (q/k/v, gate/up): their rows one after another, so
  // y[batch][Σ out] holds each part's outputs side by side, in one parallel call instead of one per part. The rows
  // are copied into a temporary matrix (from the counting allocator, so the packing peak includes it) that the
  // operator packs; biases (each may be nullptr) are copied into memory the operator keeps.
  static bool CanFuse(const std::vector<const TensorView*>& parts);  // one encoding, one input width, one group
  Status CreateFused(const std::vector<const TensorView*>& parts, const std::vector<const float*>& biases);
  Status Run(const LinearInput& in, float* y, pthreadpool_t pool);

  // q8_0/q4_0 weights (needs_q8_blocks()) without the pool, on the calling thread, bias included: output rows
  // [begin, end) of every activation row (begin a multiple of 16, the tiles of Run's split: a thread's share, by
  // ShareOfRows or FractionOfRows, without taking over others'). For threads that already run together
  // (LlamaGraph::ForwardLockstep). `then`: the first byte of the weights the caller reads next (Qb32GemmArgs::then;
  // WeightRows says where a share lies).
  void RunRows(const LinearInput& in, float* y, size_t begin, size_t end, const uint8_t* then = nullptr) const;
  // Where q8_0/q4_0 output rows [begin, end) lie (what RunRows reads of the weights: one run of bytes), to ask for
  // them ahead; {nullptr, 0} for other encodings, whose operators read packed weights of their own.
  std::pair<const uint8_t*, size_t> WeightRows(size_t begin, size_t end) const {
    if (!needs_q8_blocks() || begin >= end) return {nullptr, 0};
    return {blocks_ + begin * row_bytes_, (end - begin) * row_bytes_};
  }
  // Thread t's share of `rows` rows in Run's tiles.
  static std::pair<size_t, size_t> ShareOfRows(size_t rows, size_t t, size_t threads);
  // Rows [from · rows, to · rows), from and to in [0, 1], rounded to Run's tiles: a share weighted by a thread's
  // pace (LockstepShares). Shares that meet at one fraction meet at one row.
  static std::pair<size_t, size_t> FractionOfRows(size_t rows, double from, double to);

  bool needs_qd8() const { return needs_qd8_; }
  bool needs_q8_blocks() const { return type_ == WeightType::Q8_0 || type_ == WeightType::Q4_0; }
  // For needs_q8_blocks(): one activation row of in_features() floats -> its Q8_0 blocks and their sums, with the
  // quantizer of the kernels this operator runs (QuantizeActivationsQ8_0 bit for bit).
  void QuantizeQ8Blocks(const float* x, uint8_t* blocks, int32_t* sums) const {
    qb32_->quantize_activations(x, in_, blocks, sums);
  }
  size_t in_features() const { return in_; }
  size_t out_features() const { return out_; }

 private:
  Status CreateFrom(const TensorView& w, const float* bias, bool w_is_temporary);
  void AddBias(size_t batch, float* y) const;
  void AddBias(size_t batch, float* y, size_t o_begin, size_t o_end) const;
  // q8_0/q4_0: the kernel for this operator's encoding, and its arguments for `in` into y (Run and RunRows).
  Qb32GemmFn Qb32Fn() const;
  Qb32GemmArgs Qb32Args(const LinearInput& in, float* y) const;

  xnn_operator_t op_ = nullptr;
  const float* bias_ = nullptr;  // points into the model file, or into fused_bias_
  std::vector<float> fused_bias_;
  const uint8_t* blocks_ = nullptr;  // q8_0/q4_0: the weight rows in the model file, or packed_
  uint8_t* packed_ = nullptr;        // q8_0/q4_0 packed for qb32_ (nullptr: it reads the rows in place)
  const Qb32Kernels* qb32_ = nullptr;  // the kernels chosen at creation (the layout of blocks_ is theirs)
  size_t row_bytes_ = 0;
  WeightType type_ = WeightType::F32;
  bool needs_qd8_ = false;
  size_t in_ = 0, out_ = 0;
};

// XNNPACK must be initialised once per process; safe to call from any thread, any number of times.
Status InitXnnpack();
// A failed XNNPACK call as a Status: out of memory, or internal, naming what failed.
Status XnnError(const char* what, xnn_status s);

}  // namespace mikv
