// Serializers (their encodings are part of the state format, so they are pinned here) and the
// typed state handles over every backend kind.
#include "statestore/serializer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/typed_state.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::Pair;

template <typename T>
T RoundTrip(const T& value) {
  absl::StatusOr<T> back = Serializer<T>::Deserialize(ToBytes(value));
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : T{};
}

// Byte order of the encodings equals the order of the values, for every pair of `sorted`.
template <typename T>
void ExpectOrderPreserved(const std::vector<T>& sorted) {
  for (size_t i = 0; i + 1 < sorted.size(); ++i) {
    EXPECT_LT(ToBytes(sorted[i]), ToBytes(sorted[i + 1]))
        << Serializer<T>::TypeName() << " #" << i << " and #" << i + 1;
  }
}

template <typename T>
void ExpectMalformed(std::string_view bytes, std::string_view what) {
  absl::StatusOr<T> v = Serializer<T>::Deserialize(bytes);
  ASSERT_FALSE(v.ok()) << Serializer<T>::TypeName() << " accepted " << bytes.size() << " bytes";
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(v.status().message());
  EXPECT_THAT(message, HasSubstr(absl::StrCat("cannot deserialize ", Serializer<T>::TypeName())));
  EXPECT_THAT(message, HasSubstr(std::string(what)));
}

TEST(SerializerTest, TypeNamesAreStable) {
  EXPECT_EQ(Serializer<int32_t>::TypeName(), "int32");
  EXPECT_EQ(Serializer<int64_t>::TypeName(), "int64");
  EXPECT_EQ(Serializer<uint32_t>::TypeName(), "uint32");
  EXPECT_EQ(Serializer<uint64_t>::TypeName(), "uint64");
  EXPECT_EQ(Serializer<double>::TypeName(), "double");
  EXPECT_EQ(Serializer<bool>::TypeName(), "bool");
  EXPECT_EQ(Serializer<std::string>::TypeName(), "string");
  EXPECT_EQ((Serializer<std::pair<int64_t, std::string>>::TypeName()), "pair<int64,string>");
  EXPECT_EQ((Serializer<std::tuple<int32_t, std::string, bool>>::TypeName()),
            "tuple<int32,string,bool>");
  EXPECT_EQ((Serializer<std::pair<std::pair<uint32_t, double>, bool>>::TypeName()),
            "pair<pair<uint32,double>,bool>");
}

