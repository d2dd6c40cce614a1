// A barrier for the threads of one ThreadPool::RunOnEachThread call, all running the same sequence of steps
// (LlamaGraph::ForwardLockstep): Wait(t) returns on every thread once all have reached their k-th Wait.
//
// Why not the pool's own hand-off: a parallel operation there is a job published by the calling thread, seen by the
// workers one cache-line transfer later, and a done report read back by the caller one transfer after the last
// worker finishes; the workers idle while the caller does the serial work between operations. Here each thread
// writes only its own line (its count of Waits passed) and reads the others': a Wait costs one transfer, and every
// thread leaves it as soon as the last one arrives. A decode step of SmolLM2's shape is ~150 such points.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "spin_wait.h"

namespace mikv {

class LockstepBarrier {
 public:
  LockstepBarrier() = default;
  // `crowded`: more threads than CPUs to run them (MoreThreadsThanCpus): every thread's spin budget starts at its least.
  explicit LockstepBarrier(size_t threads, bool crowded = false)
      : threads_(threads), active_(threads), passed_(new Line[threads]), spin_(new Budget[threads]) {
    if (crowded)
      for (size_t t = 0; t < threads; ++t) spin_[t].pauses = kMinSpins;
  }

  size_t threads() const { return threads_; }
  // The threads that take part from the next call on: 0..n-1 (ThreadPool::SetActiveThreads; 1..threads()). Only
  // between RunOnEachThread calls: every count starts again from 0, since the ones that sat out have fallen behind.
  void SetActive(size_t n) {
    active_ = n < 1 ? 1 : n > threads_ ? threads_ : n;
    for (size_t t = 0; t < threads_; ++t) passed_[t].count.store(0, std::memory_order_relaxed);
  }
  size_t active() const { return active_; }
  // For tests: the pauses thread t spins before it sleeps now.
  uint32_t SpinBudget(size_t t) const { return spin_[t].pauses; }
  static constexpr uint32_t kMaxSpins = 4096, kMinSpins = 16;

  // While on (`mikv bench --phases`), each Wait adds the time from thread t's arrival to its leaving to t's total:
  // how long the threads stood idle for each other, which the phases (timed on thread 0, waits included) do not
  // say. Set between RunOnEachThread calls. Off, a Wait reads no clock (two reads, ~50 ns, at each of a step's
  // ~150-240 Waits).
  void TimeWaits(bool on) { timed_ = on; }
  double WaitedSeconds(size_t t) const { return t < threads_ ? spin_[t].waited_seconds : 0.0; }
  void ClearWaitedSeconds() {
    for (size_t t = 0; t < threads_; ++t) spin_[t].waited_seconds = 0;
  }

  // Thread t's count of Waits so far; all threads hold the same count between RunOnEachThread calls.
  // While it waits for the others, the thread asks for the lines of [ask, ask + ask_bytes) in order, one a spin — the
  // start of the weights it reads next (LlamaGraph::LockstepThread) — and then only spins. The others are still
  // working, so the time is free, and the thread's next stream starts in its cache instead of at the memory's
  // latency, before the kernels' own asks and the hardware prefetcher get going. A step of SmolLM2's shape on this
  // project's two-vCPU host: 0.968-0.979x the time at 512 tokens, 0.981-0.993x at 4k (steps with and without
  // interleaved in one process; docs/bench/barrier-asks-session39.txt). Four lines a spin did no better; asking for
  // the other thread's rows of the next matrix as well, or for the FFN's weights during the attention's wait, was
  // 1.01-1.08x slower.
  //
  // A thread that is late is probably not running (more threads than the CPUs this process gets: a phone's cores
  // taken by other apps, an explicit -t above a cpuset, a test under a sanitizer): past its spin budget the waiter
  // sleeps on the late thread's count (a futex) and gives its CPU to it. Until session 47 it yielded instead: under
  // `taskset -c 0` two threads decoded the default model in q8_0 at 79 tok/s, one at 3,314-3,326, and now two at
  // 966-1,070 (docs/bench/default-threads-session47.txt; the pool's part in ThreadPool::spin_ns). A wait that ends
  // in a sleep halves the thread's budget (down to kMinSpins) and one that ends in the spin doubles it (up to
  // kMaxSpins), so a crowded machine stops paying the full spin at each of a step's ~150 barriers.
  void Wait(size_t t, const void* ask = nullptr, size_t ask_bytes = 0) {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point arrived = timed_ ? Clock::now() : Clock::time_point();
    const char* next = static_cast<const char*>(ask);
    const char* const end = next + ask_bytes;
    const uint32_t mine = passed_[t].count.load(std::memory_order_relaxed) + 1;
    passed_[t].count.store(mine, std::memory_order_release);  // what t wrote before happens before the others leave
    // The arriving half of the hand-off with a sleeper (as ThreadPool::WakeSleepers): count stored, then sleepers
    // read; the sleeper counts itself in, then reads the count. With a full fence on both sides one of them sees the
    // other's write, so nobody sleeps through an arrival, and no system call is made where nobody sleeps.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (passed_[t].sleepers.load(std::memory_order_relaxed) != 0) FutexWakeAll(&passed_[t].count);
    const uint32_t budget = spin_[t].pauses;
    bool slept = false;
    for (size_t u = 0; u < active_; ++u) {
      if (u == t) continue;
      Line& other = passed_[u];
      for (uint32_t pauses = 0; Behind(other.count.load(std::memory_order_acquire), mine);) {
        if (next < end) {
          __builtin_prefetch(next);
          next += 64;
        } else if (pauses < budget) {
          SpinPause();
          ++pauses;
        } else {
          other.sleepers.fetch_add(1, std::memory_order_relaxed);
          std::atomic_thread_fence(std::memory_order_seq_cst);
          const uint32_t seen = other.count.load(std::memory_order_relaxed);
          if (Behind(seen, mine)) FutexWait(&other.count, seen);
          other.sleepers.fetch_sub(1, std::memory_order_relaxed);
          slept = true;
          pauses = 0;
        }
      }
    }
    if (slept) spin_[t].pauses = budget / 2 < kMinSpins ? kMinSpins : budget / 2;
    else if (budget < kMaxSpins) spin_[t].pauses = budget * 2;
    if (timed_) spin_[t].waited_seconds += std::chrono::duration<double>(Clock::now() - arrived).count();
  }

 private:
  // A count short of `mine` (wrapping: counts differ by at most one round).
  static bool Behind(uint32_t count, uint32_t mine) { return (int32_t)(count - mine) < 0; }
  struct alignas(64) Line {
    std::atomic<uint32_t> count{0};     // thread's Waits passed; the futex word its sleepers wait on
    std::atomic<uint32_t> sleepers{0};  // threads asleep (or about to be) on count
  };
  struct alignas(64) Budget {     // the thread's own line
    uint32_t pauses = kMaxSpins;  // spins before it sleeps
    double waited_seconds = 0;    // with TimeWaits: its time in Wait
  };
  size_t threads_ = 0, active_ = 0;
  bool timed_ = false;
  std::unique_ptr<Line[]> passed_;
  std::unique_ptr<Budget[]> spin_;
};

}  // namespace mikv
