// The record format: varints, and reassembly of records split across buffers at every point.
#include "shuffle/record_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace sluice {
namespace {

using ::testing::HasSubstr;

std::string Encode(const std::vector<std::string>& records) {
  std::string out;
  for (const std::string& r : records) {
    char len[kMaxVarintLength];
    out.append(len, EncodeVarint(len, static_cast<uint32_t>(r.size())) - len);
    out += r;
  }
  return out;
}

// Feeds `stream` cut at `cuts` and returns the records read.
std::vector<std::string> Decode(const std::string& stream, const std::vector<size_t>& cuts,
                                size_t max = 1 << 20) {
  RecordDeserializer d(max);
  std::vector<std::string> out;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(stream.size());
  for (size_t end : ends) {
    d.SetBuffer(Buffer::CopyOf(std::string_view(stream).substr(start, end - start)));
    std::string_view rec;
    while (true) {
      absl::StatusOr<bool> got = d.Next(&rec);
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok() || !*got) break;
      out.emplace_back(rec);
    }
    d.TakeBuffer();
    start = end;
  }
  EXPECT_FALSE(d.has_partial_record());
  return out;
}

TEST(VarintTest, RoundTripsBoundaries) {
  for (uint32_t v : {0u, 1u, 127u, 128u, 16383u, 16384u, (1u << 21) - 1, 1u << 21, (1u << 28) - 1,
                     1u << 28, UINT32_MAX}) {
    char buf[kMaxVarintLength];
    const size_t n = EncodeVarint(buf, v) - buf;
    EXPECT_EQ(n, VarintLength(v)) << v;
    constexpr size_t kMax = 1 << 21;
    RecordDeserializer d(kMax);
    // A length alone: the deserializer starts a record of that length and waits for its body,
    // or refuses a length above its maximum.
    d.SetBuffer(Buffer::CopyOf(std::string_view(buf, n)));
    std::string_view rec;
    absl::StatusOr<bool> got = d.Next(&rec);
    if (v > kMax) {
      EXPECT_FALSE(got.ok()) << v;
      continue;
    }
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, v == 0) << v;
    EXPECT_EQ(d.has_partial_record(), v != 0) << v;
  }
}

TEST(RecordDeserializerTest, EverySplitPointOfEveryRecord) {
  const std::vector<std::string> records = {"",
                                            "a",
                                            std::string(127, 'b'),
                                            std::string(128, 'c'),
                                            std::string(300, 'd'),
                                            "",
                                            std::string(20000, 'e')};
  const std::string stream = Encode(records);
  for (size_t cut = 0; cut <= stream.size(); cut += (cut < 400 ? 1 : 97)) {
    EXPECT_EQ(Decode(stream, {cut}), records) << "cut at " << cut;
  }
}

TEST(RecordDeserializerTest, OneByteBuffers) {
  const std::vector<std::string> records = {"x", std::string(200, 'y'), "", "zz"};
  const std::string stream = Encode(records);
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
  EXPECT_EQ(Decode(stream, cuts), records);
}

TEST(RecordDeserializerTest, RandomStreamsAndSplits) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> records(rng() % 20);
    for (std::string& r : records) {
      const size_t size = rng() % 4 == 0 ? rng() % 5000 : rng() % 40;
      r.resize(size);
      for (char& c : r) c = static_cast<char>(rng());
    }
    const std::string stream = Encode(records);
    std::vector<size_t> cuts;
    size_t at = 0;
    while (stream.size() > 0) {
      at += 1 + rng() % 300;
      if (at >= stream.size()) break;
      cuts.push_back(at);
    }
    ASSERT_EQ(Decode(stream, cuts), records) << "round " << round;
  }
}

TEST(RecordDeserializerTest, RejectsLengthAboveTheMaximum) {
  RecordDeserializer d(100);
  d.SetBuffer(Buffer::CopyOf(Encode({std::string(101, 'x')})));
  std::string_view rec;
  absl::StatusOr<bool> got = d.Next(&rec);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("101"));
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("100"));
}

TEST(RecordDeserializerTest, RejectsOverlongVarint) {
  RecordDeserializer d(1 << 20);
  d.SetBuffer(Buffer::CopyOf(std::string("\xff\xff\xff\xff\xff\x01", 6)));
  std::string_view rec;
  absl::StatusOr<bool> got = d.Next(&rec);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("malformed record length"));
  // Split across buffers, too.
  RecordDeserializer split(1 << 20);
  split.SetBuffer(Buffer::CopyOf(std::string("\xff\xff\xff", 3)));
  got = split.Next(&rec);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
  split.TakeBuffer();
  split.SetBuffer(Buffer::CopyOf(std::string("\xff\xff\x01", 3)));
  got = split.Next(&rec);
  EXPECT_FALSE(got.ok());
}

}  // namespace
}  // namespace sluice
