// InputGate: what one consuming subtask reads from one upstream result, one channel per upstream
// subpartition. PollNext returns the next record (reassembled when it spanned buffers) or event
// with its channel index; when nothing is ready it returns kNone and NotifyWhenAvailable tells
// when to come back, so a task thread with a mailbox never blocks inside the gate.
// UnionInputGate merges several gates for operators with more than one input.
//
// Threads: PollNext, WaitNext, Block/ResumeChannel and Close belong to the consuming thread.
// Channels notify from any thread; availability callbacks run on the notifying thread, outside
// the gate's lock, and must not call back into the gate (queue a mailbox action instead).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/buffer_pool.h"
#include "base/sync.h"
#include "shuffle/credit.h"
#include "shuffle/event.h"
#include "shuffle/input_channel.h"
#include "shuffle/record_format.h"
#include "shuffle/result_partition.h"

namespace sluice {

struct InputGateOptions {
  uint32_t exclusive_buffers_per_channel = 2;
  uint32_t floating_buffers_per_gate = 8;
  size_t max_record_size = kDefaultMaxRecordSize;
};

// One result of PollNext. `record` and `event` stay valid until the next call on the gate.
struct InputItem {
  enum class Kind : uint8_t {
    kNone,  // nothing ready now
    kRecord,
    kEvent,
    kEnd,  // every channel has delivered end-of-partition
  };
  Kind kind = Kind::kNone;
  uint32_t channel = 0;  // gate-wide (union-wide for a UnionInputGate)
  uint32_t gate = 0;     // which gate of a union
  std::string_view record;
  const Event* event = nullptr;
};

// Channels that can be paused, for barrier alignment.
class ChannelBlocker {
 public:
  virtual ~ChannelBlocker() = default;
  virtual uint32_t num_channels() const = 0;
  // A blocked channel is not read (its data waits, holding its credit) until resumed.
  virtual void BlockChannel(uint32_t channel) = 0;
  virtual void ResumeChannel(uint32_t channel) = 0;
};

class InputGate final : public ChannelOwner, public ChannelBlocker {
 public:
  InputGate(std::string name, const InputGateOptions& options);
  ~InputGate() override;  // Close()

  InputGate(const InputGate&) = delete;
  InputGate& operator=(const InputGate&) = delete;

  const std::string& name() const { return name_; }
  const InputGateOptions& options() const { return options_; }

  // Adds the next channel (index = number added before). REQUIRES: before Start().
  void AddChannel(std::unique_ptr<InputChannel> channel);
  // Asks every channel for its subpartition.
  absl::Status Start();

  // The next record or event, or kNone / kEnd. An error is a channel's failure (naming the
  // producer's cause) or corrupt data; it repeats on every later call.
  absl::Status PollNext(InputItem* out) {
    if (PollFast(out)) return absl::OkStatus();
    return PollSlow(out);
  }
  // The inline part of PollNext: a record lying whole in the buffer being read, when no
  // priority event waits. Returns false when PollNext must take the slow path.
  bool PollFast(InputItem* out) {
    if (ABSL_PREDICT_TRUE(current_ != nullptr) &&
        ABSL_PREDICT_TRUE(!priority_pending_.load(std::memory_order_relaxed)) &&
        current_->deserializer.NextFast(&out->record)) {
      out->kind = InputItem::Kind::kRecord;
      out->channel = current_index_;
      return true;
    }
    return false;
  }
  // Calls fn(channel, record) for up to `max` records that lie whole in the buffer being read,
  // in a tight loop, and returns how many (0 when PollNext must be called: a buffer border, an
  // event, a priority event waiting, a record that spans buffers). Each view is valid until the
  // next call on the gate. For consumers that process records in batches.
  template <typename Fn>
  size_t PollRecords(Fn&& fn, size_t max) {
    if (current_ == nullptr || priority_pending_.load(std::memory_order_relaxed)) return 0;
    const uint32_t channel = current_index_;
    return current_->deserializer.ForEachFast([&](std::string_view record) { fn(channel, record); },
                                              max);
  }
  // PollNext, waiting up to `timeout` for something; kNone only when the time ran out.
  absl::Status WaitNext(InputItem* out, absl::Duration timeout = absl::InfiniteDuration());
  // Runs `callback` once when PollNext may return something other than kNone (at once when it
  // may now).
  void NotifyWhenAvailable(AvailabilityCallback callback);

