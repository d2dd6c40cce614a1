// The thread pool (runtime/thread_pool.h) and the pthreadpool API on it (runtime/pthreadpool_api.cc), which
// XNNPACK's operators call: every cell of every entry point once, the right tiles and thread numbers, stealing,
// the denormal flag, workers that sleep and are woken, and RunOnEachThread with the barrier its items share.
#include <gtest/gtest.h>
#include <pthreadpool.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include <sched.h>

#include "lockstep_barrier.h"
#include "test_util.h"
#include "thread_pool.h"

namespace mikv {
namespace {

using test::OneCpu;

// What the tasks of one call saw: each call's argument tuple (uarch, then the starts, then the tile sizes), how
// often, and the largest thread number.
struct Seen {
  std::mutex mutex;
  std::map<std::vector<size_t>, int> calls;
  size_t max_thread = 0;
  void Add(std::vector<size_t> args, size_t thread = 0) {
    std::lock_guard<std::mutex> lock(mutex);
    ++calls[args];
    max_thread = std::max(max_thread, thread);
  }
};

// Rounds of a barrier's threads in step: each adds its number plus one to `sum`, all check the round's total (1 + ...
// + n for the barrier's n active threads, once a round), then leave together. `ask`: what the first Wait of a round
// asks for (LockstepBarrier::Wait).
void SumInStep(LockstepBarrier& barrier, std::atomic<uint64_t>& sum, size_t thread, uint64_t rounds,
               const std::vector<char>* ask = nullptr) {
  for (uint64_t round = 1; round <= rounds; ++round) {
    sum += thread + 1;
    barrier.Wait(thread, ask ? ask->data() : nullptr, ask ? ask->size() : 0);
    const size_t n = barrier.active();
    EXPECT_EQ(sum.load(), round * n * (n + 1) / 2);
    barrier.Wait(thread);
  }
}

// The calls a d-dimensional walk with these ranges and tiles (1 where untiled) must make: the starts, then the
// sizes of the tiled dimensions.
std::map<std::vector<size_t>, int> Expected(const std::vector<size_t>& range, const std::vector<size_t>& tile,
                                            const std::vector<bool>& tiled, bool with_uarch) {
  std::map<std::vector<size_t>, int> out;
  std::vector<size_t> x(range.size(), 0);
  for (size_t r : range)
    if (r == 0) return out;
  for (;;) {
    std::vector<size_t> args;
    if (with_uarch) args.push_back(7);
    for (size_t d = 0; d < range.size(); ++d) args.push_back(x[d]);
    for (size_t d = 0; d < range.size(); ++d)
      if (tiled[d]) args.push_back(std::min(tile[d], range[d] - x[d]));
    ++out[args];
    size_t d = range.size();
    while (d > 0) {
      --d;
      x[d] += tile[d];
      if (x[d] < range[d]) break;
      x[d] = 0;
      if (d == 0) return out;
    }
  }
}

using Args = std::vector<size_t>;
#define SEEN static_cast<Seen*>(ctx)

// Every entry point, called with ranges r and tiles t on `pool`, makes the expected calls, each once, on threads
// numbered below the pool's count. The default uarch index passed is 7: it must reach the task unchanged.
void CheckEveryEntryPoint(pthreadpool_t pool, const std::array<size_t, 6>& r, const std::array<size_t, 6>& t) {
  const size_t threads = pthreadpool_get_threads_count(pool);
  auto check = [&](const char* name, int dims, std::vector<int> tiled, bool uarch, auto call) {
    Seen seen;
    call(&seen);
    std::vector<size_t> range(r.begin(), r.begin() + dims), tile(dims, 1);
    std::vector<bool> is_tiled(dims, false);
    for (int d : tiled) tile[d] = t[d], is_tiled[d] = true;
    EXPECT_EQ(seen.calls, Expected(range, tile, is_tiled, uarch)) << name << " on " << threads << " threads";
    EXPECT_LT(seen.max_thread, threads) << name;
  };
  const uint32_t f = 0;
  check("1d", 1, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_1d(pool, [](void* ctx, size_t i) { SEEN->Add({i}); }, s, r[0], f);
  });
  check("1d_with_thread", 1, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_1d_with_thread(pool, [](void* ctx, size_t th, size_t i) { SEEN->Add({i}, th); }, s, r[0], f);
  });
  check("1d_with_uarch", 1, {}, true, [&](Seen* s) {
    pthreadpool_parallelize_1d_with_uarch(pool, [](void* ctx, uint32_t u, size_t i) { SEEN->Add({u, i}); }, s, 7, 9, r[0], f);
  });
  check("1d_tile_1d", 1, {0}, false, [&](Seen* s) {
    pthreadpool_parallelize_1d_tile_1d(pool, [](void* ctx, size_t i, size_t ti) { SEEN->Add({i, ti}); }, s, r[0], t[0], f);
  });
  check("2d", 2, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_2d(pool, [](void* ctx, size_t i, size_t j) { SEEN->Add({i, j}); }, s, r[0], r[1], f);
  });
  check("2d_with_thread", 2, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_2d_with_thread(
        pool, [](void* ctx, size_t th, size_t i, size_t j) { SEEN->Add({i, j}, th); }, s, r[0], r[1], f);
  });
  check("2d_tile_1d", 2, {1}, false, [&](Seen* s) {
    pthreadpool_parallelize_2d_tile_1d(
        pool, [](void* ctx, size_t i, size_t j, size_t tj) { SEEN->Add({i, j, tj}); }, s, r[0], r[1], t[1], f);
  });
  check("2d_tile_1d_with_uarch", 2, {1}, true, [&](Seen* s) {
    pthreadpool_parallelize_2d_tile_1d_with_uarch(
        pool, [](void* ctx, uint32_t u, size_t i, size_t j, size_t tj) { SEEN->Add({u, i, j, tj}); }, s, 7, 9, r[0],
        r[1], t[1], f);
  });
  check("2d_tile_1d_with_uarch_with_thread", 2, {1}, true, [&](Seen* s) {
    pthreadpool_parallelize_2d_tile_1d_with_uarch_with_thread(
        pool, [](void* ctx, uint32_t u, size_t th, size_t i, size_t j, size_t tj) { SEEN->Add({u, i, j, tj}, th); }, s,
        7, 9, r[0], r[1], t[1], f);
  });
  check("2d_tile_2d", 2, {0, 1}, false, [&](Seen* s) {
    pthreadpool_parallelize_2d_tile_2d(
        pool, [](void* ctx, size_t i, size_t j, size_t ti, size_t tj) { SEEN->Add({i, j, ti, tj}); }, s, r[0], r[1],
        t[0], t[1], f);
  });
  check("2d_tile_2d_with_uarch", 2, {0, 1}, true, [&](Seen* s) {
    pthreadpool_parallelize_2d_tile_2d_with_uarch(
        pool, [](void* ctx, uint32_t u, size_t i, size_t j, size_t ti, size_t tj) { SEEN->Add({u, i, j, ti, tj}); }, s,
        7, 9, r[0], r[1], t[0], t[1], f);
  });
  check("3d", 3, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_3d(
        pool, [](void* ctx, size_t i, size_t j, size_t k) { SEEN->Add({i, j, k}); }, s, r[0], r[1], r[2], f);
  });
  check("3d_tile_1d", 3, {2}, false, [&](Seen* s) {
    pthreadpool_parallelize_3d_tile_1d(
        pool, [](void* ctx, size_t i, size_t j, size_t k, size_t tk) { SEEN->Add({i, j, k, tk}); }, s, r[0], r[1],
        r[2], t[2], f);
  });
  check("3d_tile_1d_with_thread", 3, {2}, false, [&](Seen* s) {
    pthreadpool_parallelize_3d_tile_1d_with_thread(
        pool, [](void* ctx, size_t th, size_t i, size_t j, size_t k, size_t tk) { SEEN->Add({i, j, k, tk}, th); }, s,
        r[0], r[1], r[2], t[2], f);
  });
  check("3d_tile_1d_with_uarch", 3, {2}, true, [&](Seen* s) {
    pthreadpool_parallelize_3d_tile_1d_with_uarch(
        pool, [](void* ctx, uint32_t u, size_t i, size_t j, size_t k, size_t tk) { SEEN->Add({u, i, j, k, tk}); }, s,
        7, 9, r[0], r[1], r[2], t[2], f);
  });
  check("3d_tile_1d_with_uarch_with_thread", 3, {2}, true, [&](Seen* s) {
    pthreadpool_parallelize_3d_tile_1d_with_uarch_with_thread(
        pool,
        [](void* ctx, uint32_t u, size_t th, size_t i, size_t j, size_t k, size_t tk) {
          SEEN->Add({u, i, j, k, tk}, th);
        },
        s, 7, 9, r[0], r[1], r[2], t[2], f);
  });
  check("3d_tile_2d", 3, {1, 2}, false, [&](Seen* s) {
    pthreadpool_parallelize_3d_tile_2d(
        pool, [](void* ctx, size_t i, size_t j, size_t k, size_t tj, size_t tk) { SEEN->Add({i, j, k, tj, tk}); }, s,
        r[0], r[1], r[2], t[1], t[2], f);
  });
  check("3d_tile_2d_with_uarch", 3, {1, 2}, true, [&](Seen* s) {
    pthreadpool_parallelize_3d_tile_2d_with_uarch(
        pool,
        [](void* ctx, uint32_t u, size_t i, size_t j, size_t k, size_t tj, size_t tk) {
          SEEN->Add({u, i, j, k, tj, tk});
        },
        s, 7, 9, r[0], r[1], r[2], t[1], t[2], f);
  });
  check("4d", 4, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_4d(
        pool, [](void* ctx, size_t i, size_t j, size_t k, size_t l) { SEEN->Add({i, j, k, l}); }, s, r[0], r[1], r[2],
        r[3], f);
  });
  check("4d_tile_1d", 4, {3}, false, [&](Seen* s) {
    pthreadpool_parallelize_4d_tile_1d(
        pool, [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t tl) { SEEN->Add({i, j, k, l, tl}); }, s,
        r[0], r[1], r[2], r[3], t[3], f);
  });
  check("4d_tile_2d", 4, {2, 3}, false, [&](Seen* s) {
    pthreadpool_parallelize_4d_tile_2d(
        pool,
        [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t tk, size_t tl) {
          SEEN->Add({i, j, k, l, tk, tl});
        },
        s, r[0], r[1], r[2], r[3], t[2], t[3], f);
  });
  check("4d_tile_2d_with_uarch", 4, {2, 3}, true, [&](Seen* s) {
    pthreadpool_parallelize_4d_tile_2d_with_uarch(
        pool,
        [](void* ctx, uint32_t u, size_t i, size_t j, size_t k, size_t l, size_t tk, size_t tl) {
          SEEN->Add({u, i, j, k, l, tk, tl});
        },
        s, 7, 9, r[0], r[1], r[2], r[3], t[2], t[3], f);
  });
  check("5d", 5, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_5d(
        pool, [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t m) { SEEN->Add({i, j, k, l, m}); }, s, r[0],
        r[1], r[2], r[3], r[4], f);
  });
  check("5d_tile_1d", 5, {4}, false, [&](Seen* s) {
    pthreadpool_parallelize_5d_tile_1d(
        pool,
        [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t m, size_t tm) {
          SEEN->Add({i, j, k, l, m, tm});
        },
        s, r[0], r[1], r[2], r[3], r[4], t[4], f);
  });
  check("5d_tile_2d", 5, {3, 4}, false, [&](Seen* s) {
    pthreadpool_parallelize_5d_tile_2d(
        pool,
        [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t m, size_t tl, size_t tm) {
          SEEN->Add({i, j, k, l, m, tl, tm});
        },
        s, r[0], r[1], r[2], r[3], r[4], t[3], t[4], f);
  });
  check("6d", 6, {}, false, [&](Seen* s) {
    pthreadpool_parallelize_6d(
        pool,
        [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t m, size_t n) { SEEN->Add({i, j, k, l, m, n}); },
        s, r[0], r[1], r[2], r[3], r[4], r[5], f);
  });
  check("6d_tile_1d", 6, {5}, false, [&](Seen* s) {
    pthreadpool_parallelize_6d_tile_1d(
        pool,
        [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t m, size_t n, size_t tn) {
          SEEN->Add({i, j, k, l, m, n, tn});
        },
        s, r[0], r[1], r[2], r[3], r[4], r[5], t[5], f);
  });
  check("6d_tile_2d", 6, {4, 5}, false, [&](Seen* s) {
    pthreadpool_parallelize_6d_tile_2d(
        pool,
        [](void* ctx, size_t i, size_t j, size_t k, size_t l, size_t m, size_t n, size_t tm, size_t tn) {
          SEEN->Add({i, j, k, l, m, n, tm, tn});
        },
        s, r[0], r[1], r[2], r[3], r[4], r[5], t[4], t[5], f);
  });
}

