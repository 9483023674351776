// TimerService: callbacks run once, on the timer thread, in deadline order (schedule order among
// equal delays); Cancel drops a pending one and says whether it did; callbacks may schedule
// again; destroying the service drops what is pending without running it. No test asserts how
// long anything took: to make the order independent of timing, most tests first park the timer
// thread in a callback, queue what they need, then let it go.
#include "base/timer_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/sync.h"

namespace sluice {
namespace {

// "It eventually ran": generous, so that a loaded machine or a sanitizer never trips it.
constexpr absl::Duration kPatience = absl::Seconds(60);

// Holds the timer thread inside a callback until Release() or the end of the scope. The state is
// shared with the callback, which may still be leaving it when the scope ends.
class Parked {
 public:
  explicit Parked(TimerService& timers) : state_(std::make_shared<State>()) {
    timers.Schedule(absl::ZeroDuration(), [state = state_] {
      state->inside.Notify();
      state->release.WaitForNotification();
    });
    EXPECT_TRUE(state_->inside.WaitForNotificationWithTimeout(kPatience)) << "the timer never ran";
  }
  ~Parked() { Release(); }
  void Release() {
    if (!state_->release.HasBeenNotified()) state_->release.Notify();
  }

 private:
  struct State {
    Notification inside;
    Notification release;
  };
  std::shared_ptr<State> state_;
};

// The callbacks' record of what ran, shared with the timer thread.
class Log {
 public:
  void Add(int v) {
    MutexLock lock(&mu_);
    ran_.push_back(v);
  }
  // Waits until `n` entries are in; returns them.
  std::vector<int> WaitFor(size_t n) {
    MutexLock lock(&mu_);
    const bool done = mu_.AwaitWithTimeout([&] { return ran_.size() >= n; }, kPatience);
    EXPECT_TRUE(done) << "only " << ran_.size() << " of " << n << " callbacks ran";
    return ran_;
  }

