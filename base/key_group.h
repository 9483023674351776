// Key groups: the unit in which keyed data is partitioned between subtasks and moved on rescale.
// A key's group is a stable 64-bit hash (XXH3) of its serialized bytes modulo the maximum
// parallelism, the same in every process and on every host; a subtask owns a contiguous range of
// groups. The shuffle's hash partitioner and the state store both use these functions, so a
// record always reaches the subtask that holds its key's state. All functions are pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace sluice {

inline constexpr uint32_t kDefaultMaxParallelism = 128;
// Key groups are stored in two bytes in state keys.
inline constexpr uint32_t kMaxMaxParallelism = 1u << 15;

// The stable hash of a serialized key.
uint64_t KeyHash(std::string_view key);

// REQUIRES: max_parallelism > 0.
inline uint32_t KeyGroupForHash(uint64_t hash, uint32_t max_parallelism) {
  return static_cast<uint32_t>(hash % max_parallelism);
}
inline uint32_t KeyGroupForKey(std::string_view key, uint32_t max_parallelism) {
  return KeyGroupForHash(KeyHash(key), max_parallelism);
}

// The subtask (of `parallelism`) that owns `key_group`.
// REQUIRES: 0 < parallelism <= max_parallelism, key_group < max_parallelism.
inline uint32_t SubtaskForKeyGroup(uint32_t key_group, uint32_t max_parallelism,
                                   uint32_t parallelism) {
  return static_cast<uint32_t>(uint64_t{key_group} * parallelism / max_parallelism);
}

// A contiguous, possibly empty range [first, last] of key groups.
struct KeyGroupRange {
  uint32_t first = 0;
  uint32_t count = 0;

  uint32_t end() const { return first + count; }
  bool Contains(uint32_t key_group) const { return key_group - first < count; }
  // The key groups in both ranges (count 0 when none).
  KeyGroupRange Intersect(const KeyGroupRange& other) const {
    const uint32_t from = first > other.first ? first : other.first;
    const uint32_t to = end() < other.end() ? end() : other.end();
    return from < to ? KeyGroupRange{from, to - from} : KeyGroupRange{from, 0};
  }
  bool operator==(const KeyGroupRange&) const = default;
  std::string ToString() const;
};

// The key groups `subtask` owns when `max_parallelism` groups are split into `parallelism`
// contiguous ranges; the inverse of SubtaskForKeyGroup.
KeyGroupRange KeyGroupRangeForSubtask(uint32_t subtask, uint32_t max_parallelism,
                                      uint32_t parallelism);

// OK when 0 < parallelism <= max_parallelism <= kMaxMaxParallelism; otherwise an error naming
// the values.
absl::Status ValidateParallelism(uint32_t parallelism, uint32_t max_parallelism);

}  // namespace sluice
