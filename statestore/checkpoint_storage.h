// CheckpointStorage: where checkpoints go — a place every host of a job can read (a shared
// directory today). Files are written so that a crash never leaves half of one under its name:
// to a temporary name, synced, then renamed (and the directory synced). Each write returns a
// handle with the file's size and CRC32C, and a read checks both, so a damaged or missing file
// is an error that names it and the caller can fall back to an older checkpoint.
//
// Thread-safe: writes of different names may run at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

// A file in checkpoint storage and what it must hold.
struct StateHandle {
  std::string name;  // relative to the storage root: "chk-7/subtask-0.snapshot"
  uint64_t size = 0;
  uint32_t crc32c = 0;
  bool operator==(const StateHandle&) const = default;
};

class CheckpointStorage {
 public:
  virtual ~CheckpointStorage() = default;

  // Writes `bytes` as `name` (parent directories made). A file of that name is replaced whole.
  virtual absl::StatusOr<StateHandle> Write(const std::string& name, std::string_view bytes) = 0;
  // Copies the local file `path` in as `name`, the same way.
  virtual absl::StatusOr<StateHandle> Upload(const std::string& name, const std::string& path) = 0;
  // The bytes of `handle`; NotFound naming the file when it is missing, DataLoss naming it when
  // its size or checksum differs from the handle's.
  virtual absl::StatusOr<std::string> Read(const StateHandle& handle) = 0;
  // The bytes of `name` as they are, for files that carry their own checksum (checkpoint
  // metadata); NotFound naming the file when it is missing.
  virtual absl::StatusOr<std::string> ReadWhole(const std::string& name) = 0;
  virtual bool Exists(const std::string& name) = 0;
  // Deletes `name`; deleting what is not there is not an error.
  virtual absl::Status Delete(const std::string& name) = 0;
  // Deletes the directory `name` and everything under it; not there is not an error.
  virtual absl::Status DeleteDirectory(const std::string& name) = 0;
  // The names of the entries directly in directory `name` ("" for the root), sorted; temporary
  // files of writes in progress are left out. An empty list when the directory is not there.
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& name) = 0;
};

// Passes every call to another storage: the base of storage that watches or changes a few calls
// (counting what is uploaded, failing on purpose) and leaves the rest alone.
class ForwardingCheckpointStorage : public CheckpointStorage {
 public:
  explicit ForwardingCheckpointStorage(std::unique_ptr<CheckpointStorage> inner)
      : inner_(std::move(inner)) {}

  absl::StatusOr<StateHandle> Write(const std::string& name, std::string_view bytes) override {
    return inner_->Write(name, bytes);
  }
  absl::StatusOr<StateHandle> Upload(const std::string& name, const std::string& path) override {
    return inner_->Upload(name, path);
  }
  absl::StatusOr<std::string> Read(const StateHandle& handle) override {
    return inner_->Read(handle);
  }
  absl::StatusOr<std::string> ReadWhole(const std::string& name) override {
    return inner_->ReadWhole(name);
  }
  bool Exists(const std::string& name) override { return inner_->Exists(name); }
  absl::Status Delete(const std::string& name) override { return inner_->Delete(name); }
  absl::Status DeleteDirectory(const std::string& name) override {
    return inner_->DeleteDirectory(name);
  }
  absl::StatusOr<std::vector<std::string>> List(const std::string& name) override {
    return inner_->List(name);
  }

 private:
  std::unique_ptr<CheckpointStorage> inner_;
};

// Whether `name` can name a file in checkpoint storage: a relative path whose parts are neither
// empty, "." nor "..", so that it stays under the storage's root.
bool IsStorageName(std::string_view name);

// Storage in the directory `root` (made when missing). Names must be relative paths without
// "." or ".." components; others are InvalidArgument naming them.
absl::StatusOr<std::unique_ptr<CheckpointStorage>> NewFilesystemCheckpointStorage(std::string root);

}  // namespace sluice
