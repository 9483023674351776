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
#include "statestore/checkpoint_metadata.h"
#include "statestore/checkpoint_storage.h"
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
  // rocksdb: a cache of whole entries read by key (RocksDB's row cache), in front of the block
  // cache: a repeated point read skips the index and the data block. 0: none.
  size_t row_cache_bytes = 32 << 20;
  // rocksdb: the size of a state's memtable before it is flushed to a file.
  size_t write_buffer_bytes = 64 << 20;
  // rocksdb: where the local copy of each checkpoint goes (hard links to the database's files):
  // what uploads read, and what a restore on this host uses instead of downloading (local
  // recovery). "<directory>-local" when empty. Not cleared on creation.
  std::string local_directory;
};

struct SnapshotOptions {
  uint64_t checkpoint_id = 0;
  // Who takes it: a name in checkpoint storage ("window-agg/3"); the snapshot's files go under
  // "chk-<id>/<owner>/" and, when shared, "shared/<owner>/".
  std::string owner = "state";
  // A savepoint: the canonical full format, whatever the backend (portable between backends).
  bool savepoint = false;
};

// The second, asynchronous part of a snapshot: writing its files to checkpoint storage. It may
// run on any thread while the task thread goes on with the backend; the backend must outlive it.
class PendingSnapshot {
 public:
  virtual ~PendingSnapshot() = default;
  // Writes what storage does not hold yet and describes the result. Called at most once.
  virtual absl::StatusOr<BackendSnapshot> Write(CheckpointStorage& storage) = 0;
};

// A consistent, read-only view of a backend's state as it was when pinned, for threads other than
// the task thread (queries): reading it never blocks or waits for the task thread, which goes on
// writing. Thread-safe. The backend must outlive it.
class StateView {
 public:
  virtual ~StateView() = default;
  // The states of the view, in name order.
  virtual const std::vector<SnapshotState>& states() const = 0;
  virtual uint32_t max_parallelism() const = 0;
  virtual KeyGroupRange key_groups() const = 0;

  // Reads of one (state, key, namespace); an expired value reads as absent. NotFound naming the
  // state when there is none of that name; InvalidArgument when it is of another kind;
  // FailedPrecondition naming the key group when the key is not in the view's key groups.
  // Value, reducing and aggregating state (the accumulator, for aggregating):
  virtual absl::StatusOr<std::optional<std::string>> GetValue(std::string_view state,
                                                              std::string_view key,
                                                              std::string_view ns = {}) const = 0;
  virtual absl::StatusOr<std::vector<std::string>> GetList(std::string_view state,
                                                           std::string_view key,
                                                           std::string_view ns = {}) const = 0;
  virtual absl::StatusOr<std::optional<std::string>> GetMapEntry(
      std::string_view state, std::string_view key, std::string_view ns,
      std::string_view user_key) const = 0;
  // Every entry of a map in user-key order; `fn` returns false to stop.
  virtual absl::Status ForEachMapEntry(
      std::string_view state, std::string_view key, std::string_view ns,
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn) const = 0;

  // Every (key, namespace) of `state` in `key_group` that has an entry, each once, in no
  // particular order (the scans of queries); `fn` returns false to stop. An expired entry may be
  // listed: its read is absent. Errors as for the reads.
  virtual absl::Status ForEachKey(
      std::string_view state, uint32_t key_group,
      absl::FunctionRef<bool(std::string_view key, std::string_view ns)> fn) const = 0;
  // The type names of `state`'s keys and values as its descriptor gave them (empty for raw
  // bytes, and for a state that is not in the view).
  virtual std::pair<std::string, std::string> TypeNames(std::string_view state) const = 0;
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

