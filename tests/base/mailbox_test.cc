// Mailbox: actions from many threads run on the owner thread, each producer's in the order it
// put them, urgent ones first; nothing is lost, and Close refuses new actions but runs queued ones.
#include "base/mailbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"

namespace sluice {
namespace {

TEST(MailboxTest, RunsActionsInTheOrderTheyWerePut) {
  Mailbox mailbox;
  std::vector<int> ran;
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(mailbox.Put([&ran, i] { ran.push_back(i); }));
  EXPECT_EQ(mailbox.size(), 100u);
  EXPECT_TRUE(ran.empty());  // nothing runs until the owner asks

  EXPECT_EQ(mailbox.RunAvailable(), 100u);
  ASSERT_EQ(ran.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ran[static_cast<size_t>(i)], i);
  EXPECT_EQ(mailbox.size(), 0u);
  EXPECT_EQ(mailbox.RunAvailable(), 0u);
}

TEST(MailboxTest, RunAvailableAlsoRunsActionsQueuedByActions) {
  Mailbox mailbox;
  std::string ran;
  mailbox.Put([&] {
    ran += 'a';
    mailbox.Put([&] { ran += 'c'; });
  });
  mailbox.Put([&] { ran += 'b'; });
  EXPECT_EQ(mailbox.RunAvailable(), 3u);
  EXPECT_EQ(ran, "abc");
}

TEST(MailboxTest, UrgentActionsRunBeforeQueuedOrdinaryOnes) {
  Mailbox mailbox;
  std::string ran;
  mailbox.Put([&] { ran += 'a'; });
  mailbox.Put([&] {
    ran += 'b';
    // Urgent work queued while running still overtakes the ordinary actions behind.
    mailbox.PutUrgent([&] { ran += 'X'; });
  });
  mailbox.Put([&] { ran += 'c'; });
  EXPECT_TRUE(mailbox.PutUrgent([&] { ran += '1'; }));
  EXPECT_TRUE(mailbox.PutUrgent([&] { ran += '2'; }));
  EXPECT_EQ(mailbox.size(), 5u);

  EXPECT_EQ(mailbox.RunAvailable(), 6u);
  EXPECT_EQ(ran, "12abXc");
}

TEST(MailboxTest, CloseRefusesNewActionsButRunsQueuedOnes) {
  Mailbox mailbox;
  int ran = 0;
  for (int i = 0; i < 3; ++i) mailbox.Put([&] { ++ran; });
  mailbox.PutUrgent([&] { ++ran; });
  EXPECT_FALSE(mailbox.closed());
  mailbox.Close();
  EXPECT_TRUE(mailbox.closed());

  // A refused action is dropped: never run, and what it holds is freed.
  auto owned = std::make_shared<int>(0);
  EXPECT_FALSE(mailbox.Put([&ran, owned] { ran += 100; }));
  EXPECT_FALSE(mailbox.PutUrgent([&ran, owned] { ran += 100; }));
  EXPECT_EQ(owned.use_count(), 1);
  EXPECT_EQ(mailbox.size(), 4u);

  EXPECT_EQ(mailbox.RunAvailable(), 4u);
  EXPECT_EQ(ran, 4);
  mailbox.RunUntilClosed();  // closed and drained: returns at once
  EXPECT_EQ(mailbox.WaitAndRun(absl::InfiniteDuration()), 0u);
}

TEST(MailboxTest, DestroyingAMailboxFreesUnrunActions) {
  auto owned = std::make_shared<int>(0);
  bool ran = false;
  {
    Mailbox mailbox;
    mailbox.Put([&ran, owned] { ran = true; });
    mailbox.PutUrgent([&ran, owned] { ran = true; });
    EXPECT_EQ(owned.use_count(), 3);
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(owned.use_count(), 1);
}

TEST(MailboxTest, WaitAndRunReturnsWhenNothingComes) {
  Mailbox mailbox;
  EXPECT_EQ(mailbox.WaitAndRun(absl::ZeroDuration()), 0u);
  EXPECT_EQ(mailbox.WaitAndRun(absl::Milliseconds(1)), 0u);
  mailbox.Put([] {});
  EXPECT_EQ(mailbox.WaitAndRun(absl::ZeroDuration()), 1u);
}

TEST(MailboxConcurrencyTest, WaitAndRunWakesForAnActionFromAnotherThread) {
  Mailbox mailbox;
  std::atomic<std::thread::id> ran_on{};
  std::thread producer([&] { mailbox.Put([&] { ran_on.store(std::this_thread::get_id()); }); });
  size_t ran = 0;
  while (ran == 0) ran = mailbox.WaitAndRun(absl::InfiniteDuration());
  producer.join();
  EXPECT_EQ(ran, 1u);
  EXPECT_EQ(ran_on.load(), std::this_thread::get_id());  // the owner ran it, not the producer
}

TEST(MailboxConcurrencyTest, WaitAndRunWakesOnClose) {
  Mailbox mailbox;
  std::thread closer([&] { mailbox.Close(); });
  // Returns only because of the close; a missed wakeup would hang here until the test timeout.
  EXPECT_EQ(mailbox.WaitAndRun(absl::InfiniteDuration()), 0u);
  closer.join();
  EXPECT_TRUE(mailbox.closed());
}

// Several producers put numbered actions while the owner runs them. The owner-side state is
// touched only by actions, without a lock; ThreadSanitizer checks that the handoff makes that safe.
TEST(MailboxConcurrencyTest, ProducersKeepTheirOrderAndNothingIsLost) {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 20'000;
  Mailbox mailbox;
  std::vector<std::vector<int>> seen(kProducers);  // owner thread only
  const std::thread::id* owner_id = nullptr;
  std::atomic<int> wrong_thread{0};

  std::thread owner([&] {
    const std::thread::id id = std::this_thread::get_id();
    owner_id = &id;
    mailbox.RunUntilClosed();
    owner_id = nullptr;
  });
  std::atomic<int> refused{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        const bool ok = mailbox.Put([&, p, i] {
          if (owner_id == nullptr || *owner_id != std::this_thread::get_id()) {
            wrong_thread.fetch_add(1);
          }
          seen[static_cast<size_t>(p)].push_back(i);
        });
        if (!ok) refused.fetch_add(1);
      }
    });
  }
  for (std::thread& t : producers) t.join();
  mailbox.Close();
  owner.join();  // RunUntilClosed returns once closed and drained

  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(wrong_thread.load(), 0);
  EXPECT_EQ(mailbox.size(), 0u);
  for (int p = 0; p < kProducers; ++p) {
    const std::vector<int>& s = seen[static_cast<size_t>(p)];
    ASSERT_EQ(s.size(), static_cast<size_t>(kPerProducer)) << "producer " << p;
    for (int i = 0; i < kPerProducer; ++i) {
      ASSERT_EQ(s[static_cast<size_t>(i)], i) << "producer " << p << " out of order";
    }
  }
}