TEST(SerializerTest, EncodingsArePinned) {
  // Checkpoints hold these bytes: a change here breaks restoring old state.
  EXPECT_EQ(ToBytes(int64_t{0}), std::string("\x80\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(ToBytes(int64_t{-1}), std::string("\x7f\xff\xff\xff\xff\xff\xff\xff", 8));
  EXPECT_EQ(ToBytes(std::numeric_limits<int64_t>::min()), std::string(8, '\0'));
  EXPECT_EQ(ToBytes(int32_t{258}), std::string("\x80\0\x01\x02", 4));
  EXPECT_EQ(ToBytes(uint32_t{258}), std::string("\0\0\x01\x02", 4));
  EXPECT_EQ(ToBytes(uint64_t{1}), std::string("\0\0\0\0\0\0\0\x01", 8));
  EXPECT_EQ(ToBytes(1.0), std::string("\xbf\xf0\0\0\0\0\0\0", 8));
  EXPECT_EQ(ToBytes(-1.0), std::string("\x40\x0f\xff\xff\xff\xff\xff\xff", 8));
  EXPECT_EQ(ToBytes(true), std::string("\x01", 1));
  EXPECT_EQ(ToBytes(false), std::string("\0", 1));
  EXPECT_EQ(ToBytes(std::string("a\0b", 3)), std::string("a\0b", 3));
  // Fixed-width elements as they are; a variable-width one behind its length unless last.
  EXPECT_EQ(ToBytes(std::pair<uint32_t, std::string>{1, "xy"}), std::string("\0\0\0\x01xy", 6));
  EXPECT_EQ(ToBytes(std::pair<std::string, uint32_t>{"xy", 1}),
            std::string("\0\0\0\x02xy\0\0\0\x01", 10));
}

TEST(SerializerTest, IntegersRoundTrip) {
  for (int32_t v :
       {std::numeric_limits<int32_t>::min(), -1, 0, 1, 42, std::numeric_limits<int32_t>::max()}) {
    EXPECT_EQ(RoundTrip(v), v);
  }
  for (int64_t v : {std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0}, int64_t{1},
                    int64_t{1} << 40, std::numeric_limits<int64_t>::max()}) {
    EXPECT_EQ(RoundTrip(v), v);
  }
  for (uint32_t v : {0u, 1u, 0x80000000u, std::numeric_limits<uint32_t>::max()}) {
    EXPECT_EQ(RoundTrip(v), v);
  }
  for (uint64_t v :
       {uint64_t{0}, uint64_t{1}, uint64_t{1} << 63, std::numeric_limits<uint64_t>::max()}) {
    EXPECT_EQ(RoundTrip(v), v);
  }
}

TEST(SerializerTest, DoublesRoundTripBitForBit) {
  const double values[] = {0.0,
                           -0.0,
                           1.5,
                           -1.5,
                           std::numeric_limits<double>::min(),
                           std::numeric_limits<double>::denorm_min(),
                           -std::numeric_limits<double>::denorm_min(),
                           std::numeric_limits<double>::max(),
                           std::numeric_limits<double>::lowest(),
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN(),
                           -std::numeric_limits<double>::quiet_NaN()};
  for (double v : values) {
    const double back = RoundTrip(v);
    EXPECT_EQ(std::bit_cast<uint64_t>(back), std::bit_cast<uint64_t>(v)) << v;
  }
}

TEST(SerializerTest, BoolsStringsAndCompositesRoundTrip) {
  EXPECT_TRUE(RoundTrip(true));
  EXPECT_FALSE(RoundTrip(false));
  const std::string binary("\0\xff\x01 text", 8);
  EXPECT_EQ(RoundTrip(binary), binary);
  EXPECT_EQ(RoundTrip(std::string()), "");

  using Event = std::pair<int64_t, std::string>;
  EXPECT_EQ(RoundTrip(Event{-7, binary}), (Event{-7, binary}));
  EXPECT_EQ(RoundTrip(Event{0, ""}), (Event{0, ""}));
  using Reversed = std::pair<std::string, int64_t>;
  EXPECT_EQ(RoundTrip(Reversed{binary, 9}), (Reversed{binary, 9}));
  EXPECT_EQ(RoundTrip(Reversed{"", 9}), (Reversed{"", 9}));
  using Row = std::tuple<int32_t, std::string, bool, double, std::string>;
  EXPECT_EQ(RoundTrip(Row{3, "a", true, -2.5, binary}), (Row{3, "a", true, -2.5, binary}));
  EXPECT_EQ(RoundTrip(Row{3, "", false, 0.0, ""}), (Row{3, "", false, 0.0, ""}));
  using Nested = std::pair<std::pair<std::string, std::string>, uint32_t>;
  EXPECT_EQ(RoundTrip(Nested{{"ab", "c"}, 5}), (Nested{{"ab", "c"}, 5}));
  // ("ab", "c") and ("a", "bc") do not run into each other.
  EXPECT_NE(ToBytes(std::pair<std::string, std::string>{"ab", "c"}),
            ToBytes(std::pair<std::string, std::string>{"a", "bc"}));
}

TEST(SerializerTest, IntegerAndDoubleByteOrderIsNumericOrder) {
  ExpectOrderPreserved<int32_t>({std::numeric_limits<int32_t>::min(), -65536, -256, -1, 0, 1, 255,
                                 256, std::numeric_limits<int32_t>::max()});
  ExpectOrderPreserved<int64_t>({std::numeric_limits<int64_t>::min(), -(int64_t{1} << 40), -1, 0, 1,
                                 int64_t{1} << 40, std::numeric_limits<int64_t>::max()});
  ExpectOrderPreserved<uint32_t>({0, 1, 255, 256, 65536, std::numeric_limits<uint32_t>::max()});
  ExpectOrderPreserved<uint64_t>(
      {0, 1, 255, 256, uint64_t{1} << 63, std::numeric_limits<uint64_t>::max()});
  ExpectOrderPreserved<double>(
      {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::lowest(), -1e10, -1.5,
       -1.0, -std::numeric_limits<double>::denorm_min(), -0.0, 0.0,
       std::numeric_limits<double>::denorm_min(), 1e-300, 1.0, 1.5, 1e10,
       std::numeric_limits<double>::max(), std::numeric_limits<double>::infinity()});
  ExpectOrderPreserved<bool>({false, true});

  std::mt19937_64 random(20240611);
  for (int i = 0; i < 20000; ++i) {
    const auto a = static_cast<int64_t>(random());
    const auto b = static_cast<int64_t>(random() >> (random() % 64));
    EXPECT_EQ(a < b, ToBytes(a) < ToBytes(b)) << a << " " << b;
    const auto c = static_cast<int32_t>(random());
    const auto d = static_cast<int32_t>(random());
    EXPECT_EQ(c < d, ToBytes(c) < ToBytes(d)) << c << " " << d;
    const double x = std::bit_cast<double>(random());
    const double y = std::bit_cast<double>(random());
    if (!std::isnan(x) && !std::isnan(y) && x != y) {
      EXPECT_EQ(x < y, ToBytes(x) < ToBytes(y)) << x << " " << y;
    }
  }
}

TEST(SerializerTest, CompositesOfFixedWidthThenAnythingSortElementByElement) {
  using Key = std::pair<int64_t, std::string>;
  ExpectOrderPreserved<Key>({{-5, "zz"}, {-5, "zzz"}, {-1, ""}, {0, "a"}, {0, "b"}, {7, ""}});
  using Triple = std::tuple<uint32_t, int32_t, std::string>;
  ExpectOrderPreserved<Triple>({{0, 5, "x"}, {1, -3, "a"}, {1, -3, "b"}, {1, 2, ""}});
}

TEST(SerializerTest, MalformedBytesAreErrorsNamingTheType) {
  ExpectMalformed<int32_t>("abc", "expected 4 bytes, got 3");
  ExpectMalformed<int64_t>("", "expected 8 bytes, got 0");
  ExpectMalformed<int64_t>("123456789", "expected 8 bytes, got 9");
  ExpectMalformed<uint32_t>("12345", "expected 4 bytes, got 5");
  ExpectMalformed<uint64_t>("1", "expected 8 bytes, got 1");
  ExpectMalformed<double>("1234567", "expected 8 bytes, got 7");
  ExpectMalformed<bool>("", "expected 1 byte, got 0");
  ExpectMalformed<bool>("\x02", "expected 0 or 1, got 0x02");
  ExpectMalformed<bool>(std::string("\x01\x00", 2), "expected 1 byte, got 2");

  using Event = std::pair<int64_t, std::string>;
  ExpectMalformed<Event>("1234", "element 0 (int64) needs 8 bytes, 4 left");
  using Reversed = std::pair<std::string, int64_t>;
  ExpectMalformed<Reversed>(std::string("\0\0", 2), "element 0: its length is cut short");
  ExpectMalformed<Reversed>(std::string("\0\0\0\x09xy", 6), "element 0 says 9 bytes, 2 left");
  ExpectMalformed<Reversed>(std::string("\xff\xff\xff\xffxy", 6),
                            "element 0 says 4294967295 bytes, 2 left");
  ExpectMalformed<Reversed>(std::string("\0\0\0\x02xy1234", 10),
                            "element 1 (int64) needs 8 bytes, 4 left");
  ExpectMalformed<Reversed>(std::string("\0\0\0\x02xy123456789", 15),
                            "1 bytes left after the last");
  using Flags = std::tuple<bool, bool>;
  ExpectMalformed<Flags>(std::string("\x01\x05", 2), "element 1: cannot deserialize bool");
  using Nested = std::pair<std::pair<std::string, bool>, uint32_t>;
  ExpectMalformed<Nested>(std::string("\0\0\0\x03\0\0\0", 7),
                          "element 0: cannot deserialize pair<string,bool>");
}

TEST(SerializerTest, EveryCutOfAValidEncodingIsRejectedOrDecodesWithoutUb) {
  // Whatever bytes arrive, Deserialize answers (ASan/UBSan watch the reads).
  using Row = std::tuple<std::string, int64_t, std::pair<std::string, bool>, std::string>;
  const std::string full = ToBytes(Row{"key", -3, {"inner", true}, "tail"});
  for (size_t n = 0; n < full.size(); ++n) {
    absl::StatusOr<Row> cut = Serializer<Row>::Deserialize(std::string_view(full).substr(0, n));
    // Only the last string may be shortened and still decode.
    if (cut.ok()) {
      EXPECT_GE(n, full.size() - 4) << n;
    }
  }
  std::mt19937 random(7);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes = full;
    bytes[random() % bytes.size()] = static_cast<char>(random());
    Serializer<Row>::Deserialize(bytes).status().IgnoreError();
  }
}

