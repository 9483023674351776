#include "statestore/internal/heap_backend.h"

#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "statestore/internal/state_table.h"

namespace sluice::statestore_internal {
namespace {

// The entries of one state. A (key, namespace) slot holds either a value (value, list, reducing
// and aggregating state) or a sorted map of user keys (map state).
class HeapStateTable final : public StateTable {
 public:
  // `map`: entries are addressed by user key (map state); otherwise by (key, namespace) alone.
  HeapStateTable(const KeyGroupRange& range, bool map)
      : range_(range), map_(map), groups_(range.count) {}

  absl::StatusOr<std::optional<std::string>> Get(const EntryKey& k) override {
    const Slot* slot = Find(k);
    if (slot == nullptr) return std::nullopt;
    if (map_) {
      auto it = slot->entries.find(k.user_key);
      if (it == slot->entries.end()) return std::nullopt;
      return it->second;
    }
    return slot->value;
  }

  absl::Status Put(const EntryKey& k, std::string_view value) override {
    Slot& slot = FindOrAdd(k);
    if (map_) {
      slot.entries.insert_or_assign(std::string(k.user_key), std::string(value));
    } else {
      slot.value = std::string(value);
    }
    return absl::OkStatus();
  }

  absl::Status Append(const EntryKey& k, std::string_view bytes) override {
    Slot& slot = FindOrAdd(k);
    if (!slot.value.has_value()) slot.value.emplace();
    slot.value->append(bytes);
    return absl::OkStatus();
  }

  absl::Status Delete(const EntryKey& k) override {
    Group& group = GroupOf(k);
    auto it = group.find(SlotKey(k));
    if (it == group.end()) return absl::OkStatus();
    if (map_) {
      it->second.entries.erase(std::string(k.user_key));
    } else {
      it->second.value.reset();
    }
    if (!it->second.value.has_value() && it->second.entries.empty()) group.erase(it);
    return absl::OkStatus();
  }

  absl::Status ForEachUserKey(
      const EntryKey& k,
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn) override {
    const Slot* slot = Find(k);
    if (slot == nullptr) return absl::OkStatus();
    for (const auto& [user_key, value] : slot->entries) {
      if (!fn(user_key, value)) break;
    }
    return absl::OkStatus();
  }

  absl::Status ForEachInKeyGroup(
      uint32_t key_group,
      absl::FunctionRef<bool(const EntryKey& k, std::string_view value)> fn) override {
    for (const auto& [slot_key, slot] : groups_[key_group - range_.first]) {
      uint32_t length = 0;
      std::memcpy(&length, slot_key.data(), 4);
      EntryKey k{key_group,
                 std::string_view(slot_key).substr(4, length),
                 std::string_view(slot_key).substr(4 + length),
                 {}};
      if (slot.value.has_value() && !fn(k, *slot.value)) return absl::OkStatus();
      for (const auto& [user_key, value] : slot.entries) {
        k.user_key = user_key;
        if (!fn(k, value)) return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  absl::Status DeleteUserKeys(const EntryKey& k) override {
    Group& group = GroupOf(k);
    auto it = group.find(SlotKey(k));
    if (it == group.end()) return absl::OkStatus();
    it->second.entries.clear();
    if (!it->second.value.has_value()) group.erase(it);
    return absl::OkStatus();
  }

 private:
  struct Slot {
    std::optional<std::string> value;
    std::map<std::string, std::string, std::less<>> entries;
  };
  using Group = absl::flat_hash_map<std::string, Slot>;

  // [4-byte key length][key][namespace]: unambiguous for any key and namespace.
  static std::string SlotKey(const EntryKey& k) {
    std::string out(4, '\0');
    const auto length = static_cast<uint32_t>(k.key.size());
    std::memcpy(out.data(), &length, 4);
    out.append(k.key);
    out.append(k.ns);
    return out;
  }
  // REQUIRES: k.key_group in range_ (the backend checked it when the key was set).
  Group& GroupOf(const EntryKey& k) { return groups_[k.key_group - range_.first]; }
  const Slot* Find(const EntryKey& k) {
    Group& group = GroupOf(k);
    auto it = group.find(SlotKey(k));
    return it == group.end() ? nullptr : &it->second;
  }
  Slot& FindOrAdd(const EntryKey& k) { return GroupOf(k)[SlotKey(k)]; }

  const KeyGroupRange range_;
  const bool map_;
  std::vector<Group> groups_;
};

class HeapBackend final : public KeyedStateBackend {
 public:
  explicit HeapBackend(KeyedStateBackendOptions options) : KeyedStateBackend(std::move(options)) {}

 protected:
  absl::StatusOr<std::unique_ptr<StateTable>> CreateTable(const StateDescriptor& d) override {
    return std::make_unique<HeapStateTable>(options().key_groups, d.kind == StateKind::kMap);
  }

  // A copy of every table: made on the task thread, then read by others while it goes on.
  absl::StatusOr<std::vector<std::unique_ptr<StateTable>>> PinTables(
      const std::vector<SnapshotState>& /*states*/, const std::vector<StateTable*>& live,
      std::shared_ptr<void>* /*pin*/) override {
    std::vector<std::unique_ptr<StateTable>> out;
    for (StateTable* table : live) {
      out.push_back(std::make_unique<HeapStateTable>(*static_cast<HeapStateTable*>(table)));
    }
    return out;
  }
};

}  // namespace

std::unique_ptr<KeyedStateBackend> NewHeapBackend(KeyedStateBackendOptions options) {
  return std::make_unique<HeapBackend>(std::move(options));
}

}  // namespace sluice::statestore_internal
