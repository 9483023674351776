#include "base/mailbox.h"

#include <utility>

namespace sluice {

bool Mailbox::Put(Action action) {
  MutexLock lock(&mu_);
  if (closed_) return false;
  queue_.push_back(std::move(action));
  cv_.Signal();
  return true;
}

bool Mailbox::PutUrgent(Action action) {
  MutexLock lock(&mu_);
  if (closed_) return false;
  urgent_.push_back(std::move(action));
  cv_.Signal();
  return true;
}

bool Mailbox::TakeOne(Action* out) {
  MutexLock lock(&mu_);
  std::deque<Action>& q = urgent_.empty() ? queue_ : urgent_;
  if (q.empty()) return false;
  *out = std::move(q.front());
  q.pop_front();
  return true;
}

size_t Mailbox::RunAvailable() {
  size_t ran = 0;
  Action action;
  while (TakeOne(&action)) {
    std::move(action)();
    action = nullptr;
    ++ran;
  }
  return ran;
}

size_t Mailbox::WaitAndRun(absl::Duration timeout) {
  {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu_);
    while (queue_.empty() && urgent_.empty() && !closed_) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      cv_.WaitWithTimeout(&mu_, left);
    }
  }
  return RunAvailable();
}

void Mailbox::RunUntilClosed() {
  while (true) {
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && urgent_.empty() && !closed_) cv_.Wait(&mu_);
      if (closed_ && queue_.empty() && urgent_.empty()) return;
    }
    RunAvailable();
  }
}

void Mailbox::Close() {
  MutexLock lock(&mu_);
  closed_ = true;
  cv_.SignalAll();
}

bool Mailbox::closed() const {
  MutexLock lock(&mu_);
  return closed_;
}

size_t Mailbox::size() const {
  MutexLock lock(&mu_);
  return queue_.size() + urgent_.size();
}

}  // namespace sluice
