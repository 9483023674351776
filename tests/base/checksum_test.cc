// Crc32c: the published CRC-32C check values, and extending a checksum piece by piece gives the
// same result as one pass.
#include "base/checksum.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {
namespace {

uint32_t Crc(std::string_view s) { return Crc32c(0, s.data(), s.size()); }

// Bit-at-a-time CRC-32C straight from the definition, independent of both fast paths.
uint32_t ReferenceCrc32c(const std::vector<unsigned char>& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc(""), 0u);
  EXPECT_EQ(Crc("a"), 0xC1D04330u);
  EXPECT_EQ(Crc("abc"), 0x364B3FB7u);
  EXPECT_EQ(Crc("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc("The quick brown fox jumps over the lazy dog"), 0x22620404u);
}

// RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32cTest, Rfc3720Vectors) {
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc(zeros), 0x8A9136AAu);
  std::string ones(32, '\xff');
  EXPECT_EQ(Crc(ones), 0x62A8AB43u);
  std::string ascending(32, '\0');
  std::string descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[static_cast<size_t>(i)] = static_cast<char>(i);
    descending[static_cast<size_t>(i)] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc(descending), 0x113FDB5Cu);
}

TEST(Crc32cTest, MatchesTheDefinitionForEveryLengthAndAlignment) {
  std::mt19937 rng(11);
  std::vector<unsigned char> data(300);
  for (unsigned char& b : data) b = static_cast<unsigned char>(rng());
  // Lengths around the 8-byte word loop and odd starting addresses exercise the byte tails.
  for (size_t offset = 0; offset < 9; ++offset) {
    for (size_t n = 0; offset + n <= data.size(); n += (n < 40 ? 1 : 37)) {
      const std::vector<unsigned char> piece(data.begin() + static_cast<long>(offset),
                                             data.begin() + static_cast<long>(offset + n));
      ASSERT_EQ(Crc32c(0, data.data() + offset, n), ReferenceCrc32c(piece))
          << "offset " << offset << " length " << n;
    }
  }
}

TEST(Crc32cTest, IncrementalEqualsOneShot) {
  std::mt19937 rng(12);
  std::string data(10'000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  const uint32_t whole = Crc(data);

  for (int trial = 0; trial < 200; ++trial) {
    uint32_t crc = 0;
    size_t pos = 0;
    while (pos < data.size()) {
      const size_t n = std::min<size_t>(rng() % 64, data.size() - pos);  // includes empty pieces
      crc = Crc32c(crc, data.data() + pos, n);
      pos += n;
    }
    ASSERT_EQ(crc, whole) << "trial " << trial;
  }

  // Extending by nothing changes nothing.
  EXPECT_EQ(Crc32c(whole, data.data(), 0), whole);
  // Every split point of a short input.
  const std::string_view check = "123456789";
  for (size_t split = 0; split <= check.size(); ++split) {
    EXPECT_EQ(Crc32c(Crc32c(0, check.data(), split), check.data() + split, check.size() - split),
              0xE3069283u)
        << "split at " << split;
  }
}

TEST(Crc32cTest, DetectsASingleFlippedBit) {
  std::string data(4096, 'x');
  const uint32_t clean = Crc(data);
  for (size_t byte = 0; byte < data.size(); byte += 97) {
    for (int bit = 0; bit < 8; ++bit) {
      data[byte] = static_cast<char>(data[byte] ^ (1 << bit));
      EXPECT_NE(Crc(data), clean) << "byte " << byte << " bit " << bit;
      data[byte] = static_cast<char>(data[byte] ^ (1 << bit));
    }
  }
  EXPECT_EQ(Crc(data), clean);
}

}  // namespace
}  // namespace sluice