// Ordinary actions from several threads and urgent ones from another are queued before the owner
// starts: every urgent action runs first, in its order, then the ordinary ones in theirs.
TEST(MailboxConcurrencyTest, UrgentActionsFromAnotherThreadOvertakeQueuedOnes) {
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 1000;
  constexpr int kUrgent = 200;
  Mailbox mailbox;
  struct Ran {
    int producer;  // -1 for urgent
    int seq;
  };
  std::vector<Ran> ran;  // owner thread only

  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) mailbox.Put([&, p, i] { ran.push_back({p, i}); });
    });
  }
  for (std::thread& t : producers) t.join();
  std::thread urgent([&] {
    for (int i = 0; i < kUrgent; ++i) mailbox.PutUrgent([&, i] { ran.push_back({-1, i}); });
  });
  urgent.join();

  std::thread owner([&] {
    mailbox.Close();
    mailbox.RunUntilClosed();
  });
  owner.join();

  ASSERT_EQ(ran.size(), static_cast<size_t>(kProducers * kPerProducer + kUrgent));
  for (int i = 0; i < kUrgent; ++i) {
    ASSERT_EQ(ran[static_cast<size_t>(i)].producer, -1) << "position " << i;
    ASSERT_EQ(ran[static_cast<size_t>(i)].seq, i);
  }
  std::vector<int> next(kProducers, 0);
  for (size_t i = kUrgent; i < ran.size(); ++i) {
    ASSERT_GE(ran[i].producer, 0) << "urgent action behind ordinary ones at " << i;
    int& expected = next[static_cast<size_t>(ran[i].producer)];
    ASSERT_EQ(ran[i].seq, expected) << "producer " << ran[i].producer;
    ++expected;
  }
}

// Close arrives from another thread while producers are still putting: every accepted action
// runs exactly once, each producer's accepted actions are a prefix of what it tried, and
// RunUntilClosed returns.
TEST(MailboxConcurrencyTest, CloseWhileProducingLosesNoAcceptedAction) {
  constexpr int kProducers = 3;
  constexpr int kMaxPerProducer = 1'000'000;
  Mailbox mailbox;
  std::vector<std::vector<int>> seen(kProducers);  // owner thread only
  std::atomic<int> executed{0};
  std::latch enough(1);
  std::vector<int> accepted(kProducers, 0);

  std::thread owner([&] { mailbox.RunUntilClosed(); });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      int i = 0;
      for (; i < kMaxPerProducer; ++i) {
        const bool ok = mailbox.Put([&, p, i] {
          seen[static_cast<size_t>(p)].push_back(i);
          if (executed.fetch_add(1) + 1 == 1000) enough.count_down();
        });
        if (!ok) break;
      }
      accepted[static_cast<size_t>(p)] = i;
      // Once refused, always refused.
      for (int k = 0; k < 10; ++k) EXPECT_FALSE(mailbox.Put([] {}));
    });
  }
  enough.wait();
  mailbox.Close();
  for (std::thread& t : producers) t.join();
  owner.join();

  int total = 0;
  for (int p = 0; p < kProducers; ++p) {
    const std::vector<int>& s = seen[static_cast<size_t>(p)];
    ASSERT_EQ(s.size(), static_cast<size_t>(accepted[static_cast<size_t>(p)])) << "producer " << p;
    for (size_t i = 0; i < s.size(); ++i) ASSERT_EQ(s[i], static_cast<int>(i));
    total += accepted[static_cast<size_t>(p)];
  }
  EXPECT_EQ(executed.load(), total);
  EXPECT_GE(total, 1000);
}

}  // namespace
}  // namespace sluice
