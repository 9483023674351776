// BufferPool and LocalBufferPool: every segment is accounted for, local pools keep their minimum
// and respect their cap, and availability callbacks fire exactly once.
#include "base/buffer_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace sluice {
namespace {

using ::testing::HasSubstr;

constexpr size_t kSegmentSize = 4096;
constexpr size_t kSegments = 64;

std::unique_ptr<BufferPool> MakePool(size_t segments = kSegments) {
  BufferPoolOptions options;
  options.segment_size = kSegmentSize;
  options.num_segments = segments;
  options.try_hugepages = false;
  absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(options);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return std::move(pool).value();
}

std::unique_ptr<LocalBufferPool> MakeLocal(BufferPool& global, std::string name, size_t min,
                                           size_t max) {
  absl::StatusOr<std::unique_ptr<LocalBufferPool>> local =
      global.CreateLocalPool(std::move(name), min, max);
  EXPECT_TRUE(local.ok()) << local.status();
  return std::move(local).value();
}

std::vector<Buffer> TakeAll(BufferPool& pool) {
  std::vector<Buffer> out;
  while (Buffer b = pool.TryRequest()) out.push_back(std::move(b));
  return out;
}

// A callback that counts how often it ran and on which thread it ran last.
struct CallCounter {
  std::atomic<int> calls{0};
  std::atomic<std::thread::id> thread{};

  AvailabilityCallback Callback() {
    return [this] {
      thread.store(std::this_thread::get_id());
      calls.fetch_add(1);
    };
  }
};

// Counts notifications; a waiter takes one at a time. std::mutex rather than absl::Mutex so that
// ThreadSanitizer sees the handoff even with an uninstrumented Abseil.
class Signal {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    ++pending_;
    cv_.notify_one();
  }
  // False when nothing arrived within `timeout`.
  bool WaitFor(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [this] { return pending_ > 0; })) return false;
    --pending_;
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int pending_ = 0;  // guarded by mu_
};

