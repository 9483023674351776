#include "statestore/serializer.h"

#include <bit>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "absl/strings/str_format.h"

namespace sluice {
namespace {

template <typename U>
void PutBigEndian(U value, std::string* out) {
  char bytes[sizeof(U)];
  for (size_t i = 0; i < sizeof(U); ++i) {
    bytes[i] = static_cast<char>(value >> (8 * (sizeof(U) - 1 - i)));
  }
  out->append(bytes, sizeof(U));
}

template <typename U>
absl::StatusOr<U> GetBigEndian(std::string_view bytes, std::string_view type_name) {
  if (bytes.size() != sizeof(U)) {
    return MalformedBytesError(type_name,
                               absl::StrCat("expected ", sizeof(U), " bytes, got ", bytes.size()));
  }
  U value = 0;
  for (char c : bytes) value = static_cast<U>((value << 8) | static_cast<uint8_t>(c));
  return value;
}

// Signed integers as unsigned ones with the sign bit flipped: the same order, as bytes.
template <typename S>
std::make_unsigned_t<S> Biased(S value) {
  using U = std::make_unsigned_t<S>;
  return static_cast<U>(value) ^ (U{1} << (8 * sizeof(U) - 1));
}
template <typename S>
S Unbiased(std::make_unsigned_t<S> bits) {
  using U = std::make_unsigned_t<S>;
  return static_cast<S>(bits ^ (U{1} << (8 * sizeof(U) - 1)));  // modular since C++20
}

constexpr uint64_t kDoubleSign = uint64_t{1} << 63;

}  // namespace

absl::Status MalformedBytesError(std::string_view type_name, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("cannot deserialize ", std::string(type_name), ": ", std::string(what)));
}

void Serializer<int32_t>::Serialize(int32_t value, std::string* out) {
  PutBigEndian(Biased(value), out);
}
absl::StatusOr<int32_t> Serializer<int32_t>::Deserialize(std::string_view bytes) {
  absl::StatusOr<uint32_t> bits = GetBigEndian<uint32_t>(bytes, TypeName());
  if (!bits.ok()) return bits.status();
  return Unbiased<int32_t>(*bits);
}

void Serializer<int64_t>::Serialize(int64_t value, std::string* out) {
  PutBigEndian(Biased(value), out);
}
absl::StatusOr<int64_t> Serializer<int64_t>::Deserialize(std::string_view bytes) {
  absl::StatusOr<uint64_t> bits = GetBigEndian<uint64_t>(bytes, TypeName());
  if (!bits.ok()) return bits.status();
  return Unbiased<int64_t>(*bits);
}

void Serializer<uint32_t>::Serialize(uint32_t value, std::string* out) { PutBigEndian(value, out); }
absl::StatusOr<uint32_t> Serializer<uint32_t>::Deserialize(std::string_view bytes) {
  return GetBigEndian<uint32_t>(bytes, TypeName());
}

void Serializer<uint64_t>::Serialize(uint64_t value, std::string* out) { PutBigEndian(value, out); }
absl::StatusOr<uint64_t> Serializer<uint64_t>::Deserialize(std::string_view bytes) {
  return GetBigEndian<uint64_t>(bytes, TypeName());
}

void Serializer<double>::Serialize(double value, std::string* out) {
  static_assert(std::numeric_limits<double>::is_iec559 && sizeof(double) == 8);
  const uint64_t bits = std::bit_cast<uint64_t>(value);
  PutBigEndian((bits & kDoubleSign) != 0 ? ~bits : bits ^ kDoubleSign, out);
}
absl::StatusOr<double> Serializer<double>::Deserialize(std::string_view bytes) {
  absl::StatusOr<uint64_t> ordered = GetBigEndian<uint64_t>(bytes, TypeName());
  if (!ordered.ok()) return ordered.status();
  const uint64_t bits = (*ordered & kDoubleSign) != 0 ? *ordered ^ kDoubleSign : ~*ordered;
  return std::bit_cast<double>(bits);
}

void Serializer<bool>::Serialize(bool value, std::string* out) { out->push_back(value ? 1 : 0); }
absl::StatusOr<bool> Serializer<bool>::Deserialize(std::string_view bytes) {
  if (bytes.size() != 1) {
    return MalformedBytesError(TypeName(), absl::StrCat("expected 1 byte, got ", bytes.size()));
  }
  if (bytes[0] != 0 && bytes[0] != 1) {
    return MalformedBytesError(
        TypeName(), absl::StrFormat("expected 0 or 1, got 0x%02x", static_cast<uint8_t>(bytes[0])));
  }
  return bytes[0] == 1;
}

namespace serializer_internal {

void AppendBigEndian32(uint32_t value, std::string* out) { PutBigEndian(value, out); }

uint32_t ReadBigEndian32(std::string_view four_bytes) {
  return *GetBigEndian<uint32_t>(four_bytes.substr(0, 4), "length");
}

}  // namespace serializer_internal
}  // namespace sluice