// The typed handles over a real backend of each kind.
class TypedStateTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    KeyedStateBackendOptions o;
    o.kind = GetParam();
    o.clock_ms = [this] { return now_ms_; };
    o.directory = absl::StrCat(testing::TempDir(), "/typed_state_", getpid(), "_",
                               testing::UnitTest::GetInstance()->current_test_info()->name());
    std::replace(o.directory.begin() + testing::TempDir().size(), o.directory.end(), '/', '_');
    directory_ = o.directory;
    o.block_cache_bytes = 8 << 20;
    absl::StatusOr<std::unique_ptr<KeyedStateBackend>> b = KeyedStateBackend::Create(o);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = *std::move(b);
  }
  void TearDown() override {
    backend_.reset();
    std::filesystem::remove_all(directory_);
  }

  int64_t now_ms_ = 1'000'000;
  std::string directory_;
  std::unique_ptr<KeyedStateBackend> backend_;
};

TEST_P(TypedStateTest, ValueStateWithTypedKeysAndNamespaces) {
  TypedKeyedState<int64_t, int64_t> keyed(backend_.get());
  auto count = keyed.GetState(TypedValueState<int64_t>::Descriptor("count"));
  ASSERT_TRUE(count.ok()) << count.status();
  ASSERT_TRUE(keyed.SetCurrentKey(-42).ok());
  EXPECT_EQ(*keyed.CurrentKey(), -42);
  keyed.SetCurrentNamespace(0);  // 8 bytes: not the empty namespace the backend starts with
  EXPECT_EQ(*count->Value(), std::nullopt);
  ASSERT_TRUE(count->Update(std::numeric_limits<int64_t>::min()).ok());
  EXPECT_THAT(*count->Value(), Optional(std::numeric_limits<int64_t>::min()));
  keyed.SetCurrentNamespace(1700000000000);
  EXPECT_EQ(*count->Value(), std::nullopt);
  ASSERT_TRUE(count->Update(7).ok());
  ASSERT_TRUE(keyed.SetCurrentKey(42).ok());
  EXPECT_EQ(*count->Value(), std::nullopt);
  ASSERT_TRUE(keyed.SetCurrentKey(-42).ok());
  EXPECT_THAT(*count->Value(), Optional(int64_t{7}));
  keyed.SetCurrentNamespace(0);
  EXPECT_THAT(*count->Value(), Optional(std::numeric_limits<int64_t>::min()));
  ASSERT_TRUE(count->Clear().ok());
  EXPECT_EQ(*count->Value(), std::nullopt);

  // The free helpers write the same bytes as the typed keyed view.
  ASSERT_TRUE(SetCurrentKey(*backend_, int64_t{-42}).ok());
  SetCurrentNamespace(*backend_, int64_t{1700000000000});
  EXPECT_THAT(*count->Value(), Optional(int64_t{7}));
  EXPECT_EQ(backend_->current_key(), ToBytes(int64_t{-42}));
}

