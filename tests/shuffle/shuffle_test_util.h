// A local shuffle environment on a small pool, and helpers to wire partitions to gates, for the
// shuffle tests. Small segments make records span buffers often.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/buffer_pool.h"
#include "base/timer_service.h"
#include "shuffle/input_gate.h"
#include "shuffle/record_writer.h"
#include "shuffle/result_partition.h"
#include "shuffle/shuffle_service.h"

namespace sluice::testing {

#define SLUICE_ASSERT_OK(expr)                \
  do {                                        \
    const ::absl::Status sluice_s_ = (expr);  \
    ASSERT_TRUE(sluice_s_.ok()) << sluice_s_; \
  } while (0)
#define SLUICE_EXPECT_OK(expr)                \
  do {                                        \
    const ::absl::Status sluice_s_ = (expr);  \
    EXPECT_TRUE(sluice_s_.ok()) << sluice_s_; \
  } while (0)

inline constexpr size_t kTestSegmentSize = 4096;

class ShuffleHarness {
 public:
  explicit ShuffleHarness(size_t segments = 512, ShuffleConfig config = ShuffleConfig()) {
    BufferPoolOptions options;
    options.segment_size = kTestSegmentSize;
    options.num_segments = segments;
    options.try_hugepages = false;
    pool_ = BufferPool::Create(options).value();
    timer_ = std::make_unique<TimerService>("test-timer");
    config_ = std::move(config);
    master_ = CreateShuffleMaster(config_).value();
    ShuffleEnvironmentContext context;
    context.worker_id = "worker-0";
    context.pool = pool_.get();
    context.timer = timer_.get();
    env_ = CreateShuffleEnvironment(config_, context).value();
  }
  ~ShuffleHarness() {
    env_->Close();
    env_.reset();
  }

  BufferPool& pool() { return *pool_; }
  ShuffleEnvironment& env() { return *env_; }
  ShuffleMaster& master() { return *master_; }
  const ShuffleConfig& config() const { return config_; }

  ShuffleDescriptor Register(uint64_t result, uint32_t producer, uint32_t subpartitions) {
    return master_
        ->RegisterPartition(PartitionId{result, producer}, subpartitions,
                            ProducerLocation{"worker-0", ""})
        .value();
  }

  // Registers and creates a partition; `tweak` may change the options first.
  std::shared_ptr<ResultPartition> Produce(const ShuffleDescriptor& d,
                                           int64_t buffer_timeout_ms = -1, size_t max_buffers = 0) {
    ResultPartitionOptions o = config_.partition_options(d.num_subpartitions);
    o.buffer_timeout_ms = buffer_timeout_ms;
    o.max_buffers = max_buffers;
    auto p = env_->CreateResultPartition(d, o);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : nullptr;
  }

  // One gate reading `subpartition` of each descriptor, in order.
  std::unique_ptr<InputGate> Gate(const std::string& name,
                                  const std::vector<std::pair<ShuffleDescriptor, uint32_t>>& in,
                                  InputGateOptions options = InputGateOptions()) {
    std::vector<InputChannelSpec> specs;
    for (const auto& [d, sub] : in) specs.push_back(InputChannelSpec{d, sub});
    auto g = env_->CreateInputGate(name, specs, options);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? std::move(g).value() : nullptr;
  }
  // A gate reading every subpartition of one partition (channel i = subpartition i).
  std::unique_ptr<InputGate> GateOver(const ShuffleDescriptor& d,
                                      InputGateOptions options = InputGateOptions()) {
    std::vector<std::pair<ShuffleDescriptor, uint32_t>> in;
    for (uint32_t i = 0; i < d.num_subpartitions; ++i) in.emplace_back(d, i);
    return Gate("gate", in, options);
  }

 private:
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<TimerService> timer_;
  ShuffleConfig config_;
  std::unique_ptr<ShuffleMaster> master_;
  std::unique_ptr<ShuffleEnvironment> env_;
};

}  // namespace sluice::testing
