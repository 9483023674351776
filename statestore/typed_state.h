// Typed keyed state: the five kinds of state of state.h over C++ values, which Serializer<T>
// (serializer.h) turns into the bytes the backend stores. Each typed handle builds its descriptor
// (wrapping the reduce or aggregate functions, naming the types); GetState declares it on a
// backend and returns the handle:
//
//   TypedKeyedState<std::string> keyed(backend);
//   auto count = keyed.GetState(TypedValueState<int64_t>::Descriptor("count"));
//   if (!count.ok()) return count.status();
//   SLUICE_RETURN_IF_ERROR(keyed.SetCurrentKey(user));
//   SLUICE_ASSIGN_OR_RETURN(std::optional<int64_t> n, count->Value());
//   SLUICE_RETURN_IF_ERROR(count->Update(n.value_or(0) + 1));
//
// Stored bytes that do not deserialize as the handle's type (corrupt state, or state written as
// another type) are DataLoss naming the state and what was wrong; the stored bytes are then left
// as they were. Handles are views of the backend's byte handles, cheap to copy: they live as long
// as the backend and, like it, belong to its task thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/serializer.h"
#include "statestore/state.h"

namespace sluice {

// The byte-level descriptor of a state whose typed handle is `Handle`: built by
// Handle::Descriptor, declared by GetState.
template <typename Handle>
struct TypedStateDescriptor {
  StateDescriptor bytes;

  // This descriptor with a TTL (see StateDescriptor::ttl).
  TypedStateDescriptor WithTtl(absl::Duration ttl) const {
    TypedStateDescriptor d = *this;
    d.bytes.ttl = ttl;
    return d;
  }
};

namespace typed_state_internal {

// `bytes` read from state `state` as a T, or DataLoss naming the state and `what` they were.
template <StateSerializable T>
absl::StatusOr<T> Decode(std::string_view bytes, std::string_view state, std::string_view what) {
  absl::StatusOr<T> value = Serializer<T>::Deserialize(bytes);
  if (!value.ok()) {
    return absl::DataLossError(absl::StrCat("state '", std::string(state), "': stored ",
                                            std::string(what), ": ", value.status().message(),
                                            " (corrupt, or written as another type)"));
  }
  return value;
}

template <StateSerializable T>
absl::StatusOr<std::optional<T>> DecodeOptional(const std::optional<std::string>& bytes,
                                                std::string_view state, std::string_view what) {
  if (!bytes.has_value()) return std::nullopt;
  absl::StatusOr<T> value = Decode<T>(*bytes, state, what);
  if (!value.ok()) return value.status();
  return std::optional<T>(*std::move(value));
}

// Reduce and aggregate functions return bytes, not a Status: a typed one that meets bytes it
// cannot deserialize leaves its error here and returns the stored bytes unchanged. The typed
// handle whose call ran it collects the error (RunCollectingFunctionErrors). Per thread, since a
// backend runs these functions on the thread that calls its handles.
inline absl::Status& FunctionError() {
  thread_local absl::Status error;
  return error;
}
inline void SetFunctionError(absl::Status error) {
  if (FunctionError().ok()) FunctionError() = std::move(error);
}

// `call()` (a call of a byte-level handle), or else the error a typed function met during it.
template <typename Call>
auto RunCollectingFunctionErrors(Call call) -> decltype(call()) {
  FunctionError() = absl::OkStatus();
  auto result = call();
  absl::Status error = std::exchange(FunctionError(), absl::OkStatus());
  if (!result.ok() || error.ok()) return result;
  return error;
}

inline absl::StatusOr<ValueState*> Declare(KeyedStateBackend& b, const StateDescriptor& d,
                                           ValueState*) {
  return b.GetValueState(d);
}
inline absl::StatusOr<ListState*> Declare(KeyedStateBackend& b, const StateDescriptor& d,
                                          ListState*) {
  return b.GetListState(d);
}
inline absl::StatusOr<MapState*> Declare(KeyedStateBackend& b, const StateDescriptor& d,
                                         MapState*) {
  return b.GetMapState(d);
}
inline absl::StatusOr<ReducingState*> Declare(KeyedStateBackend& b, const StateDescriptor& d,
                                              ReducingState*) {
  return b.GetReducingState(d);
}
inline absl::StatusOr<AggregatingState*> Declare(KeyedStateBackend& b, const StateDescriptor& d,
                                                 AggregatingState*) {
  return b.GetAggregatingState(d);
}

}  // namespace typed_state_internal

// The typed handle of the state `d` describes, declared on `backend` on first use (see
// KeyedStateBackend::GetValueState and the others). Keys stay raw bytes: d.bytes.key_type is
// left as it is (TypedKeyedState::GetState names the key type).
template <typename Handle>
absl::StatusOr<Handle> GetState(KeyedStateBackend& backend, const TypedStateDescriptor<Handle>& d) {
  using Bytes = typename Handle::Bytes;
  SLUICE_ASSIGN_OR_RETURN(
      Bytes * bytes, typed_state_internal::Declare(backend, d.bytes, static_cast<Bytes*>(nullptr)));
  return Handle(bytes, d.bytes.name);
}

// The backend's current key, and namespace, from typed ones (their Serializer encodings).
template <StateSerializable K>
absl::Status SetCurrentKey(KeyedStateBackend& backend, const K& key) {
  return backend.SetCurrentKey(ToBytes(key));
}
template <StateSerializable N>
void SetCurrentNamespace(KeyedStateBackend& backend, const N& ns) {
  backend.SetCurrentNamespace(ToBytes(ns));
}

// A backend whose keys are Ks and namespaces Ns: sets them typed, and declares states with the
// key type named (StateDescriptor::key_type).
template <StateSerializable K, StateSerializable N = std::string>
class TypedKeyedState {
 public:
  // REQUIRES: `backend` outlives this.
  explicit TypedKeyedState(KeyedStateBackend* backend) : backend_(backend) {}