TEST(BufferPoolTest, CreateRejectsBadOptionsWithClearErrors) {
  BufferPoolOptions options;
  options.segment_size = 1000;
  options.num_segments = 4;
  absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(options);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pool.status().message(), HasSubstr("1000"));

  options.segment_size = kSegmentSize;
  options.num_segments = 0;
  pool = BufferPool::Create(options);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BufferPoolTest, HandsOutEverySegmentOnceAndTakesThemBack) {
  auto pool = MakePool();
  EXPECT_EQ(pool->segment_size(), kSegmentSize);
  EXPECT_EQ(pool->total_segments(), kSegments);
  EXPECT_EQ(pool->available_segments(), kSegments);

  std::vector<Buffer> held = TakeAll(*pool);
  ASSERT_EQ(held.size(), kSegments);
  EXPECT_EQ(pool->available_segments(), 0u);
  EXPECT_FALSE(pool->TryRequest().valid());

  std::set<const MemorySegment*> segments;
  for (size_t i = 0; i < held.size(); ++i) {
    const Buffer& b = held[i];
    EXPECT_EQ(b.capacity(), kSegmentSize);
    EXPECT_EQ(b.reader_index(), 0u);
    EXPECT_EQ(b.writer_index(), 0u);
    EXPECT_EQ(b.ref_count(), 1);
    segments.insert(b.segment());
    // Fill each segment completely; overlapping segments would clobber each other.
    std::memset(b.data(), static_cast<int>(i), b.capacity());
  }
  EXPECT_EQ(segments.size(), kSegments);
  for (size_t i = 0; i < held.size(); ++i) {
    const Buffer& b = held[i];
    for (size_t j = 0; j < b.capacity(); j += 511) {
      ASSERT_EQ(static_cast<unsigned char>(b.data()[j]), static_cast<unsigned char>(i))
          << "segment " << i << " byte " << j;
    }
  }

  held.clear();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(BufferPoolTest, ManyRandomCyclesLoseNoSegment) {
  auto pool = MakePool();
  std::mt19937 rng(42);
  std::vector<Buffer> held;
  for (int step = 0; step < 20000; ++step) {
    const bool take = held.empty() || (held.size() < kSegments && rng() % 2 == 0);
    if (take) {
      Buffer b = pool->TryRequest();
      ASSERT_TRUE(b.valid()) << "step " << step << " holding " << held.size();
      held.push_back(std::move(b));
    } else {
      const size_t i = rng() % held.size();
      std::swap(held[i], held.back());
      held.pop_back();
    }
    ASSERT_EQ(pool->available_segments() + held.size(), kSegments) << "step " << step;
  }
  held.clear();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(BufferPoolTest, NotifyWhenAvailableRunsAtOnceWhenASegmentIsFree) {
  auto pool = MakePool();
  CallCounter counter;
  pool->NotifyWhenAvailable(counter.Callback());
  EXPECT_EQ(counter.calls.load(), 1);
  EXPECT_EQ(counter.thread.load(), std::this_thread::get_id());
}

TEST(BufferPoolTest, NotifyWhenAvailableFiresExactlyOnceWhenASegmentReturns) {
  auto pool = MakePool();
  std::vector<Buffer> held = TakeAll(*pool);
  CallCounter first;
  CallCounter second;
  pool->NotifyWhenAvailable(first.Callback());
  pool->NotifyWhenAvailable(second.Callback());
  EXPECT_EQ(first.calls.load(), 0);
  EXPECT_EQ(second.calls.load(), 0);

  held.pop_back();
  EXPECT_EQ(first.calls.load(), 1);
  EXPECT_EQ(second.calls.load(), 1);

  // Later returns do not run a callback again.
  held.pop_back();
  held.pop_back();
  EXPECT_EQ(first.calls.load(), 1);
  EXPECT_EQ(second.calls.load(), 1);
  held.clear();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(BufferPoolTest, CallbackRunsOnTheThreadThatReturnsTheSegment) {
  auto pool = MakePool();
  std::vector<Buffer> held = TakeAll(*pool);
  CallCounter counter;
  pool->NotifyWhenAvailable(counter.Callback());
  Buffer last = std::move(held.back());
  held.pop_back();
  EXPECT_EQ(counter.calls.load(), 0);

  std::thread releaser([b = std::move(last)]() mutable { b.Release(); });
  const std::thread::id releaser_id = releaser.get_id();
  releaser.join();
  EXPECT_EQ(counter.calls.load(), 1);
  EXPECT_EQ(counter.thread.load(), releaser_id);
}

TEST(LocalBufferPoolTest, ReservesItsMinimumAtCreation) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "gate-0", 8, 16);
  EXPECT_EQ(local->name(), "gate-0");
  EXPECT_EQ(local->min_segments(), 8u);
  EXPECT_EQ(local->max_segments(), 16u);
  EXPECT_EQ(local->segment_size(), kSegmentSize);
  EXPECT_EQ(local->owned_segments(), 8u);
  EXPECT_EQ(local->in_use_segments(), 0u);
  EXPECT_EQ(pool->available_segments(), kSegments - 8);

  // The reserved segments stay available to this pool even when the global pool runs dry.
  std::vector<Buffer> global_held = TakeAll(*pool);
  EXPECT_EQ(global_held.size(), kSegments - 8);
  std::vector<Buffer> local_held;
  for (int i = 0; i < 8; ++i) {
    Buffer b = local->TryRequest();
    ASSERT_TRUE(b.valid()) << "reserved segment " << i;
    local_held.push_back(std::move(b));
  }
  EXPECT_FALSE(local->TryRequest().valid());
  EXPECT_EQ(local->in_use_segments(), 8u);

  local_held.clear();
  EXPECT_EQ(local->owned_segments(), 8u);
  EXPECT_EQ(local->in_use_segments(), 0u);
  EXPECT_EQ(pool->available_segments(), 0u);

  global_held.clear();
  local.reset();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(LocalBufferPoolTest, RespectsItsCapAndReturnsSurplusToTheGlobalPool) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "partition-1", 8, 16);
  std::vector<Buffer> held;
  while (Buffer b = local->TryRequest()) held.push_back(std::move(b));
  EXPECT_EQ(held.size(), 16u);
  EXPECT_EQ(local->owned_segments(), 16u);
  EXPECT_EQ(local->in_use_segments(), 16u);
  EXPECT_EQ(pool->available_segments(), kSegments - 16);

  // Releasing above the minimum gives segments back to the global pool; the minimum stays.
  for (int i = 0; i < 8; ++i) held.pop_back();
  EXPECT_EQ(local->owned_segments(), 8u);
  EXPECT_EQ(pool->available_segments(), kSegments - 8);
  held.clear();
  EXPECT_EQ(local->owned_segments(), 8u);
  EXPECT_EQ(local->in_use_segments(), 0u);
  EXPECT_EQ(pool->available_segments(), kSegments - 8);

  local.reset();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(LocalBufferPoolTest, ManyCyclesAcrossPoolsLoseNoSegment) {
  auto pool = MakePool();
  std::vector<std::unique_ptr<LocalBufferPool>> locals;
  locals.push_back(MakeLocal(*pool, "a", 0, 8));
  locals.push_back(MakeLocal(*pool, "b", 4, 20));
  locals.push_back(MakeLocal(*pool, "c", 2, 64));
  std::vector<std::vector<Buffer>> held(locals.size());
  std::mt19937 rng(7);
  for (int step = 0; step < 20000; ++step) {
    const size_t p = rng() % locals.size();
    if (rng() % 2 == 0) {
      if (Buffer b = locals[p]->TryRequest()) held[p].push_back(std::move(b));
    } else if (!held[p].empty()) {
      const size_t i = rng() % held[p].size();
      std::swap(held[p][i], held[p].back());
      held[p].pop_back();
    }
    size_t owned = 0;
    for (size_t i = 0; i < locals.size(); ++i) {
      ASSERT_EQ(locals[i]->in_use_segments(), held[i].size()) << "pool " << i << " step " << step;
      ASSERT_GE(locals[i]->owned_segments(), locals[i]->min_segments());
      ASSERT_LE(locals[i]->owned_segments(), locals[i]->max_segments());
      owned += locals[i]->owned_segments();
    }
    ASSERT_EQ(owned + pool->available_segments(), kSegments) << "step " << step;
  }
  held.clear();
  locals.clear();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(LocalBufferPoolTest, FailsClearlyWhenTheMinimumCannotBeMet) {
  auto pool = MakePool();
  auto big = MakeLocal(*pool, "big", 60, 60);
  absl::StatusOr<std::unique_ptr<LocalBufferPool>> small = pool->CreateLocalPool("small", 8, 8);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string message(small.status().message());
  EXPECT_THAT(message, HasSubstr("'small'"));
  EXPECT_THAT(message, HasSubstr("needs 8 segments"));
  EXPECT_THAT(message, HasSubstr("only 4 free of 64"));
  // A failed creation takes nothing.
  EXPECT_EQ(pool->available_segments(), 4u);

  absl::StatusOr<std::unique_ptr<LocalBufferPool>> inverted = pool->CreateLocalPool("inv", 3, 2);
  ASSERT_FALSE(inverted.ok());
  EXPECT_EQ(inverted.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(inverted.status().message(), HasSubstr("'inv'"));
  EXPECT_EQ(pool->available_segments(), 4u);
}

TEST(LocalBufferPoolTest, NotifyRunsAtOnceWhenTryRequestCanSucceed) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "l", 1, 4);

  CallCounter free_here;  // a reserved segment is free
  local->NotifyWhenAvailable(free_here.Callback());
  EXPECT_EQ(free_here.calls.load(), 1);

  Buffer reserved = local->TryRequest();
  ASSERT_TRUE(reserved.valid());
  CallCounter may_grow;  // nothing free here, but the global pool has segments
  local->NotifyWhenAvailable(may_grow.Callback());
  EXPECT_EQ(may_grow.calls.load(), 1);
}

TEST(LocalBufferPoolTest, NotifyAtCapFiresExactlyOnceWhenASegmentReturns) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "l", 1, 3);
  std::vector<Buffer> held;
  while (Buffer b = local->TryRequest()) held.push_back(std::move(b));
  ASSERT_EQ(held.size(), 3u);

  CallCounter counter;
  local->NotifyWhenAvailable(counter.Callback());
  EXPECT_EQ(counter.calls.load(), 0);

  held.pop_back();
  EXPECT_EQ(counter.calls.load(), 1);
  // The waiter's segment is kept for it rather than returned to the global pool.
  Buffer retry = local->TryRequest();
  EXPECT_TRUE(retry.valid());
  EXPECT_EQ(local->owned_segments(), 3u);

  held.clear();
  retry.Release();
  EXPECT_EQ(counter.calls.load(), 1);
  EXPECT_EQ(local->owned_segments(), 1u);
}

