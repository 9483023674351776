// Monotonic time for latency measurement and timeouts. Thread-safe.
#pragma once

#include <time.h>

#include <cstdint>

namespace sluice {

// Nanoseconds on CLOCK_MONOTONIC: comparable across threads and processes of one host.
inline int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace sluice
