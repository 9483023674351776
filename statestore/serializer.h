// Serializer<T>: how a value of type T becomes the bytes that keyed state stores (state.h), and
// back. The encodings are part of the state format (a change makes existing checkpoints
// unreadable), and each names itself with TypeName() for the query service. Stateless functions:
// thread-safe.
//
// Encodings, chosen so that byte order is value order where that is cheap (map state iterates its
// user keys in byte order):
//  - integers: fixed width, big-endian; signed ones with the sign bit flipped, so that INT64_MIN
//    is 00 00 .. 00, -1 is 7f ff .. ff, 0 is 80 00 .. 00;
//  - double: its IEEE 754 bits, big-endian, with the sign bit flipped when clear and every bit
//    flipped when set: -inf < negative < -0.0 < +0.0 < positive < +inf, NaNs beyond the
//    infinities; every bit pattern round-trips;
//  - bool: one byte, 0 or 1;
//  - std::string: its bytes as they are;
//  - std::pair and std::tuple: the elements in order, fixed-width ones as they are, any other one
//    behind a 4-byte big-endian length unless it is the last, which takes the rest. A composite
//    of fixed-width elements followed by anything sorts element by element; a variable-width
//    element that is not last sorts by length first.
//
// Deserialize accepts exactly the bytes that Serialize writes: anything else is InvalidArgument
// naming the type and what is wrong. Other types become storable by specializing Serializer<T>
// (see StateSerializable); one whose encoding always has the same size declares kFixedWidth.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace sluice {

// Specialized for every storable type; see the concept below for what a specialization holds.
template <typename T>
struct Serializer;

// A type with a Serializer: TypeName() (a stable name such as "int64"), Serialize(value, out)
// that appends the encoding of `value` to `*out`, and Deserialize(bytes) that decodes one whole
// encoding or returns an error.
template <typename T>
concept StateSerializable = requires(const T& value, std::string* out, std::string_view bytes) {
  { Serializer<T>::TypeName() } -> std::convertible_to<std::string>;
  Serializer<T>::Serialize(value, out);
  { Serializer<T>::Deserialize(bytes) } -> std::same_as<absl::StatusOr<T>>;
};

// A serializable type whose encoding is always Serializer<T>::kFixedWidth bytes.
template <typename T>
concept FixedWidthSerializable = StateSerializable<T> && requires {
  { Serializer<T>::kFixedWidth } -> std::convertible_to<size_t>;
};

// The encoding of `value`.
template <StateSerializable T>
std::string ToBytes(const T& value) {
  std::string out;
  Serializer<T>::Serialize(value, &out);
  return out;
}

// InvalidArgument "cannot deserialize <type_name>: <what>", for Deserialize implementations.
absl::Status MalformedBytesError(std::string_view type_name, std::string_view what);

template <>
struct Serializer<int32_t> {
  static constexpr size_t kFixedWidth = 4;
  static std::string TypeName() { return "int32"; }
  static void Serialize(int32_t value, std::string* out);
  static absl::StatusOr<int32_t> Deserialize(std::string_view bytes);
};

template <>
struct Serializer<int64_t> {
  static constexpr size_t kFixedWidth = 8;
  static std::string TypeName() { return "int64"; }
  static void Serialize(int64_t value, std::string* out);
  static absl::StatusOr<int64_t> Deserialize(std::string_view bytes);
};

template <>
struct Serializer<uint32_t> {
  static constexpr size_t kFixedWidth = 4;
  static std::string TypeName() { return "uint32"; }
  static void Serialize(uint32_t value, std::string* out);
  static absl::StatusOr<uint32_t> Deserialize(std::string_view bytes);
};

template <>
struct Serializer<uint64_t> {
  static constexpr size_t kFixedWidth = 8;
  static std::string TypeName() { return "uint64"; }
  static void Serialize(uint64_t value, std::string* out);
  static absl::StatusOr<uint64_t> Deserialize(std::string_view bytes);
};

template <>
struct Serializer<double> {
  static constexpr size_t kFixedWidth = 8;
  static std::string TypeName() { return "double"; }
  static void Serialize(double value, std::string* out);
  static absl::StatusOr<double> Deserialize(std::string_view bytes);
};

template <>
struct Serializer<bool> {
  static constexpr size_t kFixedWidth = 1;
  static std::string TypeName() { return "bool"; }
  static void Serialize(bool value, std::string* out);
  static absl::StatusOr<bool> Deserialize(std::string_view bytes);
};

template <>
struct Serializer<std::string> {
  static std::string TypeName() { return "string"; }
  static void Serialize(const std::string& value, std::string* out) { out->append(value); }
  static absl::StatusOr<std::string> Deserialize(std::string_view bytes) {
    return std::string(bytes);
  }
};

