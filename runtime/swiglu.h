// SwiGLU, silu(gate) · up = gate · sigmoid(gate) · up: the feed-forward block's activation.
// The sigmoid is XNNPACK's (vectorized on every target), the two multiplies loops the compiler vectorizes: a scalar
// std::exp per element was 5% of a decode step of a small model (SmolLM2-135M's shape, 512 tokens, two threads),
// time during which the pool's other threads wait. It runs on the calling thread: for one decoded token (1,536 gates)
// the step took 3.6 µs a layer with the sigmoid split over two threads through the pool, 1.2 without (the same
// per-phase timing): the synchronisation cost more than the work.
#pragma once

#include <xnnpack.h>

#include <cstddef>

#include "status.h"

namespace mikv {

class SwiGlu {
 public:
  SwiGlu() = default;
  ~SwiGlu();
  SwiGlu(const SwiGlu&) = delete;
  SwiGlu& operator=(const SwiGlu&) = delete;

  Status Create();
  // For rows t < n of `hidden` floats: row t's gate at h + t·row_stride, its up `up_offset` floats further. Writes
  // silu(gate)·up of row t to h + t·hidden, in place: each output row starts at its own gate (row 0, or rows laid
  // out gate-after-gate: row_stride = hidden) or ends before it (gate and up side by side, row_stride = 2·hidden,
  // t ≥ 1: (t + 1)·hidden <= 2t·hidden), never on a gate or up still to be read. The up rows are overwritten.
  Status Run(float* h, size_t n, size_t hidden, size_t row_stride, size_t up_offset);
  // One row, the same bits as Run: out = silu(gate)·up, with product[hidden] as scratch; out may be gate itself, or
  // elsewhere with gate and up only read. For one slice of a row per thread (LlamaGraph::ForwardLockstep, one SwiGlu
  // a thread: an XNNPACK operator is set up per call).
  Status RunInto(const float* gate, const float* up, size_t hidden, float* product, float* out);

 private:
  xnn_operator_t sigmoid_ = nullptr;
};

}  // namespace mikv
