#include "shuffle/record_writer.h"

#include "absl/strings/str_format.h"

namespace sluice {

std::string_view PartitionerName(PartitionerKind kind) {
  switch (kind) {
    case PartitionerKind::kForward:
      return "forward";
    case PartitionerKind::kRoundRobin:
      return "round-robin";
    case PartitionerKind::kRescale:
      return "rescale";
    case PartitionerKind::kHash:
      return "hash";
    case PartitionerKind::kBroadcast:
      return "broadcast";
    case PartitionerKind::kCustom:
      return "custom";
  }
  return "unknown";
}

absl::StatusOr<RecordWriter> RecordWriter::Create(std::shared_ptr<ResultPartition> partition,
                                                  PartitionerSpec spec) {
  if (partition == nullptr) return absl::InvalidArgumentError("a record writer needs a partition");
  const uint32_t n = partition->num_subpartitions();
  switch (spec.kind) {
    case PartitionerKind::kForward:
      if (n != 1) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "the forward partitioner needs exactly one subpartition; partition %s has %d "
            "(forward connects subtask i to subtask i, so both sides need the same parallelism)",
            partition->name(), n));
      }
      break;
    case PartitionerKind::kHash: {
      absl::Status s = ValidateParallelism(n, spec.max_parallelism);
      if (!s.ok()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "hash partitioner of partition %s: %s", partition->name(), std::string(s.message())));
      }
      break;
    }
    case PartitionerKind::kCustom:
      if (spec.custom == nullptr) {
        return absl::InvalidArgumentError("the custom partitioner needs a Partitioner object");
      }
      break;
    default:
      break;
  }
  return RecordWriter(std::move(partition), std::move(spec));
}

RecordWriter::RecordWriter(std::shared_ptr<ResultPartition> partition, PartitionerSpec spec)
    : partition_(std::move(partition)),
      spec_(std::move(spec)),
      num_channels_(partition_->num_subpartitions()),
      next_(spec_.kind == PartitionerKind::kRescale ? spec_.producer_index % num_channels_ : 0) {}

absl::Status RecordWriter::EmitCustom(std::string_view record, std::string_view key) {
  const uint32_t channel = spec_.custom->SelectChannel(key, record, num_channels_);
  if (channel >= num_channels_) {
    return absl::OutOfRangeError(
        absl::StrFormat("custom partitioner chose channel %d of %d in partition %s", channel,
                        num_channels_, partition_->name()));
  }
  return partition_->EmitRecord(channel, record);
}

}  // namespace sluice
