// How many threads a session takes when asked for 0: the CPUs this process may run on, and of those only the fast
// ones.
//
// Why not std::thread::hardware_concurrency(): it counts every CPU online, not those this process may use. Android
// keeps a background app to its little cores (a cpuset), a container may get two CPUs of sixteen, `taskset` one: a
// decode step's lockstep threads then outnumber their CPUs and each of its ~150 barriers waits for a thread that is
// not running. The default model under `taskset -c 0` on this project's host decoded 3.8 tok/s on the two threads
// hardware_concurrency gave, against 398-415 tok/s on one (docs/bench/default-threads-session47.txt).
//
// Why only the fast cores: a lockstep step ends when the slowest core finishes its share; a phone's little cores (an
// RK3588's 1.8 GHz A55s beside 2.4 GHz A76s) would hold back the big ones. (Balancing, LockstepShares, gives a slower
// thread fewer projection rows, but no fewer than half an equal share, and the attention's kv heads still go round
// the threads equally.) A CPU counts as fast when its highest clock (cpufreq's cpuinfo_max_freq) is at least 80% of the
// fastest allowed CPU's: a Snapdragon 8 Gen 2's 3.19 + 4 × 2.8 GHz cores but not its 3 × 2.0, a Tensor G3's 2.91 +
// 4 × 2.37 but not its 4 × 1.7, an Intel hybrid's P-cores but not its E-cores. Where a clock is unknown (no cpufreq:
// VMs, containers without /sys) every allowed CPU counts.
#pragma once

#include <string>
#include <vector>

namespace mikv {

// The default thread count: FastCpuCount over the CPUs this thread may run on (sched_getaffinity), their clocks read
// from /sys/devices/system/cpu. At least 1.
int DefaultThreadCount();

// True where `threads` outnumber the CPUs this thread may run on (false where the system does not say): spinning
// waits then hold the CPU that the thread they wait for needs (ThreadPool, LockstepBarrier).
bool MoreThreadsThanCpus(int threads);

// The CPUs (numbers) this thread may run on; empty where the system does not say.
std::vector<int> AllowedCpus();

// Each CPU's highest clock in kHz from `<cpu_dir>/cpuN/cpufreq/cpuinfo_max_freq` (cpu_dir normally
// /sys/devices/system/cpu; tests give a tree of their own), 0 where it cannot be read.
std::vector<long> MaxClocksKhz(const std::vector<int>& cpus, const std::string& cpu_dir);

// How many of CPUs with these highest clocks are fast (above); all of them when any clock is 0 (unknown); 1 for none.
int FastCpuCount(const std::vector<long>& max_khz);

}  // namespace mikv