namespace serializer_internal {

void AppendBigEndian32(uint32_t value, std::string* out);
// REQUIRES: at least 4 bytes.
uint32_t ReadBigEndian32(std::string_view four_bytes);

// std::pair and std::tuple, through std::get and std::tuple_element.
template <typename Tuple, size_t... I>
struct CompositeSerializer {
  static std::string TypeName(std::string_view tag) {
    std::string name = absl::StrCat(std::string(tag), "<");
    ((name += (I == 0 ? "" : ","), name += Serializer<std::tuple_element_t<I, Tuple>>::TypeName()),
     ...);
    name += ">";
    return name;
  }

  static void Serialize(const Tuple& value, std::string* out) {
    (SerializeElement<std::tuple_element_t<I, Tuple>>(std::get<I>(value), I + 1 == sizeof...(I),
                                                      out),
     ...);
  }

  static absl::StatusOr<Tuple> Deserialize(std::string_view tag, std::string_view bytes) {
    const std::string name = TypeName(tag);
    std::tuple<std::optional<std::tuple_element_t<I, Tuple>>...> elements;
    absl::Status status;
    // Left to right, stopping at the first error.
    const bool ok =
        ((status = TakeElement(name, I, I + 1 == sizeof...(I), &bytes, &std::get<I>(elements)))
             .ok() &&
         ...);
    if (!ok) return status;
    if (!bytes.empty()) {
      return MalformedBytesError(name, absl::StrCat(bytes.size(), " bytes left after the last"));
    }
    return Tuple(*std::move(std::get<I>(elements))...);
  }

 private:
  template <typename T>
  static void SerializeElement(const T& value, bool last, std::string* out) {
    if (FixedWidthSerializable<T> || last) {
      Serializer<T>::Serialize(value, out);
      return;
    }
    // REQUIRES: the element's encoding is shorter than 4 GiB.
    const size_t at = out->size();
    out->append(4, '\0');
    Serializer<T>::Serialize(value, out);
    std::string length;
    AppendBigEndian32(static_cast<uint32_t>(out->size() - at - 4), &length);
    out->replace(at, 4, length);
  }

  template <typename T>
  static absl::Status TakeElement(const std::string& name, size_t index, bool last,
                                  std::string_view* bytes, std::optional<T>* element) {
    std::string_view encoded;
    if constexpr (FixedWidthSerializable<T>) {
      constexpr size_t width = Serializer<T>::kFixedWidth;
      if (bytes->size() < width) {
        return MalformedBytesError(
            name, absl::StrCat("element ", index, " (", Serializer<T>::TypeName(), ") needs ",
                               width, " bytes, ", bytes->size(), " left"));
      }
      encoded = bytes->substr(0, width);
    } else if (last) {
      encoded = *bytes;
    } else {
      if (bytes->size() < 4) {
        return MalformedBytesError(name,
                                   absl::StrCat("element ", index, ": its length is cut short"));
      }
      const uint32_t length = ReadBigEndian32(bytes->substr(0, 4));
      bytes->remove_prefix(4);
      if (bytes->size() < length) {
        return MalformedBytesError(name, absl::StrCat("element ", index, " says ", length,
                                                      " bytes, ", bytes->size(), " left"));
      }
      encoded = bytes->substr(0, length);
    }
    bytes->remove_prefix(encoded.size());
    absl::StatusOr<T> value = Serializer<T>::Deserialize(encoded);
    if (!value.ok()) {
      return MalformedBytesError(name,
                                 absl::StrCat("element ", index, ": ", value.status().message()));
    }
    element->emplace(*std::move(value));
    return absl::OkStatus();
  }
};

template <typename Tuple, typename Indices>
struct CompositeFor;
template <typename Tuple, size_t... I>
struct CompositeFor<Tuple, std::index_sequence<I...>> {
  using Type = CompositeSerializer<Tuple, I...>;
};
template <typename Tuple>
using Composite =
    typename CompositeFor<Tuple, std::make_index_sequence<std::tuple_size_v<Tuple>>>::Type;

}  // namespace serializer_internal

template <StateSerializable A, StateSerializable B>
struct Serializer<std::pair<A, B>> {
  static std::string TypeName() {
    return serializer_internal::Composite<std::pair<A, B>>::TypeName("pair");
  }
  static void Serialize(const std::pair<A, B>& value, std::string* out) {
    serializer_internal::Composite<std::pair<A, B>>::Serialize(value, out);
  }
  static absl::StatusOr<std::pair<A, B>> Deserialize(std::string_view bytes) {
    return serializer_internal::Composite<std::pair<A, B>>::Deserialize("pair", bytes);
  }
};

template <StateSerializable... T>
requires(sizeof...(T) > 0) struct Serializer<std::tuple<T...>> {
  static std::string TypeName() {
    return serializer_internal::Composite<std::tuple<T...>>::TypeName("tuple");
  }
  static void Serialize(const std::tuple<T...>& value, std::string* out) {
    serializer_internal::Composite<std::tuple<T...>>::Serialize(value, out);
  }
  static absl::StatusOr<std::tuple<T...>> Deserialize(std::string_view bytes) {
    return serializer_internal::Composite<std::tuple<T...>>::Deserialize("tuple", bytes);
  }
};

}  // namespace sluice
