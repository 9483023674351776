// The frame header: every field survives a round trip, and a header that cannot be trusted is
// refused with an error naming what was wrong.
#include "net/frame.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace sluice::net {
namespace {

using ::testing::HasSubstr;

// Abseil's string_view is its own type here; gtest prints a std::string readably.
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::string Encode(const FrameHeader& h) {
  std::string out(kFrameHeaderSize, '\xAA');
  EncodeFrameHeader(h, out.data());
  return out;
}

TEST(FrameTest, RoundTripKeepsEveryField) {
  FrameHeader h;
  h.type = static_cast<uint8_t>(FrameType::kFirstUserType) + 7;
  h.flags = 0xBEEF;
  h.channel = 0x01020304;
  h.length = 123456;
  h.backlog = 0xFFFFFFFF;
  h.sequence = 0x7FFFFFFE;
  const std::string wire = Encode(h);
  ASSERT_EQ(wire.size(), kFrameHeaderSize);

  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(wire.data(), kDefaultMaxFrameSize);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->type, h.type);
  EXPECT_EQ(back->flags, h.flags);
  EXPECT_EQ(back->channel, h.channel);
  EXPECT_EQ(back->length, h.length);
  EXPECT_EQ(back->backlog, h.backlog);
  EXPECT_EQ(back->sequence, h.sequence);
}

TEST(FrameTest, RoundTripOfZeroedHeader) {
  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(Encode(FrameHeader{}).data(), 0);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->type, 0);
  EXPECT_EQ(back->flags, 0);
  EXPECT_EQ(back->channel, 0u);
  EXPECT_EQ(back->length, 0u);
  EXPECT_EQ(back->backlog, 0u);
  EXPECT_EQ(back->sequence, 0u);
}

// The layout is a wire contract shared with other builds: pin it byte by byte.
TEST(FrameTest, WireLayoutIsLittleEndianAndFixed) {
  FrameHeader h;
  h.type = 0x11;
  h.flags = 0x2233;
  h.channel = 0x44556677;
  h.length = 0x00000102;
  h.backlog = 0x8899AABB;
  h.sequence = 0xCCDDEEFF;
  const std::string w = Encode(h);
  const unsigned char expected[kFrameHeaderSize] = {
      0x53,          0x4C,              // magic "SL"
      kFrameVersion,                    // version
      0x11,                             // type
      0x33,          0x22,              // flags
      0x00,          0x00,              // reserved
      0x77,          0x66, 0x55, 0x44,  // channel
      0x02,          0x01, 0x00, 0x00,  // length
      0xBB,          0xAA, 0x99, 0x88,  // backlog
      0xFF,          0xEE, 0xDD, 0xCC,  // sequence
  };
  EXPECT_EQ(std::memcmp(w.data(), expected, kFrameHeaderSize), 0);
}

TEST(FrameTest, LengthAtTheLimitIsAccepted) {
  FrameHeader h;
  h.length = 4096;
  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(Encode(h).data(), 4096);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->length, 4096u);
}

TEST(FrameTest, BadMagicIsRefusedNamingTheMagic) {
  std::string w = Encode(FrameHeader{});
  w[0] = 'G';  // "GET / HTTP/1.1" and other strangers
  w[1] = 'E';
  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(w.data(), kDefaultMaxFrameSize);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(back.status()), HasSubstr("magic"));
  EXPECT_THAT(Msg(back.status()), HasSubstr("0x4547"));  // what arrived
  EXPECT_THAT(Msg(back.status()), HasSubstr("0x4c53"));  // what was expected
}

TEST(FrameTest, UnsupportedVersionIsRefusedNamingBothVersions) {
  std::string w = Encode(FrameHeader{});
  w[2] = static_cast<char>(kFrameVersion + 1);
  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(w.data(), kDefaultMaxFrameSize);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(back.status()), HasSubstr("version"));
  EXPECT_THAT(Msg(back.status()), HasSubstr(std::to_string(kFrameVersion + 1)));
}

TEST(FrameTest, LengthAboveTheLimitIsRefusedNamingTheLimit) {
  FrameHeader h;
  h.type = static_cast<uint8_t>(FrameType::kFirstUserType);
  h.channel = 9;
  h.length = 1048577;
  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(Encode(h).data(), 1048576);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(back.status()), HasSubstr("1048576"));  // the limit
  EXPECT_THAT(Msg(back.status()), HasSubstr("1048577"));  // the offending length
  EXPECT_THAT(Msg(back.status()), HasSubstr("max_frame_size"));
}

TEST(FrameTest, HugeLengthWithDefaultLimitNamesTheDefault) {
  FrameHeader h;
  h.length = std::numeric_limits<uint32_t>::max();
  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(Encode(h).data(), kDefaultMaxFrameSize);
  ASSERT_FALSE(back.ok());
  EXPECT_THAT(Msg(back.status()), HasSubstr(std::to_string(kDefaultMaxFrameSize)));
  EXPECT_THAT(Msg(back.status()), HasSubstr("4294967295"));
}

// Magic is checked before the version, and the version before the length: the first thing wrong
// is the one reported.
TEST(FrameTest, FirstProblemIsReported) {
  FrameHeader h;
  h.length = 100;
  std::string w = Encode(h);
  w[0] = 0;
  w[2] = 99;
  absl::StatusOr<FrameHeader> back = DecodeFrameHeader(w.data(), 10);
  ASSERT_FALSE(back.ok());
  EXPECT_THAT(Msg(back.status()), HasSubstr("magic"));

  w = Encode(h);
  w[2] = 99;
  back = DecodeFrameHeader(w.data(), 10);
  ASSERT_FALSE(back.ok());
  EXPECT_THAT(Msg(back.status()), HasSubstr("version"));
}

TEST(FrameTest, TypeNames) {
  EXPECT_EQ(FrameTypeName(static_cast<uint8_t>(FrameType::kHello)), "hello");
  EXPECT_EQ(FrameTypeName(static_cast<uint8_t>(FrameType::kHelloAck)), "hello-ack");
  EXPECT_EQ(FrameTypeName(static_cast<uint8_t>(FrameType::kError)), "error");
  EXPECT_EQ(FrameTypeName(static_cast<uint8_t>(FrameType::kPing)), "ping");
  EXPECT_EQ(FrameTypeName(static_cast<uint8_t>(FrameType::kPong)), "pong");
  EXPECT_EQ(FrameTypeName(200), "200");
}

}  // namespace
}  // namespace sluice::net
