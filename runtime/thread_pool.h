// The session's thread pool: one parallel loop at a time over `items` indices, the calling thread working as
// thread 0 beside threads - 1 workers that it starts once.
//
// Why not pthreadpool's own: a decode step of a small model is ~150 parallel operations (XNNPACK's projections
// and the attention, five a layer over 30 layers, and the classifier), each a few microseconds of work.
// pthreadpool's Linux build makes two futex system calls per operation whether or not anyone sleeps — the
// caller's wake, and the last worker's — and on this project's hosts (VMs) a system call costs about as much as a
// small matrix's share of a thread. Its condition
// variable build instead takes a mutex per worker per operation, which eight workers contend for. Here the hand-off
// is two atomics (a generation counter the workers watch, a count of workers still busy) and a futex call is made
// only when a worker has actually gone to sleep: after kSpinBeforeSleepNs of nothing to do, so that a phone's cores
// do not spin between a user's calls.
//
// Work is split as pthreadpool splits it: thread t first takes the indices of its own contiguous share, then takes
// what is left of the others' shares, so a thread that finishes early relieves a slower one. Indices are taken a
// chunk at a time, 1/(2·threads) of what is left of the share (at least one): pthreadpool takes one at a time, and a
// read-modify-write per index (a barrier on x86, which waits for the thread's outstanding loads) was 7% of a
// q4_0 decode step's samples on two threads here, with 16-row tiles; 5% with chunks.
//
// runtime/pthreadpool_api.cc puts pthreadpool's C API (which XNNPACK calls) on top of this class.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mikv {

class ThreadPool {
 public:
  // item(context, thread, index) for every index in [0, items), on thread `thread` in [0, threads()).
  using ItemFn = void (*)(const void* context, size_t thread, size_t index);

  // threads = 0: one per logical processor. Starts threads - 1 workers; throws std::system_error where the system
  // will not start one (pthreadpool_create then returns NULL), after stopping those it did start.
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t threads() const { return threads_; }

  // Runs every index once and returns when all are done. With flush_denormals, every thread runs its indices with
  // denormal inputs and results flushed to zero (x86 FTZ/DAZ, Arm FZ), as pthreadpool's
  // PTHREADPOOL_FLAG_DISABLE_DENORMALS does, and restores its mode after. One Run at a time (others wait).
  void Run(size_t items, ItemFn item, const void* context, bool flush_denormals);

  // Run without a pool: every index on the calling thread, in order.
  static void RunSerially(size_t items, ItemFn item, const void* context, bool flush_denormals);

  // For tests: how many workers are asleep now (0 while they spin).
  size_t SleepingWorkers() const { return sleepers_.load(std::memory_order_acquire); }

  // How long an idle worker spins before it sleeps. Between a decode step's operations a worker waits a few to a
  // few hundred microseconds; after a token, the sampler and the caller's own work. pthreadpool spins ~20 ms.
  static constexpr int64_t kSpinBeforeSleepNs = 2'000'000;

 private:
  struct alignas(64) Share {  // a thread's contiguous share of the indices
    std::atomic<size_t> next{0};
    size_t end = 0;
  };

  void StopWorkers();
  void WorkerMain(size_t thread);
  uint32_t WaitForJob(uint32_t seen);
  void Work(size_t thread);
  void WakeSleepers();

  size_t threads_;
  std::unique_ptr<Share[]> shares_;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  // The current job, written by Run before it publishes a new generation.
  ItemFn item_ = nullptr;
  const void* context_ = nullptr;
  bool flush_denormals_ = false;
  bool stop_ = false;
  alignas(64) std::atomic<uint32_t> generation_{0};  // the workers watch it; Run and the destructor change it
  alignas(64) std::atomic<size_t> busy_{0};           // workers not yet done with the current job
  alignas(64) std::atomic<uint32_t> sleepers_{0};     // workers asleep on generation_ (or about to be)
};

}  // namespace mikv
