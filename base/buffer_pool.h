// BufferPool: every segment a worker uses for data, allocated once at start (hugepages when the
// kernel gives them, plain pages otherwise). LocalBufferPool: a share of it with a guaranteed
// minimum and a cap, from which partitions, gates and connections take Buffers.
//
// An empty pool is a state, not an error: callers register a callback that fires once a segment
// is available to them. Both classes are safe for concurrent use from multiple threads;
// callbacks run on the thread that returned the segment, outside any pool lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "base/buffer.h"
#include "base/sync.h"

namespace sluice {

struct BufferPoolOptions {
  size_t segment_size = 32 * 1024;
  size_t num_segments = 4096;  // 128 MiB at the default segment size
  bool try_hugepages = true;
};

using AvailabilityCallback = absl::AnyInvocable<void() &&>;

class LocalBufferPool;

class BufferPool final : public SegmentRecycler {
 public:
  // Maps the whole pool at once. Fails with a message naming the size when memory is refused.
  static absl::StatusOr<std::unique_ptr<BufferPool>> Create(const BufferPoolOptions& options);
  ~BufferPool() override;  // REQUIRES: every segment has come back.

  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  size_t segment_size() const { return segment_size_; }
  size_t total_segments() const { return segments_.size(); }
  size_t available_segments() const;
  bool uses_hugepages() const { return hugepages_; }

  // A Buffer over a free segment, or an empty Buffer when none is free.
  Buffer TryRequest();

  // Runs `callback` once, as soon as a segment is free (at once if one is free now).
  void NotifyWhenAvailable(AvailabilityCallback callback);

  // A local pool that holds `min_segments` from now on and may grow to `max_segments`.
  // When the pool cannot supply the minimum, the error says how many were needed, how many
  // were free and which option to raise.
  absl::StatusOr<std::unique_ptr<LocalBufferPool>> CreateLocalPool(std::string name,
                                                                   size_t min_segments,
                                                                   size_t max_segments);

  void Recycle(MemorySegment* segment) override;

 private:
  friend class LocalBufferPool;
  BufferPool(size_t segment_size, char* memory, size_t mapped_bytes, bool hugepages,
             size_t num_segments);

  // Raw segment handoff between the global and local pools (refs untouched).
  MemorySegment* TakeSegment();
  bool TakeSegments(size_t n, std::vector<MemorySegment*>* out);
  void GiveSegment(MemorySegment* segment);

  const size_t segment_size_;
  char* const memory_;
  const size_t mapped_bytes_;
  const bool hugepages_;
  std::vector<MemorySegment> segments_;

  mutable Mutex mu_;
  std::vector<MemorySegment*> free_ ABSL_GUARDED_BY(mu_);
  std::vector<AvailabilityCallback> waiters_ ABSL_GUARDED_BY(mu_);
};

class LocalBufferPool final : public SegmentRecycler {
 public:
  ~LocalBufferPool() override;  // REQUIRES: every Buffer taken from it has been released.

  // Destroys `pool` once every Buffer taken from it has come back: at once when none is out,
  // otherwise when the last one is released (on that thread). Meanwhile returned segments go
  // straight back to the global pool and waiters are dropped. For pools whose buffers may still
  // be on their way elsewhere, such as in a socket's send queue, when their owner goes.
  static void Retire(std::unique_ptr<LocalBufferPool> pool);

  const std::string& name() const { return name_; }
  size_t min_segments() const { return min_; }
  size_t max_segments() const { return max_; }
  size_t segment_size() const { return global_->segment_size(); }
  // Segments this pool holds (free here or in use).
  size_t owned_segments() const;
  size_t in_use_segments() const;

  // A Buffer, or an empty Buffer when the pool is at its cap or the global pool is dry.
  Buffer TryRequest();

  // Runs `callback` once, as soon as TryRequest can succeed (at once if it can now).
  void NotifyWhenAvailable(AvailabilityCallback callback);

  // Lowers or raises the cap; surplus free segments go back to the global pool.
  // REQUIRES: max_segments >= min_segments().
  void SetMaxSegments(size_t max_segments);

  void Recycle(MemorySegment* segment) override;

 private:
  friend class BufferPool;
  LocalBufferPool(BufferPool* global, std::string name, size_t min_segments, size_t max_segments,
                  std::vector<MemorySegment*> initial);

  // Runs the waiters once the global pool has a segment (at once if it has one now).
  // REQUIRES: the caller set waiting_on_global_.
  void WaitOnGlobal();
  // Detaches the waiters when the global pool has a segment again.
  std::vector<AvailabilityCallback> TakeWaitersOnGlobalAvailable();
  Buffer Wrap(MemorySegment* segment);

  // What a pending global-availability callback holds: it outlives the pool, and the pool
  // clears `pool` under `mu` before it goes away.
  struct Handle {
    Mutex mu;
    LocalBufferPool* pool ABSL_GUARDED_BY(mu);
  };

  BufferPool* const global_;
  const std::string name_;
  const size_t min_;

  mutable Mutex mu_;
  size_t max_ ABSL_GUARDED_BY(mu_);
  size_t owned_ ABSL_GUARDED_BY(mu_);
  std::vector<MemorySegment*> free_ ABSL_GUARDED_BY(mu_);
  std::vector<AvailabilityCallback> waiters_ ABSL_GUARDED_BY(mu_);
  bool waiting_on_global_ ABSL_GUARDED_BY(mu_) = false;
  bool retired_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<Handle> handle_;
};

}  // namespace sluice
