// The pluggable shuffle service (the model is Flink's FLIP-31). A service has two halves:
//
//  - ShuffleMaster, on the coordinator: registers each produced partition and returns the
//    ShuffleDescriptor that tells consumers where and how to read it; releases partitions.
//  - ShuffleEnvironment, on every worker: creates the ResultPartitions that tasks write and the
//    InputGates that tasks read, from descriptors; releases what it holds.
//
// A ShuffleServiceFactory makes both and is registered by name; configuration picks the name
// (`shuffle.service`). Adding a service means implementing these three classes and registering
// the factory with SLUICE_REGISTER_SHUFFLE_SERVICE; nothing else changes. docs/shuffle.md states
// the contract of every call. All three interfaces must be thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/buffer_pool.h"
#include "base/config.h"
#include "base/timer_service.h"
#include "shuffle/input_gate.h"
#include "shuffle/result_partition.h"

namespace sluice {

// Identifies one produced partition: the intermediate result it belongs to and the producing
// subtask.
struct PartitionId {
  uint64_t result = 0;
  uint32_t producer = 0;

  bool operator==(const PartitionId&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const PartitionId& id) {
    return H::combine(std::move(h), id.result, id.producer);
  }
  std::string ToString() const;
};

// Settings every service shares. Services read their own options from the Config.
struct ShuffleConfig {
  std::string service = "local";
  uint32_t exclusive_buffers_per_channel = 2;
  uint32_t floating_buffers_per_gate = 8;
  // -1: flush only full buffers; 0: after every record; otherwise the flush period.
  int64_t buffer_timeout_ms = 100;
  uint64_t max_record_size = kDefaultMaxRecordSize;
  // How long a consumer waits for a partition that is not produced yet.
  absl::Duration partition_request_timeout = absl::Seconds(10);
  // Everything the service was configured with, for its own options.
  Config raw;

  // Reads the `shuffle.*` keys (unknown `shuffle.` keys are an error):
  //   shuffle.service, shuffle.exclusive-buffers-per-channel, shuffle.floating-buffers-per-gate,
  //   shuffle.buffer-timeout-ms, shuffle.max-record-size, shuffle.partition-request-timeout.
  // Services may add their keys through RegisterOptionKeys.
  static absl::StatusOr<ShuffleConfig> FromConfig(const Config& config);

  InputGateOptions gate_options() const;
  ResultPartitionOptions partition_options(uint32_t num_subpartitions) const;
};

// Tells consumers where and how to read a partition. Serializable (FlatBuffers) so that the
// coordinator can ship it to workers.
struct ShuffleDescriptor {
  std::string service;
  PartitionId partition;
  uint32_t num_subpartitions = 0;
  std::string producer_worker;   // the worker that produces it
  std::string producer_address;  // its data address, for network services
  uint32_t connection_index = 0;

  std::string Serialize() const;
  // Verifies the bytes before reading; errors say what was wrong.
  static absl::StatusOr<ShuffleDescriptor> Parse(std::string_view bytes);
  bool operator==(const ShuffleDescriptor&) const = default;
};

// Where a producer runs, as the scheduler knows it.
struct ProducerLocation {
  std::string worker_id;
  std::string data_address;  // host:port of the worker's data server ("" for local)
};

class ShuffleMaster {
 public:
  virtual ~ShuffleMaster() = default;
  // Called once per produced partition before its producer is deployed.
  virtual absl::StatusOr<ShuffleDescriptor> RegisterPartition(const PartitionId& partition,
                                                              uint32_t num_subpartitions,
                                                              const ProducerLocation& producer) = 0;
  // The partition is no longer needed by anyone (job finished, failed over or cancelled).
  // Releases whatever the service keeps outside the workers; idempotent.
  virtual void ReleasePartition(const ShuffleDescriptor& descriptor) = 0;
};

// One channel of a gate: which partition, which subpartition of it.
struct InputChannelSpec {
  ShuffleDescriptor partition;
  uint32_t subpartition = 0;
};

// What a worker gives its environment.
struct ShuffleEnvironmentContext {
  std::string worker_id = "local";
  BufferPool* pool = nullptr;     // required; outlives the environment
  TimerService* timer = nullptr;  // optional; the environment starts its own when null
};

struct ShuffleEnvironmentStats {
  size_t partitions = 0;
  size_t gates = 0;
  // Network services: bytes on the wire both ways (frame headers included), payload bytes the
  // receive path copied in user space, and sends that went out zero-copy. Zero for `local`.
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_copied = 0;
  uint64_t zero_copy_sends = 0;
  size_t connections = 0;  // open data connections, both directions
};

class ShuffleEnvironment {
 public:
  virtual ~ShuffleEnvironment() = default;
  virtual std::string_view service() const = 0;
  // host:port where this worker's producers are read (its data server); "" for services that
  // need none. The scheduler puts it in ProducerLocation::data_address.
  virtual std::string data_address() const { return ""; }

