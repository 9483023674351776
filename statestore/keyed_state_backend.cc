#include "statestore/keyed_state_backend.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "statestore/internal/heap_backend.h"
#include "statestore/internal/rocksdb_backend.h"
#include "statestore/internal/state_impl.h"
#include "statestore/internal/state_table.h"
#include "statestore/internal/ttl.h"
#include "statestore/snapshot_format.h"

namespace sluice {

using statestore_internal::KeyContext;
using statestore_internal::StateTable;

struct KeyedStateBackend::Declared {
  StateDescriptor descriptor;
  std::unique_ptr<StateTable> table;
  std::unique_ptr<ValueState> value;
  std::unique_ptr<ListState> list;
  std::unique_ptr<MapState> map;
  std::unique_ptr<ReducingState> reducing;
  std::unique_ptr<AggregatingState> aggregating;
};

std::vector<std::string> KeyedStateBackend::Kinds() { return {"heap", "rocksdb"}; }

absl::StatusOr<std::unique_ptr<KeyedStateBackend>> KeyedStateBackend::Create(
    KeyedStateBackendOptions options) {
  if (options.key_groups.count == 0) options.key_groups = {0, options.max_parallelism};
  SLUICE_RETURN_IF_ERROR(ValidateParallelism(1, options.max_parallelism));
  if (options.key_groups.end() > options.max_parallelism) {
    return absl::InvalidArgumentError(absl::StrCat("key groups ", options.key_groups.ToString(),
                                                   " reach past max parallelism ",
                                                   options.max_parallelism));
  }
  if (!options.clock_ms) {
    options.clock_ms = [] { return absl::ToUnixMillis(absl::Now()); };
  }
  if (options.kind == "heap") return statestore_internal::NewHeapBackend(std::move(options));
  if (options.kind == "rocksdb") return statestore_internal::NewRocksDbBackend(std::move(options));
  return absl::InvalidArgumentError(absl::StrCat("unknown state backend '", options.kind,
                                                 "' (known: ", absl::StrJoin(Kinds(), ", "), ")"));
}

KeyedStateBackend::KeyedStateBackend(KeyedStateBackendOptions options)
    : options_(std::move(options)), context_(std::make_unique<KeyContext>()) {
  context_->now_ms = options_.clock_ms;
}

KeyedStateBackend::~KeyedStateBackend() = default;

absl::Status KeyedStateBackend::SetCurrentKey(std::string_view key) {
  const uint32_t group = KeyGroupForKey(key, options_.max_parallelism);
  if (!options_.key_groups.Contains(group)) {
    return absl::FailedPreconditionError(absl::StrCat("the key belongs to key group ", group,
                                                      ", outside this backend's ",
                                                      options_.key_groups.ToString()));
  }
  context_->key.assign(key.data(), key.size());
  context_->key_group = group;
  context_->key_set = true;
  return absl::OkStatus();
}

void KeyedStateBackend::SetCurrentNamespace(std::string_view ns) {
  context_->ns.assign(ns.data(), ns.size());
}

const std::string& KeyedStateBackend::current_key() const { return context_->key; }
uint32_t KeyedStateBackend::current_key_group() const { return context_->key_group; }

absl::StatusOr<KeyedStateBackend::Declared*> KeyedStateBackend::DeclareTable(
    const std::string& name, StateKind kind, absl::Duration ttl) {
  auto it = states_.find(name);
  if (it != states_.end()) {
    const StateDescriptor& was = it->second->descriptor;
    if (was.kind != kind || was.ttl != ttl) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state '", name, "' was declared as ", std::string(StateKindName(was.kind)),
          " state with TTL ", absl::FormatDuration(was.ttl), ", now as ",
          std::string(StateKindName(kind)), " state with TTL ", absl::FormatDuration(ttl)));
    }
    return it->second.get();
  }
  auto declared = std::make_unique<Declared>();
  declared->descriptor.name = name;
  declared->descriptor.kind = kind;
  declared->descriptor.ttl = ttl;
  SLUICE_ASSIGN_OR_RETURN(declared->table, CreateTable(declared->descriptor));
  Declared* out = declared.get();
  states_.emplace(name, std::move(declared));
  return out;
}

