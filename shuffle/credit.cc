#include "shuffle/credit.h"

#include <vector>

namespace sluice {

size_t FloatingCredits::Request(size_t wanted,
                                const std::shared_ptr<FloatingCreditWaiter>& waiter) {
  MutexLock lock(&mu_);
  // Waiters already queued come first: a newcomer takes nothing while others wait.
  const size_t granted = waiters_.empty() ? std::min(wanted, available_) : 0;
  available_ -= granted;
  for (size_t i = granted; i < wanted; ++i) waiters_.push_back(waiter);
  return granted;
}

void FloatingCredits::Return(size_t n) {
  std::vector<std::shared_ptr<FloatingCreditWaiter>> grant;
  {
    MutexLock lock(&mu_);
    available_ += n;
    while (available_ > 0 && !waiters_.empty()) {
      std::shared_ptr<FloatingCreditWaiter> w = waiters_.front().lock();
      waiters_.pop_front();
      if (w == nullptr) continue;
      --available_;
      grant.push_back(std::move(w));
    }
  }
  for (auto& w : grant) w->OnFloatingCredit();
}

void FloatingCredits::CancelWaits(const FloatingCreditWaiter* waiter) {
  MutexLock lock(&mu_);
  std::erase_if(waiters_, [&](const std::weak_ptr<FloatingCreditWaiter>& w) {
    auto p = w.lock();
    return p == nullptr || p.get() == waiter;
  });
}

size_t FloatingCredits::available() const {
  MutexLock lock(&mu_);
  return available_;
}

}  // namespace sluice