TEST(LocalBufferPoolTest, NotifyFiresWhenTheGlobalPoolRefills) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "l", 0, 8);
  std::vector<Buffer> global_held = TakeAll(*pool);
  ASSERT_EQ(global_held.size(), kSegments);
  EXPECT_FALSE(local->TryRequest().valid());
  EXPECT_EQ(local->owned_segments(), 0u);

  CallCounter first;
  CallCounter second;
  local->NotifyWhenAvailable(first.Callback());
  local->NotifyWhenAvailable(second.Callback());
  EXPECT_EQ(first.calls.load(), 0);

  std::thread releaser([b = std::move(global_held.back())]() mutable { b.Release(); });
  const std::thread::id releaser_id = releaser.get_id();
  releaser.join();
  global_held.pop_back();
  EXPECT_EQ(first.calls.load(), 1);
  EXPECT_EQ(second.calls.load(), 1);
  EXPECT_EQ(first.thread.load(), releaser_id);

  Buffer b = local->TryRequest();
  EXPECT_TRUE(b.valid());
  global_held.pop_back();
  EXPECT_EQ(first.calls.load(), 1);
  EXPECT_EQ(second.calls.load(), 1);

  b.Release();
  global_held.clear();
  local.reset();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(LocalBufferPoolTest, LoweringTheCapReturnsFreeSurplusAndHoldsTheNewCap) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "l", 8, 16);
  std::vector<Buffer> held;
  while (Buffer b = local->TryRequest()) held.push_back(std::move(b));
  ASSERT_EQ(held.size(), 16u);

  // With a waiter registered, a returned segment stays here as free surplus.
  CallCounter counter;
  local->NotifyWhenAvailable(counter.Callback());
  held.pop_back();
  EXPECT_EQ(counter.calls.load(), 1);
  EXPECT_EQ(local->owned_segments(), 16u);
  EXPECT_EQ(local->in_use_segments(), 15u);

  local->SetMaxSegments(10);
  EXPECT_EQ(local->max_segments(), 10u);
  EXPECT_EQ(local->owned_segments(), 15u);  // the free one went back
  EXPECT_EQ(pool->available_segments(), kSegments - 15);
  EXPECT_FALSE(local->TryRequest().valid());

  // Down to 9 in use: the pool may grow to exactly the new cap.
  while (held.size() > 9) held.pop_back();
  EXPECT_EQ(local->owned_segments(), 9u);
  Buffer tenth = local->TryRequest();
  EXPECT_TRUE(tenth.valid());
  EXPECT_FALSE(local->TryRequest().valid());
  EXPECT_EQ(local->owned_segments(), 10u);

  tenth.Release();
  held.clear();
  EXPECT_EQ(local->owned_segments(), 8u);
  local.reset();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(LocalBufferPoolTest, RaisingTheCapWakesAWaiterAtTheOldCap) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "l", 1, 2);
  std::vector<Buffer> held;
  while (Buffer b = local->TryRequest()) held.push_back(std::move(b));
  ASSERT_EQ(held.size(), 2u);

  CallCounter counter;
  local->NotifyWhenAvailable(counter.Callback());
  EXPECT_EQ(counter.calls.load(), 0);

  // The global pool has plenty, so TryRequest can succeed now: the waiter must hear of it.
  local->SetMaxSegments(4);
  EXPECT_EQ(counter.calls.load(), 1);
  Buffer third = local->TryRequest();
  EXPECT_TRUE(third.valid());

  held.pop_back();
  EXPECT_EQ(counter.calls.load(), 1);
  third.Release();
  held.clear();
  local.reset();
  EXPECT_EQ(pool->available_segments(), kSegments);
}