  absl::Status SetCurrentKey(const K& key) { return sluice::SetCurrentKey(*backend_, key); }
  void SetCurrentNamespace(const N& ns) { sluice::SetCurrentNamespace(*backend_, ns); }
  // REQUIRES: a key has been set.
  absl::StatusOr<K> CurrentKey() const {
    absl::StatusOr<K> key = Serializer<K>::Deserialize(backend_->current_key());
    if (!key.ok()) {
      return absl::DataLossError(
          absl::StrCat("the current key: ", key.status().message(), " (set as another type)"));
    }
    return key;
  }

  template <typename Handle>
  absl::StatusOr<Handle> GetState(TypedStateDescriptor<Handle> d) const {
    d.bytes.key_type = Serializer<K>::TypeName();
    return sluice::GetState(*backend_, d);
  }

  KeyedStateBackend* backend() const { return backend_; }

 private:
  KeyedStateBackend* backend_;
};

// One V per key and namespace.
template <StateSerializable V>
class TypedValueState {
 public:
  using Bytes = ValueState;
  static TypedStateDescriptor<TypedValueState> Descriptor(std::string name) {
    StateDescriptor d = StateDescriptor::Value(std::move(name));
    d.value_type = Serializer<V>::TypeName();
    return {std::move(d)};
  }

  TypedValueState() = default;  // usable once assigned a handle from GetState
  // REQUIRES: `bytes` outlives this, and reads and writes state `name` as Vs.
  TypedValueState(ValueState* bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {}

  absl::StatusOr<std::optional<V>> Value() {
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> stored, bytes_->Value());
    return typed_state_internal::DecodeOptional<V>(stored, name_, "value");
  }
  absl::Status Update(const V& value) { return bytes_->Update(ToBytes(value)); }
  absl::Status Clear() { return bytes_->Clear(); }

  const std::string& name() const { return name_; }
  ValueState* bytes() const { return bytes_; }

 private:
  ValueState* bytes_ = nullptr;
  std::string name_;
};

// A list of Vs per key and namespace, appended to in order.
template <StateSerializable V>
class TypedListState {
 public:
  using Bytes = ListState;
  static TypedStateDescriptor<TypedListState> Descriptor(std::string name) {
    StateDescriptor d = StateDescriptor::List(std::move(name));
    d.value_type = Serializer<V>::TypeName();
    return {std::move(d)};
  }