  // A partition for a task on this worker to write, from the descriptor its master made.
  // The environment keeps it until ReleasePartition (or Close) so that consumers can find it.
  virtual absl::StatusOr<std::shared_ptr<ResultPartition>> CreateResultPartition(
      const ShuffleDescriptor& descriptor, const ResultPartitionOptions& options) = 0;
  // A gate with one channel per spec, in order, already started: channels ask for their
  // subpartitions at once and keep asking until the partition request timeout.
  virtual absl::StatusOr<std::unique_ptr<InputGate>> CreateInputGate(
      std::string name, absl::Span<const InputChannelSpec> channels,
      const InputGateOptions& options) = 0;
  // Fails the partition's consumers with `cause` (if still running), returns its buffers and
  // forgets it. Idempotent; unknown ids are ignored.
  virtual void ReleasePartition(const PartitionId& partition, absl::Status cause) = 0;
  virtual ShuffleEnvironmentStats stats() const = 0;
  // Releases every partition. Gates already handed out keep working until their owners drop
  // them, but see their channels fail.
  virtual void Close() = 0;
};

class ShuffleServiceFactory {
 public:
  virtual ~ShuffleServiceFactory() = default;
  virtual std::string_view name() const = 0;
  // Option keys of this service under `shuffle.<name>.` (for unknown-key checks).
  virtual std::vector<std::string_view> option_keys() const { return {}; }
  virtual absl::StatusOr<std::unique_ptr<ShuffleMaster>> CreateMaster(
      const ShuffleConfig& config) = 0;
  virtual absl::StatusOr<std::unique_ptr<ShuffleEnvironment>> CreateEnvironment(
      const ShuffleConfig& config, const ShuffleEnvironmentContext& context) = 0;
};

// Factories by name. Thread-safe.
class ShuffleServiceRegistry {
 public:
  // Fails when the name is taken.
  static absl::Status Register(std::unique_ptr<ShuffleServiceFactory> factory);
  // An error listing the registered names when `name` is not one of them.
  static absl::StatusOr<ShuffleServiceFactory*> Find(std::string_view name);
  static std::vector<std::string> Names();
};

// Checks every service's environment makes: the partition is created with the subpartition
// count it was registered with; every channel names an existing subpartition. Errors name the
// partition (and gate) and both numbers.
absl::Status CheckPartitionOptions(const ShuffleDescriptor& descriptor,
                                   const ResultPartitionOptions& options);
absl::Status CheckChannelSpecs(std::string_view gate, absl::Span<const InputChannelSpec> channels);

// Both halves of the configured service, for code that needs one of them.
absl::StatusOr<std::unique_ptr<ShuffleMaster>> CreateShuffleMaster(const ShuffleConfig& config);
absl::StatusOr<std::unique_ptr<ShuffleEnvironment>> CreateShuffleEnvironment(
    const ShuffleConfig& config, const ShuffleEnvironmentContext& context);

namespace internal {
struct ShuffleServiceRegistrar {
  explicit ShuffleServiceRegistrar(std::function<std::unique_ptr<ShuffleServiceFactory>()> make);
};
}  // namespace internal

// Registers a factory class (default-constructible) at static initialisation. The object file
// must be linked whole (meson: link_whole) for its registrar to run.
#define SLUICE_REGISTER_SHUFFLE_SERVICE(FactoryClass)                \
  static const ::sluice::internal::ShuffleServiceRegistrar           \
      sluice_shuffle_registrar_##FactoryClass(                       \
          []() -> std::unique_ptr<::sluice::ShuffleServiceFactory> { \
            return std::make_unique<FactoryClass>();                 \
          })

}  // namespace sluice
