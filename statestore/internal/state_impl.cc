#include "statestore/internal/state_impl.h"

#include <cstring>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace sluice::statestore_internal {
namespace {

constexpr size_t kExpirySize = 8;
constexpr size_t kLengthSize = 4;

// What every kind shares: the entry of the current key, and values with or without an expiry.
class StateBase {
 public:
  StateBase(const StateDescriptor& d, StateTable* table, const KeyContext* context)
      : name_(d.name),
        ttl_ms_(absl::ToInt64Milliseconds(d.ttl)),
        table_(table),
        context_(context) {}

 protected:
  absl::StatusOr<EntryKey> Current(std::string_view user_key = {}) const {
    if (!context_->key_set) {
      return absl::FailedPreconditionError(
          absl::StrCat("state '", name_, "': no current key (call SetCurrentKey first)"));
    }
    return EntryKey{context_->key_group, context_->key, context_->ns, user_key};
  }

  bool has_ttl() const { return ttl_ms_ > 0; }
  size_t expiry_size() const { return has_ttl() ? kExpirySize : 0; }

  // Writes `value` to entry `k` as stored: behind its expiry time when the state has a TTL (built
  // in a buffer the handle keeps, so that a write allocates nothing once it has grown).
  absl::Status PutStored(const EntryKey& k, std::string_view value) {
    if (!has_ttl()) return table_->Put(k, value);
    stored_.clear();
    AppendExpiry(&stored_);
    stored_.append(value);
    return table_->Put(k, stored_);
  }
  void AppendExpiry(std::string* out) const {
    if (!has_ttl()) return;
    const int64_t expiry = context_->now_ms() + ttl_ms_;
    out->append(reinterpret_cast<const char*>(&expiry), kExpirySize);
  }
  // The value of a stored one, or nothing when it has expired.
  std::optional<std::string_view> Live(std::string_view stored) const {
    if (!has_ttl()) return stored;
    if (stored.size() < kExpirySize) return std::nullopt;  // cannot happen: written by PutStored
    int64_t expiry = 0;
    std::memcpy(&expiry, stored.data(), kExpirySize);
    if (expiry <= context_->now_ms()) return std::nullopt;
    return stored.substr(kExpirySize);
  }

  // The live value of entry `k`; an expired one is deleted on the way.
  absl::StatusOr<std::optional<std::string>> ReadLive(const EntryKey& k) {
    if (!has_ttl()) return table_->Get(k);  // as it is: no copy
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> stored, table_->Get(k));
    if (!stored.has_value()) return std::nullopt;
    std::optional<std::string_view> live = Live(*stored);
    if (!live.has_value()) {
      SLUICE_RETURN_IF_ERROR(table_->Delete(k));
      return std::nullopt;
    }
    stored->erase(0, kExpirySize);  // in place: no second string
    return stored;
  }

  const std::string name_;
  const int64_t ttl_ms_;
  StateTable* const table_;
  const KeyContext* const context_;

 private:
  std::string stored_;  // PutStored's buffer
};

class ValueStateImpl final : public ValueState, StateBase {
 public:
  using StateBase::StateBase;
  absl::StatusOr<std::optional<std::string>> Value() override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    return ReadLive(k);
  }
  absl::Status Update(std::string_view value) override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    return PutStored(k, value);
  }
  absl::Status Clear() override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    return table_->Delete(k);
  }
};

class ListStateImpl final : public ListState, StateBase {
 public:
  using StateBase::StateBase;
  absl::StatusOr<std::vector<std::string>> Get() override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> stored, table_->Get(k));
    std::vector<std::string> out;
    if (!stored.has_value()) return out;
    size_t pos = 0;
    bool expired = false;
    while (pos < stored->size()) {
      uint32_t length = 0;
      if (stored->size() - pos < kLengthSize + expiry_size()) return Corrupt();
      std::memcpy(&length, stored->data() + pos, kLengthSize);
      pos += kLengthSize;
      const size_t element = expiry_size() + length;
      if (stored->size() - pos < element) return Corrupt();
      std::optional<std::string_view> live = Live(std::string_view(*stored).substr(pos, element));
      if (live.has_value()) {
        out.emplace_back(*live);
      } else {
        expired = true;
      }
      pos += element;
    }
    // Expired elements go at the next read that finds them: the list is written back without.
    if (expired) SLUICE_RETURN_IF_ERROR(Rewrite(k, out, /*fresh_expiry=*/false, *stored));
    return out;
  }
  absl::Status Add(std::string_view value) override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    std::string element;
    AppendElement(&element, value);
    return table_->Append(k, element);
  }
  absl::Status Update(const std::vector<std::string>& values) override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    return Rewrite(k, values, /*fresh_expiry=*/true, {});
  }
  absl::Status Clear() override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    return table_->Delete(k);
  }

 private:
  void AppendElement(std::string* out, std::string_view value) const {
    const auto length = static_cast<uint32_t>(value.size());
    out->append(reinterpret_cast<const char*>(&length), kLengthSize);
    AppendExpiry(out);
    out->append(value);
  }
  // Writes `values` as the whole list. With `fresh_expiry` false the live elements keep the
  // expiry they had in `old` (dropping expired ones must not extend the others).
  absl::Status Rewrite(const EntryKey& k, const std::vector<std::string>& values, bool fresh_expiry,
                       std::string_view old) {
    if (values.empty()) return table_->Delete(k);
    std::string list;
    if (fresh_expiry || !has_ttl()) {
      for (const std::string& v : values) AppendElement(&list, v);
    } else {
      size_t pos = 0;
      while (pos < old.size()) {
        uint32_t length = 0;
        std::memcpy(&length, old.data() + pos, kLengthSize);
        const std::string_view element = old.substr(pos, kLengthSize + kExpirySize + length);
        if (Live(element.substr(kLengthSize)).has_value()) list.append(element);
        pos += element.size();
      }
    }
    return table_->Put(k, list);
  }
  absl::Status Corrupt() const {
    return absl::DataLossError(
        absl::StrCat("state '", name_, "': a list entry is cut short (corrupt state)"));
  }
};

class MapStateImpl final : public MapState, StateBase {
 public:
  using StateBase::StateBase;
  absl::StatusOr<std::optional<std::string>> Get(std::string_view user_key) override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current(user_key));
    return ReadLive(k);
  }
  absl::Status Put(std::string_view user_key, std::string_view value) override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current(user_key));
    return PutStored(k, value);
  }
  absl::Status Remove(std::string_view user_key) override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current(user_key));
    return table_->Delete(k);
  }
  absl::StatusOr<bool> Contains(std::string_view user_key) override {
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> v, Get(user_key));
    return v.has_value();
  }
  absl::Status ForEach(
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn) override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    return table_->ForEachUserKey(k, [&](std::string_view user_key, std::string_view stored) {
      std::optional<std::string_view> live = Live(stored);
      return !live.has_value() || fn(user_key, *live);
    });
  }
  absl::Status Clear() override {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, Current());
    return table_->DeleteUserKeys(k);
  }
};

// Reducing and aggregating state: one value folded with each added one.
class FoldingState : protected StateBase {
 public:
  FoldingState(const StateDescriptor& d, StateTable* table, const KeyContext* context,
               std::function<std::string(std::optional<std::string_view>, std::string_view)> fold)
      : StateBase(d, table, context), fold_(std::move(fold)) {}

 protected:
  absl::StatusOr<std::optional<std::string>> Current() {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, StateBase::Current());
    return ReadLive(k);
  }
  absl::Status Fold(std::string_view value) {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, StateBase::Current());
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> current, ReadLive(k));
    const std::string folded = fold_(
        current.has_value() ? std::optional<std::string_view>(*current) : std::nullopt, value);
    return PutStored(k, folded);
  }
  absl::Status ClearEntry() {
    SLUICE_ASSIGN_OR_RETURN(const EntryKey k, StateBase::Current());
    return table_->Delete(k);
  }

 private:
  std::function<std::string(std::optional<std::string_view>, std::string_view)> fold_;
};

class ReducingStateImpl final : public ReducingState, FoldingState {
 public:
  ReducingStateImpl(const StateDescriptor& d, StateTable* table, const KeyContext* context)
      : FoldingState(
            d, table, context,
            [reduce = d.reduce](std::optional<std::string_view> current, std::string_view value) {
              return current.has_value() ? reduce(*current, value) : std::string(value);
            }) {}
  absl::StatusOr<std::optional<std::string>> Get() override { return Current(); }
  absl::Status Add(std::string_view value) override { return Fold(value); }
  absl::Status Clear() override { return ClearEntry(); }
};

class AggregatingStateImpl final : public AggregatingState, FoldingState {
 public:
  AggregatingStateImpl(const StateDescriptor& d, StateTable* table, const KeyContext* context)
      : FoldingState(d, table, context,
                     [aggregate = d.aggregate](std::optional<std::string_view> accumulator,
                                               std::string_view value) {
                       return accumulator.has_value() ? aggregate.add(*accumulator, value)
                                                      : aggregate.add(aggregate.create(), value);
                     }),
        result_(d.aggregate.result) {}
  absl::StatusOr<std::optional<std::string>> Get() override {
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> accumulator, Current());
    if (!accumulator.has_value()) return std::nullopt;
    return result_(*accumulator);
  }
  absl::Status Add(std::string_view value) override { return Fold(value); }
  absl::Status Clear() override { return ClearEntry(); }

 private:
  std::function<std::string(std::string_view)> result_;
};

}  // namespace

std::unique_ptr<ValueState> NewValueState(const StateDescriptor& d, StateTable* table,
                                          const KeyContext* context) {
  return std::make_unique<ValueStateImpl>(d, table, context);
}
std::unique_ptr<ListState> NewListState(const StateDescriptor& d, StateTable* table,
                                        const KeyContext* context) {
  return std::make_unique<ListStateImpl>(d, table, context);
}
std::unique_ptr<MapState> NewMapState(const StateDescriptor& d, StateTable* table,
                                      const KeyContext* context) {
  return std::make_unique<MapStateImpl>(d, table, context);
}
std::unique_ptr<ReducingState> NewReducingState(const StateDescriptor& d, StateTable* table,
                                                const KeyContext* context) {
  return std::make_unique<ReducingStateImpl>(d, table, context);
}
std::unique_ptr<AggregatingState> NewAggregatingState(const StateDescriptor& d, StateTable* table,
                                                      const KeyContext* context) {
  return std::make_unique<AggregatingStateImpl>(d, table, context);
}

}  // namespace sluice::statestore_internal