  TypedListState() = default;
  TypedListState(ListState* bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {}

  // The elements in the order they were added; empty when there are none.
  absl::StatusOr<std::vector<V>> Get() {
    SLUICE_ASSIGN_OR_RETURN(std::vector<std::string> stored, bytes_->Get());
    std::vector<V> out;
    out.reserve(stored.size());
    for (size_t i = 0; i < stored.size(); ++i) {
      SLUICE_ASSIGN_OR_RETURN(
          V value, typed_state_internal::Decode<V>(stored[i], name_, absl::StrCat("element ", i)));
      out.push_back(std::move(value));
    }
    return out;
  }
  absl::Status Add(const V& value) { return bytes_->Add(ToBytes(value)); }
  // Replaces the whole list.
  absl::Status Update(const std::vector<V>& values) {
    std::vector<std::string> encoded;
    encoded.reserve(values.size());
    for (const V& v : values) encoded.push_back(ToBytes(v));
    return bytes_->Update(encoded);
  }
  absl::Status Clear() { return bytes_->Clear(); }

  const std::string& name() const { return name_; }
  ListState* bytes() const { return bytes_; }

 private:
  ListState* bytes_ = nullptr;
  std::string name_;
};

// A map from UKs to UVs per key and namespace, iterated in the byte order of the encoded user
// keys (numeric order for integers: see serializer.h).
template <StateSerializable UK, StateSerializable UV>
class TypedMapState {
 public:
  using Bytes = MapState;
  static TypedStateDescriptor<TypedMapState> Descriptor(std::string name) {
    StateDescriptor d = StateDescriptor::Map(std::move(name));
    d.value_type =
        absl::StrCat("map<", Serializer<UK>::TypeName(), ",", Serializer<UV>::TypeName(), ">");
    return {std::move(d)};
  }

  TypedMapState() = default;
  TypedMapState(MapState* bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {}

  absl::StatusOr<std::optional<UV>> Get(const UK& user_key) {
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> stored, bytes_->Get(ToBytes(user_key)));
    return typed_state_internal::DecodeOptional<UV>(stored, name_, "map value");
  }
  absl::Status Put(const UK& user_key, const UV& value) {
    return bytes_->Put(ToBytes(user_key), ToBytes(value));
  }
  absl::Status Remove(const UK& user_key) { return bytes_->Remove(ToBytes(user_key)); }
  absl::StatusOr<bool> Contains(const UK& user_key) { return bytes_->Contains(ToBytes(user_key)); }
  // Every entry in user-key order; `fn` returns false to stop early. An entry that does not
  // deserialize stops the walk with its error.
  absl::Status ForEach(absl::FunctionRef<bool(const UK& user_key, const UV& value)> fn) {
    absl::Status error;
    SLUICE_RETURN_IF_ERROR(bytes_->ForEach([&](std::string_view k, std::string_view v) {
      absl::StatusOr<UK> user_key = typed_state_internal::Decode<UK>(k, name_, "map key");
      if (!user_key.ok()) {
        error = user_key.status();
        return false;
      }
      absl::StatusOr<UV> value = typed_state_internal::Decode<UV>(v, name_, "map value");
      if (!value.ok()) {
        error = value.status();
        return false;
      }
      return fn(*user_key, *value);
    }));
    return error;
  }
  absl::Status Clear() { return bytes_->Clear(); }

  const std::string& name() const { return name_; }
  MapState* bytes() const { return bytes_; }

 private:
  MapState* bytes_ = nullptr;
  std::string name_;
};

// The reduction of every V added.
template <StateSerializable V>
class TypedReducingState {
 public:
  using Bytes = ReducingState;
  // Combines the current value with an added one. Must be deterministic.
  using ReduceFn = std::function<V(const V& current, const V& value)>;

  static TypedStateDescriptor<TypedReducingState> Descriptor(std::string name, ReduceFn reduce) {
    StateDescriptor d = StateDescriptor::Reducing(name, {});
    d.value_type = Serializer<V>::TypeName();
    // An empty `reduce` stays empty, for ValidateStateDescriptor to refuse.
    if (reduce) {
      d.reduce = [name = std::move(name), reduce = std::move(reduce)](
                     std::string_view current, std::string_view value) -> std::string {
        absl::StatusOr<V> c = typed_state_internal::Decode<V>(current, name, "value");
        absl::StatusOr<V> v = typed_state_internal::Decode<V>(value, name, "added value");
        if (!c.ok() || !v.ok()) {
          typed_state_internal::SetFunctionError(!c.ok() ? c.status() : v.status());
          return std::string(current);
        }
        return ToBytes(reduce(*c, *v));
      };
    }
    return {std::move(d)};
  }

