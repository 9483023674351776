// ResultPartition: what one producing subtask writes, split into N subpartitions (one per
// consuming channel), pipelined: a consumer reads a subpartition while it is being written.
//
// Records are written straight into the current pool buffer of their subpartition as
// `[varint length][bytes]` (record_format.h). A buffer becomes readable when it is full, when
// the flush timer fires (`buffer_timeout_ms`), before an event, or after every record with a
// timeout of 0. A flush does not close the buffer: the consumer receives a slice of what has
// been written so far, and the producer keeps writing behind it in the same segment.
//
// Threads: the producer methods (Emit*, Broadcast*, Finish) belong to one producer thread.
// Flush, Fail and Release may be called from any thread; views are used by consumers.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/sync.h"
#include "base/timer_service.h"
#include "shuffle/event.h"
#include "shuffle/record_format.h"

namespace sluice {

// What a buffer in a channel's stream holds.
enum class DataType : uint8_t {
  kData = 0,           // records
  kEvent = 1,          // an encoded Event, in order with the records
  kPriorityEvent = 2,  // an encoded Event that overtook queued buffers
};

inline constexpr size_t kDefaultMaxRecordSize = 64u << 20;

struct ResultPartitionOptions {
  uint32_t num_subpartitions = 1;
  // 0: flush after every record; -1: only full buffers (and before events); > 0: a timer.
  int64_t buffer_timeout_ms = 100;
  // A larger record is refused with an error naming both sizes.
  size_t max_record_size = kDefaultMaxRecordSize;
  // Bounds of the partition's local buffer pool; 0 picks the default. The minimum is at least
  // one buffer per subpartition plus one, so that every subpartition can hold a partly written
  // buffer while a full one is handed on. The default maximum, subpartitions x exclusive +
  // floating of the consumer side, lets each consumer run its full credit ahead.
  size_t min_buffers = 0;
  size_t max_buffers = 0;
  uint32_t exclusive_buffers_per_channel = 2;
  uint32_t floating_buffers_per_gate = 8;
};

// Told when a subpartition has something for its consumer.
class SubpartitionListener {
 public:
  virtual ~SubpartitionListener() = default;
  // Something became available: data, an event (`priority` when it overtook queued buffers),
  // or a failure. Called on the thread that caused it, never under a partition lock.
  virtual void OnDataAvailable(bool priority) = 0;
};

struct PolledBuffer {
  Buffer buffer;
  DataType type = DataType::kData;
  uint32_t backlog = 0;         // data buffers still queued behind this one
  bool more_available = false;  // whether another Poll would return something now
};

class ResultPartition;

// A consumer's reader of one subpartition. Thread-safe.
class SubpartitionView {
 public:
  ~SubpartitionView();  // Release()

  // The next buffer. Events never need credit; data is returned only when `has_credit`.
  // nullopt when nothing can be returned now (the listener will be told when that changes).
  // After a failure or release, returns the cause.
  absl::StatusOr<std::optional<PolledBuffer>> Poll(bool has_credit);
  uint32_t backlog() const;
  uint32_t subpartition() const { return index_; }
  // The consumer is done (finished or cancelled): the subpartition drops its buffers and
  // further records written to it are discarded.
  void Release();

 private:
  friend class ResultPartition;
  SubpartitionView(std::shared_ptr<ResultPartition> partition, uint32_t index)
      : partition_(std::move(partition)), index_(index) {}
  std::shared_ptr<ResultPartition> partition_;
  const uint32_t index_;
  bool released_ = false;
};

struct ResultPartitionStats {
  uint64_t records = 0;            // written by the producer
  uint64_t buffers_finished = 0;   // data buffers handed to the queues (full or flushed slices)
  uint64_t waits_for_buffer = 0;   // times the producer waited on an empty pool
  uint64_t buffers_discarded = 0;  // written after the consumer released its subpartition
};

class ResultPartition : public std::enable_shared_from_this<ResultPartition> {
 public:
  // Takes a local pool of [min_buffers, max_buffers] from `pool`; `timer` runs the periodic
  // flush (required when buffer_timeout_ms > 0). Errors name the option at fault.
  static absl::StatusOr<std::shared_ptr<ResultPartition>> Create(
      std::string name, const ResultPartitionOptions& options, BufferPool* pool,
      TimerService* timer);
  ~ResultPartition();

  ResultPartition(const ResultPartition&) = delete;
  ResultPartition& operator=(const ResultPartition&) = delete;

  const std::string& name() const { return name_; }
  uint32_t num_subpartitions() const { return static_cast<uint32_t>(subs_.size()); }
  const ResultPartitionOptions& options() const { return options_; }
  LocalBufferPool* buffer_pool() const { return pool_.get(); }

  // ---- Producer thread.

