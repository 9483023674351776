// StateTable: where the entries of one declared state live in one backend: the storage
// primitive that every kind of state (statestore/state.h) is built on, once, in state_impl.cc.
// An entry is addressed by key group, key, namespace and, for map state, a user key. Values are
// opaque here: the state layer encodes lists and expiry times into them. Not thread-safe: the
// backend's task thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::statestore_internal {

struct EntryKey {
  uint32_t key_group = 0;
  std::string_view key;
  std::string_view ns;
  std::string_view user_key;  // map state only
};

class StateTable {
 public:
  virtual ~StateTable() = default;

  virtual absl::StatusOr<std::optional<std::string>> Get(const EntryKey& k) = 0;
  virtual absl::Status Put(const EntryKey& k, std::string_view value) = 0;
  // Appends `bytes` to the value (creating it when absent): list state's add.
  virtual absl::Status Append(const EntryKey& k, std::string_view bytes) = 0;
  virtual absl::Status Delete(const EntryKey& k) = 0;
  // The entries of (key group, key, namespace) for every user key, in user-key byte order;
  // `fn` returns false to stop. `k.user_key` is ignored.
  virtual absl::Status ForEachUserKey(
      const EntryKey& k,
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn) = 0;
  // Deletes every user key of (key group, key, namespace).
  virtual absl::Status DeleteUserKeys(const EntryKey& k) = 0;
  // Every entry of `key_group` (for snapshots), in no particular order; `fn` returns false to
  // stop. The views are valid during the call only.
  virtual absl::Status ForEachInKeyGroup(
      uint32_t key_group,
      absl::FunctionRef<bool(const EntryKey& k, std::string_view value)> fn) = 0;
};

}  // namespace sluice::statestore_internal
