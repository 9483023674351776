#include "base/key_group.h"

#include <xxhash.h>

#include "absl/strings/str_format.h"

namespace sluice {

uint64_t KeyHash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

std::string KeyGroupRange::ToString() const {
  if (count == 0) return "[]";
  return absl::StrFormat("[%d, %d]", first, first + count - 1);
}

KeyGroupRange KeyGroupRangeForSubtask(uint32_t subtask, uint32_t max_parallelism,
                                      uint32_t parallelism) {
  // The smallest group g with SubtaskForKeyGroup(g) == subtask is ceil(subtask * max / p).
  auto start = [&](uint64_t s) {
    return static_cast<uint32_t>((s * max_parallelism + parallelism - 1) / parallelism);
  };
  const uint32_t first = start(subtask);
  const uint32_t end = start(uint64_t{subtask} + 1);
  return KeyGroupRange{first, end - first};
}

absl::Status ValidateParallelism(uint32_t parallelism, uint32_t max_parallelism) {
  if (max_parallelism == 0 || max_parallelism > kMaxMaxParallelism) {
    return absl::InvalidArgumentError(absl::StrFormat("max parallelism %d is outside [1, %d]",
                                                      max_parallelism, kMaxMaxParallelism));
  }
  if (parallelism == 0 || parallelism > max_parallelism) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parallelism %d is outside [1, max parallelism %d]", parallelism, max_parallelism));
  }
  return absl::OkStatus();
}

}  // namespace sluice
