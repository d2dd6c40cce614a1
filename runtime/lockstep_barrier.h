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
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mikv {

class LockstepBarrier {
 public:
  LockstepBarrier() = default;
  explicit LockstepBarrier(size_t threads) : threads_(threads), passed_(new Line[threads]) {}

  size_t threads() const { return threads_; }

  // Thread t's count of Waits so far; all threads hold the same count between RunOnEachThread calls.
  void Wait(size_t t) {
    const uint64_t mine = passed_[t].count.load(std::memory_order_relaxed) + 1;
    passed_[t].count.store(mine, std::memory_order_release);  // what t wrote before happens before the others leave
    for (size_t u = 0; u < threads_; ++u) {
      if (u == t) continue;
      // Spin while the other thread is near; yield the core once it is late (more threads than cores: a test under
      // a sanitizer, a phone's cores taken by other apps), so that it can get there.
      for (uint32_t spins = 0; passed_[u].count.load(std::memory_order_acquire) < mine; ++spins) {
        if (spins < 4096) Pause();
        else std::this_thread::yield();
      }
    }
  }

 private:
  static void Pause() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
    asm volatile("yield");
#endif
  }
  struct alignas(64) Line {
    std::atomic<uint64_t> count{0};
  };
  size_t threads_ = 0;
  std::unique_ptr<Line[]> passed_;
};

}  // namespace mikv
