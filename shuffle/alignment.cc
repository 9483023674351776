#include "shuffle/alignment.h"

#include <algorithm>
#include <limits>

namespace sluice {

BarrierAligner::BarrierAligner(ChannelBlocker* input)
    : input_(input),
      arrived_(input->num_channels(), false),
      ended_(input->num_channels(), false),
      live_(input->num_channels()) {}

void BarrierAligner::ResumeAll() {
  if (!unaligned_) {
    for (uint32_t c = 0; c < arrived_.size(); ++c) {
      if (arrived_[c] && !ended_[c]) input_->ResumeChannel(c);
    }
  }
  std::fill(arrived_.begin(), arrived_.end(), false);
  arrived_count_ = 0;
  pending_ = 0;
}

void BarrierAligner::Abort() { ResumeAll(); }

BarrierAligner::Result BarrierAligner::Start(uint32_t channel, const CheckpointBarrier& barrier) {
  Result r;
  if (pending_ > 0) {
    r.aborted = current_;
    ResumeAll();
  }
  current_ = barrier.id;
  unaligned_ = barrier.unaligned();
  pending_ = live_;
  Result a = Arrive(channel);
  r.checkpoint_id = current_;
  r.outcome = a.outcome == Outcome::kCompleted ? Outcome::kCompleted : Outcome::kStarted;
  return r;
}

BarrierAligner::Result BarrierAligner::Arrive(uint32_t channel) {
  Result r;
  r.checkpoint_id = current_;
  arrived_[channel] = true;
  ++arrived_count_;
  --pending_;
  if (pending_ == 0) {
    ResumeAll();
    r.outcome = Outcome::kCompleted;
    return r;
  }
  if (!unaligned_) input_->BlockChannel(channel);
  r.outcome = Outcome::kPending;
  return r;
}

BarrierAligner::Result BarrierAligner::OnBarrier(uint32_t channel,
                                                 const CheckpointBarrier& barrier) {
  if (channel >= arrived_.size() || ended_[channel]) return Result{};
  if (barrier.id > current_) {
    return Start(channel, barrier);
  }
  if (barrier.id == current_ && pending_ > 0 && !arrived_[channel]) return Arrive(channel);
  Result r;
  r.checkpoint_id = barrier.id;
  return r;  // older than the current checkpoint, or a repeat
}

BarrierAligner::Result BarrierAligner::OnEndOfPartition(uint32_t channel) {
  Result r;
  if (channel >= ended_.size() || ended_[channel]) return r;
  ended_[channel] = true;
  --live_;
  if (pending_ > 0 && !arrived_[channel]) {
    r.checkpoint_id = current_;
    if (--pending_ == 0) {
      ResumeAll();
      r.outcome = Outcome::kCompleted;
    } else {
      r.outcome = Outcome::kPending;
    }
  }
  return r;
}

WatermarkCombiner::WatermarkCombiner(uint32_t channels)
    : watermarks_(channels, std::numeric_limits<int64_t>::min()),
      ended_(channels, false),
      combined_(std::numeric_limits<int64_t>::min()) {}

std::optional<int64_t> WatermarkCombiner::Recompute() {
  int64_t m = std::numeric_limits<int64_t>::max();
  bool any = false;
  for (size_t c = 0; c < watermarks_.size(); ++c) {
    if (ended_[c]) continue;
    any = true;
    m = std::min(m, watermarks_[c]);
  }
  // With every channel finished, event time has reached its end.
  if (!any) m = std::numeric_limits<int64_t>::max();
  if (m > combined_) {
    combined_ = m;
    return m;
  }
  return std::nullopt;
}

std::optional<int64_t> WatermarkCombiner::OnWatermark(uint32_t channel, int64_t watermark) {
  if (channel >= watermarks_.size() || ended_[channel] || watermark <= watermarks_[channel]) {
    return std::nullopt;  // watermarks never go back
  }
  const bool was_minimum = watermarks_[channel] <= combined_;
  watermarks_[channel] = watermark;
  // Only the channel that held the minimum can move it.
  if (!was_minimum) return std::nullopt;
  return Recompute();
}

std::optional<int64_t> WatermarkCombiner::OnEndOfPartition(uint32_t channel) {
  if (channel >= ended_.size() || ended_[channel]) return std::nullopt;
  ended_[channel] = true;
  return Recompute();
}

}  // namespace sluice