  TypedReducingState() = default;
  TypedReducingState(ReducingState* bytes, std::string name)
      : bytes_(bytes), name_(std::move(name)) {}

  absl::StatusOr<std::optional<V>> Get() {
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> stored, bytes_->Get());
    return typed_state_internal::DecodeOptional<V>(stored, name_, "value");
  }
  absl::Status Add(const V& value) {
    const std::string encoded = ToBytes(value);
    return typed_state_internal::RunCollectingFunctionErrors([&] { return bytes_->Add(encoded); });
  }
  absl::Status Clear() { return bytes_->Clear(); }

  const std::string& name() const { return name_; }
  ReducingState* bytes() const { return bytes_; }

 private:
  ReducingState* bytes_ = nullptr;
  std::string name_;
};

// An aggregate of Ins into an Out, through an accumulator Acc (what the state stores).
template <typename In, typename Acc, typename Out>
struct TypedAggregateFunction {
  std::function<Acc()> create;  // the empty accumulator
  std::function<Acc(Acc accumulator, const In& value)> add;
  std::function<Out(const Acc& accumulator)> result;
};

template <StateSerializable In, StateSerializable Acc, StateSerializable Out>
class TypedAggregatingState {
 public:
  using Bytes = AggregatingState;
  using Function = TypedAggregateFunction<In, Acc, Out>;

  static TypedStateDescriptor<TypedAggregatingState> Descriptor(std::string name, Function f) {
    namespace internal = typed_state_internal;
    AggregateFunction bytes;
    // Empty functions stay empty, for ValidateStateDescriptor to refuse.
    if (f.create) bytes.create = [create = f.create] { return ToBytes(create()); };
    if (f.add) {
      bytes.add = [name, add = f.add](std::string_view accumulator,
                                      std::string_view value) -> std::string {
        absl::StatusOr<Acc> a = internal::Decode<Acc>(accumulator, name, "accumulator");
        absl::StatusOr<In> v = internal::Decode<In>(value, name, "added value");
        if (!a.ok() || !v.ok()) {
          internal::SetFunctionError(!a.ok() ? a.status() : v.status());
          return std::string(accumulator);
        }
        return ToBytes(add(*std::move(a), *v));
      };
    }
    if (f.result) {
      bytes.result = [name, result = f.result](std::string_view accumulator) -> std::string {
        absl::StatusOr<Acc> a = internal::Decode<Acc>(accumulator, name, "accumulator");
        if (!a.ok()) {
          internal::SetFunctionError(a.status());
          return std::string();
        }
        return ToBytes(result(*a));
      };
    }
    StateDescriptor d = StateDescriptor::Aggregating(std::move(name), std::move(bytes));
    d.value_type = Serializer<Acc>::TypeName();
    return {std::move(d)};
  }

  TypedAggregatingState() = default;
  TypedAggregatingState(AggregatingState* bytes, std::string name)
      : bytes_(bytes), name_(std::move(name)) {}

  // The result of the aggregate; nothing when no value was added.
  absl::StatusOr<std::optional<Out>> Get() {
    SLUICE_ASSIGN_OR_RETURN(
        std::optional<std::string> stored,
        typed_state_internal::RunCollectingFunctionErrors([&] { return bytes_->Get(); }));
    return typed_state_internal::DecodeOptional<Out>(stored, name_, "result");
  }
  absl::Status Add(const In& value) {
    const std::string encoded = ToBytes(value);
    return typed_state_internal::RunCollectingFunctionErrors([&] { return bytes_->Add(encoded); });
  }
  absl::Status Clear() { return bytes_->Clear(); }

  const std::string& name() const { return name_; }
  AggregatingState* bytes() const { return bytes_; }

 private:
  AggregatingState* bytes_ = nullptr;
  std::string name_;
};

}  // namespace sluice