  // Appends one record to `subpartition`. When the pool is empty this waits for a buffer
  // (back-pressure) without spinning. REQUIRES: subpartition < num_subpartitions().
  ABSL_ATTRIBUTE_ALWAYS_INLINE absl::Status EmitRecord(uint32_t subpartition,
                                                       std::string_view record) {
    const size_t n = record.size();
    if (ABSL_PREDICT_TRUE(TryEmitInPlace(
            subpartition, n, [record, n](char* dst) { CopySmall(dst, record.data(), n); }))) {
      return absl::OkStatus();
    }
    return EmitRecordSlow(subpartition, record);
  }
  // Serializes one record of exactly `size` bytes straight into the subpartition's buffer:
  // `write(char* dst)` writes the `size` bytes at dst. This is the path without any copy: the
  // bytes are produced where they will be sent from. A record that does not fit in the rest of
  // the current buffer is written to a scratch area and copied from there (it spans buffers).
  template <typename Fn>
  ABSL_ATTRIBUTE_ALWAYS_INLINE absl::Status EmitRecordWith(uint32_t subpartition, size_t size,
                                                           Fn&& write) {
    if (ABSL_PREDICT_TRUE(TryEmitInPlace(subpartition, size, write))) return absl::OkStatus();
    return EmitRecordWithSlow(subpartition, size, write);
  }
  // The record into every subpartition.
  absl::Status BroadcastRecord(std::string_view record);
  // An event into one subpartition, after flushing what was written before it; a priority
  // event goes ahead of the buffers queued there instead.
  absl::Status EmitEvent(uint32_t subpartition, const Event& event, bool priority = false);
  absl::Status BroadcastEvent(const Event& event, bool priority = false);
  // Flushes and appends end-of-partition to every subpartition; further writes fail.
  absl::Status Finish();
  // Whether a record can be written without waiting for a buffer (for mailbox loops), and a
  // one-shot callback for when it can.
  bool IsAvailable() const;
  void NotifyWhenAvailable(AvailabilityCallback callback);
  // The producer's buffers in progress go back to the pool. Called by the producer when it
  // stops writing (also done by Finish and by the destructor).
  void CloseWriter();
  ResultPartitionStats stats() const;

  // ---- Any thread.

  // Makes what was written to the subpartition readable.
  void Flush(uint32_t subpartition);
  void FlushAll();
  // Drops every queued buffer and makes consumers and the producer see `cause`.
  void Fail(absl::Status cause);
  // As Fail, for a partition nobody needs any more (cancellation, job end).
  void Release(absl::Status cause);
  bool released() const { return state_.load(std::memory_order_acquire) != kRunning; }
  // The failure or release cause; OK while running.
  absl::Status cause() const;
  uint32_t backlog(uint32_t subpartition) const;

  // ---- Consumer side.

  // A reader of `subpartition`, told through `listener`. One view per subpartition at a time.
  absl::StatusOr<std::unique_ptr<SubpartitionView>> CreateView(
      uint32_t subpartition, std::shared_ptr<SubpartitionListener> listener);

 private:
  friend class SubpartitionView;

  struct Queued {
    Buffer buffer;
    DataType type;
  };

  // The state one consumer and the producer share. Cache-line aligned: neighbours are written
  // by the producer at the same time.
  struct alignas(64) Subpartition {
    mutable Mutex mu;
    std::deque<Queued> queue ABSL_GUARDED_BY(mu);
    uint32_t backlog ABSL_GUARDED_BY(mu) = 0;          // data buffers in `queue`
    uint32_t priority_events ABSL_GUARDED_BY(mu) = 0;  // at the front of `queue`
    // The buffer being written: the subpartition's own reference, from which flushed slices
    // are cut. [delivered, committed) is written but not yet handed out.
    Buffer writing ABSL_GUARDED_BY(mu);
    uint32_t delivered ABSL_GUARDED_BY(mu) = 0;
    // The producer's write position in `writing` (its Cursor::pos): stored after every record
    // without the lock (release), read under the lock with acquire, which makes the record bytes
    // below it visible. Reset by the producer only under the lock.
    const std::atomic<uint32_t>* committed = nullptr;
    bool flush_requested ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;
    bool consumer_released ABSL_GUARDED_BY(mu) = false;
    absl::Status failure ABSL_GUARDED_BY(mu);
    bool has_view ABSL_GUARDED_BY(mu) = false;
    std::shared_ptr<SubpartitionListener> listener ABSL_GUARDED_BY(mu);

    bool AvailableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return !queue.empty() || !failure.ok() ||
             (flush_requested && committed->load(std::memory_order_acquire) > delivered);
    }
  };

