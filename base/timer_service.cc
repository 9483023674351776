#include "base/timer_service.h"

#include <pthread.h>

#include <vector>

namespace sluice {

TimerService::TimerService(std::string name) : name_(std::move(name)) {
  thread_ = std::thread([this] { Run(); });
  // Thread names are limited to 15 characters.
  pthread_setname_np(thread_.native_handle(), name_.substr(0, 15).c_str());
}

TimerService::~TimerService() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    cv_.SignalAll();
  }
  thread_.join();
  // Callbacks may own resources whose destructors take locks; drop them outside ours.
  std::map<std::pair<Clock::time_point, TimerId>, Callback> dropped;
  {
    MutexLock lock(&mu_);
    dropped.swap(timers_);
    deadlines_.clear();
  }
}

TimerService::TimerId TimerService::Schedule(absl::Duration delay, Callback callback) {
  // Capped so that the sum cannot overflow the clock.
  const absl::Duration d = std::min(std::max(delay, absl::ZeroDuration()), absl::Hours(24 * 365));
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
  MutexLock lock(&mu_);
  const TimerId id = next_id_++;
  const bool earliest = timers_.empty() || deadline < timers_.begin()->first.first;
  timers_.emplace(std::make_pair(deadline, id), std::move(callback));
  deadlines_.emplace(id, deadline);
  if (earliest) cv_.SignalAll();
  return id;
}

bool TimerService::Cancel(TimerId id) {
  Callback dropped;
  {
    MutexLock lock(&mu_);
    auto it = deadlines_.find(id);
    if (it == deadlines_.end()) return false;
    auto node = timers_.find(std::make_pair(it->second, id));
    dropped = std::move(node->second);
    timers_.erase(node);
    deadlines_.erase(it);
  }
  return true;
}

size_t TimerService::pending() const {
  MutexLock lock(&mu_);
  return timers_.size();
}

void TimerService::Run() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    if (timers_.empty()) {
      cv_.Wait(&mu_);
      continue;
    }
    auto first = timers_.begin();
    const Clock::duration wait = first->first.first - Clock::now();
    if (wait > Clock::duration::zero()) {
      cv_.WaitWithTimeout(&mu_, absl::FromChrono(wait));
      continue;
    }
    Callback callback = std::move(first->second);
    deadlines_.erase(first->first.second);
    timers_.erase(first);
    mu_.Unlock();
    std::move(callback)();
    // Destroy what the callback captured before taking the lock again.
    callback = nullptr;
    mu_.Lock();
  }
}

}  // namespace sluice
