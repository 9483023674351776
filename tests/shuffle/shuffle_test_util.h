// A shuffle environment on a small pool, and helpers to wire partitions to gates, for the
// shuffle tests. Small segments make records span buffers often.
//
// The service is `local` unless SLUICE_TEST_SHUFFLE_SERVICE says "net-uring" or "net-epoll":
// then the one environment is also its own remote, and every channel goes through a loopback
// connection to its data server, so that the same tests check both services.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
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

// "local", "net-uring" or "net-epoll".
inline std::string TestShuffleService() {
  const char* v = std::getenv("SLUICE_TEST_SHUFFLE_SERVICE");
  return v != nullptr && *v != '\0' ? std::string(v) : std::string("local");
}
inline bool TestingNetShuffle() { return absl::StartsWith(TestShuffleService(), "net"); }

// The default configuration of the service under test.
inline ShuffleConfig TestShuffleConfig() {
  Config raw;
  const std::string service = TestShuffleService();
  if (absl::StartsWith(service, "net-")) {
    raw.Set("shuffle.service", "net");
    raw.Set("shuffle.net.transport", service.substr(4));
  }
  return ShuffleConfig::FromConfig(raw).value();
}

class ShuffleHarness {
 public:
  explicit ShuffleHarness(size_t segments = 512, ShuffleConfig config = TestShuffleConfig()) {
    BufferPoolOptions options;
    options.segment_size = kTestSegmentSize;
    // A net environment also keeps its transport's receive segments.
    options.num_segments = segments + (config.service == "net" ? 256 : 0);
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
    idle_segments_ = pool_->available_segments();
  }
  ~ShuffleHarness() {
    env_->Close();
    env_.reset();
  }

  BufferPool& pool() { return *pool_; }
  ShuffleEnvironment& env() { return *env_; }
  ShuffleMaster& master() { return *master_; }
  const ShuffleConfig& config() const { return config_; }
  // Free segments of the pool while no partition or gate exists.
  size_t idle_segments() const { return idle_segments_; }

  ShuffleDescriptor Register(uint64_t result, uint32_t producer, uint32_t subpartitions) {
    return master_
        ->RegisterPartition(PartitionId{result, producer}, subpartitions,
                            ProducerLocation{"worker-0", env_->data_address()})
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
  size_t idle_segments_ = 0;
};

}  // namespace sluice::testing
