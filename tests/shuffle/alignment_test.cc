// BarrierAligner and WatermarkCombiner against a recording channel blocker.
#include "shuffle/alignment.h"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace sluice {
namespace {

class FakeInput final : public ChannelBlocker {
 public:
  explicit FakeInput(uint32_t n) : blocked_(n, false) {}
  uint32_t num_channels() const override { return static_cast<uint32_t>(blocked_.size()); }
  void BlockChannel(uint32_t c) override { blocked_[c] = true; }
  void ResumeChannel(uint32_t c) override { blocked_[c] = false; }
  std::vector<bool> blocked_;
};

using Outcome = BarrierAligner::Outcome;

TEST(BarrierAlignerTest, AlignedBlocksThenResumesAll) {
  FakeInput in(3);
  BarrierAligner a(&in);
  const CheckpointBarrier b{5, 0, 0};
  EXPECT_EQ(a.OnBarrier(1, b).outcome, Outcome::kStarted);
  EXPECT_EQ(in.blocked_, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(a.OnBarrier(1, b).outcome, Outcome::kIgnored);  // a repeat
  EXPECT_EQ(a.OnBarrier(0, b).outcome, Outcome::kPending);
  EXPECT_EQ(in.blocked_, (std::vector<bool>{true, true, false}));
  auto done = a.OnBarrier(2, b);
  EXPECT_EQ(done.outcome, Outcome::kCompleted);
  EXPECT_EQ(done.checkpoint_id, 5u);
  EXPECT_EQ(in.blocked_, (std::vector<bool>{false, false, false}));
  EXPECT_EQ(a.OnBarrier(0, CheckpointBarrier{4, 0, 0}).outcome, Outcome::kIgnored);  // older
}

TEST(BarrierAlignerTest, NewerBarrierAbortsAnUnfinishedAlignment) {
  FakeInput in(2);
  BarrierAligner a(&in);
  EXPECT_EQ(a.OnBarrier(0, CheckpointBarrier{1, 0, 0}).outcome, Outcome::kStarted);
  auto r = a.OnBarrier(1, CheckpointBarrier{2, 0, 0});
  EXPECT_EQ(r.outcome, Outcome::kStarted);
  ASSERT_TRUE(r.aborted.has_value());
  EXPECT_EQ(*r.aborted, 1u);
  EXPECT_EQ(in.blocked_, (std::vector<bool>{false, true}));
  EXPECT_EQ(a.OnBarrier(0, CheckpointBarrier{2, 0, 0}).outcome, Outcome::kCompleted);
}

TEST(BarrierAlignerTest, UnalignedBlocksNothing) {
  FakeInput in(2);
  BarrierAligner a(&in);
  const CheckpointBarrier b{3, 0, kBarrierUnaligned};
  EXPECT_EQ(a.OnBarrier(0, b).outcome, Outcome::kStarted);
  EXPECT_EQ(in.blocked_, (std::vector<bool>{false, false}));
  EXPECT_EQ(a.OnBarrier(1, b).outcome, Outcome::kCompleted);
}

TEST(BarrierAlignerTest, EndedChannelsNoLongerTakePart) {
  FakeInput in(3);
  BarrierAligner a(&in);
  const CheckpointBarrier b{1, 0, 0};
  EXPECT_EQ(a.OnBarrier(0, b).outcome, Outcome::kStarted);
  EXPECT_EQ(a.OnEndOfPartition(1).outcome, Outcome::kPending);
  EXPECT_EQ(a.OnEndOfPartition(2).outcome, Outcome::kCompleted);
  EXPECT_FALSE(in.blocked_[0]);
  // With one channel left, the next barrier completes at once.
  EXPECT_EQ(a.OnBarrier(0, CheckpointBarrier{2, 0, 0}).outcome, Outcome::kCompleted);
}

TEST(WatermarkCombinerTest, MinimumOverLiveChannels) {
  WatermarkCombiner w(3);
  EXPECT_EQ(w.OnWatermark(0, 10), std::nullopt);
  EXPECT_EQ(w.OnWatermark(1, 20), std::nullopt);
  EXPECT_EQ(w.OnWatermark(2, 5), std::optional<int64_t>(5));
  EXPECT_EQ(w.OnWatermark(2, 30), std::optional<int64_t>(10));
  EXPECT_EQ(w.OnWatermark(0, 8), std::nullopt);  // never backwards
  EXPECT_EQ(w.OnWatermark(0, 25), std::optional<int64_t>(20));
  EXPECT_EQ(w.OnEndOfPartition(1), std::optional<int64_t>(25));
  EXPECT_EQ(w.current(), 25);
  EXPECT_EQ(w.OnEndOfPartition(0), std::optional<int64_t>(30));
  EXPECT_EQ(w.OnEndOfPartition(2), std::optional<int64_t>(std::numeric_limits<int64_t>::max()));
}

}  // namespace
}  // namespace sluice
