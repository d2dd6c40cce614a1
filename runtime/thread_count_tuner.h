// How many of a session's threads its steps run on (ThreadPool::SetActiveThreads), decided from the decode steps'
// own times and, within a prompt, from its chunks'.
//
// Why: where another process holds one of the cores a session's threads run on (a phone's other apps, a busy
// server), the thread that shares that core gets its CPU for scheduler slices only, and every barrier of a step
// waits for it. A step on one thread fewer then runs several times faster: on this project's two-vCPU host with a
// busy loop on one vCPU, the default model decoded at 233-434 tok/s on two threads and 652-819 on one; on the device
// tool's Xeon with a busy core among four, the SmolLM2 shape at 89-106 tok/s on four threads and 338-495 on three
// (docs/kernels-sessions.md, sessions 50 and 51). Nothing tells a process which cores others use, so the tuner
// tries: now and then it runs a few steps on one thread fewer (or more) and keeps the count whose steps were faster.
//
// Tries go down from every thread, and up from fewer (has the core come free?); down from fewer only where the steps
// got slower by a quarter (another process has started), which also brings a try sooner. A try that fails waits
// twice as long for the next (up to kLongestWait) and goes a thread further next time (seven threads are as slow as
// eight where two cores are taken), down to half the threads. A try runs at least kProbeSteps steps and kSpan
// seconds, and is taken when its mean step is kTaken of the mean of the settled count's last steps (at least kSpan
// seconds of them, at most kWindow steps) or less. Means, not medians: with a core shared, most steps still run at
// full speed and a few wait whole scheduler slices, and those few are what the count changes; the span covers a few
// slices. On a quiet machine the tries cost ~kSpan of slower steps each: 0.5, 1.5, 3.5 and 7.5 s after the first
// decode step, then every 8 s. Where the session's prompt showed a busy core (a chunk on every thread with late
// workers, the signal below; a prompt of one chunk counts), the first comes after kFirstTry instead: until it, a
// session that starts beside a busy core runs every step at that core's pace (a fifth to a third of the speed on the
// device tool's Xeon, session 53), and a short reply would be over before a later try. Only on that evidence, since
// on a quiet machine an early try is a cost a short reply pays whole (session 53's runs of 128 steps).
//
// A prompt runs in chunks (LlamaGraph::chunk), and a session's first prompt comes before any decode step could be
// timed: on this project's two-vCPU host with a busy loop on one vCPU, the default model prefilled 512 tokens at
// 2,088-2,722 tok/s on two threads and 3,293-4,337 on one. There the pool's own count of workers it went on without
// (ThreadPool::SkippedWorkers: a worker not started 20 µs after the caller ran out of work) says that a thread is off
// its CPU: where the vCPU was busy, the pool went on without the worker in 1/8 to 95% of its parallel loops in 53 of
// 75 chunks (the rest fewer), where it was quiet in 0-5% (docs/bench/prompt-threads-session52.txt). A chunk with
// late workers in at least 1/kLateLoops of its loops, and at least as many as threads running, brings a try of one
// thread fewer for the next chunk, taken where its time a token is kTaken of the chunk before or less (a chunk later
// in a prompt attends to more tokens, so the comparison leans against the try). At most kPromptProbes tries a
// prompt, each a thread further after one that failed (down to LowestTry, where a try that met a quiet moment is made
// again).
//
// The count changes only which thread computes what, never what is computed (LlamaGraph::LockstepThread, the
// pool's shares), so the logits are the same whatever it decides. Plain numbers; no heap memory.
#pragma once

#include <cstdint>

namespace mikv {

class ThreadCountTuner {
 public:
  static constexpr int kWindow = 64, kProbeSteps = 4, kMostProbeSteps = 64;
  static constexpr double kSpan = 0.02;                           // seconds of steps a comparison takes at least
  static constexpr double kFirstWait = 0.5, kLongestWait = 8.0;   // seconds between tries
  static constexpr double kFirstTry = 0.1;  // seconds from the first decode step to the first try, after a late chunk
  static constexpr double kTaken = 0.9, kSlower = 1.25;
  static constexpr int kPromptProbes = 3, kLateLoops = 8;

  ThreadCountTuner() = default;
  explicit ThreadCountTuner(int threads) : threads_(threads < 1 ? 1 : threads), roster_(threads_) {}

  // The threads the next step runs on (1..threads).
  int roster() const { return probe_ != 0 ? probe_ : roster_; }
  // The count it has settled on (a try aside).
  int settled() const { return roster_; }
  // A decode step on roster() threads took `seconds`; `now`: seconds on a steady clock.
  void StepDone(double seconds, double now);
  // A prompt's chunks: PromptStart before its first; ChunkDone after each, with the chunk's tokens and seconds, the
  // workers the pool went on without during it and its parallel loops (ThreadPool::SkippedWorkers, ParallelLoops),
  // and the next chunk's tokens (0: it was the last). A try starts only where the next chunk is as long as this one,
  // and roster() says the next chunk's count.
  void PromptStart();
  void ChunkDone(int tokens, double seconds, uint64_t skipped, uint64_t loops, int next_tokens);
  // Settles on n threads (1..threads) from here, as if a try had found it: any try in progress is dropped, and the
  // next comes after kFirstWait.
  void Settle(int n);

  uint64_t changes() const { return changes_; }  // settled counts taken from a try
  uint64_t probes() const { return probes_; }    // tries made
  // A prompt chunk on every thread had late workers (ChunkDone's signal of a busy core): the first decode try comes
  // after kFirstTry, not kFirstWait. Reported with the session's stats, so a run's early try can be told from a late one.
  bool late_workers_seen() const { return late_seen_; }

 private:
  void StartProbe(bool slower);  // slower: the steps got slower by kSlower
  void Take(int n);              // settles on a count a try found faster
  // The mean of the settled count's last steps, from the newest back until they span kSpan (all of them short of it).
  double RecentMean() const;
  // The fewest threads a try goes down to: half the threads, or one fewer than now where that is already fewer.
  int LowestTry() const;

  int threads_ = 1, roster_ = 1;
  int probe_ = 0;                  // the count being tried (0: none): by decode steps, or by the next prompt chunk
  bool chunk_probe_ = false;       // probe_ is a prompt chunk's try
  double chunk_reference_ = 0;     // the chunk before it: seconds a token on the settled count
  int prompt_probes_ = 0, chunk_depth_ = 1;  // this prompt's tries; how far the next goes
  double probe_seconds_ = 0;       // the try's steps so far: their time and number
  int probed_ = 0;
  double recent_[kWindow] = {};    // the settled count's last steps (a ring)
  int recent_count_ = 0, recent_next_ = 0;
  double reference_ = 0;           // the recent mean when the last try ended (0: none yet)
  double wait_ = kFirstWait, next_try_ = -1;
  bool first_ = true;              // no count taken (Take) or set (Settle) yet
  bool late_seen_ = false;         // a prompt chunk on every thread had late workers: first_'s try after kFirstTry
  bool probe_up_ = false;          // the try's direction
  int up_depth_ = 1, down_depth_ = 1;  // how many threads the next try in each direction goes
  uint64_t changes_ = 0, probes_ = 0;
};

}  // namespace mikv
