// Mailbox: a queue of actions that one owner thread runs in the order they were put. Any thread
// may put an action or wake the owner; only the owner runs them, so the state those actions touch
// needs no lock. Put/Close are thread-safe; the Run* methods are for the owner thread only.
#pragma once

#include <cstddef>
#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/sync.h"

namespace sluice {

class Mailbox {
 public:
  using Action = absl::AnyInvocable<void() &&>;

  // Queues `action` behind everything already queued. Returns false (and drops the action)
  // once the mailbox is closed.
  bool Put(Action action);
  // Queues `action` ahead of ordinary actions, behind earlier urgent ones (cancellation, priority
  // events).
  bool PutUrgent(Action action);

  // Runs every queued action, including ones they queue, without waiting. Returns how many ran.
  size_t RunAvailable();
  // Waits up to `timeout` for an action, then runs what is queued. Returns how many ran.
  size_t WaitAndRun(absl::Duration timeout);
  // Runs actions as they come until Close() and the queue is drained.
  void RunUntilClosed();

  // Refuses further actions; those already queued still run.
  void Close();
  bool closed() const;
  size_t size() const;

 private:
  bool TakeOne(Action* out);

  mutable Mutex mu_;
  CondVar cv_;  // signalled on every put and on close
  std::deque<Action> urgent_ ABSL_GUARDED_BY(mu_);
  std::deque<Action> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice
