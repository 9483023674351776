// Credit-based flow control, as Flink's network stack has it since 1.5, in one place for every
// channel type. A consumer channel may hold `exclusive` buffers of its own plus floating buffers
// that it borrows from its gate's shared FloatingCredits while its producer reports a backlog.
// Credit is what the producer may send without asking: the buffers the channel could hold
// minus those it holds. Remote channels back every credit with a real segment; local channels
// read the producer's segments and use the same numbers as a bound, so a consumer behaves the
// same whichever shuffle service runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "base/sync.h"

namespace sluice {

// Whoever waits for a floating credit.
class FloatingCreditWaiter {
 public:
  virtual ~FloatingCreditWaiter() = default;
  // One floating credit now belongs to the waiter. Called outside the pool's lock, on the thread
  // that returned the credit.
  virtual void OnFloatingCredit() = 0;
};

// The floating credits of one gate. Thread-safe.
class FloatingCredits {
 public:
  explicit FloatingCredits(size_t total) : total_(total), available_(total) {}

  // Takes up to `wanted` credits now and returns how many it took. When it took fewer, `waiter`
  // is queued (once) and receives one credit per OnFloatingCredit as they come back, in FIFO
  // order among waiters, until it has had the shortfall.
  size_t Request(size_t wanted, const std::shared_ptr<FloatingCreditWaiter>& waiter);
  // Gives back `n` credits; queued waiters get them first.
  void Return(size_t n);
  // Forgets `waiter`'s queued requests (the channel is going away or needs no more).
  void CancelWaits(const FloatingCreditWaiter* waiter);

  size_t total() const { return total_; }
  size_t available() const;

 private:
  const size_t total_;
  mutable Mutex mu_;
  size_t available_ ABSL_GUARDED_BY(mu_);
  // One entry per credit still owed.
  std::deque<std::weak_ptr<FloatingCreditWaiter>> waiters_ ABSL_GUARDED_BY(mu_);
};

// The credit state of one channel. Not thread-safe: the channel guards it with its own lock.
class ChannelCredit {
 public:
  explicit ChannelCredit(uint32_t exclusive) : exclusive_(exclusive) {}

  // Buffers the producer may send now.
  uint32_t available() const { return held_ < capacity() ? capacity() - held_ : 0; }
  uint32_t capacity() const { return exclusive_ + floating_; }
  uint32_t exclusive() const { return exclusive_; }
  uint32_t floating() const { return floating_; }
  uint32_t held() const { return held_; }
  uint32_t backlog() const { return backlog_; }
  // Floating credits requested but not yet granted.
  uint32_t pending_floating() const { return pending_; }

  // A data buffer arrived together with its producer's backlog (buffers still queued there).
  // Returns how many floating credits to request now: as Flink does, enough that the free
  // buffers cover backlog + exclusive.
  uint32_t OnBufferReceived(uint32_t backlog) {
    ++held_;
    backlog_ = backlog;
    return Shortfall();
  }
  // The producer announced its backlog without sending a buffer.
  uint32_t OnBacklog(uint32_t backlog) {
    backlog_ = backlog;
    return Shortfall();
  }
  // One floating credit arrived from a queued request. Returns whether the channel keeps it;
  // when its backlog has shrunk meanwhile, it does not, and the caller gives it back.
  bool OnFloatingArrived() {
    if (pending_ > 0) --pending_;
    if (available() >= Required()) return false;
    ++floating_;
    return true;
  }
  // A request for `wanted` floating credits was answered with `granted` at once; the rest are
  // queued at the gate and arrive one by one through OnFloatingArrived.
  void OnRequestAnswered(uint32_t wanted, uint32_t granted) {
    floating_ += granted;
    pending_ += wanted - granted;
  }
  // Asks `pool` for `wanted` floating credits on behalf of `waiter` (the channel) and returns how
  // many it gave at once; the rest arrive through the waiter's OnFloatingCredit.
  uint32_t RequestFloating(uint32_t wanted, FloatingCredits& pool,
                           const std::shared_ptr<FloatingCreditWaiter>& waiter) {
    if (wanted == 0) return 0;
    const auto granted = static_cast<uint32_t>(pool.Request(wanted, waiter));
    OnRequestAnswered(wanted, granted);
    return granted;
  }
  // The consumer finished a buffer. Returns how many floating credits to give back to the gate:
  // one when the channel has more free buffers than its backlog needs.
  uint32_t OnBufferConsumed() {
    if (held_ > 0) --held_;
    if (floating_ > 0 && available() > Required()) {
      --floating_;
      return 1;
    }
    return 0;
  }
  // Everything the channel holds is gone (release): the floating credits to give back.
  uint32_t ReleaseAll() {
    const uint32_t f = floating_;
    floating_ = 0;
    held_ = 0;
    pending_ = 0;
    return f;
  }

 private:
  // Free buffers wanted: room for the whole backlog plus the exclusive ones, so that the
  // producer never waits on an announcement round trip while it has data.
  uint32_t Required() const { return backlog_ + exclusive_; }
  uint32_t Shortfall() const {
    const uint32_t have = available() + pending_;
    return Required() > have ? Required() - have : 0;
  }

  const uint32_t exclusive_;
  uint32_t floating_ = 0;
  uint32_t held_ = 0;
  uint32_t backlog_ = 0;
  uint32_t pending_ = 0;
};

}  // namespace sluice
