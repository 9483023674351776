// The checkpoint part of `sluice bench state`: one incremental checkpoint of a rocksdb backend
// holding --checkpoint-bytes of value state after --changed of its keys were rewritten, into
// filesystem checkpoint storage on the same disk.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace sluice::tools {

struct CheckpointBenchOptions {
  uint64_t state_bytes = uint64_t{1} << 30;  // approximately: keys of `value_size` bytes
  double changed = 0.01;                     // the fraction of keys rewritten before it
  uint32_t value_size = 1024;
  std::string directory;  // for the database, its local copies and the storage (made, removed)
};

struct CheckpointBenchResult {
  uint64_t keys = 0;
  uint64_t changed_keys = 0;
  double load_seconds = 0;
  double first_total_ms = 0;  // the first checkpoint: everything uploaded
  double sync_ms = 0;         // the measured checkpoint's synchronous part (task thread)
  double total_ms = 0;        // ... both parts, until every file is in storage
  uint64_t uploaded_bytes = 0;
  uint64_t uploaded_files = 0;
  uint64_t state_bytes = 0;  // every file the measured checkpoint refers to
  uint64_t files = 0;
};

// Fills the state, takes a first checkpoint, rewrites `changed` of the keys (chosen at random),
// and measures the next checkpoint. Restores it into a second backend and checks a sample of
// the rewritten keys, so that the figures are of a checkpoint that holds the state.
absl::StatusOr<CheckpointBenchResult> MeasureIncrementalCheckpoint(
    const CheckpointBenchOptions& options);

}  // namespace sluice::tools
