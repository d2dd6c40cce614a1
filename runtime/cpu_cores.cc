#include "cpu_cores.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace mikv {

std::vector<int> AllowedCpus() {
  std::vector<int> cpus;
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
#endif
  return cpus;
}

std::vector<long> MaxClocksKhz(const std::vector<int>& cpus, const std::string& cpu_dir) {
  std::vector<long> khz;
  for (int c : cpus) {
    const std::string path = cpu_dir + "/cpu" + std::to_string(c) + "/cpufreq/cpuinfo_max_freq";
    long v = 0;
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      if (std::fscanf(f, "%ld", &v) != 1 || v < 0) v = 0;
      std::fclose(f);
    }
    khz.push_back(v);
  }
  return khz;
}

int FastCpuCount(const std::vector<long>& max_khz) {
  if (max_khz.empty()) return 1;
  if (std::find(max_khz.begin(), max_khz.end(), 0L) != max_khz.end()) return (int)max_khz.size();
  const long top = *std::max_element(max_khz.begin(), max_khz.end());
  // 80% in integers: khz·5 >= top·4 (a clock of up to ~10^12 kHz fits a long's 63 bits with room).
  return (int)std::count_if(max_khz.begin(), max_khz.end(), [top](long k) { return k * 5 >= top * 4; });
}

bool MoreThreadsThanCpus(int threads) {
  const std::vector<int> cpus = AllowedCpus();
  return !cpus.empty() && threads > (int)cpus.size();
}

int DefaultThreadCount() {
  const std::vector<int> cpus = AllowedCpus();
  if (cpus.empty()) return (int)std::max(1u, std::thread::hardware_concurrency());
  return FastCpuCount(MaxClocksKhz(cpus, "/sys/devices/system/cpu"));
}

}  // namespace mikv
