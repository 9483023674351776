// Reusable pieces for consuming tasks with many input channels.
//
// BarrierAligner: aligned checkpoints. After a channel delivers barrier n it is blocked (its
// later records wait) until every live channel has delivered n; then all resume and the
// checkpoint may be taken. Unaligned barriers (priority events) block nothing; the checkpoint
// starts at the first and completes at the last. A newer barrier aborts an unfinished
// alignment. WatermarkCombiner: the task's event time is the minimum over its live channels.
// Neither is thread-safe: both belong to the consuming thread, like the gate.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "shuffle/event.h"
#include "shuffle/input_gate.h"

namespace sluice {

class BarrierAligner {
 public:
  enum class Outcome : uint8_t {
    kIgnored,    // an old or repeated barrier
    kStarted,    // first barrier of a checkpoint (the moment to snapshot, when unaligned)
    kPending,    // more channels to come
    kCompleted,  // every live channel has delivered it; blocked channels are resumed
  };
  struct Result {
    Outcome outcome = Outcome::kIgnored;
    uint64_t checkpoint_id = 0;
    // Set when this barrier aborted an unfinished alignment of an older checkpoint.
    std::optional<uint64_t> aborted;
  };

  explicit BarrierAligner(ChannelBlocker* input);

  Result OnBarrier(uint32_t channel, const CheckpointBarrier& barrier);
  // The channel delivered end-of-partition: it takes no further part, and may complete an
  // alignment that waited only for it.
  Result OnEndOfPartition(uint32_t channel);
  // Gives up the current alignment (a checkpoint was declined) and resumes every channel.
  void Abort();

  bool aligning() const { return pending_ > 0; }
  uint64_t current_checkpoint() const { return current_; }
  uint32_t arrived() const { return arrived_count_; }

 private:
  Result Start(uint32_t channel, const CheckpointBarrier& barrier);
  Result Arrive(uint32_t channel);
  void ResumeAll();

  ChannelBlocker* const input_;
  std::vector<bool> arrived_;
  std::vector<bool> ended_;
  uint32_t live_;
  uint64_t current_ = 0;
  bool unaligned_ = false;
  uint32_t arrived_count_ = 0;
  uint32_t pending_ = 0;  // channels still to deliver the current barrier
};

class WatermarkCombiner {
 public:
  explicit WatermarkCombiner(uint32_t channels);

  // Returns the combined watermark when it advanced.
  std::optional<int64_t> OnWatermark(uint32_t channel, int64_t watermark);
  // A finished channel no longer holds the watermark back.
  std::optional<int64_t> OnEndOfPartition(uint32_t channel);
  // INT64_MIN until every channel has reported.
  int64_t current() const { return combined_; }

 private:
  std::optional<int64_t> Recompute();

  std::vector<int64_t> watermarks_;
  std::vector<bool> ended_;
  int64_t combined_;
};

}  // namespace sluice
