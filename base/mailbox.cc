#include "base/mailbox.h"

#include <utility>

namespace sluice {

bool Mailbox::Put(Action action) {
  absl::MutexLock lock(&mu_);
  if (closed_) return false;
  queue_.push_back(std::move(action));
  return true;
}

bool Mailbox::PutUrgent(Action action) {
  absl::MutexLock lock(&mu_);
  if (closed_) return false;
  urgent_.push_back(std::move(action));
  return true;
}

bool Mailbox::TakeOne(Action* out) {
  absl::MutexLock lock(&mu_);
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
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return !queue_.empty() || !urgent_.empty() || closed_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }
  return RunAvailable();
}

void Mailbox::RunUntilClosed() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || !urgent_.empty() || closed_;
      };
      mu_.Await(absl::Condition(&ready));
      if (closed_ && queue_.empty() && urgent_.empty()) return;
    }
    RunAvailable();
  }
}

void Mailbox::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool Mailbox::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

size_t Mailbox::size() const {
  absl::MutexLock lock(&mu_);
  return queue_.size() + urgent_.size();
}

}  // namespace sluice
