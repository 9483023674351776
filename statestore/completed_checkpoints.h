// CompletedCheckpointStore: the checkpoints a job can restore from, in checkpoint storage, and
// the shared-file registry that decides when an incremental checkpoint's files can go.
//
// A checkpoint is complete once its metadata file is in storage (written last, by Add). The
// store keeps the newest `retained` of them; when one is dropped its own directory is deleted,
// and so is every shared file (the SSTs that incremental snapshots share) that no retained
// checkpoint refers to any more. The reference counts are rebuilt from the metadata files when
// the store is opened, so a restarted coordinator carries on where the last one stopped.
//
// Thread-compatible: one coordinator uses it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "statestore/checkpoint_metadata.h"
#include "statestore/checkpoint_storage.h"

namespace sluice {

class CompletedCheckpointStore {
 public:
  // Reads the metadata of every complete checkpoint in `storage` (which must outlive the
  // store). A "chk-<id>" directory without metadata (a checkpoint that never completed) is
  // skipped; one whose metadata is damaged too, with the reason in skipped().
  static absl::StatusOr<CompletedCheckpointStore> Open(CheckpointStorage* storage, size_t retained);

  // Writes the metadata of a checkpoint whose files are all in storage, which completes it,
  // then drops the oldest checkpoints beyond `retained`. Its id must be above every id here.
  absl::Status Add(const CheckpointMetadata& metadata);

  // The retained checkpoints, oldest first.
  std::vector<uint64_t> Ids() const;
  const CheckpointMetadata* Latest() const;
  const CheckpointMetadata* Find(uint64_t checkpoint_id) const;
  // How many retained checkpoints refer to the shared file `name`.
  int References(const std::string& name) const;
  // Checkpoint directories Open could not use, each with why.
  const std::vector<std::string>& skipped() const { return skipped_; }
  // Shared files deleted since the store was opened (for reports and tests).
  uint64_t shared_files_deleted() const { return shared_files_deleted_; }

 private:
  CompletedCheckpointStore(CheckpointStorage* storage, size_t retained)
      : storage_(storage), retained_(retained) {}
  void Register(const CheckpointMetadata& metadata);
  // Drops checkpoint `id`: its metadata first (so that it is never half there), then its files.
  absl::Status Drop(uint64_t id);

  CheckpointStorage* storage_;
  size_t retained_;
  std::map<uint64_t, CheckpointMetadata> checkpoints_;
  absl::flat_hash_map<std::string, int> references_;  // shared file -> retained checkpoints
  std::vector<std::string> skipped_;
  uint64_t shared_files_deleted_ = 0;
};

}  // namespace sluice
