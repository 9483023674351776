// The `rocksdb` backend: one RocksDB instance per backend (a subtask's state) in
// KeyedStateBackendOptions::directory, one column family per declared state. An entry's RocksDB
// key is [key group: 2 bytes big-endian][key length: 4 bytes big-endian][key][namespace length:
// 4 bytes big-endian][namespace], followed by the user key for map state, so that a key group's
// entries are one contiguous range (for snapshots and rescaling) and a map's entries one prefix.
// List adds are merges (an append operator); the write-ahead log is off, since checkpoints, not
// the log, make state durable; tables have bloom filters and share one block cache.
#pragma once

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "rocksdb/options.h"
#include "statestore/keyed_state_backend.h"

namespace sluice::statestore_internal {

// The options the backend runs RocksDB with (so that a baseline can run RocksDB the same way).
struct RocksDbSetup {
  rocksdb::DBOptions db;
  rocksdb::ColumnFamilyOptions column_family;  // of every state
  rocksdb::ReadOptions read;
  rocksdb::WriteOptions write;
  std::function<int64_t()> now_ms;  // processing time, for TTL compaction
};
RocksDbSetup RocksDbSetupFor(const KeyedStateBackendOptions& options);

// REQUIRES: `options` checked by KeyedStateBackend::Create. Fails, naming the directory and
// RocksDB's reason, when the database cannot be opened.
absl::StatusOr<std::unique_ptr<KeyedStateBackend>> NewRocksDbBackend(
    KeyedStateBackendOptions options);

}  // namespace sluice::statestore_internal
