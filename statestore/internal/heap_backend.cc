#include "statestore/internal/heap_backend.h"

#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "statestore/internal/state_table.h"

namespace sluice::statestore_internal {
namespace {

// A (key, namespace) slot as lookups see it. A table stores it as [4-byte key length][key]
// [namespace] (unambiguous for any key and namespace, one allocation at most); lookups hash and
// compare the view against that without building it, so that reading and writing an existing
// entry allocate nothing.
struct SlotKeyView {
  std::string_view key;
  std::string_view ns;

  static SlotKeyView Of(const EntryKey& k) { return {k.key, k.ns}; }
  static SlotKeyView Decode(std::string_view stored) {
    uint32_t length = 0;
    std::memcpy(&length, stored.data(), 4);
    return {stored.substr(4, length), stored.substr(4 + length)};
  }
  // The stored form: what a table keeps when it inserts the slot.
  explicit operator std::string() const {
    std::string out(4, '\0');
    const auto length = static_cast<uint32_t>(key.size());
    std::memcpy(out.data(), &length, 4);
    out.reserve(4 + key.size() + ns.size());
    out.append(key);
    out.append(ns);
    return out;
  }
  bool operator==(const SlotKeyView&) const = default;
};

struct SlotHash {
  using is_transparent = void;
  // absl::string_view: absl hashes its own string views itself (std::string_view goes through
  // std::hash here, which is slower).
  size_t operator()(SlotKeyView v) const {
    return absl::HashOf(absl::string_view(v.key.data(), v.key.size()),
                        absl::string_view(v.ns.data(), v.ns.size()));
  }
  size_t operator()(const std::string& stored) const {
    return (*this)(SlotKeyView::Decode(stored));
  }
};

struct SlotEq {
  using is_transparent = void;
  bool operator()(const std::string& a, const std::string& b) const { return a == b; }
  bool operator()(const std::string& a, SlotKeyView b) const { return SlotKeyView::Decode(a) == b; }
  bool operator()(SlotKeyView a, const std::string& b) const { return a == SlotKeyView::Decode(b); }
};

// The slots of one state, one hash map per key group so that a key group's entries can be found
// (for snapshots, and to move them) without a scan.
template <typename Slot>
class SlotGroups {
 public:
  using Group = absl::flat_hash_map<std::string, Slot, SlotHash, SlotEq>;

  explicit SlotGroups(const KeyGroupRange& range) : range_(range), groups_(range.count) {}

  // REQUIRES (all of these): k.key_group in the range (the backend checked it when the key was
  // set).
  Slot* Find(const EntryKey& k) {
    if (Slot* slot = Last(k)) return slot;
    Group& group = Of(k.key_group);
    auto it = group.find(SlotKeyView::Of(k));
    if (it == group.end()) return nullptr;
    last_.Set(k.key_group, *it);
    return &it->second;
  }
  // Builds the stored key only when the slot is new.
  Slot& FindOrAdd(const EntryKey& k) {
    if (Slot* slot = Last(k)) return *slot;
    auto& entry = *Of(k.key_group).try_emplace(SlotKeyView::Of(k)).first;
    last_.Set(k.key_group, entry);
    return entry.second;
  }
  void Erase(const EntryKey& k) {
    last_.Clear();
    Of(k.key_group).erase(SlotKeyView::Of(k));
  }

  // Calls fn(k, slot) for every slot of `key_group` until it returns false.
  template <typename Fn>
  void ForEach(uint32_t key_group, Fn fn) const {
    for (const auto& [stored, slot] : groups_[key_group - range_.first]) {
      const SlotKeyView v = SlotKeyView::Decode(stored);
      if (!fn(EntryKey{key_group, v.key, v.ns, {}}, slot)) return;
    }
  }

 private:
  // The slot found last, so that a read-modify-write (a Get, then a Put of the same entry) looks
  // its key up once. Valid until the next insertion or erasure (either may move slots): every
  // insertion replaces it and every erasure clears it. A copy of the table (a pinned view, which
  // many threads may read at once) never keeps one, so that a lookup there writes nothing.
  struct LastSlot {
    bool enabled = true;
    uint32_t key_group = 0;
    const std::string* stored = nullptr;
    Slot* slot = nullptr;

    LastSlot() = default;
    LastSlot(const LastSlot&) : enabled(false) {}
    LastSlot& operator=(const LastSlot&) {
      enabled = false;
      Clear();
      return *this;
    }
    void Set(uint32_t group, std::pair<const std::string, Slot>& entry) {
      if (!enabled) return;
      key_group = group;
      stored = &entry.first;
      slot = &entry.second;
    }
    void Clear() {
      stored = nullptr;
      slot = nullptr;
    }
  };

  Group& Of(uint32_t key_group) { return groups_[key_group - range_.first]; }
  Slot* Last(const EntryKey& k) const {
    if (last_.slot == nullptr || last_.key_group != k.key_group ||
        !(SlotKeyView::Decode(*last_.stored) == SlotKeyView::Of(k))) {
      return nullptr;
    }
    return last_.slot;
  }

  const KeyGroupRange range_;
  std::vector<Group> groups_;
  LastSlot last_;
};

// A state with one value per (key, namespace): value, list, reducing and aggregating state.
class HeapValueTable final : public StateTable {
 public:
  explicit HeapValueTable(const KeyGroupRange& range) : slots_(range) {}