  // The whole record into the current buffer when it fits there; false otherwise (no buffer,
  // not enough room, or larger than the maximum), with nothing written.
  template <typename Fn>
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryEmitInPlace(uint32_t subpartition, size_t size, Fn&& write) {
    Cursor& c = cursors_[subpartition];
    const uint32_t pos = c.pos.load(std::memory_order_relaxed);
    const size_t header = ABSL_PREDICT_TRUE(size < 0x80) ? 1 : VarintLength(size);
    // Strictly less than the room left: a record that fills the buffer exactly takes the slow
    // path, which hands the full buffer on at once.
    if (ABSL_PREDICT_FALSE(c.limit - pos <= header + size || size > options_.max_record_size)) {
      return false;
    }
    char* p = c.base + pos;
    // A round-robin writer comes back to this buffer only after visiting every other
    // subpartition: fetching the next line now hides the miss the hardware prefetcher cannot
    // predict across a thousand interleaved streams. (Prefetches never fault.)
    __builtin_prefetch(p + 64, 1);
    if (ABSL_PREDICT_TRUE(header == 1)) {
      *p = static_cast<char>(size);
    } else {
      EncodeVarint(p, static_cast<uint32_t>(size));
    }
    write(p + header);
    // Publishes the record to flushers and readers (a plain store on x86).
    c.pos.store(pos + static_cast<uint32_t>(header + size), std::memory_order_release);
    CountRecord();
    if (ABSL_PREDICT_FALSE(flush_every_record_)) Flush(subpartition);
    return true;
  }

  template <typename Fn>
  ABSL_ATTRIBUTE_NOINLINE absl::Status EmitRecordWithSlow(uint32_t subpartition, size_t size,
                                                          Fn&& write) {
    if (size > options_.max_record_size) return RecordTooLarge(size);
    scratch_.resize(size);
    write(scratch_.data());
    return EmitRecordSlow(subpartition, scratch_);
  }

  // memcpy for n < 128 without a library call for the smallest records: two overlapping fixed
  // copies cover any length from 4 to 16 bytes.
  static void CopySmall(char* dst, const char* src, size_t n) {
    if (n >= 8 && n <= 16) {
      std::memcpy(dst, src, 8);
      std::memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n >= 4 && n < 8) {
      std::memcpy(dst, src, 4);
      std::memcpy(dst + n - 4, src + n - 4, 4);
    } else {
      std::memcpy(dst, src, n);
    }
  }

  // Where the producer writes in a subpartition's current buffer. 16 bytes, packed in one
  // array: a round-robin writer over a thousand subpartitions touches only this and the segment.
  struct Cursor {
    char* base = nullptr;
    std::atomic<uint32_t> pos{0};  // the subpartition's `committed`
    uint32_t limit = 0;            // 0 when there is no buffer
  };

  enum State : int { kRunning = 0, kFailed = 1, kReleased = 2 };

  ResultPartition(std::string name, const ResultPartitionOptions& options,
                  std::unique_ptr<LocalBufferPool> pool);

  absl::Status EmitRecordSlow(uint32_t subpartition, std::string_view record);
  absl::Status RecordTooLarge(size_t size) const;
  // Copies bytes at the cursor, moving to new buffers as they fill.
  absl::Status Write(uint32_t subpartition, const char* data, size_t n);
  // Hands the cursor's buffer (what was not delivered yet) to the queue.
  void FinishBuffer(uint32_t subpartition);
  // Gives the cursor a fresh buffer, waiting for one when the pool is empty.
  absl::Status NewBuffer(uint32_t subpartition);
  absl::StatusOr<Buffer> RequestBuffer();
  absl::Status AddEvent(uint32_t subpartition, const Buffer& encoded, bool priority);
  void SetFailed(State state, absl::Status cause);
  void ScheduleFlush(TimerService* timer);
  // The writer-facing error once failed or released.
  absl::Status WriterError() const;

  // Consumer calls, via SubpartitionView.
  absl::StatusOr<std::optional<PolledBuffer>> Poll(uint32_t index, bool has_credit);
  void ReleaseView(uint32_t index);

  const std::string name_;
  const ResultPartitionOptions options_;
  const bool flush_every_record_;
  std::unique_ptr<LocalBufferPool> pool_;
  std::vector<Subpartition> subs_;

  // Producer thread. The counters are atomics for stats() from other threads, but only the
  // producer writes them: a plain load and store, no read-modify-write on the hot path.
  void CountRecord() {
    records_.store(records_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  std::vector<Cursor> cursors_;
  std::vector<Buffer> writer_buffers_;  // the producer's reference to each cursor's segment
  std::string scratch_;                 // records serialized in place that span buffers
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> waits_for_buffer_{0};
  bool writer_finished_ = false;

  std::atomic<int> state_{kRunning};
  mutable Mutex state_mu_;
  absl::Status cause_ ABSL_GUARDED_BY(state_mu_);
  std::shared_ptr<Notification> blocked_writer_ ABSL_GUARDED_BY(state_mu_);
  std::atomic<uint64_t> buffers_finished_{0};
  std::atomic<uint64_t> buffers_discarded_{0};
  TimerService* timer_ = nullptr;
  std::atomic<TimerService::TimerId> flush_timer_{0};
};

}  // namespace sluice
