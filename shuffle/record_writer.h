// RecordWriter: a ResultPartition plus the rule that picks each record's subpartition.
// Partitioners: forward (one subpartition), round-robin, rescale (round-robin starting at the
// producer's own index, for pointwise connections), hash by key group (the state store's key
// groups, so a key always reaches the subtask holding its state), broadcast, and custom.
// Not thread-safe: one producer thread, as for ResultPartition.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/statusor.h"
#include "base/key_group.h"
#include "shuffle/event.h"
#include "shuffle/result_partition.h"

namespace sluice {

enum class PartitionerKind : uint8_t {
  kForward,
  kRoundRobin,
  kRescale,
  kHash,
  kBroadcast,
  kCustom,
};

// A user rule for kCustom. Must return a value below `num_channels`.
class Partitioner {
 public:
  virtual ~Partitioner() = default;
  virtual uint32_t SelectChannel(std::string_view key, std::string_view record,
                                 uint32_t num_channels) = 0;
};

struct PartitionerSpec {
  PartitionerKind kind = PartitionerKind::kRoundRobin;
  uint32_t max_parallelism = kDefaultMaxParallelism;  // kHash
  uint32_t producer_index = 0;                        // kRescale: where the rotation starts
  std::shared_ptr<Partitioner> custom;                // kCustom

  static PartitionerSpec Forward() { return {PartitionerKind::kForward}; }
  static PartitionerSpec RoundRobin() { return {PartitionerKind::kRoundRobin}; }
  static PartitionerSpec Rescale(uint32_t producer_index) {
    return {PartitionerKind::kRescale, kDefaultMaxParallelism, producer_index, nullptr};
  }
  static PartitionerSpec Hash(uint32_t max_parallelism = kDefaultMaxParallelism) {
    return {PartitionerKind::kHash, max_parallelism, 0, nullptr};
  }
  static PartitionerSpec Broadcast() { return {PartitionerKind::kBroadcast}; }
  static PartitionerSpec Custom(std::shared_ptr<Partitioner> p) {
    return {PartitionerKind::kCustom, kDefaultMaxParallelism, 0, std::move(p)};
  }
};

std::string_view PartitionerName(PartitionerKind kind);

class RecordWriter {
 public:
  // Checks the spec against the partition (forward needs one subpartition, hash at most
  // max_parallelism, custom a partitioner).
  static absl::StatusOr<RecordWriter> Create(std::shared_ptr<ResultPartition> partition,
                                             PartitionerSpec spec);

  RecordWriter(RecordWriter&&) = default;
  RecordWriter& operator=(RecordWriter&&) = default;

  // One record. For kHash, `key` is the record's serialized key; other built-in partitioners
  // ignore it. Waits when the partition's pool is empty (see ResultPartition::IsAvailable).
  absl::Status Emit(std::string_view record, std::string_view key = {}) {
    switch (spec_.kind) {
      case PartitionerKind::kBroadcast:
        return partition_->BroadcastRecord(record);
      case PartitionerKind::kCustom:
        return EmitCustom(record, key);
      default:
        return partition_->EmitRecord(NextChannel(key), record);
    }
  }
  // One record of `size` bytes serialized in place by `write(char* dst)` (see
  // ResultPartition::EmitRecordWith); `key` as for Emit.
  template <typename Fn>
  ABSL_ATTRIBUTE_ALWAYS_INLINE absl::Status EmitWith(size_t size, Fn&& write,
                                                     std::string_view key = {}) {
    if (ABSL_PREDICT_FALSE(spec_.kind == PartitionerKind::kBroadcast ||
                           spec_.kind == PartitionerKind::kCustom)) {
      // These see the whole record first.
      scratch_.resize(size);
      write(scratch_.data());
      return Emit(scratch_, key);
    }
    return partition_->EmitRecordWith(NextChannel(key), size, write);
  }
  // Into one chosen subpartition, whatever the partitioner.
  absl::Status EmitTo(uint32_t channel, std::string_view record) {
    return partition_->EmitRecord(channel, record);
  }
  absl::Status BroadcastEvent(const Event& event, bool priority = false) {
    return partition_->BroadcastEvent(event, priority);
  }
  void Flush() { partition_->FlushAll(); }
  absl::Status Finish() { return partition_->Finish(); }

  ResultPartition& partition() { return *partition_; }
  uint32_t num_channels() const { return num_channels_; }
  const PartitionerSpec& spec() const { return spec_; }

 private:
  RecordWriter(std::shared_ptr<ResultPartition> partition, PartitionerSpec spec);
  absl::Status EmitCustom(std::string_view record, std::string_view key);
  // The subpartition of the next record for the partitioners that choose one subpartition
  // without looking at the record (all but broadcast and custom).
  uint32_t NextChannel(std::string_view key) {
    switch (spec_.kind) {
      case PartitionerKind::kRoundRobin:
      case PartitionerKind::kRescale: {
        const uint32_t channel = next_;
        if (++next_ == num_channels_) next_ = 0;
        return channel;
      }
      case PartitionerKind::kHash:
        return SubtaskForKeyGroup(KeyGroupForKey(key, spec_.max_parallelism), spec_.max_parallelism,
                                  num_channels_);
      default:
        return 0;  // forward
    }
  }

  std::shared_ptr<ResultPartition> partition_;
  PartitionerSpec spec_;
  uint32_t num_channels_;
  uint32_t next_ = 0;
  std::string scratch_;
};

}  // namespace sluice
