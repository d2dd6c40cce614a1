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
// What crosses between cores per operation is kept to the least: a decode step is ~150 operations, and on this
// project's hosts a cache line takes ~300 ns from one core to another.
//  - The job (generation, function, context, item count, flags) is one cache line: a worker that sees the new
//    generation has the whole job in the same transfer.
//  - Nobody writes another thread's share before an operation. Every thread works out the shares' bounds from the
//    item count (ShareOf), and a share's progress word carries the generation it belongs to (Share), so the word
//    the last operation left reads as "not started".
//  - Each worker reports done in its own line, which the caller reads, instead of all of them decrementing one
//    count in turn.
// The hand-off of an operation of trivial items (one call's round trip, best of 7 × 100,000 calls) measured on the
// device tool's 16-core Xeon against the pool before these three: 16 threads 3.9-4.6 -> 2.3-2.8 µs (16 items) and
// 6.1-6.2 -> 4.6-5.1 (256 items); 8 threads 3.7-4.0 -> 3.4-3.5 (128 items); 4 threads 2.8-3.2 -> 2.4-2.6 (64 items);
// two threads, and one item a thread, level (docs/bench/thread-pool-session25-device.txt).
//
// runtime/pthreadpool_api.cc puts pthreadpool's C API (which XNNPACK calls) on top of this class.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace mikv {

class ThreadPool {
 public:
  // item(context, thread, index) for every index in [0, items), on thread `thread` in [0, threads()).
  using ItemFn = void (*)(const void* context, size_t thread, size_t index);

  // threads = 0: one per logical processor (at most 4,095 either way). Starts threads - 1 workers; throws
  // std::system_error where the system will not start one (pthreadpool_create then returns NULL), after stopping those
  // it did start.
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t threads() const { return threads_; }

  // The threads that run the calls from the next one on: threads 0..n-1 (clamped to 1..threads()); the others sit
  // out, asleep, and are not waited for. Where another process holds one of the cores, a thread of the pool gets its
  // CPU only for scheduler slices, and every parallel operation (every barrier of a lockstep step) waits for it: on
  // this project's two-vCPU host, with a busy loop on one vCPU, two threads decoded the default model at 233-434
  // tok/s and one at 652-819 (docs/kernels-sessions.md, session 51). ThreadCountTuner decides when; a call's
  // results must not depend on it (each index is the same work on any thread). Made between calls, under the same
  // lock as a call. A worker that sits out sleeps at once, without the spin, and is woken only when the roster takes
  // it back (or the pool stops).
  void SetActiveThreads(size_t n);
  size_t active_threads() const { return active_.load(std::memory_order_relaxed); }

  // Runs every index once and returns when all are done. With flush_denormals, every thread runs its indices with
  // denormal inputs and results flushed to zero (x86 FTZ/DAZ, Arm FZ), as pthreadpool's
  // PTHREADPOOL_FLAG_DISABLE_DENORMALS does, and restores its mode after. One Run at a time (others wait).
  void Run(size_t items, ItemFn item, const void* context, bool flush_denormals);

  // Runs item(context, t, t) once on every active thread t in [0, active_threads()), all at once, and returns when all
  // are done: no index is taken over by another thread, so the items may wait for each other (LockstepBarrier). The
  // decode step runs its layers so (LlamaGraph::ForwardLockstep): one such call instead of ~150 hand-offs.
  void RunOnEachThread(ItemFn item, const void* context, bool flush_denormals);

  // Thread t's share of `items` indices split over `threads`: [first, second), the contiguous part it takes first.
  static std::pair<size_t, size_t> ShareOf(size_t items, size_t threads, size_t t) {
    const size_t base = items / threads, extra = items % threads;
    const size_t begin = t * base + (t < extra ? t : extra);
    return {begin, begin + base + (t < extra ? 1 : 0)};
  }

  // Run without a pool: every index on the calling thread, in order.
  static void RunSerially(size_t items, ItemFn item, const void* context, bool flush_denormals);

  // For tests: how many workers are asleep now (0 while they spin).
  size_t SleepingWorkers() const { return sleepers_.load(std::memory_order_acquire); }
  // Workers that Run went on without so far: a worker that has not started a parallel loop kSkipLateAfterNs after
  // the caller ran out of indices to take (it is asleep, or another process holds its core) is not waited for; it
  // learns so when it wakes and does not run the loop. Until session 51 the caller waited for every worker: with a
  // busy loop on one of this project's two vCPUs, the default model prefilled at 23-35 tok/s on two threads some runs,
  // one scheduler slice a parallel operation. (RunOnEachThread waits for every thread: its items wait for each other.)
  uint64_t SkippedWorkers() const { return skipped_.load(std::memory_order_relaxed); }
  static constexpr int64_t kSkipLateAfterNs = 20'000;
  // Parallel loops run so far on more than one thread (Run calls that could skip a worker).
  uint64_t ParallelLoops() const { return loops_.load(std::memory_order_relaxed); }