absl::StatusOr<KeyedStateBackend::Declared*> KeyedStateBackend::Declare(const StateDescriptor& d,
                                                                        StateKind kind) {
  SLUICE_RETURN_IF_ERROR(ValidateStateDescriptor(d));
  if (d.kind != kind) {
    return absl::InvalidArgumentError(
        absl::StrCat("state '", d.name, "' is described as ", std::string(StateKindName(d.kind)),
                     " state, asked for as ", std::string(StateKindName(kind)), " state"));
  }
  SLUICE_ASSIGN_OR_RETURN(Declared * s, DeclareTable(d.name, d.kind, d.ttl));
  StateTable* table = s->table.get();
  const KeyContext* context = context_.get();
  switch (kind) {
    case StateKind::kValue:
      if (s->value == nullptr) s->value = statestore_internal::NewValueState(d, table, context);
      break;
    case StateKind::kList:
      if (s->list == nullptr) s->list = statestore_internal::NewListState(d, table, context);
      break;
    case StateKind::kMap:
      if (s->map == nullptr) s->map = statestore_internal::NewMapState(d, table, context);
      break;
    case StateKind::kReducing:
      if (s->reducing == nullptr) {
        s->reducing = statestore_internal::NewReducingState(d, table, context);
      }
      break;
    case StateKind::kAggregating:
      if (s->aggregating == nullptr) {
        s->aggregating = statestore_internal::NewAggregatingState(d, table, context);
      }
      break;
  }
  return s;
}

absl::StatusOr<std::string> KeyedStateBackend::FullSnapshot() {
  // States in name order, so that equal state gives equal headers.
  std::vector<std::pair<std::string, Declared*>> states;
  for (auto& [name, declared] : states_) states.emplace_back(name, declared.get());
  std::sort(states.begin(), states.end());
  SnapshotHeader header;
  header.max_parallelism = options_.max_parallelism;
  header.key_groups = options_.key_groups;
  for (const auto& [name, declared] : states) {
    header.states.push_back(SnapshotState{name, declared->descriptor.kind,
                                          absl::ToInt64Milliseconds(declared->descriptor.ttl)});
  }
  SnapshotWriter writer(header);
  // Expired entries are left out, and deleted once the state has been read.
  const int64_t now = NowMs();
  std::string scratch;
  struct Expired {
    uint32_t state;
    uint32_t key_group;
    std::string key, ns, user_key;
  };
  std::vector<Expired> expired;
  for (uint32_t group = header.key_groups.first; group < header.key_groups.end(); ++group) {
    for (uint32_t i = 0; i < states.size(); ++i) {
      const SnapshotState& state = header.states[i];
      SLUICE_RETURN_IF_ERROR(states[i].second->table->ForEachInKeyGroup(
          group, [&](const statestore_internal::EntryKey& k, std::string_view value) {
            const std::optional<std::string_view> live =
                statestore_internal::SnapshotValue(state.kind, state.ttl_ms, value, now, &scratch);
            if (live.has_value()) {
              writer.Add(SnapshotEntry{i, group, k.key, k.ns, k.user_key, *live});
            } else {
              expired.push_back(Expired{i, group, std::string(k.key), std::string(k.ns),
                                        std::string(k.user_key)});
            }
            return true;
          }));
    }
  }
  for (const Expired& e : expired) {
    SLUICE_RETURN_IF_ERROR(states[e.state].second->table->Delete(
        statestore_internal::EntryKey{e.key_group, e.key, e.ns, e.user_key}));
  }
  return std::move(writer).Finish();
}

