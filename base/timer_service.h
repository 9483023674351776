// TimerService: runs callbacks after a delay on one thread of its own, in deadline order. For
// output flushes, request deadlines and anything else that must happen "later" without a
// busy loop. Thread-safe: any thread may schedule or cancel; callbacks run on the timer thread,
// one at a time, outside the service's lock, so a callback may schedule again.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "base/sync.h"

namespace sluice {

class TimerService {
 public:
  using TimerId = uint64_t;
  using Callback = absl::AnyInvocable<void() &&>;

  explicit TimerService(std::string name);
  // Stops the thread; callbacks not yet run are dropped without running.
  ~TimerService();

  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  // Runs `callback` once, `delay` from now (at once for a delay <= 0). Never returns 0.
  TimerId Schedule(absl::Duration delay, Callback callback);
  // Drops a pending timer. Returns false when it has already run, is running, or never existed.
  bool Cancel(TimerId id);

  size_t pending() const;

 private:
  void Run();

  const std::string name_;
  mutable Mutex mu_;
  CondVar cv_;
  // Deadlines on the monotonic clock: a wall-clock jump must not fire or hold back timers.
  using Clock = std::chrono::steady_clock;
  // Deadline order; the id breaks ties so that timers with one deadline run in schedule order.
  std::map<std::pair<Clock::time_point, TimerId>, Callback> timers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TimerId, Clock::time_point> deadlines_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sluice
