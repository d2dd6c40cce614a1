#include "thread_pool.h"

#include <algorithm>
#include <chrono>

#include "cpu_cores.h"
#include "spin_wait.h"

namespace mikv {
namespace {

// The floating-point mode a job with flush_denormals runs in: x86 MXCSR FTZ (bit 15) and DAZ (bit 6), AArch64
// FPCR FZ (bit 24) and FZ16 (bit 19) — the bits pthreadpool sets for PTHREADPOOL_FLAG_DISABLE_DENORMALS.
class FlushDenormalsScope {
 public:
  explicit FlushDenormalsScope(bool on) : on_(on) {
    if (!on_) return;
#if defined(__x86_64__) || defined(__i386__)
    saved_ = _mm_getcsr();
    _mm_setcsr((unsigned)saved_ | 0x8040u);
#elif defined(__aarch64__)
    asm volatile("mrs %0, fpcr" : "=r"(saved_));
    asm volatile("msr fpcr, %0" : : "r"(saved_ | 0x1080000u));
#endif
  }
  ~FlushDenormalsScope() {
    if (!on_) return;
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr((unsigned)saved_);
#elif defined(__aarch64__)
    asm volatile("msr fpcr, %0" : : "r"(saved_));
#endif
  }

 private:
  bool on_;
  uint64_t saved_ = 0;
};

// The spin loops read the clock once per 1,024 pauses (~15-70 µs), and a wait that ends sooner (nearly every one
// in a decode step) never reads it: where the clock is a system call (some VMs' clock sources have no vDSO path) a
// read costs a microsecond or more, and a job arriving meanwhile waits for it.
constexpr uint32_t kSpinsPerClockRead = 1023;

// Spins until done() or spin_ns has passed; returns done(). The budget counts from the first clock read, ~1,024 pauses
// in; a budget of 0 does not spin.
template <class Done>
bool SpinUntil(const Done& done, int64_t spin_ns) {
  if (spin_ns == 0) return done();
  int64_t start = -1;
  for (uint32_t spins = 0;; ++spins) {
    if (done()) return true;
    SpinPause();
    if ((spins & kSpinsPerClockRead) == kSpinsPerClockRead) {
      const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now().time_since_epoch()).count();
      if (start < 0) start = now;
      if (now - start > spin_ns) return done();
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(size_t threads)
    : threads_(std::min<size_t>(threads != 0 ? threads : (size_t)DefaultThreadCount(), kRosterMask)),
      spin_ns_(MoreThreadsThanCpus((int)threads_) ? 0 : kSpinBeforeSleepNs),
      shares_(new Share[threads_]),
      done_(new Done[threads_]),
      entries_(new Entry[threads_]),
      active_(threads_) {
  job_.generation.store((uint32_t)threads_, std::memory_order_relaxed);  // count 0, every thread
  for (size_t t = 0; t < threads_; ++t) done_[t].generation.store((uint32_t)threads_, std::memory_order_relaxed);
  workers_.reserve(threads_ - 1);
  try {
    for (size_t t = 1; t < threads_; ++t) workers_.emplace_back([this, t] { WorkerMain(t); });
  } catch (...) {  // a thread the system would not start: stop those that did (a joinable thread must not be destroyed)
    StopWorkers();
    throw;
  }
}

ThreadPool::~ThreadPool() { StopWorkers(); }

void ThreadPool::StopWorkers() {
  {
    std::lock_guard<std::mutex> lock(run_mutex_);
    job_.stop.store(true, std::memory_order_relaxed);
    job_.generation.store((Count(job_.generation.load(std::memory_order_relaxed)) + 1) << kRosterBits | (uint32_t)threads_,
                          std::memory_order_release);
    roster_.fetch_add(1, std::memory_order_seq_cst);
  }
  FutexWakeAll(&job_.generation);  // every sleeper, whatever sleepers_ says
  FutexWakeAll(&roster_);          // and those that sat out
  for (std::thread& w : workers_) w.join();
  workers_.clear();
}

void ThreadPool::RunSerially(size_t items, ItemFn item, const void* context, bool flush_denormals) {
  FlushDenormalsScope mode(flush_denormals);
  for (size_t i = 0; i < items; ++i) item(context, 0, i);
}

void ThreadPool::SetActiveThreads(size_t n) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  active_.store(std::clamp<size_t>(n, 1, threads_), std::memory_order_relaxed);
}

void ThreadPool::Run(size_t items, ItemFn item, const void* context, bool flush_denormals) {
  if (active_threads() == 1 || items <= 1 || items >= kMaxItems) return RunSerially(items, item, context, flush_denormals);
  Launch(items, item, context, flush_denormals, /*each_thread=*/false);
}

void ThreadPool::RunOnEachThread(ItemFn item, const void* context, bool flush_denormals) {
  if (active_threads() == 1) return RunSerially(1, item, context, flush_denormals);
  Launch(0, item, context, flush_denormals, /*each_thread=*/true);
}

void ThreadPool::Launch(size_t items, ItemFn item, const void* context, bool flush_denormals, bool each_thread) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  const size_t roster = active_.load(std::memory_order_relaxed);
  const uint32_t last = job_.generation.load(std::memory_order_relaxed);
  const uint32_t count = Count(last) + 1, word = count << kRosterBits | (uint32_t)roster;
  if (roster != Roster(last)) {
    // Shares are split over the roster's threads, and a thread that sat out has not claimed its share's word since:
    // every word is set to read "not started" (one generation old), as Work's tags expect. Nobody works now.
    const uint64_t stale = (uint64_t)((count - 1) & kTagMask);
    for (size_t s = 0; s < threads_; ++s) shares_[s].word.store(stale, std::memory_order_relaxed);
    // And a worker coming back reports to a done word that cannot already read as this job's (its last report may
    // be any number of jobs old, and the words' counts wrap).
    for (size_t t = Roster(last); t < roster; ++t) done_[t].generation.store(~word, std::memory_order_relaxed);
  }
  job_.item = item;
  job_.context = context;
  job_.items = each_thread ? roster : items;
  job_.flush_denormals = flush_denormals;
  job_.each_thread = each_thread;
  job_.generation.store(word, std::memory_order_release);  // publishes the job to the workers' acquire loads
  WakeSleepers();
  if (roster > Roster(last)) {  // workers that sat out the last job and run this one (SitOut's other half)
    roster_.fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(&roster_);
  }
  Work(0, word);
  // The workers are spinning (or were woken just now): wait for each one's check-in without sleeping, past the
  // spin budget yielding the core between looks. Every index is taken once Work returns: a worker that has not even
  // started by kSkipLateAfterNs is not waited for (SkippedWorkers says why). RunOnEachThread's items wait for each
  // other, so none of its threads is skipped.
  size_t t = 1;
  auto all_done = [&] {
    while (t < roster && done_[t].generation.load(std::memory_order_acquire) == word) ++t;
    return t == roster;
  };
  if (!each_thread) {
    loops_.fetch_add(1, std::memory_order_relaxed);
    if (!SpinUntil(all_done, std::min(spin_ns_, kSkipLateAfterNs))) SkipLateWorkers(t, roster, word, items);
  }
  if (!SpinUntil(all_done, spin_ns_))
    while (!all_done()) std::this_thread::yield();
}

bool ThreadPool::Enter(size_t thread, uint32_t word) {
  std::atomic<uint64_t>& state = entries_[thread].state;
  uint64_t s = state.load(std::memory_order_relaxed);
  for (;;) {
    // Skipped for this job, or for a later one: the worker took `word` before the caller went on without it, and
    // the job fields now hold another job's (or soon will).
    if ((s & 1) && !Before((uint32_t)(s >> 1), word)) return false;
    // The caller has moved on from `word`: which it does only without this worker (a skip so far ahead that the
    // counts wrapped would pass the test above).
    if (job_.generation.load(std::memory_order_acquire) != word) return false;
    if (state.compare_exchange_weak(s, Entered(word), std::memory_order_acq_rel)) return true;
  }
}

void ThreadPool::SkipLateWorkers(size_t from, size_t roster, uint32_t word, size_t items) {
  const uint64_t tag = Count(word) & kTagMask;
  for (size_t u = from; u < roster; ++u) {
    if (done_[u].generation.load(std::memory_order_acquire) == word) continue;
    uint64_t s = entries_[u].state.load(std::memory_order_acquire);
    if (s == Entered(word) || !entries_[u].state.compare_exchange_strong(s, Skipped(word), std::memory_order_acq_rel))
      continue;  // it started: wait for it
    // Its share's word claimed as it would have claimed it (Work), so that the tag stays one generation old at most;
    // every index of it is taken, so nobody changes the word after.
    shares_[u].word.store((uint64_t)ShareOf(items, roster, u).second << kTagBits | tag, std::memory_order_relaxed);
    done_[u].generation.store(word, std::memory_order_release);
    skipped_.fetch_add(1, std::memory_order_relaxed);
  }
}

// The caller's half of the hand-off with a worker going to sleep (WaitForJob): the new generation is stored, then
// sleepers_ read; the worker counts itself in sleepers_, then reads the generation. With a full fence on both sides
// at least one of them sees the other's write, so a worker cannot sleep through a job and no wake is made when
// nobody sleeps — the common case, which pthreadpool pays a system call for.
void ThreadPool::WakeSleepers() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_relaxed) != 0) FutexWakeAll(&job_.generation);
}

