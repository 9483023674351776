// Buffer: indexes, slices and shares over one segment, reference counting, and the return of the
// segment to its pool when the last reference goes, whichever thread drops it.
#include "base/buffer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/buffer_pool.h"

namespace sluice {
namespace {

std::unique_ptr<BufferPool> MakePool(size_t segments) {
  BufferPoolOptions options;
  options.segment_size = 4096;
  options.num_segments = segments;
  options.try_hugepages = false;
  absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(options);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return std::move(pool).value();
}

TEST(BufferTest, DefaultBufferIsEmptyAndReleaseIsSafe) {
  Buffer b;
  EXPECT_FALSE(b.valid());
  EXPECT_FALSE(static_cast<bool>(b));
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(b.capacity(), 0u);
  EXPECT_EQ(b.ref_count(), 0);
  EXPECT_EQ(b.segment(), nullptr);
  b.Release();
  b.Release();
  EXPECT_FALSE(b.valid());
}

TEST(BufferTest, AppendCommitAndConsumeMoveTheIndexes) {
  Buffer b = Buffer::AllocateUnpooled(16);
  ASSERT_TRUE(b.valid());
  EXPECT_EQ(b.capacity(), 16u);
  EXPECT_EQ(b.readable_bytes(), 0u);
  EXPECT_EQ(b.writable_bytes(), 16u);

  b.Append("hello");
  EXPECT_EQ(b.reader_index(), 0u);
  EXPECT_EQ(b.writer_index(), 5u);
  EXPECT_EQ(b.readable(), "hello");
  EXPECT_EQ(b.writable_bytes(), 11u);

  std::memcpy(b.write_ptr(), " world", 6);
  EXPECT_EQ(b.readable(), "hello");  // not readable until committed
  b.Commit(6);
  EXPECT_EQ(b.readable(), "hello world");
  EXPECT_EQ(b.writer_index(), 11u);

  b.Consume(6);
  EXPECT_EQ(b.reader_index(), 6u);
  EXPECT_EQ(b.readable(), "world");
  EXPECT_EQ(b.read_ptr(), b.data() + 6);
  EXPECT_EQ(b.readable_bytes(), 5u);

  b.Append("!!!!!");
  EXPECT_EQ(b.writable_bytes(), 0u);
  EXPECT_EQ(b.readable(), "world!!!!!");
  b.Append("");  // appending nothing to a full buffer is fine
  EXPECT_EQ(b.writer_index(), 16u);

  b.SetIndexes(1, 4);
  EXPECT_EQ(b.readable(), "ell");
}

TEST(BufferTest, CopyOfHoldsExactlyTheBytes) {
  const std::string bytes("control\0message", 15);
  Buffer b = Buffer::CopyOf(bytes);
  EXPECT_EQ(b.capacity(), bytes.size());
  EXPECT_EQ(b.readable(), bytes);
  EXPECT_EQ(b.writable_bytes(), 0u);
  EXPECT_EQ(b.ref_count(), 1);

  Buffer empty = Buffer::CopyOf("");
  EXPECT_TRUE(empty.valid());
  EXPECT_EQ(empty.readable_bytes(), 0u);
}

TEST(BufferTest, SliceSharesTheSegmentAndCountsReferences) {
  auto pool = MakePool(4);
  Buffer b = pool->TryRequest();
  ASSERT_TRUE(b.valid());
  b.Append("abcdefgh");
  b.Consume(1);

  Buffer s = b.Slice(2, 3);
  EXPECT_EQ(s.segment(), b.segment());
  EXPECT_EQ(s.data(), b.data() + 2);
  EXPECT_EQ(s.capacity(), 3u);
  EXPECT_EQ(s.reader_index(), 0u);
  EXPECT_EQ(s.writer_index(), 3u);
  EXPECT_EQ(s.readable(), "cde");
  EXPECT_EQ(b.ref_count(), 2);
  EXPECT_EQ(s.ref_count(), 2);
  // The original view is untouched.
  EXPECT_EQ(b.reader_index(), 1u);
  EXPECT_EQ(b.readable(), "bcdefgh");

  // Offsets are relative to the sliced view.
  Buffer inner = s.Slice(1, 2);
  EXPECT_EQ(inner.readable(), "de");
  EXPECT_EQ(b.ref_count(), 3);

  // The bytes are the same memory, not a copy.
  s.data()[0] = 'C';
  EXPECT_EQ(b.readable(), "bCdefgh");

  Buffer readable = b.ReadableSlice();
  EXPECT_EQ(readable.readable(), "bCdefgh");
  EXPECT_EQ(readable.data(), b.read_ptr());
  EXPECT_EQ(b.ref_count(), 4);

  Buffer empty = b.Slice(8, 0);
  EXPECT_TRUE(empty.valid());
  EXPECT_EQ(empty.readable_bytes(), 0u);
  EXPECT_EQ(b.ref_count(), 5);

  empty.Release();
  readable.Release();
  inner.Release();
  EXPECT_EQ(b.ref_count(), 2);
  EXPECT_EQ(pool->available_segments(), 3u);
}

TEST(BufferTest, ShareKeepsTheIndexes) {
  Buffer b = Buffer::AllocateUnpooled(32);
  b.Append("0123456789");
  b.Consume(4);
  Buffer shared = b.Share();
  EXPECT_EQ(shared.segment(), b.segment());
  EXPECT_EQ(shared.data(), b.data());
  EXPECT_EQ(shared.capacity(), b.capacity());
  EXPECT_EQ(shared.reader_index(), 4u);
  EXPECT_EQ(shared.writer_index(), 10u);
  EXPECT_EQ(shared.readable(), "456789");
  EXPECT_EQ(b.ref_count(), 2);

  // The indexes are per view: moving one leaves the other.
  shared.Consume(2);
  shared.Append("ab");
  EXPECT_EQ(shared.readable(), "6789ab");
  EXPECT_EQ(b.readable(), "456789");
}

TEST(BufferTest, LastReleaseReturnsTheSegmentToItsPool) {
  auto pool = MakePool(4);
  Buffer b = pool->TryRequest();
  ASSERT_TRUE(b.valid());
  EXPECT_EQ(pool->available_segments(), 3u);
  Buffer s1 = b.Slice(0, 10);
  Buffer s2 = b.Share();

  b.Release();
  EXPECT_FALSE(b.valid());
  EXPECT_EQ(s1.ref_count(), 2);
  EXPECT_EQ(pool->available_segments(), 3u);
  s2.Release();
  EXPECT_EQ(s1.ref_count(), 1);
  EXPECT_EQ(pool->available_segments(), 3u);
  s1.Release();
  EXPECT_EQ(pool->available_segments(), 4u);
}

TEST(BufferTest, LastReleaseReturnsTheSegmentToItsLocalPool) {
  auto pool = MakePool(8);
  absl::StatusOr<std::unique_ptr<LocalBufferPool>> local = pool->CreateLocalPool("gate", 2, 2);
  ASSERT_TRUE(local.ok()) << local.status();
  Buffer b = (*local)->TryRequest();
  ASSERT_TRUE(b.valid());
  Buffer s = b.Slice(0, 1);
  b.Release();
  EXPECT_EQ((*local)->in_use_segments(), 1u);
  s.Release();
  EXPECT_EQ((*local)->in_use_segments(), 0u);
  EXPECT_EQ((*local)->owned_segments(), 2u);
  EXPECT_EQ(pool->available_segments(), 6u);
}

TEST(BufferTest, MoveTransfersTheReferenceWithoutCounting) {
  auto pool = MakePool(4);
  Buffer a = pool->TryRequest();
  a.Append("xyz");
  a.Consume(1);
  const MemorySegment* segment = a.segment();

  Buffer b(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_EQ(a.readable_bytes(), 0u);
  EXPECT_EQ(b.segment(), segment);
  EXPECT_EQ(b.ref_count(), 1);
  EXPECT_EQ(b.readable(), "yz");

  // Assigning over a buffer that holds a segment releases that segment.
  Buffer c = pool->TryRequest();
  EXPECT_EQ(pool->available_segments(), 2u);
  c = std::move(b);
  EXPECT_EQ(pool->available_segments(), 3u);
  EXPECT_EQ(c.segment(), segment);
  EXPECT_EQ(c.readable(), "yz");
  EXPECT_EQ(c.ref_count(), 1);

  // Self-assignment keeps the reference.
  Buffer& alias = c;
  c = std::move(alias);
  EXPECT_TRUE(c.valid());
  EXPECT_EQ(c.ref_count(), 1);
  EXPECT_EQ(pool->available_segments(), 3u);

  // Moving into a vector and out again keeps exactly one reference.
  std::vector<Buffer> v;
  v.push_back(std::move(c));
  v.reserve(100);
  EXPECT_EQ(v[0].ref_count(), 1);
  v.clear();
  EXPECT_EQ(pool->available_segments(), 4u);
}

TEST(BufferTest, UnpooledBuffersOutliveTheirOriginalThroughSlices) {
  constexpr size_t kBig = 1 << 20;  // larger than any pool segment
  Buffer big = Buffer::AllocateUnpooled(kBig);
  ASSERT_TRUE(big.valid());
  EXPECT_EQ(big.capacity(), kBig);
  EXPECT_EQ(big.ref_count(), 1);
  std::memset(big.write_ptr(), 'q', kBig);
  big.Commit(kBig);

  Buffer tail = big.Slice(kBig - 4, 4);
  big.Release();
  EXPECT_EQ(tail.ref_count(), 1);
  EXPECT_EQ(tail.readable(), "qqqq");  // still valid memory (ASan would catch a freed block)
  tail.Release();

  Buffer zero = Buffer::AllocateUnpooled(0);
  EXPECT_TRUE(zero.valid());
  EXPECT_EQ(zero.capacity(), 0u);
}

// A queue from the producing thread to one consumer thread. std::mutex rather than absl::Mutex so
// that ThreadSanitizer sees the handoff even with an uninstrumented Abseil.
class SliceQueue {
 public:
  void Push(Buffer b, char expected) {
    std::lock_guard<std::mutex> lock(mu_);
    items_.emplace_back(std::move(b), expected);
    cv_.notify_one();
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_one();
  }
  // False once closed and drained.
  bool Pop(Buffer* b, char* expected) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return closed_ || !items_.empty(); });
    if (items_.empty()) return false;
    *b = std::move(items_.front().first);
    *expected = items_.front().second;
    items_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Buffer, char>> items_;  // guarded by mu_
  bool closed_ = false;                        // guarded by mu_
};

// The producer fills a segment, slices it for several consumer threads and drops its own
// reference; consumers check the bytes and release. A segment that went back to the pool while a
// slice was still alive would be refilled by the producer and seen as corrupt by a consumer. The
// pool has one segment, so the producer refills it right after the last release: the reference
// count alone must order every consumer's reads before that refill, which ThreadSanitizer checks.
TEST(BufferConcurrencyTest, SlicesReleasedOnOtherThreadsReturnTheSegmentOnce) {
  constexpr int kConsumers = 3;
  constexpr int kIterations = 2000;
  constexpr size_t kSliceBytes = 256;
  auto pool = MakePool(1);
  std::vector<SliceQueue> queues(kConsumers);
  std::atomic<int> corrupt{0};
  std::atomic<int> consumed{0};

  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      Buffer slice;
      char expected = 0;
      while (queues[static_cast<size_t>(c)].Pop(&slice, &expected)) {
        const std::string_view bytes = slice.readable();
        if (bytes.size() != kSliceBytes || bytes.find_first_not_of(expected) != bytes.npos) {
          corrupt.fetch_add(1);
        }
        slice.Release();
        consumed.fetch_add(1);
      }
    });
  }

  for (int i = 0; i < kIterations; ++i) {
    Buffer b = pool->TryRequest();
    while (!b.valid()) {
      std::this_thread::yield();  // consumers still hold the segment
      b = pool->TryRequest();
    }
    const char fill = static_cast<char>('a' + i % 26);
    std::memset(b.write_ptr(), fill, kConsumers * kSliceBytes);
    b.Commit(kConsumers * kSliceBytes);
    std::vector<Buffer> slices;
    for (int c = 0; c < kConsumers; ++c) slices.push_back(b.Slice(c * kSliceBytes, kSliceBytes));
    // The producer drops its reference before the consumers see their slices on odd rounds,
    // and races them on even ones.
    if (i % 2 == 1) b.Release();
    for (int c = 0; c < kConsumers; ++c) {
      queues[static_cast<size_t>(c)].Push(std::move(slices[static_cast<size_t>(c)]), fill);
    }
  }
  for (SliceQueue& q : queues) q.Close();
  for (std::thread& t : consumers) t.join();

  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(consumed.load(), kIterations * kConsumers);
  EXPECT_EQ(pool->available_segments(), pool->total_segments());
}

}  // namespace
}  // namespace sluice