 private:
  Mutex mu_;
  std::vector<int> ran_ ABSL_GUARDED_BY(mu_);
};

TEST(TimerServiceTest, RunsACallbackOnItsOwnThread) {
  Notification ran;
  std::thread::id where;
  TimerService timers("test-timer");
  const TimerService::TimerId id = timers.Schedule(absl::Milliseconds(1), [&] {
    where = std::this_thread::get_id();
    ran.Notify();
  });
  EXPECT_NE(id, 0u);
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
  EXPECT_NE(where, std::this_thread::get_id());
}

TEST(TimerServiceTest, RunsInDeadlineOrder) {
  Log log;  // outlives the service, whose callbacks write to it
  TimerService timers("test-timer");
  {
    Parked parked(timers);
    // Scheduled out of order.
    const int delays_ms[] = {30, 10, 50, 20, 40, 0};
    for (int d : delays_ms) timers.Schedule(absl::Milliseconds(d), [&log, d] { log.Add(d); });
    EXPECT_EQ(timers.pending(), 6u);
    // Not an assertion: so that all are due when the thread comes back, which must still take
    // them earliest first rather than in schedule order.
    absl::SleepFor(absl::Milliseconds(60));
  }
  EXPECT_EQ(log.WaitFor(6), (std::vector<int>{0, 10, 20, 30, 40, 50}));
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerServiceTest, EqualDelaysRunInScheduleOrder) {
  Log log;  // outlives the service, whose callbacks write to it
  TimerService timers("test-timer");
  constexpr int kCount = 200;
  {
    Parked parked(timers);
    for (int i = 0; i < kCount; ++i) {
      // Zero and negative delays alike mean "now".
      const absl::Duration delay = i % 3 == 0 ? absl::ZeroDuration() : -absl::Seconds(i);
      timers.Schedule(delay, [&log, i] { log.Add(i); });
    }
  }
  const std::vector<int> ran = log.WaitFor(kCount);
  ASSERT_EQ(ran.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) EXPECT_EQ(ran[static_cast<size_t>(i)], i);
}

TEST(TimerServiceTest, IdsAreDistinctAndNeverZero) {
  TimerService timers("test-timer");
  std::vector<TimerService::TimerId> ids;
  for (int i = 0; i < 100; ++i) ids.push_back(timers.Schedule(absl::Hours(1), [] {}));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_NE(ids[i], 0u);
    for (size_t j = 0; j < i; ++j) ASSERT_NE(ids[i], ids[j]);
  }
  EXPECT_EQ(timers.pending(), 100u);
}

TEST(TimerServiceTest, CancelDropsAPendingTimerWithoutRunningIt) {
  Log log;  // outlives the service, whose callbacks write to it
  TimerService timers("test-timer");
  auto owned = std::make_shared<int>(0);
  TimerService::TimerId cancelled;
  {
    Parked parked(timers);
    timers.Schedule(absl::ZeroDuration(), [&] { log.Add(1); });
    cancelled = timers.Schedule(absl::ZeroDuration(), [&log, owned] { log.Add(2); });
    timers.Schedule(absl::ZeroDuration(), [&] { log.Add(3); });
    EXPECT_EQ(owned.use_count(), 2);
    EXPECT_EQ(timers.pending(), 3u);

    EXPECT_TRUE(timers.Cancel(cancelled));
    EXPECT_EQ(owned.use_count(), 1) << "a cancelled callback is destroyed at once";
    EXPECT_EQ(timers.pending(), 2u);
    EXPECT_FALSE(timers.Cancel(cancelled)) << "cancelled twice";
  }
  EXPECT_EQ(log.WaitFor(2), (std::vector<int>{1, 3}));
  EXPECT_FALSE(timers.Cancel(cancelled));
}

TEST(TimerServiceTest, CancelIsFalseForTimersThatRanAreRunningOrNeverExisted) {
  Notification ran;
  std::atomic<TimerService::TimerId> self{0};
  Notification self_known;
  Notification cancel_tried;
  std::atomic<bool> cancelled_while_running{true};
  TimerService timers("test-timer");  // destroyed first: no callback outlives the state above

  EXPECT_FALSE(timers.Cancel(0));
  EXPECT_FALSE(timers.Cancel(12345));

  const TimerService::TimerId done = timers.Schedule(absl::ZeroDuration(), [&] { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(timers.Cancel(done)) << "already ran";
  EXPECT_EQ(timers.pending(), 0u);

  // A running callback cannot be cancelled, not even by itself.
  self = timers.Schedule(absl::ZeroDuration(), [&] {
    self_known.WaitForNotification();
    cancelled_while_running = timers.Cancel(self.load());
    cancel_tried.Notify();
  });
  self_known.Notify();
  ASSERT_TRUE(cancel_tried.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(cancelled_while_running.load());
}

TEST(TimerServiceTest, CancelFromAnotherThreadWhileTheCallbackRuns) {
  Notification inside;
  Notification release;
  Notification finished;
  TimerService timers("test-timer");
  const TimerService::TimerId id = timers.Schedule(absl::ZeroDuration(), [&] {
    inside.Notify();
    release.WaitForNotification();
    finished.Notify();
  });
  ASSERT_TRUE(inside.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(timers.Cancel(id)) << "running";
  release.Notify();
  EXPECT_TRUE(finished.WaitForNotificationWithTimeout(kPatience)) << "the callback ran to its end";
}

TEST(TimerServiceTest, AnEarlierTimerOvertakesOneTheThreadIsWaitingFor) {
  Log log;  // outlives the service, whose callbacks write to it
  TimerService timers("test-timer");
  timers.Schedule(absl::Hours(1), [&] { log.Add(2); });
  timers.Schedule(absl::InfiniteDuration(), [&] { log.Add(3); });
  // The thread sleeps until the hour is up unless a new earliest timer wakes it.
  timers.Schedule(absl::Milliseconds(1), [&] { log.Add(1); });
  EXPECT_EQ(log.WaitFor(1), std::vector<int>{1});
  EXPECT_EQ(timers.pending(), 2u);
}

TEST(TimerServiceTest, CallbacksMayScheduleAgain) {
  Log log;  // outlives the service, whose callbacks write to it
  TimerService timers("test-timer");
  constexpr int kRounds = 50;
  // Each round schedules the next from the timer thread, with and without a delay.
  std::function<void(int)> round = [&](int i) {
    log.Add(i);
    if (i + 1 < kRounds) {
      timers.Schedule(i % 2 == 0 ? absl::ZeroDuration() : absl::Microseconds(100),
                      [&round, i] { round(i + 1); });
    }
  };
  timers.Schedule(absl::ZeroDuration(), [&] { round(0); });
  const std::vector<int> ran = log.WaitFor(kRounds);
  ASSERT_EQ(ran.size(), static_cast<size_t>(kRounds));
  for (int i = 0; i < kRounds; ++i) EXPECT_EQ(ran[static_cast<size_t>(i)], i);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerServiceTest, ACallbackMayCancelAnotherPendingTimer) {
  Log log;  // outlives the service, whose callbacks write to it
  TimerService timers("test-timer");
  std::atomic<bool> cancelled{false};
  {
    Parked parked(timers);
    std::atomic<TimerService::TimerId> victim{0};
    timers.Schedule(absl::ZeroDuration(), [&] {
      log.Add(1);
      cancelled = timers.Cancel(victim.load());
    });
    victim = timers.Schedule(absl::ZeroDuration(), [&] { log.Add(2); });
    timers.Schedule(absl::ZeroDuration(), [&] { log.Add(3); });
    parked.Release();
    EXPECT_EQ(log.WaitFor(2), (std::vector<int>{1, 3}));
  }
  EXPECT_TRUE(cancelled.load());
}

// Counts how often it was destroyed: callbacks own resources, and dropping them must free them.
struct Resource {
  explicit Resource(std::atomic<int>* destroyed) : destroyed_(destroyed) {}
  ~Resource() { ++*destroyed_; }
  std::atomic<int>* destroyed_;
};

TEST(TimerServiceTest, DestructionDropsPendingCallbacksWithoutRunningThem) {
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  {
    TimerService timers("test-timer");
    for (int i = 0; i < 10; ++i) {
      auto resource = std::make_shared<Resource>(&destroyed);
      timers.Schedule(i % 2 == 0 ? absl::Hours(1) : absl::InfiniteDuration(),
                      [&ran, resource] { ++ran; });
    }
    EXPECT_EQ(timers.pending(), 10u);
    EXPECT_EQ(destroyed.load(), 0);
  }
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(destroyed.load(), 10) << "what the dropped callbacks held was freed";
}

TEST(TimerServiceTest, DestructionWaitsForARunningCallbackAndDropsThePendingOnes) {
  std::atomic<int> ran{0};
  std::atomic<bool> finished{false};
  Notification inside;
  Notification release;
  auto timers = std::make_unique<TimerService>("test-timer");
  timers->Schedule(absl::ZeroDuration(), [&] {
    inside.Notify();
    release.WaitForNotification();
    finished = true;
  });
  ASSERT_TRUE(inside.WaitForNotificationWithTimeout(kPatience));
  std::atomic<int> destroyed{0};
  auto resource = std::make_shared<Resource>(&destroyed);
  timers->Schedule(absl::Hours(1), [&ran, resource] { ++ran; });
  resource.reset();

  std::thread destroyer([&] {
    timers.reset();
    // The destructor returned: the running callback had finished by then.
    EXPECT_TRUE(finished.load());
  });
  absl::SleepFor(absl::Milliseconds(20));  // not an assertion: lets the destructor start waiting
  release.Notify();
  destroyer.join();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(TimerServiceTest, ManyThreadsScheduleAndCancel) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::atomic<int> ran{0};
  std::atomic<int> cancelled{0};
  TimerService timers("test-timer");
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<TimerService::TimerId> mine;
      for (int i = 0; i < kPerThread; ++i) {
        // Short delays mostly run; long ones mostly wait to be cancelled.
        const absl::Duration delay =
            i % 4 == 0 ? absl::Hours(1) : absl::Microseconds((i * 7 + t) % 200);
        mine.push_back(timers.Schedule(delay, [&] { ++ran; }));
        if (i % 3 == 0) {
          const TimerService::TimerId victim = mine[static_cast<size_t>(i) / 2];
          if (timers.Cancel(victim)) ++cancelled;
        }
      }
      for (size_t i = 0; i < mine.size(); i += 4) {
        if (timers.Cancel(mine[i])) ++cancelled;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // The hour-long timers were all cancelled, so every timer either runs or was cancelled: never
  // both, never twice.
  const int total = kThreads * kPerThread;
  for (absl::Time until = absl::Now() + kPatience;
       ran.load() + cancelled.load() < total && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(ran.load() + cancelled.load(), total);
  EXPECT_EQ(timers.pending(), 0u);
}

}  // namespace
}  // namespace sluice