uint32_t ThreadPool::WaitForJob(uint32_t seen) {
  uint32_t g;
  if (SpinUntil([&] { return (g = job_.generation.load(std::memory_order_acquire)) != seen; }, spin_ns_)) return g;
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  while ((g = job_.generation.load(std::memory_order_acquire)) == seen) FutexWait(&job_.generation, seen);
  sleepers_.fetch_sub(1, std::memory_order_release);
  return g;
}

uint32_t ThreadPool::SitOut(size_t thread, uint32_t seen) {
  for (;;) {
    // roster_ first, then the job word: Launch stores the word, then bumps roster_. Either this load of the word sees
    // the new one, or roster_ has not been bumped yet and the futex wait returns at once or is woken by the bump.
    const uint32_t r = roster_.load(std::memory_order_seq_cst);
    const uint32_t word = job_.generation.load(std::memory_order_seq_cst);
    if (word != seen && (thread < Roster(word) || job_.stop.load(std::memory_order_relaxed))) return word;
    seen = word;  // (a later job that it sits out too)
    FutexWait(&roster_, r);
  }
}

void ThreadPool::WorkerMain(size_t thread) {
  uint32_t seen = (uint32_t)threads_;  // the word at construction: a job published before this thread ran is still new
  for (;;) {
    seen = WaitForJob(seen);
    if (!job_.stop.load(std::memory_order_relaxed) && thread >= Roster(seen)) seen = SitOut(thread, seen);
    if (job_.stop.load(std::memory_order_relaxed)) return;
    if (!Enter(thread, seen)) continue;  // the caller went on without it: on to the next job
    Work(thread, seen);
    done_[thread].generation.store(seen, std::memory_order_release);  // the job's writes happen before Run returns
  }
}

