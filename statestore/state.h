// Keyed state as an operator sees it: descriptors of the five kinds of state, and the handles
// that read and write the state of the backend's current key and namespace (see
// keyed_state_backend.h). Keys, namespaces and values are serialized bytes; typed wrappers sit
// on top. A handle belongs to its backend and is used by the backend's task thread only.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice {

enum class StateKind { kValue, kList, kMap, kReducing, kAggregating };
std::string_view StateKindName(StateKind kind);

// Combines a state's current value with a new one (reducing state). Must be deterministic.
using ReduceFunction = std::function<std::string(std::string_view current, std::string_view value)>;

// An aggregate over values of one type into a result of another, through an accumulator.
struct AggregateFunction {
  std::function<std::string()> create;  // the empty accumulator
  std::function<std::string(std::string_view accumulator, std::string_view value)> add;
  std::function<std::string(std::string_view accumulator)> result;
};

struct StateDescriptor {
  std::string name;  // unique per backend: letters, digits, '-', '_', '.'
  StateKind kind = StateKind::kValue;
  // Values older than this (processing time since their last write) are never returned; zero
  // means they never expire.
  absl::Duration ttl = absl::ZeroDuration();
  ReduceFunction reduce;        // kReducing
  AggregateFunction aggregate;  // kAggregating
  // Informational (for the query service; not checked): the types of keys and values as
  // Serializer<T>::TypeName() names them (serializer.h), set by the typed descriptors
  // (typed_state.h); empty for raw bytes. value_type is what an entry stores: a list's element
  // type, an aggregating state's accumulator type, "map<user key type,user value type>" for map
  // state.
  std::string key_type;
  std::string value_type;

  static StateDescriptor Value(std::string name);
  static StateDescriptor List(std::string name);
  static StateDescriptor Map(std::string name);
  static StateDescriptor Reducing(std::string name, ReduceFunction reduce);
  static StateDescriptor Aggregating(std::string name, AggregateFunction aggregate);
};

// OK, or InvalidArgument naming the state and what is wrong with it.
absl::Status ValidateStateDescriptor(const StateDescriptor& descriptor);

// One value per key and namespace.
class ValueState {
 public:
  virtual ~ValueState() = default;
  virtual absl::StatusOr<std::optional<std::string>> Value() = 0;
  virtual absl::Status Update(std::string_view value) = 0;
  virtual absl::Status Clear() = 0;
};

// A list per key and namespace, appended to in order.
class ListState {
 public:
  virtual ~ListState() = default;
  // The elements in the order they were added; empty when there are none.
  virtual absl::StatusOr<std::vector<std::string>> Get() = 0;
  virtual absl::Status Add(std::string_view value) = 0;
  // Replaces the whole list.
  virtual absl::Status Update(const std::vector<std::string>& values) = 0;
  virtual absl::Status Clear() = 0;
};

// A map from user keys to values per key and namespace.
class MapState {
 public:
  virtual ~MapState() = default;
  virtual absl::StatusOr<std::optional<std::string>> Get(std::string_view user_key) = 0;
  virtual absl::Status Put(std::string_view user_key, std::string_view value) = 0;
  virtual absl::Status Remove(std::string_view user_key) = 0;
  virtual absl::StatusOr<bool> Contains(std::string_view user_key) = 0;
  // Every entry in user-key byte order; `fn` returns false to stop early.
  virtual absl::Status ForEach(
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn) = 0;
  virtual absl::Status Clear() = 0;
};

// The reduction of every value added (StateDescriptor::reduce).
class ReducingState {
 public:
  virtual ~ReducingState() = default;
  virtual absl::StatusOr<std::optional<std::string>> Get() = 0;
  virtual absl::Status Add(std::string_view value) = 0;
  virtual absl::Status Clear() = 0;
};

// The aggregate of every value added (StateDescriptor::aggregate): Get returns its result.
class AggregatingState {
 public:
  virtual ~AggregatingState() = default;
  virtual absl::StatusOr<std::optional<std::string>> Get() = 0;
  virtual absl::Status Add(std::string_view value) = 0;
  virtual absl::Status Clear() = 0;
};

}  // namespace sluice