absl::Status KeyedStateBackend::RestoreFullSnapshot(std::string_view snapshot) {
  std::vector<Declared*> tables;
  return ParseSnapshot(
      snapshot,
      [&](const SnapshotHeader& header) -> absl::Status {
        if (header.max_parallelism != options_.max_parallelism) {
          return absl::FailedPreconditionError(absl::StrCat(
              "the snapshot has max parallelism ", header.max_parallelism, ", this backend ",
              options_.max_parallelism, ": key groups would not match"));
        }
        // Checked before any is declared, so that a mismatch leaves nothing behind.
        for (const SnapshotState& s : header.states) {
          auto it = states_.find(s.name);
          if (it != states_.end() && (it->second->descriptor.kind != s.kind ||
                                      it->second->descriptor.ttl != absl::Milliseconds(s.ttl_ms))) {
            return DeclareTable(s.name, s.kind, absl::Milliseconds(s.ttl_ms)).status();
          }
        }
        for (const SnapshotState& s : header.states) {
          SLUICE_ASSIGN_OR_RETURN(Declared * d,
                                  DeclareTable(s.name, s.kind, absl::Milliseconds(s.ttl_ms)));
          tables.push_back(d);
        }
        return absl::OkStatus();
      },
      [&](const SnapshotEntry& e) -> absl::Status {
        if (!options_.key_groups.Contains(e.key_group)) return absl::OkStatus();
        return tables[e.state]->table->Put(
            statestore_internal::EntryKey{e.key_group, e.key, e.ns, e.user_key}, e.value);
      });
}

namespace {

// A snapshot already serialized, to be written as one file.
class FullPendingSnapshot final : public PendingSnapshot {
 public:
  FullPendingSnapshot(BackendSnapshot snapshot, std::string bytes)
      : snapshot_(std::move(snapshot)), bytes_(std::move(bytes)) {}

  absl::StatusOr<BackendSnapshot> Write(CheckpointStorage& storage) override {
    const std::string name = absl::StrCat(CheckpointDirectory(snapshot_.checkpoint_id), "/",
                                          snapshot_.owner, "/full.snapshot");
    SLUICE_ASSIGN_OR_RETURN(StateHandle handle, storage.Write(name, bytes_));
    bytes_.clear();
    snapshot_.files = {SnapshotFile{"full.snapshot", std::move(handle), false}};
    return std::move(snapshot_);
  }

 private:
  BackendSnapshot snapshot_;
  std::string bytes_;
};

// A pinned table read by the state handles: the writes they make when they meet expired entries
// (cleaning up) are dropped, so that a view never changes.
class ReadOnlyTable final : public StateTable {
 public:
  explicit ReadOnlyTable(std::unique_ptr<StateTable> pinned) : pinned_(std::move(pinned)) {}
  absl::StatusOr<std::optional<std::string>> Get(const statestore_internal::EntryKey& k) override {
    return pinned_->Get(k);
  }
  absl::Status Put(const statestore_internal::EntryKey&, std::string_view) override {
    return absl::OkStatus();
  }
  absl::Status Append(const statestore_internal::EntryKey&, std::string_view) override {
    return absl::OkStatus();
  }
  absl::Status Delete(const statestore_internal::EntryKey&) override { return absl::OkStatus(); }
  absl::Status ForEachUserKey(
      const statestore_internal::EntryKey& k,
      absl::FunctionRef<bool(std::string_view, std::string_view)> fn) override {
    return pinned_->ForEachUserKey(k, fn);
  }
  absl::Status DeleteUserKeys(const statestore_internal::EntryKey&) override {
    return absl::OkStatus();
  }
  absl::Status ForEachInKeyGroup(
      uint32_t key_group,
      absl::FunctionRef<bool(const statestore_internal::EntryKey&, std::string_view)> fn) override {
    return pinned_->ForEachInKeyGroup(key_group, fn);
  }

 private:
  std::unique_ptr<StateTable> pinned_;
};

// Reads go through the state handles of state_impl.h, made per read over the pinned tables with
// a key context of their own: that is what makes concurrent reads safe.
class PinnedView final : public StateView {
 public:
  PinnedView(const KeyedStateBackendOptions& options, std::vector<SnapshotState> states,
             std::vector<std::pair<std::string, std::string>> type_names,
             std::vector<std::unique_ptr<StateTable>> tables, std::shared_ptr<void> pin)
      : max_parallelism_(options.max_parallelism),
        key_groups_(options.key_groups),
        clock_ms_(options.clock_ms),
        states_(std::move(states)),
        pin_(std::move(pin)) {
    for (size_t i = 0; i < states_.size(); ++i) {
      tables_.emplace(states_[i].name,
                      Pinned{&states_[i], std::move(type_names[i]),
                             std::make_unique<ReadOnlyTable>(std::move(tables[i]))});
    }
  }