void ThreadPool::Work(size_t thread, uint32_t word) {
  // The job as Run wrote it before publishing `word` (which this thread has acquired); Run does not write it again
  // before every worker of its roster has reported this generation done.
  const ItemFn item = job_.item;
  const void* const context = job_.context;
  const size_t items = job_.items, roster = Roster(word);
  FlushDenormalsScope mode(job_.flush_denormals);
  const uint64_t tag = Count(word) & kTagMask;
  if (job_.each_thread) {
    // Its own share's word claimed as done, as every operation claims it (the tag stays one generation old at most).
    shares_[thread].word.store((uint64_t)ShareOf(items, roster, thread).second << kTagBits | tag,
                               std::memory_order_relaxed);
    item(context, thread, thread);
    return;
  }
  for (size_t k = 0; k < roster; ++k) {  // own share first, then the others' remainders
    const size_t s = (thread + k) % roster;
    const auto [begin, end] = ShareOf(items, roster, s);
    std::atomic<uint64_t>& word = shares_[s].word;
    // A share seen done is passed by a plain load: a read-modify-write would take its line from the thread that
    // owns it, for every thread and share at the end of every operation (pthreadpool looks first, too).
    uint64_t w = word.load(std::memory_order_relaxed);
    for (;;) {
      const bool current = (w & kTagMask) == tag;
      const size_t next = current ? (size_t)(w >> kTagBits) : begin;
      if (next >= end) {
        // An empty share of its own is still claimed, so that its word never holds a tag older than the last
        // generation's (nobody else writes an empty share's word).
        if (k == 0 && !current) word.store((uint64_t)end << kTagBits | tag, std::memory_order_relaxed);
        break;
      }
      // Guided: large chunks while much is left, single indices at the end, where another thread may be stealing.
      const size_t take = std::max<size_t>(1, (end - next) / (2 * roster));
      if (!word.compare_exchange_weak(w, (uint64_t)(next + take) << kTagBits | tag, std::memory_order_relaxed))
        continue;  // w holds the word as another thread left it
      for (size_t i = next; i < next + take; ++i) item(context, thread, i);
      w = word.load(std::memory_order_relaxed);
    }
  }
}

}  // namespace mikv
