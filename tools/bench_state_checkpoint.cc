#include "tools/bench_state_checkpoint.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "statestore/checkpoint_storage.h"
#include "statestore/keyed_state_backend.h"

namespace sluice::tools {
namespace {

// Checkpoint storage that counts what goes into it.
class CountingStorage final : public ForwardingCheckpointStorage {
 public:
  using ForwardingCheckpointStorage::ForwardingCheckpointStorage;

  absl::StatusOr<StateHandle> Write(const std::string& name, std::string_view bytes) override {
    return Count(ForwardingCheckpointStorage::Write(name, bytes));
  }
  absl::StatusOr<StateHandle> Upload(const std::string& name, const std::string& path) override {
    return Count(ForwardingCheckpointStorage::Upload(name, path));
  }

  uint64_t bytes_stored = 0;
  uint64_t files_stored = 0;

 private:
  absl::StatusOr<StateHandle> Count(absl::StatusOr<StateHandle> h) {
    if (h.ok()) {
      bytes_stored += h->size;
      ++files_stored;
    }
    return h;
  }
};

std::string KeyOf(uint64_t i) { return absl::StrCat("key-", i); }

// The value of key `i` in `round`: its number and round, then filler that does not compress.
std::string ValueOf(uint64_t i, uint32_t round, uint32_t size, std::mt19937_64& random) {
  std::string value(size, '\0');
  for (size_t at = 0; at + 8 <= value.size(); at += 8) {
    const uint64_t r = random();
    std::memcpy(value.data() + at, &r, 8);
  }
  const std::string head = absl::StrCat(i, "/", round, "/");
  std::memcpy(value.data(), head.data(), std::min(head.size(), value.size()));
  return value;
}

double MillisSince(absl::Time start) { return absl::ToDoubleMilliseconds(absl::Now() - start); }

}  // namespace

absl::StatusOr<CheckpointBenchResult> MeasureIncrementalCheckpoint(
    const CheckpointBenchOptions& options) {
  const char* tmp = getenv("TMPDIR");
  const std::string root = !options.directory.empty()
                               ? options.directory
                               : absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                              "/sluice-bench-checkpoint-", getpid());
  std::filesystem::remove_all(root);
  absl::Cleanup remove = [&root] { std::filesystem::remove_all(root); };
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointStorage> inner,
                          NewFilesystemCheckpointStorage(root + "/storage"));
  CountingStorage storage(std::move(inner));
  KeyedStateBackendOptions backend_options;
  backend_options.kind = "rocksdb";
  backend_options.directory = root + "/db";
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<KeyedStateBackend> backend,
                          KeyedStateBackend::Create(backend_options));
  const StateDescriptor descriptor = StateDescriptor::Value("value");
  SLUICE_ASSIGN_OR_RETURN(ValueState * state, backend->GetValueState(descriptor));

  CheckpointBenchResult r;
  r.keys = std::max<uint64_t>(1, options.state_bytes / options.value_size);
  std::mt19937_64 random(42);
  const absl::Time load_start = absl::Now();
  for (uint64_t i = 0; i < r.keys; ++i) {
    SLUICE_RETURN_IF_ERROR(backend->SetCurrentKey(KeyOf(i)));
    SLUICE_RETURN_IF_ERROR(state->Update(ValueOf(i, 0, options.value_size, random)));
  }
  // The state as it would be after running a while: compacted into levels.
  SLUICE_RETURN_IF_ERROR(backend->Compact());
  r.load_seconds = absl::ToDoubleSeconds(absl::Now() - load_start);

  const absl::Time first_start = absl::Now();
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<PendingSnapshot> first, backend->Snapshot({1, "bench"}));
  SLUICE_RETURN_IF_ERROR(first->Write(storage).status());
  r.first_total_ms = MillisSince(first_start);
  backend->NotifyCheckpointComplete(1);

  // Rewrite a random `changed` of the keys.
  r.changed_keys = static_cast<uint64_t>(static_cast<double>(r.keys) * options.changed);
  std::vector<uint64_t> changed;
  std::uniform_int_distribution<uint64_t> pick(0, r.keys - 1);
  for (uint64_t n = 0; n < r.changed_keys; ++n) {
    const uint64_t i = pick(random);
    changed.push_back(i);
    SLUICE_RETURN_IF_ERROR(backend->SetCurrentKey(KeyOf(i)));
    SLUICE_RETURN_IF_ERROR(state->Update(ValueOf(i, 1, options.value_size, random)));
  }

  storage.bytes_stored = 0;
  storage.files_stored = 0;
  const absl::Time start = absl::Now();
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<PendingSnapshot> second, backend->Snapshot({2, "bench"}));
  r.sync_ms = MillisSince(start);
  SLUICE_ASSIGN_OR_RETURN(const BackendSnapshot snapshot, second->Write(storage));
  r.total_ms = MillisSince(start);
  r.uploaded_bytes = storage.bytes_stored;
  r.uploaded_files = storage.files_stored;
  r.state_bytes = snapshot.TotalBytes();
  r.files = snapshot.files.size();
  second.reset();
  backend.reset();

  // The checkpoint holds the rewritten values.
  KeyedStateBackendOptions check_options = backend_options;
  check_options.directory = root + "/check";
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<KeyedStateBackend> check,
                          KeyedStateBackend::Create(check_options));
  SLUICE_RETURN_IF_ERROR(check->Restore({snapshot}, storage));
  SLUICE_ASSIGN_OR_RETURN(ValueState * restored, check->GetValueState(descriptor));
  for (size_t n = changed.size() > 100 ? changed.size() - 100 : 0; n < changed.size(); ++n) {
    SLUICE_RETURN_IF_ERROR(check->SetCurrentKey(KeyOf(changed[n])));
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> value, restored->Value());
    const std::string head = absl::StrCat(changed[n], "/1/");
    if (!value.has_value() || value->compare(0, head.size(), head) != 0) {
      return absl::InternalError(
          absl::StrCat("the restored checkpoint lacks the new value of ", KeyOf(changed[n])));
    }
  }
  return r;
}

}  // namespace sluice::tools