TEST(ThreadPool, EveryEntryPointCallsEachCellOnceWithItsTile) {
  // Ranges with short last tiles, a range of one, and a range of zero (no call at all).
  const std::array<size_t, 6> ranges[] = {{7, 5, 3, 4, 3, 5}, {1, 9, 2, 3, 2, 7}, {13, 2, 5, 2, 4, 3}, {0, 3, 3, 3, 3, 3}};
  const std::array<size_t, 6> tiles[] = {{3, 2, 2, 3, 2, 4}, {1, 4, 5, 1, 3, 2}, {16, 1, 2, 2, 3, 3}};
  pthreadpool_t pools[] = {nullptr, pthreadpool_create(1), pthreadpool_create(2), pthreadpool_create(3),
                           pthreadpool_create(5)};
  for (pthreadpool_t pool : pools) {
    for (const auto& r : ranges)
      for (const auto& t : tiles) CheckEveryEntryPoint(pool, r, t);
    if (pool) pthreadpool_destroy(pool);
  }
}

// Thread 0's share waits for nothing; thread 1's first index waits until the last index (also thread 1's share) is
// done. Only a thread that takes over another's share can finish the call: without stealing it would hang (the
// wait gives up after 20 s and the test fails).
TEST(ThreadPool, AThreadThatIsDoneTakesOverTheRestOfAnothersShare) {
  ThreadPool pool(2);
  struct Context {
    std::atomic<bool> done[4];
    std::atomic<size_t> ran_by[4];
    std::atomic<bool> gave_up{false};
  } c;
  for (int i = 0; i < 4; ++i) c.done[i] = false, c.ran_by[i] = 99;
  pool.Run(
      4,
      [](const void* ctx, size_t thread, size_t i) {
        auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
        c.ran_by[i] = thread;
        if (i == 2) {
          const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
          while (!c.done[3].load())
            if (std::chrono::steady_clock::now() > until) {
              c.gave_up = true;
              break;
            }
        }
        c.done[i] = true;
      },
      &c, false);
  EXPECT_FALSE(c.gave_up.load());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(c.done[i].load()) << i;
  // Thread 1's share is {2, 3}: whichever thread waited in 2, the other ran 3.
  EXPECT_NE(c.ran_by[2].load(), c.ran_by[3].load());
}

