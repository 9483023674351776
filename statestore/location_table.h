// LocationTable: where each job's keyed state is served — for every state, which worker's query
// address holds which key-group range — and each job's maximum parallelism (which maps keys to
// key groups). The coordinator will keep it; until then it is read from a file:
//
//   # comments and blank lines are skipped
//   job <job> max-parallelism <n>
//   <job> <state or *> <first>-<last> <host:port>
//
// where `*` stands for every state of the job and <first>-<last> is an inclusive range of key
// groups. Thread-compatible; a value type.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/key_group.h"
#include "statestore/query_service.h"

namespace sluice {

class LocationTable {
 public:
  struct Entry {
    std::string job;
    std::string state;  // "*": every state of the job
    StateLocation location;
  };

  // Parses the file format above; errors name the line and what is wrong with it (an unknown
  // word, a bad range, a range past the job's maximum parallelism, a job without one, ...).
  static absl::StatusOr<LocationTable> Parse(std::string_view text);
  static absl::StatusOr<LocationTable> ReadFile(const std::string& path);
  // The file format of this table (Parse reads it back).
  std::string ToString() const;

  absl::Status SetMaxParallelism(const std::string& job, uint32_t max_parallelism);
  // REQUIRES: the job's maximum parallelism is set and the range lies inside it.
  void Add(Entry entry);

  bool HasJob(std::string_view job) const { return max_parallelism_.contains(std::string(job)); }
  // 0 when the job is not in the table.
  uint32_t MaxParallelism(std::string_view job) const;
  // The address serving `key_group` of `state` in `job`, when the table has one.
  std::optional<std::string> Find(std::string_view job, std::string_view state,
                                  uint32_t key_group) const;
  // Every entry of `job` that covers `state` (entries of `*` included).
  std::vector<StateLocation> LocationsOf(std::string_view job, std::string_view state) const;
  std::vector<std::string> Jobs() const;
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::map<std::string, uint32_t, std::less<>> max_parallelism_;
  std::vector<Entry> entries_;
};

}  // namespace sluice
