#include "statestore/keyed_state_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "statestore/internal/heap_backend.h"
#include "statestore/internal/rocksdb_backend.h"
#include "statestore/internal/state_impl.h"
#include "statestore/internal/state_table.h"

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

absl::StatusOr<KeyedStateBackend::Declared*> KeyedStateBackend::Declare(const StateDescriptor& d,
                                                                        StateKind kind) {
  SLUICE_RETURN_IF_ERROR(ValidateStateDescriptor(d));
  if (d.kind != kind) {
    return absl::InvalidArgumentError(
        absl::StrCat("state '", d.name, "' is described as ", std::string(StateKindName(d.kind)),
                     " state, asked for as ", std::string(StateKindName(kind)), " state"));
  }
  auto it = states_.find(d.name);
  if (it != states_.end()) {
    const StateDescriptor& was = it->second->descriptor;
    if (was.kind != d.kind || was.ttl != d.ttl) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state '", d.name, "' was declared as ", std::string(StateKindName(was.kind)),
          " state with TTL ", absl::FormatDuration(was.ttl), ", now as ",
          std::string(StateKindName(d.kind)), " state with TTL ", absl::FormatDuration(d.ttl)));
    }
    return it->second.get();
  }
  auto declared = std::make_unique<Declared>();
  declared->descriptor = d;
  SLUICE_ASSIGN_OR_RETURN(declared->table, CreateTable(d));
  const StateDescriptor& desc = declared->descriptor;
  StateTable* table = declared->table.get();
  const KeyContext* context = context_.get();
  switch (kind) {
    case StateKind::kValue:
      declared->value = statestore_internal::NewValueState(desc, table, context);
      break;
    case StateKind::kList:
      declared->list = statestore_internal::NewListState(desc, table, context);
      break;
    case StateKind::kMap:
      declared->map = statestore_internal::NewMapState(desc, table, context);
      break;
    case StateKind::kReducing:
      declared->reducing = statestore_internal::NewReducingState(desc, table, context);
      break;
    case StateKind::kAggregating:
      declared->aggregating = statestore_internal::NewAggregatingState(desc, table, context);
      break;
  }
  Declared* out = declared.get();
  states_.emplace(d.name, std::move(declared));
  return out;
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