TEST(LocalBufferPoolTest, DestroyedPoolIgnoresALaterGlobalRefill) {
  auto pool = MakePool();
  auto local = MakeLocal(*pool, "l", 0, 4);
  std::vector<Buffer> global_held = TakeAll(*pool);
  CallCounter counter;
  local->NotifyWhenAvailable(counter.Callback());  // subscribes to the global pool
  local.reset();

  global_held.clear();  // runs the global callback, which must not touch the dead pool
  EXPECT_EQ(counter.calls.load(), 0);
  EXPECT_EQ(pool->available_segments(), kSegments);
}

// Two threads request and release on a local pool that holds its one reserved segment while the
// global pool is dry; the main thread tries to take from the global pool all along. Every segment
// is accounted for (the three the test holds and the local pool's reserved one), so any segment
// the main thread gets is one the local pool let slip: a TryRequest that failed to grow must not
// make a concurrent release look like surplus.
TEST(BufferPoolConcurrencyTest, ConcurrentRequestsNeverLeakTheReservedMinimum) {
  constexpr int kIterations = 500'000;
  auto pool = MakePool(4);
  auto local = MakeLocal(*pool, "l", 1, 2);
  std::vector<Buffer> global_held = TakeAll(*pool);
  ASSERT_EQ(global_held.size(), 3u);

  std::atomic<int> finished{0};
  auto worker = [&] {
    for (int i = 0; i < kIterations; ++i) {
      Buffer taken = local->TryRequest();  // fails while the other thread holds the segment
      taken.Release();
    }
    finished.fetch_add(1);
  };
  std::thread a(worker);
  std::thread b(worker);
  Buffer stolen;
  while (finished.load() < 2 && !stolen.valid()) stolen = pool->TryRequest();
  a.join();
  b.join();

  EXPECT_FALSE(stolen.valid()) << "the local pool's reserved segment reached the global pool";
  EXPECT_GE(local->owned_segments(), local->min_segments());
  stolen.Release();
  global_held.clear();
  local.reset();
  EXPECT_EQ(pool->available_segments(), 4u);
}

