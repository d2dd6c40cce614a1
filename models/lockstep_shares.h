// Which rows of each projection a thread of the lockstep decode step computes (LlamaGraph::LockstepThread).
//
// Equal shares of each matrix's tiles (Linear::ShareOfRows) to begin with. When balancing, after each step the
// shares move towards each thread's pace — its rows per second in the projections that step — so that a thread on a
// slower core (a busier vCPU, a core held back by heat or by another process) gets fewer rows, and the others stop
// waiting for it at every barrier (docs/bench/lockstep-waits-session49.txt: 13-26% of a 4k step on this project's
// two-vCPU host, one thread more than the other in each run). Rows only change hands: each row is computed the same
// way on any thread, so the logits do not change.
//
// Set between steps, on the thread that runs them; read by every thread during a step. Heap memory at creation only.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace mikv {

class LockstepShares {
 public:
  enum Matrix { kQkv, kWo, kGate, kW2, kMatrices };  // kGate: the gate rows; SwiGLU pairs the up rows with them

  LockstepShares() = default;
  // `rows`: each matrix's rows (kGate: the hidden dimension).
  LockstepShares(size_t threads, const size_t (&rows)[kMatrices]);

  std::pair<size_t, size_t> Rows(Matrix m, size_t t) const { return rows_[m * threads_ + t]; }
  double Weight(size_t t) const { return weight_[t]; }
  const double* weights() const { return weight_.data(); }

  // After a step: thread t spent busy_seconds[t] in its projection rows. Each weight moves a quarter of the way to the
  // thread's share of the threads' summed pace (weight / seconds), clamped to half to one and a half of an equal share
  // before the weights are scaled back to a sum of 1.
  void Rebalance(const double* busy_seconds);
  // Shares in these proportions (weights[threads], scaled to a sum of 1). False, and nothing changed, unless every
  // weight is positive and finite.
  bool SetWeights(const double* weights);

 private:
  void Place();  // rows_ from weight_

  size_t threads_ = 0;
  size_t rows_of_[kMatrices] = {};
  std::vector<double> weight_;                    // [threads], summing to 1
  std::vector<std::pair<size_t, size_t>> rows_;   // [matrix][thread]
};

}  // namespace mikv