// Indices are taken in chunks (guided: a part of what is left), not a whole share at once: a thread whose indices
// are slow keeps only its first chunk, and the other takes over the rest of its share.
TEST(ThreadPool, ASlowThreadKeepsOnlyItsFirstChunk) {
  ThreadPool pool(2);
  constexpr size_t kItems = 400;
  struct Context {
    std::atomic<int> runs[kItems];
    std::atomic<size_t> by_thread[2];
  } c;
  for (auto& r : c.runs) r = 0;
  c.by_thread[0] = c.by_thread[1] = 0;
  pool.Run(
      kItems,
      [](const void* ctx, size_t thread, size_t i) {
        auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
        c.runs[i]++;
        c.by_thread[thread]++;
        if (thread == 0 && i == 0) {  // the caller's first index waits until the worker has taken its first chunk
          const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
          while (c.by_thread[1].load() == 0 && std::chrono::steady_clock::now() < until) {
          }
        }
        if (thread == 1) {  // 2 ms an index on the worker, none on the caller
          const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
          while (std::chrono::steady_clock::now() < until) {
          }
        }
      },
      &c, false);
  for (size_t i = 0; i < kItems; ++i) EXPECT_EQ(c.runs[i].load(), 1) << i;
  EXPECT_EQ(c.by_thread[0] + c.by_thread[1], kItems);
  // The worker's share is 200 indices and its first chunk a quarter of them: the caller runs its own 200 and at
  // least 100 of the worker's (the worker's 50 take 100 ms, time enough for the caller's 350 even on a loaded
  // machine).
  EXPECT_GE(c.by_thread[1].load(), 1u);
  EXPECT_GE(c.by_thread[0].load(), 300u);
}