  // Checkpoints, in two parts. Snapshot runs on the task thread at the barrier and is short (on
  // rocksdb: the memtables are switched; on heap: the state is serialized); the PendingSnapshot
  // it returns then writes the files off the task thread. On rocksdb a checkpoint is
  // incremental: only SST files that storage does not hold yet are uploaded.
  absl::StatusOr<std::unique_ptr<PendingSnapshot>> Snapshot(const SnapshotOptions& options);
  // Checkpoint `checkpoint_id` completed: local copies of older ones are deleted.
  void NotifyCheckpointComplete(uint64_t checkpoint_id);
  // Restores a backend that has not declared any state yet from the snapshots of one checkpoint
  // whose key groups overlap this backend's (every old subtask's, when rescaling; entries of
  // other key groups are left out). On rocksdb with the same key groups, a local copy of the
  // checkpoint is used when it is complete. A missing or damaged file is an error that names it
  // (the caller can fall back to an older checkpoint); the backend is unusable after an error.
  absl::Status Restore(const std::vector<BackendSnapshot>& snapshots, CheckpointStorage& storage);
  // A view of the state as it is now, for other threads. On the task thread. On rocksdb a RocksDB
  // snapshot (constant time; released with the view); on heap a copy of the state (time and
  // memory in proportion to it).
  absl::StatusOr<std::shared_ptr<const StateView>> PinView();
  // A view that reads the state as it is at each read, for other threads: `latest` queries. On
  // rocksdb the live database (RocksDB reads are safe beside the task thread's writes; nothing is
  // pinned, so nothing is held back from compaction); on heap, whose tables only the task thread
  // may touch, the same copy as PinView (so it is as old as the call). States declared after the
  // call are not in it. On the task thread; the backend must outlive the view, and a Restore
  // must not start while one is read.
  absl::StatusOr<std::shared_ptr<const StateView>> LiveView();

  // Compacts the state's files (rocksdb: every state fully; heap: nothing), dropping what was
  // deleted or overwritten.
  virtual absl::Status Compact() { return absl::OkStatus(); }

  // How the last Restore went.
  struct RestoreStats {
    bool from_local_copy = false;  // the database's files came from the local copy
    uint64_t bytes_downloaded = 0;
    uint64_t entries_ingested = 0;  // rocksdb: entries of other snapshots added by ingestion
  };
  const RestoreStats& restore_stats() const { return restore_stats_; }

 protected:
  explicit KeyedStateBackend(KeyedStateBackendOptions options);
  // The storage of a newly declared state.
  virtual absl::StatusOr<std::unique_ptr<statestore_internal::StateTable>> CreateTable(
      const StateDescriptor& descriptor) = 0;
  // The backend's own snapshot and restore; by default a full snapshot serialized at once, and
  // restores of full snapshots only.
  virtual absl::StatusOr<std::unique_ptr<PendingSnapshot>> TakeSnapshot(
      const SnapshotOptions& options);
  virtual absl::Status RestoreSnapshots(const std::vector<BackendSnapshot>& snapshots,
                                        CheckpointStorage& storage);
  virtual void CheckpointComplete(uint64_t /*checkpoint_id*/) {}
  // Read-only tables of `states` (whose live tables are `live`) as they are now, for PinView, or
  // reading the live state when `follow` is set and the backend can (LiveView); `*pin` keeps
  // what they need alive.
  virtual absl::StatusOr<std::vector<std::unique_ptr<statestore_internal::StateTable>>> PinTables(
      const std::vector<SnapshotState>& states,
      const std::vector<statestore_internal::StateTable*>& live, bool follow,
      std::shared_ptr<void>* pin) = 0;
  // The states of this backend as a snapshot lists them, in name order.
  std::vector<SnapshotState> DeclaredStates() const;
  // Declares `states` (after a restore brought their data); an error names a state declared
  // here differently.
  absl::Status DeclareStates(const std::vector<SnapshotState>& states);
  int64_t NowMs() const;
  RestoreStats& mutable_restore_stats() { return restore_stats_; }

 private:
  struct Declared;
  // The declared state `d` (declaring it when new) after checking it against `kind`, with its
  // handle.
  absl::StatusOr<Declared*> Declare(const StateDescriptor& d, StateKind kind);
  // The state called `name`, declared (without a handle) when new; an error naming both
  // descriptions when it was declared as another kind or with another TTL.
  absl::StatusOr<Declared*> DeclareTable(const std::string& name, StateKind kind,
                                         absl::Duration ttl);
  absl::StatusOr<std::shared_ptr<const StateView>> MakeView(bool follow);

  KeyedStateBackendOptions options_;
  std::unique_ptr<statestore_internal::KeyContext> context_;
  absl::flat_hash_map<std::string, std::unique_ptr<Declared>> states_;
  RestoreStats restore_stats_;
};

}  // namespace sluice
