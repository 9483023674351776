// What a completed checkpoint holds: for every backend (one subtask's keyed state) the format of
// its snapshot, its key groups and states, and the files in checkpoint storage that hold it, each
// with its size and CRC32C. Stored as "chk-<id>/_metadata": a FlatBuffer
// (schemas/checkpoint_metadata.fbs) followed by the CRC32C of its bytes (4 bytes, little-endian),
// written last, so that a checkpoint whose metadata reads back is complete.
//
// Pure functions; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/key_group.h"
#include "statestore/checkpoint_storage.h"
#include "statestore/snapshot_format.h"

namespace sluice {

enum class SnapshotFormat {
  kFull,                // one file in the canonical format (snapshot_format.h)
  kRocksDbIncremental,  // a RocksDB checkpoint: its private files and its SST files
};
std::string_view SnapshotFormatName(SnapshotFormat format);

struct SnapshotFile {
  std::string local_name;  // the file's name in the backend's directory: "000012.sst"
  StateHandle handle;      // where checkpoint storage holds it
  // Held under "shared/" and possibly by several checkpoints: counted by the shared-file
  // registry (completed_checkpoints.h) and deleted when no retained checkpoint refers to it.
  bool shared = false;
  bool operator==(const SnapshotFile&) const = default;
};

struct BackendSnapshot {
  std::string owner;  // who took it: "window-agg/3"
  SnapshotFormat format = SnapshotFormat::kFull;
  uint64_t checkpoint_id = 0;
  uint32_t max_parallelism = 0;
  KeyGroupRange key_groups;
  std::vector<SnapshotState> states;
  std::vector<SnapshotFile> files;

  uint64_t TotalBytes() const;
};

struct CheckpointMetadata {
  uint64_t checkpoint_id = 0;
  int64_t timestamp_ms = 0;
  std::vector<BackendSnapshot> backends;
};

// "chk-<id>", the directory of checkpoint `id`'s own files, and "chk-<id>/_metadata".
std::string CheckpointDirectory(uint64_t checkpoint_id);
std::string CheckpointMetadataName(uint64_t checkpoint_id);

std::string EncodeCheckpointMetadata(const CheckpointMetadata& metadata);
// Checks everything before it returns: the checksum, the FlatBuffer, and that every field makes
// sense (known formats and kinds, key groups within max parallelism, file names that stay inside
// their directories, one file for a full snapshot). DataLoss naming what is wrong otherwise.
absl::StatusOr<CheckpointMetadata> DecodeCheckpointMetadata(std::string_view bytes);

}  // namespace sluice
