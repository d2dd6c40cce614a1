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
  // While it waits for the others, the thread asks for the lines of [ask, ask + ask_bytes) in order, one a spin — the
  // start of the weights it reads next (LlamaGraph::LockstepThread) — and then only spins. The others are still
  // working, so the time is free, and the thread's next stream starts in its cache instead of at the memory's
  // latency, before the kernels' own asks and the hardware prefetcher get going. A step of SmolLM2's shape on this
  // project's two-vCPU host: 0.968-0.979x the time at 512 tokens, 0.981-0.993x at 4k (steps with and without
  // interleaved in one process; docs/bench/barrier-asks-session39.txt). Four lines a spin did no better; asking for
  // the other thread's rows of the next matrix as well, or for the FFN's weights during the attention's wait, was
  // 1.01-1.08x slower.
  void Wait(size_t t, const void* ask = nullptr, size_t ask_bytes = 0) {
    const char* next = static_cast<const char*>(ask);
    const char* const end = next + ask_bytes;
    const uint64_t mine = passed_[t].count.load(std::memory_order_relaxed) + 1;
    passed_[t].count.store(mine, std::memory_order_release);  // what t wrote before happens before the others leave
    for (size_t u = 0; u < threads_; ++u) {
      if (u == t) continue;
      // Spin while the other thread is near; yield the core once it is late (more threads than cores: a test under
      // a sanitizer, a phone's cores taken by other apps), so that it can get there.
      for (uint32_t pauses = 0; passed_[u].count.load(std::memory_order_acquire) < mine;) {
        if (next < end) {
          __builtin_prefetch(next);
          next += 64;
        } else if (pauses < 4096) {
          Pause();
          ++pauses;
        } else {
          std::this_thread::yield();
        }
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