  const std::vector<SnapshotState>& states() const override { return states_; }
  uint32_t max_parallelism() const override { return max_parallelism_; }
  KeyGroupRange key_groups() const override { return key_groups_; }

  absl::StatusOr<std::optional<std::string>> GetValue(std::string_view state, std::string_view key,
                                                      std::string_view ns) const override {
    SLUICE_ASSIGN_OR_RETURN(
        Read r, Prepare(state, key, ns,
                        {StateKind::kValue, StateKind::kReducing, StateKind::kAggregating}));
    // Reducing and aggregating state are stored as value state is.
    StateDescriptor d = Describe(*r.pinned, StateKind::kValue);
    return statestore_internal::NewValueState(d, r.pinned->table.get(), &r.context)->Value();
  }
  absl::StatusOr<std::vector<std::string>> GetList(std::string_view state, std::string_view key,
                                                   std::string_view ns) const override {
    SLUICE_ASSIGN_OR_RETURN(Read r, Prepare(state, key, ns, {StateKind::kList}));
    StateDescriptor d = Describe(*r.pinned, StateKind::kList);
    return statestore_internal::NewListState(d, r.pinned->table.get(), &r.context)->Get();
  }
  absl::StatusOr<std::optional<std::string>> GetMapEntry(std::string_view state,
                                                         std::string_view key, std::string_view ns,
                                                         std::string_view user_key) const override {
    SLUICE_ASSIGN_OR_RETURN(Read r, Prepare(state, key, ns, {StateKind::kMap}));
    StateDescriptor d = Describe(*r.pinned, StateKind::kMap);
    return statestore_internal::NewMapState(d, r.pinned->table.get(), &r.context)->Get(user_key);
  }
  absl::Status ForEachMapEntry(
      std::string_view state, std::string_view key, std::string_view ns,
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn)
      const override {
    SLUICE_ASSIGN_OR_RETURN(Read r, Prepare(state, key, ns, {StateKind::kMap}));
    StateDescriptor d = Describe(*r.pinned, StateKind::kMap);
    return statestore_internal::NewMapState(d, r.pinned->table.get(), &r.context)->ForEach(fn);
  }

  absl::Status ForEachKey(
      std::string_view state, uint32_t key_group,
      absl::FunctionRef<bool(std::string_view key, std::string_view ns)> fn) const override {
    SLUICE_ASSIGN_OR_RETURN(const Pinned* pinned, Find(state));
    if (!key_groups_.Contains(key_group)) {
      return absl::FailedPreconditionError(
          absl::StrCat("key group ", key_group, " is outside ", key_groups_.ToString()));
    }
    // A map has an entry per user key: list each (key, namespace) once.
    absl::flat_hash_set<std::pair<std::string, std::string>> seen;
    const bool map = pinned->state->kind == StateKind::kMap;
    return pinned->table->ForEachInKeyGroup(
        key_group, [&](const statestore_internal::EntryKey& k, std::string_view) {
          if (map && !seen.emplace(std::string(k.key), std::string(k.ns)).second) return true;
          return fn(k.key, k.ns);
        });
  }

  std::pair<std::string, std::string> TypeNames(std::string_view state) const override {
    auto it = tables_.find(std::string(state));
    return it == tables_.end() ? std::pair<std::string, std::string>() : it->second.type_names;
  }

 private:
  struct Pinned {
    const SnapshotState* state;
    std::pair<std::string, std::string> type_names;  // of keys, of values
    std::unique_ptr<StateTable> table;
  };

