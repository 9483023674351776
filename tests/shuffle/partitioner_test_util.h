// Partitioner specs for tests and, computed without RecordWriter, the channels each record must
// reach under them. Shared by the in-process shuffle tests and the multi-process ones.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "base/key_group.h"
#include "shuffle/record_writer.h"

namespace sluice::testing {

// The custom rule: the key's first byte, spread over the channels.
inline uint32_t CustomChannel(std::string_view key, uint32_t n) {
  return static_cast<uint32_t>((key.empty() ? 0 : static_cast<uint8_t>(key[0]) * 7u) % n);
}

class ReverseByteSelector final : public Partitioner {
 public:
  uint32_t SelectChannel(std::string_view key, std::string_view, uint32_t n) override {
    return CustomChannel(key, n);
  }
};

// Rescale starts at producer index 3; hash uses 128 key groups.
inline PartitionerSpec SpecFor(PartitionerKind kind) {
  switch (kind) {
    case PartitionerKind::kForward:
      return PartitionerSpec::Forward();
    case PartitionerKind::kRoundRobin:
      return PartitionerSpec::RoundRobin();
    case PartitionerKind::kRescale:
      return PartitionerSpec::Rescale(3);
    case PartitionerKind::kHash:
      return PartitionerSpec::Hash(128);
    case PartitionerKind::kBroadcast:
      return PartitionerSpec::Broadcast();
    case PartitionerKind::kCustom:
      return PartitionerSpec::Custom(std::make_shared<ReverseByteSelector>());
  }
  return PartitionerSpec::RoundRobin();
}

// The channels a record must reach, computed independently of the writer.
inline std::vector<uint32_t> ExpectedChannels(PartitionerKind kind, uint64_t seq,
                                              std::string_view key, uint32_t n) {
  switch (kind) {
    case PartitionerKind::kForward:
      return {0};
    case PartitionerKind::kRoundRobin:
      return {static_cast<uint32_t>(seq % n)};
    case PartitionerKind::kRescale:
      return {static_cast<uint32_t>((3 + seq) % n)};
    case PartitionerKind::kHash:
      return {SubtaskForKeyGroup(KeyGroupForKey(key, 128), 128, n)};
    case PartitionerKind::kBroadcast: {
      std::vector<uint32_t> all(n);
      for (uint32_t i = 0; i < n; ++i) all[i] = i;
      return all;
    }
    case PartitionerKind::kCustom:
      return {CustomChannel(key, n)};
  }
  return {};
}

}  // namespace sluice::testing