// Each share's progress word carries the low 16 bits of its call's generation (thread_pool.h, Share): a word left
// by the last call reads as "not started". Over more calls than the tag has values (so the tag wraps), of every
// size from 2 to 9 indices, every index runs exactly once per call; then calls with fewer indices than threads
// (empty shares) alternate with fuller ones on three and four threads.
TEST(ThreadPool, EveryIndexRunsOncePerCallAcrossTheGenerationTagsWrap) {
  struct Context {
    std::atomic<int> runs[16];
  };
  auto check = [](ThreadPool& pool, size_t items, Context& c) {
    for (auto& r : c.runs) r = 0;
    pool.Run(
        items, [](const void* ctx, size_t, size_t i) { static_cast<Context*>(const_cast<void*>(ctx))->runs[i]++; },
        &c, false);
    for (size_t i = 0; i < 16; ++i)
      if (c.runs[i].load() != (i < items ? 1 : 0)) return false;
    return true;
  };
  {
    ThreadPool pool(2);
    Context c;
    for (int call = 0; call < 70'000; ++call)
      ASSERT_TRUE(check(pool, 2 + call % 8, c)) << "call " << call << ", " << 2 + call % 8 << " indices";
  }
  for (size_t threads : {3, 4}) {
    ThreadPool pool(threads);
    Context c;
    for (int call = 0; call < 300; ++call) {
      const size_t items = call % 2 ? 2 : 2 + call % 15;
      ASSERT_TRUE(check(pool, items, c)) << threads << " threads, call " << call << ", " << items << " indices";
    }
  }
}

// LockstepBarrier::TimeWaits: a thread's time from its arrival to its leaving. Thread 1 arrives 30 ms after thread 0,
// so thread 0's wait holds those 30 ms and thread 1's does not; off, nothing is added; ClearWaitedSeconds zeroes both.
TEST(ThreadPool, TimedLockstepWaitsHoldTheTimeSpentWaitingForTheLateThread) {
  ThreadPool pool(2);
  struct Context {
    LockstepBarrier barrier = LockstepBarrier(2);
  } c;
  auto run = [&] {
    pool.RunOnEachThread(
        [](const void* ctx, size_t thread, size_t) {
          auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
          if (thread == 1) std::this_thread::sleep_for(std::chrono::milliseconds(30));
          c.barrier.Wait(thread);
        },
        &c, false);
  };
  run();
  EXPECT_EQ(c.barrier.WaitedSeconds(0), 0.0);
  EXPECT_EQ(c.barrier.WaitedSeconds(1), 0.0);
  c.barrier.TimeWaits(true);
  run();
  EXPECT_GE(c.barrier.WaitedSeconds(0), 0.025);
  EXPECT_LT(c.barrier.WaitedSeconds(1), c.barrier.WaitedSeconds(0));
  EXPECT_EQ(c.barrier.WaitedSeconds(2), 0.0);  // no such thread
  const double after_one = c.barrier.WaitedSeconds(0);
  run();
  EXPECT_GE(c.barrier.WaitedSeconds(0), after_one + 0.025);  // summed over the Waits
  c.barrier.ClearWaitedSeconds();
  EXPECT_EQ(c.barrier.WaitedSeconds(0), 0.0);
  EXPECT_EQ(c.barrier.WaitedSeconds(1), 0.0);
}

// RunOnEachThread: thread t runs index t, once, and all at the same time: the items pass a LockstepBarrier together
// many times (a thread that ran two items, or one that never started, would leave the others waiting: the check
// gives up after 20 s instead of hanging). Runs between ordinary calls, so the share words' tags stay in step too.
// Half the waits ask for lines while they wait (LockstepBarrier::Wait's ask, 1 MiB, longer than most waits): they
// still leave only once every thread has arrived.
TEST(ThreadPool, RunOnEachThreadRunsThreadTsItemOnThreadTAllAtOnce) {
  for (size_t threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    struct Context {
      LockstepBarrier barrier;
      std::atomic<int> runs[4];
      std::atomic<size_t> ran_by[4];
      std::atomic<uint64_t> sum{0};
      std::vector<char> lines = std::vector<char>(1 << 20);
    } c;
    c.barrier = LockstepBarrier(threads);
    for (int call = 0; call < 50; ++call) {
      for (size_t t = 0; t < 4; ++t) c.runs[t] = 0, c.ran_by[t] = 99;
      c.sum = 0;
      pool.RunOnEachThread(
          [](const void* ctx, size_t thread, size_t i) {
            auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
            c.runs[i]++;
            c.ran_by[i] = thread;
            SumInStep(c.barrier, c.sum, thread, 10, &c.lines);
          },
          &c, false);
      for (size_t t = 0; t < threads; ++t) {
        ASSERT_EQ(c.runs[t].load(), 1) << threads << " threads, call " << call << ", item " << t;
        ASSERT_EQ(c.ran_by[t].load(), t) << threads << " threads, call " << call;
      }
      std::atomic<int> ordinary{0};
      pool.Run(
          7, [](const void* ctx, size_t, size_t) { (*static_cast<std::atomic<int>*>(const_cast<void*>(ctx)))++; },
          &ordinary, false);
      ASSERT_EQ(ordinary.load(), 7);
    }
  }
}

// More threads than CPUs (the process held to one CPU, as `taskset -c N` or a phone's cpuset): the pool does not
// spin (spin_ns 0), the barrier's waiters sleep on the late thread's count, and every round still leaves only once
// all threads arrived — a lost wake would hang here, an early leave fail the sums. A barrier made as if the CPUs were
// free (not `crowded`) learns it: some thread's spin budget falls below the most (waits that end in a sleep halve it).
TEST(ThreadPool, MoreThreadsThanCpusSleepRatherThanSpinAndStayInStep) {
  {
    OneCpu one;  // the pool's workers inherit it
    ASSERT_TRUE(one.held);
    for (size_t threads : {2, 3, 4})
      for (bool crowded : {true, false}) {
        SCOPED_TRACE(std::to_string(threads) + (crowded ? " threads, crowded" : " threads"));
        ThreadPool pool(threads);
        EXPECT_EQ(pool.spin_ns(), 0);
        struct Context {
          LockstepBarrier barrier;
          std::atomic<uint64_t> sum{0};
        } c;
        c.barrier = LockstepBarrier(threads, crowded);
        for (int call = 0; call < 20; ++call) {
          c.sum = 0;
          pool.RunOnEachThread(
              [](const void* ctx, size_t thread, size_t) {
                auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
                SumInStep(c.barrier, c.sum, thread, 25);
              },
              &c, false);
        }
        uint32_t least = LockstepBarrier::kMaxSpins;
        for (size_t t = 0; t < threads; ++t) least = std::min(least, c.barrier.SpinBudget(t));
        EXPECT_LT(least, LockstepBarrier::kMaxSpins);
      }
  }
  cpu_set_t now;
  ASSERT_EQ(sched_getaffinity(0, sizeof now, &now), 0);
  EXPECT_EQ(ThreadPool(2).spin_ns(), CPU_COUNT(&now) >= 2 ? ThreadPool::kSpinBeforeSleepNs : 0);
}

// x86 DAZ / Arm FZ: a denormal input reads as zero.
bool FlushesDenormals() {
  volatile float tiny = 1e-40f;  // a float denormal
  volatile float one = 1.0f;
  return tiny * one == 0.0f;
}

TEST(ThreadPool, DenormalFlagHoldsOnEveryThreadForTheCallOnly) {
  ASSERT_FALSE(FlushesDenormals()) << "the test starts in the default floating-point mode";
  for (size_t threads : {1, 2, 3}) {
    pthreadpool_t pool = pthreadpool_create(threads);
    for (uint32_t flags : {0u, (uint32_t)PTHREADPOOL_FLAG_DISABLE_DENORMALS}) {
      struct Context {
        std::atomic<int> flushed{0}, kept{0};
      } c;
      pthreadpool_parallelize_1d(
          pool,
          [](void* ctx, size_t) {
            auto& c = *static_cast<Context*>(ctx);
            (FlushesDenormals() ? c.flushed : c.kept)++;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // every thread gets some
          },
          &c, 12, flags);
      if (flags) {
        EXPECT_EQ(c.flushed.load(), 12) << threads;
      } else {
        EXPECT_EQ(c.kept.load(), 12) << threads;
      }
      EXPECT_FALSE(FlushesDenormals()) << "the caller's mode is restored";
    }
    pthreadpool_destroy(pool);
  }
}

// Idle workers go to sleep after ThreadPool::kSpinBeforeSleepNs; the next call wakes them (a worker has to run
// index 1 while thread 0 waits in index 0), and a pool with sleeping workers is destroyed without hanging.
TEST(ThreadPool, SleepingWorkersAreWokenByTheNextCall) {
  for (size_t threads : {2, 4}) {
    auto pool = std::make_unique<ThreadPool>(threads);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (pool->SleepingWorkers() < threads - 1 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_EQ(pool->SleepingWorkers(), threads - 1) << "idle workers sleep";
    struct Context {
      std::atomic<bool> second_done{false}, gave_up{false};
      std::atomic<int> calls{0};
    };
    for (int round = 0; round < 3; ++round) {
      Context c;
      pool->Run(
          threads,
          [](const void* ctx, size_t thread, size_t i) {
            auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
            c.calls++;
            if (i == 1) c.second_done = true;
            if (i == 0 && thread == 0) {  // holds thread 0 until another thread ran index 1
              const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
              while (!c.second_done.load())
                if (std::chrono::steady_clock::now() > until) {
                  c.gave_up = true;
                  break;
                }
            }
          },
          &c, false);
      EXPECT_FALSE(c.gave_up.load()) << threads << " threads, round " << round;
      EXPECT_EQ(c.calls.load(), (int)threads);
      std::this_thread::sleep_for(std::chrono::milliseconds(round * 5));  // the later rounds find them asleep
    }
    pool.reset();
  }
}


// A worker that has not started a loop by the time the caller has taken every index is skipped (ThreadPool::
// SkippedWorkers): the process held to one CPU, where a worker runs only when the caller is descheduled, every index
// of every call still runs exactly once, and some calls went on without a worker. RunOnEachThread, whose items wait
// for each other, is never skipped: each of its calls still runs every thread's item.
TEST(ThreadPool, WorkersLateToALoopAreSkippedAndEveryIndexStillRunsOnce) {
  OneCpu one;  // the pool's workers inherit it
  ASSERT_TRUE(one.held);
  for (size_t threads : {2, 4}) {
    ThreadPool pool(threads);
    struct Context {
      std::vector<std::atomic<int>> runs = std::vector<std::atomic<int>>(300);
      std::atomic<int> each[4];
    } c;
    // (Many small calls: a worker that took a job's word and was descheduled before starting it, while the caller
    // skipped it for that job and the next ones, once ran a later job's indices on its way back in.)
    for (int call = 0; call < 40'000; ++call) {
      const size_t items = call % 100 ? 2 + call % 9 : 1 + (size_t)(call * 37) % 300;
      for (auto& r : c.runs) r = 0;
      pool.Run(
          items, [](const void* ctx, size_t, size_t i) { static_cast<Context*>(const_cast<void*>(ctx))->runs[i]++; },
          &c, false);
      for (size_t i = 0; i < items; ++i) ASSERT_EQ(c.runs[i].load(), 1) << threads << " threads, call " << call;
      if (call % 5000 == 0) {
        for (auto& e : c.each) e = 0;
        pool.RunOnEachThread(
            [](const void* ctx, size_t, size_t i) { static_cast<Context*>(const_cast<void*>(ctx))->each[i]++; }, &c, false);
        for (size_t t = 0; t < threads; ++t) ASSERT_EQ(c.each[t].load(), 1) << threads << " threads, call " << call;
      }
    }
    EXPECT_GT(pool.SkippedWorkers(), 0u) << threads << " threads";
  }
}

// The same on every CPU, with as many threads spinning beside the pool as there are CPUs, so that the scheduler takes
// the pool's threads off their CPUs at any point: between seeing a job and starting it too, where a worker the
// caller skipped for that job and the next ones once ran a later job's indices (session 51, found by a stress run).
TEST(ThreadPool, WorkersDescheduledAnywhereAreSkippedAndEveryIndexStillRunsOnce) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> hogs;
  for (unsigned i = 0; i < std::max(2u, std::thread::hardware_concurrency()); ++i)
    hogs.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  for (size_t threads : {2, 3}) {
    ThreadPool pool(threads);
    std::atomic<int> runs[16];
    bool ok = true;
    for (int call = 0; call < 300'000 && ok; ++call) {
      const size_t items = 2 + call % 8;
      for (auto& r : runs) r = 0;
      pool.Run(
          items, [](const void* ctx, size_t, size_t i) { static_cast<std::atomic<int>*>(const_cast<void*>(ctx))[i]++; },
          runs, false);
      for (size_t i = 0; i < 16; ++i)
        if (runs[i].load() != (i < items ? 1 : 0)) {
          ADD_FAILURE() << threads << " threads, call " << call << ": index " << i << " ran " << runs[i].load() << " times";
          ok = false;
        }
    }
    EXPECT_GT(pool.SkippedWorkers(), 0u) << threads << " threads";
  }
  stop = true;
  for (std::thread& h : hogs) h.join();
}

// ParallelLoops counts the Run calls that ran on more than one thread (what SkippedWorkers is a share of): not a
// call of one index, nor one on a roster of one, nor RunOnEachThread (which never skips).
TEST(ThreadPool, CountsTheLoopsItRanOnMoreThanOneThread) {
  ThreadPool pool(3);
  auto nothing = [](const void*, size_t, size_t) {};
  EXPECT_EQ(pool.ParallelLoops(), 0u);
  pool.Run(10, nothing, nullptr, false);
  EXPECT_EQ(pool.ParallelLoops(), 1u);
  pool.Run(1, nothing, nullptr, false);
  pool.RunOnEachThread(nothing, nullptr, false);
  EXPECT_EQ(pool.ParallelLoops(), 1u);
  pool.SetActiveThreads(1);
  pool.Run(10, nothing, nullptr, false);
  EXPECT_EQ(pool.ParallelLoops(), 1u);
  pool.SetActiveThreads(2);
  pool.Run(10, nothing, nullptr, false);
  EXPECT_EQ(pool.ParallelLoops(), 2u);
}

// SetActiveThreads: a roster of n threads runs every index of every call once, on threads 0..n-1 only, and
// RunOnEachThread's items (with a barrier set to the roster, as the lockstep step sets it) on exactly those threads;
// rosters that shrink and grow again in any order take back the workers that sat out (a worker not woken, or one
// whose old done report read as the new job's, would hang a call or lose indices), and a pool stops with workers
// sitting out.
TEST(ThreadPool, ARosterOfFewerThreadsRunsEveryIndexOnThoseOnly) {
  for (size_t threads : {2, 3, 4}) {
    auto pool = std::make_unique<ThreadPool>(threads);
    struct Context {
      std::vector<std::atomic<int>> runs = std::vector<std::atomic<int>>(1000);
      std::atomic<size_t> max_thread{0};
      LockstepBarrier barrier;
      std::atomic<uint64_t> sum{0};
    } c;
    c.barrier = LockstepBarrier(threads);
    const size_t rosters[] = {threads, 1, threads - 1, threads, 2, 1, 1, threads, (threads + 1) / 2, threads - 1};
    for (int round = 0; round < 40; ++round) {
      const size_t n = rosters[round % 10];
      pool->SetActiveThreads(n);
      ASSERT_EQ(pool->active_threads(), n);
      for (size_t items : {1, 7, 1000}) {
        for (auto& r : c.runs) r = 0;
        c.max_thread = 0;
        pool->Run(
            items,
            [](const void* ctx, size_t thread, size_t i) {
              auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
              c.runs[i]++;
              for (size_t m = c.max_thread.load(); thread > m && !c.max_thread.compare_exchange_weak(m, thread);) {
              }
            },
            &c, false);
        for (size_t i = 0; i < items; ++i) ASSERT_EQ(c.runs[i].load(), 1) << threads << " threads, roster " << n << ", item " << i;
        ASSERT_LT(c.max_thread.load(), n) << threads << " threads, roster " << n;
      }
      c.barrier.SetActive(n);
      c.sum = 0;
      for (auto& r : c.runs) r = 0;
      pool->RunOnEachThread(
          [](const void* ctx, size_t thread, size_t i) {
            auto& c = *static_cast<Context*>(const_cast<void*>(ctx));
            EXPECT_EQ(thread, i);
            c.runs[i]++;
            SumInStep(c.barrier, c.sum, thread, 5);
          },
          &c, false);
      for (size_t t = 0; t < threads; ++t) ASSERT_EQ(c.runs[t].load(), t < n ? 1 : 0) << threads << " threads, roster " << n;
    }
    pool->SetActiveThreads(0);  // (clamped)
    EXPECT_EQ(pool->active_threads(), 1u);
    pool->SetActiveThreads(99);
    EXPECT_EQ(pool->active_threads(), threads);
    pool->SetActiveThreads(1);
    pool->Run(
        3, [](const void*, size_t, size_t) {}, nullptr, false);
    pool.reset();  // stops with every worker sitting out
  }
}

}  // namespace
}  // namespace mikv