  absl::StatusOr<const Pinned*> Find(std::string_view state) const {
    auto it = tables_.find(std::string(state));
    if (it == tables_.end()) {
      return absl::NotFoundError(absl::StrCat("no state '", std::string(state), "'"));
    }
    return &it->second;
  }
  struct Read {
    const Pinned* pinned;
    KeyContext context;
  };

  static StateDescriptor Describe(const Pinned& p, StateKind kind) {
    StateDescriptor d;
    d.name = p.state->name;
    d.kind = kind;
    d.ttl = absl::Milliseconds(p.state->ttl_ms);
    return d;
  }

  absl::StatusOr<Read> Prepare(std::string_view state, std::string_view key, std::string_view ns,
                               std::initializer_list<StateKind> kinds) const {
    SLUICE_ASSIGN_OR_RETURN(const Pinned* pinned, Find(state));
    const StateKind kind = pinned->state->kind;
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
      return absl::InvalidArgumentError(absl::StrCat("state '", std::string(state), "' is ",
                                                     std::string(StateKindName(kind)), " state"));
    }
    Read r{pinned, {}};
    r.context.key_group = KeyGroupForKey(key, max_parallelism_);
    if (!key_groups_.Contains(r.context.key_group)) {
      return absl::FailedPreconditionError(absl::StrCat("the key belongs to key group ",
                                                        r.context.key_group, ", outside ",
                                                        key_groups_.ToString()));
    }
    r.context.key = std::string(key);
    r.context.ns = std::string(ns);
    r.context.key_set = true;
    r.context.now_ms = clock_ms_;
    return r;
  }

  const uint32_t max_parallelism_;
  const KeyGroupRange key_groups_;
  const std::function<int64_t()> clock_ms_;
  const std::vector<SnapshotState> states_;
  absl::flat_hash_map<std::string, Pinned> tables_;
  const std::shared_ptr<void> pin_;
};

