// Locks and one-shot events for Sluice code.
//
// Thin wrappers over the standard library's pthread-based primitives, annotated for Clang's
// thread-safety analysis like absl::Mutex. Why not absl::Mutex itself: Debian ships Abseil
// prebuilt without ThreadSanitizer instrumentation, so ThreadSanitizer cannot see absl::Mutex's
// happens-before edges and reports every guarded access as a race; pthread mutexes are
// intercepted by every sanitizer. All types here are thread-safe.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    // Like absl::Mutex, an unlock re-checks the conditions of Await callers.
    const bool wake = awaiting_ > 0;
    mu_.unlock();
    if (wake) await_cv_.notify_all();
  }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }

  // Releases the lock until `cond()` holds (checked under the lock after every unlock by any
  // thread). REQUIRES: held.
  template <typename Cond>
  void Await(Cond cond) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    ++awaiting_;
    while (!cond()) await_cv_.wait(lock);
    --awaiting_;
    lock.release();
  }
  // As Await, but gives up after `timeout`; returns whether `cond()` holds.
  template <typename Cond>
  bool AwaitWithTimeout(Cond cond, absl::Duration timeout) {
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    ++awaiting_;
    bool ok = true;
    while (!(ok = cond())) {
      if (await_cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        ok = cond();
        break;
      }
    }
    --awaiting_;
    lock.release();
    return ok;
  }

 private:
  friend class CondVar;
  std::mutex mu_;
  std::condition_variable await_cv_;
  int awaiting_ = 0;  // guarded by mu_
};

// Holds `mu` for the scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Waits for a condition guarded by a Mutex. REQUIRES: the caller holds `mu` in every Wait*.
class CondVar {
 public:
  void Wait(Mutex* mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // Returns false when `timeout` passed first.
  bool WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool woken = true;
    if (timeout == absl::InfiniteDuration()) {
      cv_.wait(lock);
    } else {
      // wait_for adds the timeout to the clock's now(): cap it so that the sum cannot overflow.
      const absl::Duration capped = std::min(timeout, absl::Hours(24 * 365));
      woken = cv_.wait_for(lock, absl::ToChronoNanoseconds(capped)) == std::cv_status::no_timeout;
    }
    lock.release();
    return woken;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// A one-shot event: Notify once, any number of waiters.
class Notification {
 public:
  void Notify() {
    MutexLock lock(&mu_);
    notified_ = true;
    cv_.SignalAll();
  }
  bool HasBeenNotified() {
    MutexLock lock(&mu_);
    return notified_;
  }
  void WaitForNotification() {
    MutexLock lock(&mu_);
    while (!notified_) cv_.Wait(&mu_);
  }
  // Returns whether it was notified within `timeout`.
  bool WaitForNotificationWithTimeout(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu_);
    while (!notified_) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      cv_.WaitWithTimeout(&mu_, left);
    }
    return true;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice
