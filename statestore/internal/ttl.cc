#include "statestore/internal/ttl.h"

#include <utility>

#include "rocksdb/slice.h"

namespace sluice::statestore_internal {
namespace {

constexpr size_t kExpirySize = 8;
constexpr size_t kLengthSize = 4;

uint64_t ReadLittleEndian(std::string_view bytes, size_t size) {
  uint64_t value = 0;
  for (size_t i = size; i > 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[i - 1]);
  return value;
}

// REQUIRES: at least kExpirySize bytes.
int64_t ReadExpiry(std::string_view bytes) {
  return static_cast<int64_t>(ReadLittleEndian(bytes, kExpirySize));
}

TtlVerdict FilterList(std::string_view stored, int64_t now_ms, std::string* rewritten) {
  // The whole list is checked before anything is decided, so that a damaged one stays whole.
  size_t live = 0;
  size_t expired = 0;
  for (size_t pos = 0; pos < stored.size();) {
    const std::string_view rest = stored.substr(pos);
    if (rest.size() < kLengthSize + kExpirySize) return TtlVerdict::kKeep;
    const uint64_t length = ReadLittleEndian(rest, kLengthSize);
    if (rest.size() - kLengthSize - kExpirySize < length) return TtlVerdict::kKeep;
    if (ReadExpiry(rest.substr(kLengthSize)) <= now_ms) {
      ++expired;
    } else {
      ++live;
    }
    pos += kLengthSize + kExpirySize + length;
  }
  if (expired == 0) return TtlVerdict::kKeep;
  if (live == 0) return TtlVerdict::kRemove;
  rewritten->clear();
  for (size_t pos = 0; pos < stored.size();) {
    const std::string_view rest = stored.substr(pos);
    const size_t element = kLengthSize + kExpirySize + ReadLittleEndian(rest, kLengthSize);
    if (ReadExpiry(rest.substr(kLengthSize)) > now_ms) rewritten->append(rest.substr(0, element));
    pos += element;
  }
  return TtlVerdict::kRewrite;
}

class TtlCompactionFilter final : public rocksdb::CompactionFilter {
 public:
  TtlCompactionFilter(StateKind kind, int64_t now_ms) : kind_(kind), now_ms_(now_ms) {}

  Decision FilterV2(int /*level*/, const rocksdb::Slice& /*key*/, ValueType value_type,
                    const rocksdb::Slice& existing_value, std::string* new_value,
                    std::string* /*skip_until*/) const override {
    // Merge operands are list appends: elements in a list's own format, filtered like a list
    // (an expired operand goes, a partly expired one loses its expired elements). Blob indexes
    // are not values of ours.
    if (value_type == ValueType::kBlobIndex) return Decision::kKeep;
    if (value_type == ValueType::kMergeOperand && kind_ != StateKind::kList) return Decision::kKeep;
    switch (FilterExpired(kind_, std::string_view(existing_value.data(), existing_value.size()),
                          now_ms_, new_value)) {
      case TtlVerdict::kKeep:
        return Decision::kKeep;
      case TtlVerdict::kRemove:
        return Decision::kRemove;
      case TtlVerdict::kRewrite:
        return Decision::kChangeValue;
    }
    return Decision::kKeep;
  }

  const char* Name() const override { return "sluice.ttl"; }

 private:
  const StateKind kind_;
  const int64_t now_ms_;
};

class TtlCompactionFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  TtlCompactionFilterFactory(StateKind kind, std::function<int64_t()> now_ms)
      : kind_(kind), now_ms_(std::move(now_ms)) {}

  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& /*context*/) override {
    return std::make_unique<TtlCompactionFilter>(kind_, now_ms_());
  }

  const char* Name() const override { return "sluice.ttl"; }

 private:
  const StateKind kind_;
  const std::function<int64_t()> now_ms_;
};

}  // namespace

std::optional<std::string_view> SnapshotValue(StateKind kind, int64_t ttl_ms,
                                              std::string_view stored, int64_t now_ms,
                                              std::string* scratch) {
  if (ttl_ms <= 0) return stored;
  switch (FilterExpired(kind, stored, now_ms, scratch)) {
    case TtlVerdict::kKeep:
      return stored;
    case TtlVerdict::kRemove:
      return std::nullopt;
    case TtlVerdict::kRewrite:
      return std::string_view(*scratch);
  }
  return stored;
}

TtlVerdict FilterExpired(StateKind kind, std::string_view stored, int64_t now_ms,
                         std::string* rewritten) {
  if (kind == StateKind::kList) return FilterList(stored, now_ms, rewritten);
  if (stored.size() < kExpirySize) return TtlVerdict::kKeep;
  return ReadExpiry(stored) <= now_ms ? TtlVerdict::kRemove : TtlVerdict::kKeep;
}

std::shared_ptr<rocksdb::CompactionFilterFactory> NewTtlCompactionFilterFactory(
    StateKind kind, std::function<int64_t()> now_ms) {
  return std::make_shared<TtlCompactionFilterFactory>(kind, std::move(now_ms));
}

}  // namespace sluice::statestore_internal