absl::Status CheckOwner(const std::string& owner) {
  // "_metadata" is the name of a checkpoint's metadata file, beside the owners' directories.
  if (!IsStorageName(owner) || absl::StrContains(absl::StrCat("/", owner, "/"), "/_metadata/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot owner '", owner, "' must be a relative path without '.' or '..' parts"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<SnapshotState> KeyedStateBackend::DeclaredStates() const {
  std::vector<SnapshotState> out;
  for (const auto& [name, declared] : states_) {
    out.push_back(SnapshotState{name, declared->descriptor.kind,
                                absl::ToInt64Milliseconds(declared->descriptor.ttl)});
  }
  std::sort(out.begin(), out.end(),
            [](const SnapshotState& a, const SnapshotState& b) { return a.name < b.name; });
  return out;
}

absl::Status KeyedStateBackend::DeclareStates(const std::vector<SnapshotState>& states) {
  for (const SnapshotState& s : states) {
    SLUICE_RETURN_IF_ERROR(DeclareTable(s.name, s.kind, absl::Milliseconds(s.ttl_ms)).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const StateView>> KeyedStateBackend::PinView() {
  return MakeView(/*follow=*/false);
}

absl::StatusOr<std::shared_ptr<const StateView>> KeyedStateBackend::LiveView() {
  return MakeView(/*follow=*/true);
}

absl::StatusOr<std::shared_ptr<const StateView>> KeyedStateBackend::MakeView(bool follow) {
  std::vector<SnapshotState> states = DeclaredStates();
  std::vector<StateTable*> live;
  std::vector<std::pair<std::string, std::string>> type_names;
  for (const SnapshotState& s : states) {
    const Declared& declared = *states_.at(s.name);
    live.push_back(declared.table.get());
    type_names.emplace_back(declared.descriptor.key_type, declared.descriptor.value_type);
  }
  std::shared_ptr<void> pin;
  SLUICE_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<StateTable>> tables,
                          PinTables(states, live, follow, &pin));
  return std::make_shared<PinnedView>(options_, std::move(states), std::move(type_names),
                                      std::move(tables), std::move(pin));
}

int64_t KeyedStateBackend::NowMs() const { return options_.clock_ms(); }

absl::StatusOr<std::unique_ptr<PendingSnapshot>> KeyedStateBackend::Snapshot(
    const SnapshotOptions& options) {
  SLUICE_RETURN_IF_ERROR(CheckOwner(options.owner));
  return TakeSnapshot(options);
}

absl::StatusOr<std::unique_ptr<PendingSnapshot>> KeyedStateBackend::TakeSnapshot(
    const SnapshotOptions& options) {
  BackendSnapshot snapshot;
  snapshot.owner = options.owner;
  snapshot.format = SnapshotFormat::kFull;
  snapshot.checkpoint_id = options.checkpoint_id;
  snapshot.max_parallelism = options_.max_parallelism;
  snapshot.key_groups = options_.key_groups;
  snapshot.states = DeclaredStates();
  SLUICE_ASSIGN_OR_RETURN(std::string bytes, FullSnapshot());
  return std::make_unique<FullPendingSnapshot>(std::move(snapshot), std::move(bytes));
}

void KeyedStateBackend::NotifyCheckpointComplete(uint64_t checkpoint_id) {
  CheckpointComplete(checkpoint_id);
}

absl::Status KeyedStateBackend::Restore(const std::vector<BackendSnapshot>& snapshots,
                                        CheckpointStorage& storage) {
  if (!states_.empty()) {
    return absl::FailedPreconditionError(
        "restore into a backend that has declared states: restore before any state is used");
  }
  std::vector<BackendSnapshot> overlapping;
  for (const BackendSnapshot& s : snapshots) {
    if (s.max_parallelism != options_.max_parallelism) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the snapshot of '", s.owner, "' has max parallelism ", s.max_parallelism,
          ", this backend ", options_.max_parallelism, ": key groups would not match"));
    }
    if (s.key_groups.Intersect(options_.key_groups).count > 0) overlapping.push_back(s);
  }
  return RestoreSnapshots(overlapping, storage);
}

absl::Status KeyedStateBackend::RestoreSnapshots(const std::vector<BackendSnapshot>& snapshots,
                                                 CheckpointStorage& storage) {
  for (const BackendSnapshot& s : snapshots) {
    if (s.format != SnapshotFormat::kFull) {
      return absl::FailedPreconditionError(
          absl::StrCat("the ", options_.kind, " backend cannot restore the ",
                       std::string(SnapshotFormatName(s.format)), " snapshot of '", s.owner,
                       "' (checkpoint ", s.checkpoint_id, "): restore from a savepoint instead"));
    }
  }
  for (const BackendSnapshot& s : snapshots) {
    SLUICE_ASSIGN_OR_RETURN(const std::string bytes, storage.Read(s.files.front().handle));
    const absl::Status restored = RestoreFullSnapshot(bytes);
    if (!restored.ok()) {
      return absl::Status(restored.code(),
                          absl::StrCat(s.files.front().handle.name, ": ", restored.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ValueState*> KeyedStateBackend::GetValueState(const StateDescriptor& d) {
  SLUICE_ASSIGN_OR_RETURN(Declared * s, Declare(d, StateKind::kValue));
  return s->value.get();
}
absl::StatusOr<ListState*> KeyedStateBackend::GetListState(const StateDescriptor& d) {
  SLUICE_ASSIGN_OR_RETURN(Declared * s, Declare(d, StateKind::kList));
  return s->list.get();
}
absl::StatusOr<MapState*> KeyedStateBackend::GetMapState(const StateDescriptor& d) {
  SLUICE_ASSIGN_OR_RETURN(Declared * s, Declare(d, StateKind::kMap));
  return s->map.get();
}
absl::StatusOr<ReducingState*> KeyedStateBackend::GetReducingState(const StateDescriptor& d) {
  SLUICE_ASSIGN_OR_RETURN(Declared * s, Declare(d, StateKind::kReducing));
  return s->reducing.get();
}
absl::StatusOr<AggregatingState*> KeyedStateBackend::GetAggregatingState(const StateDescriptor& d) {
  SLUICE_ASSIGN_OR_RETURN(Declared * s, Declare(d, StateKind::kAggregating));
  return s->aggregating.get();
}

}  // namespace sluice
