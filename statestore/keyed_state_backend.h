// KeyedStateBackend: the keyed state of one subtask. Operators set the current key (and
// namespace: a window, say), then read and write the handles of the states they declared; each
// key belongs to a key group (base/key_group.h), and a backend holds a contiguous range of them.
// Backends are chosen by name: `heap` (hash maps in memory) and `rocksdb` (one RocksDB instance).
//
// Not thread-safe: one task thread uses a backend and its handles.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/key_group.h"
#include "statestore/state.h"

namespace sluice {

namespace statestore_internal {
class StateTable;
struct KeyContext;
}  // namespace statestore_internal

struct KeyedStateBackendOptions {
  std::string kind = "heap";
  uint32_t max_parallelism = kDefaultMaxParallelism;
  // The key groups this backend holds; a count of 0 means all of [0, max_parallelism).
  KeyGroupRange key_groups;
  // Processing time in milliseconds, for TTL; the wall clock when empty.
  std::function<int64_t()> clock_ms;
  // rocksdb: the directory of this backend's database (created; what it held is cleared), and
  // the size of its block cache.
  std::string directory;
  size_t block_cache_bytes = 64 << 20;
};

class KeyedStateBackend {
 public:
  // The backend `options.kind` names; InvalidArgument naming the kind and the known ones, or the
  // bad range.
  static absl::StatusOr<std::unique_ptr<KeyedStateBackend>> Create(
      KeyedStateBackendOptions options);
  static std::vector<std::string> Kinds();

  virtual ~KeyedStateBackend();
  KeyedStateBackend(const KeyedStateBackend&) = delete;
  KeyedStateBackend& operator=(const KeyedStateBackend&) = delete;

  // The key the handles read and write from now on. FailedPrecondition, naming the key group and
  // the range, when the key belongs to another subtask.
  absl::Status SetCurrentKey(std::string_view key);
  // The namespace from now on; empty by default.
  void SetCurrentNamespace(std::string_view ns);
  const std::string& current_key() const;
  uint32_t current_key_group() const;

  // The handle of a state, declared on first use; later calls must describe it the same way
  // (same kind and TTL), or get InvalidArgument naming both. Handles live as long as the backend.
  absl::StatusOr<ValueState*> GetValueState(const StateDescriptor& descriptor);
  absl::StatusOr<ListState*> GetListState(const StateDescriptor& descriptor);
  absl::StatusOr<MapState*> GetMapState(const StateDescriptor& descriptor);
  absl::StatusOr<ReducingState*> GetReducingState(const StateDescriptor& descriptor);
  absl::StatusOr<AggregatingState*> GetAggregatingState(const StateDescriptor& descriptor);

  const KeyedStateBackendOptions& options() const { return options_; }

  // Every declared state's entries in the canonical format (statestore/snapshot_format.h): the
  // heap backend's checkpoint, and either backend's savepoint.
  absl::StatusOr<std::string> FullSnapshot();
  // Adds the entries of `snapshot` that lie in this backend's key groups and skips the others, so
  // that restoring the snapshots of every old subtask whose range overlaps this one rescales.
  // Its states are declared here (their handles come with the operator's Get*State calls).
  // A malformed snapshot, another max parallelism, or a state declared here differently, is an
  // error naming it, and then nothing of the snapshot has been applied.
  absl::Status RestoreFullSnapshot(std::string_view snapshot);

 protected:
  explicit KeyedStateBackend(KeyedStateBackendOptions options);
  // The storage of a newly declared state.
  virtual absl::StatusOr<std::unique_ptr<statestore_internal::StateTable>> CreateTable(
      const StateDescriptor& descriptor) = 0;

 private:
  struct Declared;
  // The declared state `d` (declaring it when new) after checking it against `kind`, with its
  // handle.
  absl::StatusOr<Declared*> Declare(const StateDescriptor& d, StateKind kind);
  // The state called `name`, declared (without a handle) when new; an error naming both
  // descriptions when it was declared as another kind or with another TTL.
  absl::StatusOr<Declared*> DeclareTable(const std::string& name, StateKind kind,
                                         absl::Duration ttl);

  KeyedStateBackendOptions options_;
  std::unique_ptr<statestore_internal::KeyContext> context_;
  absl::flat_hash_map<std::string, std::unique_ptr<Declared>> states_;
};

}  // namespace sluice
