#include "statestore/completed_checkpoints.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace sluice {
namespace {

// The shared files a checkpoint refers to, each once.
absl::flat_hash_set<std::string> SharedFiles(const CheckpointMetadata& metadata) {
  absl::flat_hash_set<std::string> out;
  for (const BackendSnapshot& b : metadata.backends) {
    for (const SnapshotFile& f : b.files) {
      if (f.shared) out.insert(f.handle.name);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<CompletedCheckpointStore> CompletedCheckpointStore::Open(CheckpointStorage* storage,
                                                                        size_t retained) {
  if (retained == 0) {
    return absl::InvalidArgumentError("a checkpoint store retains at least one checkpoint");
  }
  CompletedCheckpointStore store(storage, retained);
  SLUICE_ASSIGN_OR_RETURN(const std::vector<std::string> entries, storage->List(""));
  for (const std::string& entry : entries) {
    uint64_t id = 0;
    if (!absl::StartsWith(entry, "chk-") || !absl::SimpleAtoi(entry.substr(4), &id) ||
        entry != CheckpointDirectory(id)) {
      continue;
    }
    if (!storage->Exists(CheckpointMetadataName(id))) {
      store.skipped_.push_back(absl::StrCat(entry, ": no metadata (never completed)"));
      continue;
    }
    absl::StatusOr<CheckpointMetadata> metadata = [&]() -> absl::StatusOr<CheckpointMetadata> {
      SLUICE_ASSIGN_OR_RETURN(std::string bytes, storage->ReadWhole(CheckpointMetadataName(id)));
      SLUICE_ASSIGN_OR_RETURN(CheckpointMetadata m, DecodeCheckpointMetadata(bytes));
      if (m.checkpoint_id != id) {
        return absl::DataLossError(absl::StrCat("the metadata is of checkpoint ", m.checkpoint_id));
      }
      return m;
    }();
    if (!metadata.ok()) {
      store.skipped_.push_back(absl::StrCat(entry, ": ", metadata.status().message()));
      continue;
    }
    store.Register(*metadata);
    store.checkpoints_.emplace(id, *std::move(metadata));
  }
  while (store.checkpoints_.size() > retained) {
    SLUICE_RETURN_IF_ERROR(store.Drop(store.checkpoints_.begin()->first));
  }
  return store;
}

void CompletedCheckpointStore::Register(const CheckpointMetadata& metadata) {
  for (const std::string& name : SharedFiles(metadata)) ++references_[name];
}

absl::Status CompletedCheckpointStore::Add(const CheckpointMetadata& metadata) {
  if (!checkpoints_.empty() && metadata.checkpoint_id <= checkpoints_.rbegin()->first) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint ", metadata.checkpoint_id,
                                                      " completes after checkpoint ",
                                                      checkpoints_.rbegin()->first));
  }
  SLUICE_RETURN_IF_ERROR(storage_
                             ->Write(CheckpointMetadataName(metadata.checkpoint_id),
                                     EncodeCheckpointMetadata(metadata))
                             .status());
  Register(metadata);
  checkpoints_.emplace(metadata.checkpoint_id, metadata);
  while (checkpoints_.size() > retained_) {
    SLUICE_RETURN_IF_ERROR(Drop(checkpoints_.begin()->first));
  }
  return absl::OkStatus();
}

absl::Status CompletedCheckpointStore::Drop(uint64_t id) {
  auto it = checkpoints_.find(id);
  SLUICE_RETURN_IF_ERROR(storage_->Delete(CheckpointMetadataName(id)));
  const CheckpointMetadata dropped = std::move(it->second);
  checkpoints_.erase(it);
  SLUICE_RETURN_IF_ERROR(storage_->DeleteDirectory(CheckpointDirectory(id)));
  for (const std::string& name : SharedFiles(dropped)) {
    auto ref = references_.find(name);
    if (ref == references_.end() || --ref->second > 0) continue;
    references_.erase(ref);
    SLUICE_RETURN_IF_ERROR(storage_->Delete(name));
    ++shared_files_deleted_;
  }
  return absl::OkStatus();
}

std::vector<uint64_t> CompletedCheckpointStore::Ids() const {
  std::vector<uint64_t> out;
  for (const auto& [id, m] : checkpoints_) out.push_back(id);
  return out;
}

const CheckpointMetadata* CompletedCheckpointStore::Latest() const {
  return checkpoints_.empty() ? nullptr : &checkpoints_.rbegin()->second;
}

const CheckpointMetadata* CompletedCheckpointStore::Find(uint64_t checkpoint_id) const {
  auto it = checkpoints_.find(checkpoint_id);
  return it == checkpoints_.end() ? nullptr : &it->second;
}

int CompletedCheckpointStore::References(const std::string& name) const {
  auto it = references_.find(name);
  return it == references_.end() ? 0 : it->second;
}

}  // namespace sluice
