#include "lockstep_shares.h"

#include <algorithm>
#include <cmath>

#include "linear.h"

namespace mikv {

LockstepShares::LockstepShares(size_t threads, const size_t (&rows)[kMatrices])
    : threads_(threads), weight_(threads, 1.0 / (double)threads), rows_(kMatrices * threads) {
  for (int m = 0; m < kMatrices; ++m) {
    rows_of_[m] = rows[m];
    for (size_t t = 0; t < threads; ++t) rows_[m * threads + t] = Linear::ShareOfRows(rows[m], t, threads);
  }
}

void LockstepShares::Rebalance(const double* busy_seconds) {
  double pace_sum = 0;
  for (size_t t = 0; t < threads_; ++t) {
    if (!(busy_seconds[t] > 0)) return;  // a thread with no rows, or no clock: nothing to go by
    pace_sum += weight_[t] / busy_seconds[t];
  }
  const double equal = 1.0 / (double)threads_;
  double sum = 0;
  for (size_t t = 0; t < threads_; ++t) {
    const double target = weight_[t] / busy_seconds[t] / pace_sum;
    weight_[t] = std::clamp(weight_[t] + 0.25 * (target - weight_[t]), 0.5 * equal, 1.5 * equal);
    sum += weight_[t];
  }
  for (double& w : weight_) w /= sum;
  Place();
}

bool LockstepShares::SetWeights(const double* weights) {
  double sum = 0;
  for (size_t t = 0; t < threads_; ++t) {
    if (!(weights[t] > 0) || !std::isfinite(weights[t])) return false;
    sum += weights[t];
  }
  if (!std::isfinite(sum)) return false;
  for (size_t t = 0; t < threads_; ++t) weight_[t] = weights[t] / sum;
  Place();
  return true;
}

void LockstepShares::Place() {
  for (int m = 0; m < kMatrices; ++m) {
    double from = 0;
    for (size_t t = 0; t < threads_; ++t) {
      const double to = t + 1 == threads_ ? 1.0 : from + weight_[t];
      rows_[m * threads_ + t] = Linear::FractionOfRows(rows_of_[m], from, to);
      from = to;
    }
  }
}

}  // namespace mikv