// Threads take buffers from their own local pool and from one shared local pool, more than the
// global pool can hold at once; when a pool is dry a thread gives back what it holds and waits
// for NotifyWhenAvailable. Each buffer carries its holder's stamp, checked before release, so a
// segment handed out twice is caught. A lost wakeup shows as a wait that never ends.
TEST(BufferPoolConcurrencyTest, ThreadsRequestReleaseAndWaitWithoutLosingSegments) {
  constexpr size_t kGlobal = 20;
  constexpr int kThreads = 4;
  constexpr int kRounds = 3000;
  auto pool = MakePool(kGlobal);
  auto shared = MakeLocal(*pool, "shared", 2, 8);
  std::vector<std::unique_ptr<LocalBufferPool>> own;
  for (int t = 0; t < kThreads; ++t) own.push_back(MakeLocal(*pool, "own", 2, 10));

  std::atomic<int> registrations{0};
  std::atomic<int> fired{0};
  std::atomic<int> lost_wakeups{0};
  std::atomic<int> corrupted{0};

  auto worker = [&](int t) {
    std::mt19937 rng(static_cast<uint32_t>(t) * 7919 + 1);
    Signal signal;
    struct Held {
      Buffer buffer;
      uint64_t stamp;
    };
    std::vector<Held> held;
    uint64_t next_stamp = static_cast<uint64_t>(t) << 48;
    auto release_one = [&](size_t i) {
      uint64_t seen;
      std::memcpy(&seen, held[i].buffer.data(), sizeof(seen));
      if (seen != held[i].stamp) corrupted.fetch_add(1);
      std::swap(held[i], held.back());
      held.pop_back();
    };
    for (int round = 0; round < kRounds; ++round) {
      const size_t want = 1 + rng() % 12;
      // After a wakeup the thread retries the pool it waited on: a segment kept for a waiter
      // stays in that pool.
      LocalBufferPool* retry = nullptr;
      while (held.size() < want) {
        LocalBufferPool& from =
            retry != nullptr ? *retry : (rng() % 2 == 0 ? *shared : *own[static_cast<size_t>(t)]);
        retry = nullptr;
        Buffer b = from.TryRequest();
        if (!b.valid()) {
          // Hold nothing while waiting, so that waiting threads cannot deadlock each other.
          while (!held.empty()) release_one(held.size() - 1);
          registrations.fetch_add(1);
          from.NotifyWhenAvailable([&signal, &fired] {
            fired.fetch_add(1);
            signal.Notify();
          });
          if (!signal.WaitFor(std::chrono::seconds(30))) {
            lost_wakeups.fetch_add(1);
            return;
          }
          retry = &from;
          continue;
        }
        const uint64_t stamp = ++next_stamp;
        std::memcpy(b.data(), &stamp, sizeof(stamp));
        held.push_back(Held{std::move(b), stamp});
      }
      // Give back a random part, on this thread or the next round.
      const size_t drop = rng() % (held.size() + 1);
      for (size_t i = 0; i < drop; ++i) release_one(rng() % held.size());
    }
    while (!held.empty()) release_one(held.size() - 1);
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (std::thread& th : threads) th.join();

  EXPECT_EQ(lost_wakeups.load(), 0);
  EXPECT_EQ(corrupted.load(), 0);
  EXPECT_EQ(fired.load(), registrations.load());
  size_t owned = shared->owned_segments();
  EXPECT_EQ(shared->in_use_segments(), 0u);
  EXPECT_GE(shared->owned_segments(), shared->min_segments());
  for (const auto& local : own) {
    EXPECT_EQ(local->in_use_segments(), 0u);
    EXPECT_GE(local->owned_segments(), local->min_segments());
    EXPECT_LE(local->owned_segments(), local->max_segments());
    owned += local->owned_segments();
  }
  EXPECT_EQ(owned + pool->available_segments(), kGlobal);
  own.clear();
  shared.reset();
  EXPECT_EQ(pool->available_segments(), kGlobal);
}

}  // namespace
}  // namespace sluice