TEST_P(TypedStateTest, DescriptorsNameTheirTypes) {
  const StateDescriptor value = TypedValueState<double>::Descriptor("v").bytes;
  EXPECT_EQ(value.kind, StateKind::kValue);
  EXPECT_EQ(value.value_type, "double");
  EXPECT_EQ(value.key_type, "");
  EXPECT_EQ(TypedListState<std::string>::Descriptor("l").bytes.value_type, "string");
  EXPECT_EQ((TypedMapState<int64_t, bool>::Descriptor("m").bytes.value_type), "map<int64,bool>");
  EXPECT_EQ(
      TypedReducingState<uint64_t>::Descriptor("r", [](uint64_t a, uint64_t b) { return a + b; })
          .bytes.value_type,
      "uint64");
  using Average = TypedAggregatingState<double, std::pair<double, int64_t>, double>;
  EXPECT_EQ(Average::Descriptor("a", {}).bytes.value_type, "pair<double,int64>");
  const auto ttl = TypedValueState<bool>::Descriptor("t").WithTtl(absl::Seconds(5));
  EXPECT_EQ(ttl.bytes.ttl, absl::Seconds(5));
  EXPECT_TRUE(ValidateStateDescriptor(ttl.bytes).ok());

  // Through a typed keyed view the key type is named too; the handle keeps the state's name.
  TypedKeyedState<std::string> keyed(backend_.get());
  auto v = keyed.GetState(TypedValueState<double>::Descriptor("v"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->name(), "v");
  ASSERT_TRUE(keyed.SetCurrentKey("k").ok());
  ASSERT_TRUE(v->Update(-0.5).ok());
  EXPECT_THAT(*v->Value(), Optional(-0.5));
}

TEST_P(TypedStateTest, ListState) {
  using Event = std::pair<int64_t, std::string>;
  auto events = GetState(*backend_, TypedListState<Event>::Descriptor("events"));
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_TRUE(SetCurrentKey(*backend_, std::string("alice")).ok());
  EXPECT_THAT(*events->Get(), IsEmpty());
  ASSERT_TRUE(events->Add({3, "click"}).ok());
  ASSERT_TRUE(events->Add({-1, ""}).ok());
  ASSERT_TRUE(events->Add({3, std::string("\0bin", 4)}).ok());
  EXPECT_THAT(*events->Get(),
              ElementsAre(Pair(3, "click"), Pair(-1, ""), Pair(3, std::string("\0bin", 4))));
  ASSERT_TRUE(events->Update({{9, "only"}}).ok());
  EXPECT_THAT(*events->Get(), ElementsAre(Pair(9, "only")));
  ASSERT_TRUE(events->Update({}).ok());
  EXPECT_THAT(*events->Get(), IsEmpty());
  ASSERT_TRUE(events->Add({1, "x"}).ok());
  ASSERT_TRUE(events->Clear().ok());
  EXPECT_THAT(*events->Get(), IsEmpty());
}

TEST_P(TypedStateTest, MapStateIteratesInNumericKeyOrder) {
  auto prices = GetState(*backend_, TypedMapState<int64_t, double>::Descriptor("prices"));
  ASSERT_TRUE(prices.ok()) << prices.status();
  ASSERT_TRUE(SetCurrentKey(*backend_, uint32_t{7}).ok());
  for (int64_t k : {int64_t{300}, int64_t{-2}, int64_t{0}, int64_t{-300}, int64_t{2}}) {
    ASSERT_TRUE(prices->Put(k, static_cast<double>(k) / 4).ok());
  }
  EXPECT_THAT(*prices->Get(-300), Optional(-75.0));
  EXPECT_EQ(*prices->Get(1), std::nullopt);
  EXPECT_TRUE(*prices->Contains(0));
  EXPECT_FALSE(*prices->Contains(1));
  std::vector<std::pair<int64_t, double>> seen;
  ASSERT_TRUE(prices
                  ->ForEach([&](const int64_t& k, const double& v) {
                    seen.emplace_back(k, v);
                    return true;
                  })
                  .ok());
  EXPECT_THAT(seen, ElementsAre(Pair(-300, -75.0), Pair(-2, -0.5), Pair(0, 0.0), Pair(2, 0.5),
                                Pair(300, 75.0)));
  seen.clear();
  ASSERT_TRUE(prices
                  ->ForEach([&](const int64_t& k, const double& v) {
                    seen.emplace_back(k, v);
                    return seen.size() < 2;
                  })
                  .ok());
  EXPECT_EQ(seen.size(), 2u);
  ASSERT_TRUE(prices->Remove(-2).ok());
  EXPECT_FALSE(*prices->Contains(-2));
  ASSERT_TRUE(prices->Clear().ok());
  EXPECT_FALSE(*prices->Contains(300));
}

TEST_P(TypedStateTest, ReducingState) {
  auto total = GetState(*backend_, TypedReducingState<int64_t>::Descriptor(
                                       "total", [](int64_t a, int64_t b) { return a + b; }));
  ASSERT_TRUE(total.ok()) << total.status();
  ASSERT_TRUE(SetCurrentKey(*backend_, std::string("k")).ok());
  EXPECT_EQ(*total->Get(), std::nullopt);
  for (int64_t v : {5, -12, 100}) ASSERT_TRUE(total->Add(v).ok());
  EXPECT_THAT(*total->Get(), Optional(int64_t{93}));
  ASSERT_TRUE(total->Clear().ok());
  EXPECT_EQ(*total->Get(), std::nullopt);
}

using Average = TypedAggregatingState<double, std::pair<double, int64_t>, double>;
Average::Function AverageFunction() {
  return {
      .create =
          [] {
            return std::pair<double, int64_t>{0.0, 0};
          },
      .add =
          [](std::pair<double, int64_t> acc, const double& v) {
            acc.first += v;
            ++acc.second;
            return acc;
          },
      .result = [](const std::pair<double, int64_t>& acc) { return acc.first / acc.second; },
  };
}

TEST_P(TypedStateTest, AggregatingState) {
  auto average = GetState(*backend_, Average::Descriptor("average", AverageFunction()));
  ASSERT_TRUE(average.ok()) << average.status();
  ASSERT_TRUE(SetCurrentKey(*backend_, std::string("k")).ok());
  EXPECT_EQ(*average->Get(), std::nullopt);
  for (double v : {1.0, 2.0, 6.0}) ASSERT_TRUE(average->Add(v).ok());
  EXPECT_THAT(*average->Get(), Optional(3.0));
  ASSERT_TRUE(average->Clear().ok());
  EXPECT_EQ(*average->Get(), std::nullopt);
}

TEST_P(TypedStateTest, MissingFunctionsAreRefusedWhenDeclared) {
  auto reducing = GetState(*backend_, TypedReducingState<int64_t>::Descriptor("r", nullptr));
  EXPECT_EQ(reducing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reducing.status().message(), HasSubstr("reduce function"));
  Average::Function partial = AverageFunction();
  partial.result = nullptr;
  auto aggregating = GetState(*backend_, Average::Descriptor("a", partial));
  EXPECT_EQ(aggregating.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(aggregating.status().message(), HasSubstr("create, add and result"));
}

TEST_P(TypedStateTest, BytesOfAnotherTypeAreDataLossNamingTheState) {
  ASSERT_TRUE(backend_->SetCurrentKey("k").ok());

  // Each state written through its byte handle with bytes that are no int64.
  ValueState* raw_value = *backend_->GetValueState(StateDescriptor::Value("v"));
  ASSERT_TRUE(raw_value->Update("abc").ok());
  auto value = GetState(*backend_, TypedValueState<int64_t>::Descriptor("v"));
  ASSERT_TRUE(value.ok());
  absl::StatusOr<std::optional<int64_t>> v = value->Value();
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(v.status().message(), HasSubstr("state 'v': stored value: cannot deserialize int64: "
                                              "expected 8 bytes, got 3"));

  auto list = GetState(*backend_, TypedListState<int64_t>::Descriptor("l"));
  ASSERT_TRUE(list.ok());
  ASSERT_TRUE(list->Add(1).ok());
  ASSERT_TRUE(list->bytes()->Add("abc").ok());
  EXPECT_THAT(list->Get().status().message(), HasSubstr("state 'l': stored element 1"));

  auto map = GetState(*backend_, TypedMapState<int64_t, bool>::Descriptor("m"));
  ASSERT_TRUE(map.ok());
  ASSERT_TRUE(map->Put(1, true).ok());
  ASSERT_TRUE(map->bytes()->Put(ToBytes(int64_t{2}), "\x07").ok());
  EXPECT_THAT(*map->Get(1), Optional(true));
  EXPECT_EQ(map->Get(2).status().code(), absl::StatusCode::kDataLoss);
  int called = 0;
  absl::Status walk = map->ForEach([&](const int64_t&, const bool&) {
    ++called;
    return true;
  });
  EXPECT_EQ(called, 1);
  EXPECT_EQ(walk.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(walk.message(), HasSubstr("state 'm': stored map value: cannot deserialize bool: "
                                        "expected 0 or 1, got 0x07"));
  ASSERT_TRUE(map->bytes()->Put("short", ToBytes(true)).ok());
  EXPECT_THAT(map->ForEach([](const int64_t&, const bool&) { return true; }).message(),
              HasSubstr("stored map key"));

  // The reduce function meets the foreign bytes: Add is an error and they stay as they were.
  auto total = GetState(*backend_, TypedReducingState<int64_t>::Descriptor(
                                       "r", [](int64_t a, int64_t b) { return a + b; }));
  ASSERT_TRUE(total.ok());
  ASSERT_TRUE(total->bytes()->Add("xyz").ok());  // the first value is stored as it comes
  absl::Status add = total->Add(5);
  EXPECT_EQ(add.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(add.message(), HasSubstr("state 'r': stored value: cannot deserialize int64"));
  EXPECT_THAT(*total->bytes()->Get(), Optional(std::string("xyz")));
  EXPECT_EQ(total->Get().status().code(), absl::StatusCode::kDataLoss);
  // The error belonged to that call only.
  ASSERT_TRUE(total->Clear().ok());
  ASSERT_TRUE(total->Add(5).ok());
  ASSERT_TRUE(total->Add(6).ok());
  EXPECT_THAT(*total->Get(), Optional(int64_t{11}));
}

TEST(TypedAggregateTest, ACorruptAccumulatorIsKeptAndReported) {
  // What the backend runs: the byte-level functions of the typed descriptor.
  const AggregateFunction f = Average::Descriptor("avg", AverageFunction()).bytes.aggregate;
  const absl::Status added = typed_state_internal::RunCollectingFunctionErrors([&] {
    EXPECT_EQ(f.add("garbage", ToBytes(2.0)), "garbage");
    return absl::OkStatus();
  });
  EXPECT_EQ(added.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(added.message(), HasSubstr("state 'avg': stored accumulator: cannot deserialize "
                                         "pair<double,int64>"));
  const absl::Status result = typed_state_internal::RunCollectingFunctionErrors([&] {
    f.result("garbage");
    return absl::OkStatus();
  });
  EXPECT_EQ(result.code(), absl::StatusCode::kDataLoss);
  const absl::Status fine = typed_state_internal::RunCollectingFunctionErrors([&] {
    const std::string acc = f.add(f.create(), ToBytes(4.0));
    EXPECT_EQ(*Serializer<double>::Deserialize(f.result(acc)), 4.0);
    return absl::OkStatus();
  });
  EXPECT_TRUE(fine.ok()) << fine;
}

INSTANTIATE_TEST_SUITE_P(Backends, TypedStateTest, ::testing::ValuesIn(KeyedStateBackend::Kinds()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace sluice