  // How long an idle worker spins before it sleeps. Between a decode step's operations a worker waits a few to a
  // few hundred microseconds; after a token, the sampler and the caller's own work. pthreadpool spins ~20 ms.
  static constexpr int64_t kSpinBeforeSleepNs = 2'000'000;
  // This pool's: kSpinBeforeSleepNs, or 0 where it has more threads than the CPUs the process may run on (an explicit
  // thread count above a cpuset or `taskset`). A thread that spins there holds the CPU the one it waits for needs, and
  // every hand-off waited for the scheduler's tick: the default model decoded at 3.8 tok/s on two threads under
  // `taskset -c 0` (docs/bench/default-threads-session47.txt).
  int64_t spin_ns() const { return spin_ns_; }

 private:
  // A share's progress: the generation it belongs to (the low kTagBits bits) above the next index to take. A word
  // whose tag is not the running generation's belongs to the last operation (every thread claims its own share's
  // word in every operation, Work, so a stale word is always exactly one generation old and the tag cannot alias).
  static constexpr int kTagBits = 16;
  static constexpr uint64_t kTagMask = (uint64_t{1} << kTagBits) - 1;
  static constexpr uint64_t kMaxItems = uint64_t{1} << (64 - kTagBits);  // more run serially (never in practice)
  struct alignas(64) Share {
    std::atomic<uint64_t> word{0};
  };
  struct alignas(64) Done {  // a worker's last finished generation (its job word)
    std::atomic<uint32_t> generation{0};
  };
  // A worker's claim on a job, in a line of its own that only the worker writes while on time: Entered(word) as it
  // starts the job, or the caller's Skipped(word) where the worker had not started it kSkipLateAfterNs after the
  // caller ran out of indices (Launch, SkipLateWorkers).
  struct alignas(64) Entry {
    std::atomic<uint64_t> state{0};
  };
  static uint64_t Entered(uint32_t word) { return (uint64_t)word << 1; }
  static uint64_t Skipped(uint32_t word) { return (uint64_t)word << 1 | 1; }
  // A job's word: its generation's count above the number of threads that run it (the roster: threads 0..n-1), so a
  // worker learns whether it runs a job from the one word it watches, without reading the job's other fields — which
  // the caller may be writing again already for the next job when the worker sat this one out.
  static constexpr int kRosterBits = 12;  // (pools are held to 4,095 threads)
  static constexpr uint32_t kRosterMask = (1u << kRosterBits) - 1;
  static size_t Roster(uint32_t word) { return word & kRosterMask; }
  static uint32_t Count(uint32_t word) { return word >> kRosterBits; }
  // Whether job word a came before b (their counts wrap: the difference is taken in the counts' own bits).
  static bool Before(uint32_t a, uint32_t b) { return (int32_t)((Count(a) - Count(b)) << kRosterBits) < 0; }
  // The job, written by Run before it publishes a new generation in the same line.
  struct alignas(64) Job {
    std::atomic<uint32_t> generation{0};  // the job word: the workers watch it (and sleep on it); Run and the
                                          // destructor change it
    std::atomic<bool> stop{false};  // (atomic: a worker that sat out a job reads it while the next job is written)
    bool flush_denormals = false;
    bool each_thread = false;  // RunOnEachThread: thread t runs index t, and only that
    ItemFn item = nullptr;
    const void* context = nullptr;
    size_t items = 0;
  };

  void Launch(size_t items, ItemFn item, const void* context, bool flush_denormals, bool each_thread);
  void StopWorkers();
  void WorkerMain(size_t thread);
  uint32_t WaitForJob(uint32_t seen);
  // A worker's start of job `word`: false where the caller went on without it (it must not read the job then).
  bool Enter(size_t thread, uint32_t word);
  // The caller's: workers of threads [from, roster) that have not started job `word` are skipped, their shares
  // marked done (every index is taken by then) and their done words set as if they had run it.
  void SkipLateWorkers(size_t from, size_t roster, uint32_t word, size_t items);
  // A worker outside the roster of job word `seen`: asleep on roster_ until a job word takes it back (or stops the
  // pool); returns that word.
  uint32_t SitOut(size_t thread, uint32_t seen);
  void Work(size_t thread, uint32_t generation);
  void WakeSleepers();

  size_t threads_;
  int64_t spin_ns_;  // (after threads_: initialised from it)
  std::unique_ptr<Share[]> shares_;
  std::unique_ptr<Done[]> done_;  // [threads_]; 0, the caller, unused
  std::unique_ptr<Entry[]> entries_;  // the same
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  Job job_;
  alignas(64) std::atomic<uint32_t> sleepers_{0};  // workers asleep on job_.generation (or about to be)
  std::atomic<size_t> active_;                     // SetActiveThreads; written under run_mutex_
  alignas(64) std::atomic<uint32_t> roster_{0};    // bumped when a job's roster grows: workers that sat out sleep on it
  // The caller's counts, in a line of their own: beside the fields above that the workers read in every job, each
  // count would take that line from them.
  alignas(64) std::atomic<uint64_t> skipped_{0};  // SkippedWorkers
  std::atomic<uint64_t> loops_{0};                // ParallelLoops
};

// The pool behind a pthreadpool_t that pthreadpool_create made (pthreadpool_api.cc); nullptr for nullptr.
ThreadPool* ThreadPoolOf(struct pthreadpool* pool);

}  // namespace mikv