  uint32_t num_channels() const override { return static_cast<uint32_t>(channels_.size()); }
  void BlockChannel(uint32_t channel) override;
  void ResumeChannel(uint32_t channel) override;
  bool channel_blocked(uint32_t channel) const { return channels_[channel].blocked; }
  InputChannel& channel(uint32_t index) { return *channels_[index].channel; }
  // Whether a priority event waits to be read (PollNext returns it next).
  bool priority_event_pending() const { return priority_pending_.load(std::memory_order_acquire); }
  // Data buffers taken from channels so far (a union rotates between gates on buffer borders).
  uint64_t buffers_taken() const { return buffers_taken_; }

  // Releases every channel (cancel, or the end of input). Idempotent.
  void Close();

  // ChannelOwner.
  void NotifyChannelNonEmpty(uint32_t channel, bool priority) override;
  FloatingCredits& floating_credits() override { return floating_; }
  uint32_t exclusive_credits_per_channel() const override {
    return options_.exclusive_buffers_per_channel;
  }

 private:
  struct Slot {
    std::unique_ptr<InputChannel> channel;
    RecordDeserializer deserializer;
    bool finished = false;
    bool blocked = false;
    bool parked = false;  // popped while blocked: re-queued on resume
  };

  absl::Status PollSlow(InputItem* out);
  // Reads channel `index` once. Sets *done when `out` holds an item to return.
  absl::Status ReadChannel(uint32_t index, bool priority, InputItem* out, bool* done);
  // Records a channel's failure, with the gate and channel named, and returns it.
  absl::Status Failed(uint32_t channel, const absl::Status& cause);
  void Enqueue(uint32_t index, bool priority);
  // Pops the next queued channel, priority ones first. REQUIRES: consumer thread.
  bool Pop(uint32_t* index, bool* priority);

  const std::string name_;
  const InputGateOptions options_;
  FloatingCredits floating_;
  std::vector<Slot> channels_;  // fixed after Start

  // Consuming thread.
  Slot* current_ = nullptr;
  uint32_t current_index_ = 0;
  uint32_t finished_count_ = 0;
  uint64_t buffers_taken_ = 0;
  Event event_;
  absl::Status failure_;
  bool started_ = false;

  std::atomic<bool> priority_pending_{false};
  Mutex mu_;
  // Written by the consuming thread under mu_; read by it freely and by notifiers under mu_.
  bool closed_ = false;
  std::deque<uint32_t> ready_ ABSL_GUARDED_BY(mu_);
  std::deque<uint32_t> priority_ready_ ABSL_GUARDED_BY(mu_);
  std::vector<uint8_t> queued_ ABSL_GUARDED_BY(mu_);
  std::vector<AvailabilityCallback> waiters_ ABSL_GUARDED_BY(mu_);
};

// Several gates read as one. Channel indexes are union-wide: gate k's channels follow those of
// gates 0..k-1. The gates must outlive the union. Threads as for InputGate.
class UnionInputGate final : public ChannelBlocker {
 public:
  explicit UnionInputGate(std::vector<InputGate*> gates);
  ~UnionInputGate() override;

  absl::Status PollNext(InputItem* out) {
    // The current gate's fast path never moves to another buffer, so no rotation is due.
    if (ABSL_PREDICT_TRUE(current_ >= 0) && gates_[current_]->PollFast(out)) {
      out->gate = static_cast<uint32_t>(current_);
      out->channel += offsets_[current_];
      return absl::OkStatus();
    }
    return PollSlow(out);
  }
  // As InputGate::PollRecords, with union-wide channel indexes.
  template <typename Fn>
  size_t PollRecords(Fn&& fn, size_t max) {
    if (current_ < 0) return 0;
    const uint32_t offset = offsets_[current_];
    return gates_[current_]->PollRecords(
        [&](uint32_t channel, std::string_view record) { fn(offset + channel, record); }, max);
  }
  absl::Status WaitNext(InputItem* out, absl::Duration timeout = absl::InfiniteDuration());
  void NotifyWhenAvailable(AvailabilityCallback callback);

  uint32_t num_channels() const override { return total_channels_; }
  void BlockChannel(uint32_t channel) override;
  void ResumeChannel(uint32_t channel) override;
  uint32_t num_gates() const { return static_cast<uint32_t>(gates_.size()); }

 private:
  struct Shared;
  // Completes a PollNext whose gate returned something other than a record of the same buffer.
  absl::Status Finish(absl::Status s, InputItem* out);
  absl::Status PollSlow(InputItem* out);
  void Locate(uint32_t channel, uint32_t* gate, uint32_t* local) const;
  void Requeue(int gate);

  std::vector<InputGate*> gates_;
  std::vector<uint32_t> offsets_;
  uint32_t total_channels_ = 0;
  std::vector<bool> ended_;
  uint32_t ended_count_ = 0;
  int current_ = -1;
  uint64_t current_buffers_ = 0;
  std::shared_ptr<Shared> shared_;
};

}  // namespace sluice
