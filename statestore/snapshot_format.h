// The canonical full-snapshot format of keyed state: what the heap backend checkpoints, and what
// savepoints of either backend are, so that a snapshot of one backend restores into the other
// and into any parallelism (entries carry their key group). Everything little-endian:
//
//   "SLCSNAP1"  u32 version (1)  u32 max_parallelism  u32 first key group  u32 key-group count
//   u32 states, then per state: str name, u8 kind (StateKind), i64 TTL in ms
//   entries, each: u8 1, u32 state index, u16 key group, str key, str namespace, str user key,
//                  str value (as stored: with its expiry when the state has a TTL)
//   u8 0, then u32 CRC32C of every byte before it
//
// where str is a u32 length and the bytes. Pure functions; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "base/key_group.h"
#include "statestore/state.h"

namespace sluice {

struct SnapshotState {
  std::string name;
  StateKind kind = StateKind::kValue;
  int64_t ttl_ms = 0;
};

struct SnapshotEntry {
  uint32_t state = 0;  // index into the snapshot's states
  uint32_t key_group = 0;
  std::string_view key;
  std::string_view ns;
  std::string_view user_key;
  std::string_view value;
};

struct SnapshotHeader {
  uint32_t max_parallelism = 0;
  KeyGroupRange key_groups;
  std::vector<SnapshotState> states;
};

class SnapshotWriter {
 public:
  explicit SnapshotWriter(const SnapshotHeader& header);
  void Add(const SnapshotEntry& entry);
  // The whole snapshot; the writer is done.
  std::string Finish() &&;

 private:
  std::string out_;
};

// Checks the whole snapshot (magic, version, structure, bounds, checksum) before it calls
// anything, then calls `on_header` once and `on_entry` for every entry; an error from either
// stops the parse and is returned. A malformed snapshot is DataLoss naming what is wrong and
// where; nothing has been called then.
absl::Status ParseSnapshot(std::string_view bytes,
                           absl::FunctionRef<absl::Status(const SnapshotHeader&)> on_header,
                           absl::FunctionRef<absl::Status(const SnapshotEntry&)> on_entry);

}  // namespace sluice