  absl::StatusOr<std::optional<std::string>> Get(const EntryKey& k) override {
    const std::string* value = slots_.Find(k);
    if (value == nullptr) return std::nullopt;
    return *value;
  }
  absl::Status Put(const EntryKey& k, std::string_view value) override {
    slots_.FindOrAdd(k).assign(value);
    return absl::OkStatus();
  }
  absl::Status Append(const EntryKey& k, std::string_view bytes) override {
    slots_.FindOrAdd(k).append(bytes);
    return absl::OkStatus();
  }
  absl::Status Delete(const EntryKey& k) override {
    slots_.Erase(k);
    return absl::OkStatus();
  }
  // No user keys here.
  absl::Status ForEachUserKey(
      const EntryKey&, absl::FunctionRef<bool(std::string_view, std::string_view)>) override {
    return absl::OkStatus();
  }
  absl::Status DeleteUserKeys(const EntryKey&) override { return absl::OkStatus(); }

  absl::Status ForEachInKeyGroup(
      uint32_t key_group,
      absl::FunctionRef<bool(const EntryKey& k, std::string_view value)> fn) override {
    slots_.ForEach(key_group,
                   [&](const EntryKey& k, const std::string& value) { return fn(k, value); });
    return absl::OkStatus();
  }

 private:
  SlotGroups<std::string> slots_;
};

// Map state: a (key, namespace) slot holds its user keys in order.
class HeapMapTable final : public StateTable {
 public:
  explicit HeapMapTable(const KeyGroupRange& range) : slots_(range) {}

  absl::StatusOr<std::optional<std::string>> Get(const EntryKey& k) override {
    const Entries* entries = slots_.Find(k);
    if (entries == nullptr) return std::nullopt;
    auto it = entries->find(k.user_key);
    if (it == entries->end()) return std::nullopt;
    return it->second;
  }
  absl::Status Put(const EntryKey& k, std::string_view value) override {
    Entries& entries = slots_.FindOrAdd(k);
    auto it = entries.find(k.user_key);
    if (it != entries.end()) {
      it->second.assign(value);
    } else {
      entries.emplace(std::string(k.user_key), std::string(value));
    }
    return absl::OkStatus();
  }
  // Appends to the user key's value, as the rocksdb backend's merge does.
  absl::Status Append(const EntryKey& k, std::string_view bytes) override {
    Entries& entries = slots_.FindOrAdd(k);
    auto it = entries.find(k.user_key);
    if (it == entries.end()) it = entries.emplace(std::string(k.user_key), std::string()).first;
    it->second.append(bytes);
    return absl::OkStatus();
  }
  absl::Status Delete(const EntryKey& k) override {
    Entries* entries = slots_.Find(k);
    if (entries == nullptr) return absl::OkStatus();
    auto it = entries->find(k.user_key);
    if (it != entries->end()) entries->erase(it);
    if (entries->empty()) slots_.Erase(k);
    return absl::OkStatus();
  }
  absl::Status ForEachUserKey(
      const EntryKey& k,
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn) override {
    const Entries* entries = slots_.Find(k);
    if (entries == nullptr) return absl::OkStatus();
    for (const auto& [user_key, value] : *entries) {
      if (!fn(user_key, value)) break;
    }
    return absl::OkStatus();
  }
  absl::Status DeleteUserKeys(const EntryKey& k) override {
    slots_.Erase(k);
    return absl::OkStatus();
  }

  absl::Status ForEachInKeyGroup(
      uint32_t key_group,
      absl::FunctionRef<bool(const EntryKey& k, std::string_view value)> fn) override {
    slots_.ForEach(key_group, [&](EntryKey k, const Entries& entries) {
      for (const auto& [user_key, value] : entries) {
        k.user_key = user_key;
        if (!fn(k, value)) return false;
      }
      return true;
    });
    return absl::OkStatus();
  }

 private:
  using Entries = std::map<std::string, std::string, std::less<>>;
  SlotGroups<Entries> slots_;
};

class HeapBackend final : public KeyedStateBackend {
 public:
  explicit HeapBackend(KeyedStateBackendOptions options) : KeyedStateBackend(std::move(options)) {}

 protected:
  absl::StatusOr<std::unique_ptr<StateTable>> CreateTable(const StateDescriptor& d) override {
    if (d.kind == StateKind::kMap) return std::make_unique<HeapMapTable>(options().key_groups);
    return std::make_unique<HeapValueTable>(options().key_groups);
  }

  // A copy of every table: made on the task thread, then read by others while it goes on.
  absl::StatusOr<std::vector<std::unique_ptr<StateTable>>> PinTables(
      const std::vector<SnapshotState>& /*states*/, const std::vector<StateTable*>& live,
      bool /*follow*/, std::shared_ptr<void>* /*pin*/) override {
    std::vector<std::unique_ptr<StateTable>> out;
    for (StateTable* table : live) {
      if (auto* map = dynamic_cast<HeapMapTable*>(table)) {
        out.push_back(std::make_unique<HeapMapTable>(*map));
      } else {
        out.push_back(std::make_unique<HeapValueTable>(*static_cast<HeapValueTable*>(table)));
      }
    }
    return out;
  }
};

}  // namespace

std::unique_ptr<KeyedStateBackend> NewHeapBackend(KeyedStateBackendOptions options) {
  return std::make_unique<HeapBackend>(std::move(options));
}

}  // namespace sluice::statestore_internal
