// Key groups: for every parallelism the subtasks' ranges split [0, max parallelism) into
// contiguous, balanced, non-empty pieces; SubtaskForKeyGroup agrees with them; the key hash is
// XXH3 and must never change (state written by one version is read by the next), so known values
// are pinned; ValidateParallelism refuses what the functions do not support, naming the values.
#include "base/key_group.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sluice {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Checks the ranges of every subtask for one (max, parallelism).
void ExpectPartition(uint32_t max, uint32_t parallelism) {
  SCOPED_TRACE(testing::Message() << "max parallelism " << max << ", parallelism " << parallelism);
  uint32_t next = 0;
  const uint32_t smallest = max / parallelism;
  for (uint32_t s = 0; s < parallelism; ++s) {
    const KeyGroupRange r = KeyGroupRangeForSubtask(s, max, parallelism);
    ASSERT_EQ(r.first, next) << "subtask " << s << " " << r.ToString();
    // Balanced: every subtask owns floor or ceil of max / parallelism groups, at least one.
    ASSERT_GE(r.count, 1u) << "subtask " << s;
    ASSERT_TRUE(r.count == smallest || r.count == smallest + 1)
        << "subtask " << s << " owns " << r.count << " groups";
    next = r.end();
  }
  ASSERT_EQ(next, max);
}

// SubtaskForKeyGroup is the inverse of KeyGroupRangeForSubtask, group by group.
void ExpectInverse(uint32_t max, uint32_t parallelism) {
  SCOPED_TRACE(testing::Message() << "max parallelism " << max << ", parallelism " << parallelism);
  for (uint32_t s = 0; s < parallelism; ++s) {
    const KeyGroupRange r = KeyGroupRangeForSubtask(s, max, parallelism);
    for (uint32_t g = r.first; g < r.end(); ++g) {
      ASSERT_EQ(SubtaskForKeyGroup(g, max, parallelism), s) << "group " << g;
    }
  }
}

TEST(KeyGroupTest, RangesPartitionAllGroupsForEveryParallelism) {
  for (uint32_t max : {1u, 2u, 3u, 7u, 10u, 64u, 128u, 1000u}) {
    for (uint32_t p = 1; p <= max; ++p) {
      ExpectPartition(max, p);
      ExpectInverse(max, p);
      if (testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(KeyGroupTest, RangesPartitionAllGroupsAtTheLargestMaxParallelism) {
  for (uint32_t p : {1u, 2u, 3u, 7u, 100u, 127u, 128u, 1000u, 4096u, 32767u, kMaxMaxParallelism}) {
    ExpectPartition(kMaxMaxParallelism, p);
    ExpectInverse(kMaxMaxParallelism, p);
    if (testing::Test::HasFatalFailure()) return;
  }
}

TEST(KeyGroupTest, KnownRanges) {
  EXPECT_EQ(KeyGroupRangeForSubtask(0, 128, 1), (KeyGroupRange{0, 128}));
  EXPECT_EQ(KeyGroupRangeForSubtask(0, 128, 3), (KeyGroupRange{0, 43}));
  EXPECT_EQ(KeyGroupRangeForSubtask(1, 128, 3), (KeyGroupRange{43, 43}));
  EXPECT_EQ(KeyGroupRangeForSubtask(2, 128, 3), (KeyGroupRange{86, 42}));
  EXPECT_EQ(KeyGroupRangeForSubtask(0, 4, 4), (KeyGroupRange{0, 1}));
  EXPECT_EQ(KeyGroupRangeForSubtask(3, 4, 4), (KeyGroupRange{3, 1}));
  EXPECT_EQ(KeyGroupRangeForSubtask(1, 10, 2), (KeyGroupRange{5, 5}));
  EXPECT_EQ(SubtaskForKeyGroup(0, 128, 3), 0u);
  EXPECT_EQ(SubtaskForKeyGroup(127, 128, 3), 2u);
  EXPECT_EQ(SubtaskForKeyGroup(127, 128, 128), 127u);
  EXPECT_EQ(SubtaskForKeyGroup(kMaxMaxParallelism - 1, kMaxMaxParallelism, kMaxMaxParallelism),
            kMaxMaxParallelism - 1);
}

TEST(KeyGroupTest, RangeContainsAndToString) {
  const KeyGroupRange r{10, 5};
  EXPECT_EQ(r.end(), 15u);
  EXPECT_FALSE(r.Contains(9));
  EXPECT_TRUE(r.Contains(10));
  EXPECT_TRUE(r.Contains(14));
  EXPECT_FALSE(r.Contains(15));
  EXPECT_FALSE(r.Contains(0));
  EXPECT_FALSE(r.Contains(UINT32_MAX));
  EXPECT_EQ(r.ToString(), "[10, 14]");

  const KeyGroupRange empty{7, 0};
  EXPECT_FALSE(empty.Contains(7));
  EXPECT_FALSE(empty.Contains(6));
  EXPECT_EQ(empty.ToString(), "[]");
  EXPECT_EQ(KeyGroupRange{}.ToString(), "[]");
  EXPECT_EQ((KeyGroupRange{0, 1}).ToString(), "[0, 0]");
}

// XXH3-64 with seed 0 (xxHash 0.8, whose XXH3 output is stable). Each length below takes another
// of its code paths (0, 1-3, 4-8, 9-16, 17-128, 129-240, above 240 bytes). If one of these
// changes, every key moves to another group and state written before cannot be found.
TEST(KeyGroupTest, KeyHashIsXxh3AndStable) {
  EXPECT_EQ(KeyHash(""), 0x2d06800538d394c2ull);
  EXPECT_EQ(KeyHash("a"), 0xe6c632b61e964e1full);
  EXPECT_EQ(KeyHash("key-1"), 0x2d29f1336b0229f9ull);
  EXPECT_EQ(KeyHash("sluice"), 0x7e13095f1588691dull);
  EXPECT_EQ(KeyHash("user-00042"), 0x7d296e9df5b27eb6ull);
  EXPECT_EQ(KeyHash("The quick brown fox jumps over the lazy dog"), 0xce7d19a5418fb365ull);
  EXPECT_EQ(KeyHash(std::string(200, 'x')), 0x50ef124fb1e4de53ull);
  EXPECT_EQ(KeyHash(std::string(1000, 'x')), 0xc0a4877b962cba82ull);
}

TEST(KeyGroupTest, KeyHashDependsOnEveryByteAndOnlyOnTheBytes) {
  const std::string key = "order-123";
  const std::string copy = key;  // another address, the same bytes
  EXPECT_EQ(KeyHash(key), KeyHash(copy));
  EXPECT_EQ(KeyHash(std::string_view(key)), KeyHash(std::string_view("order-123")));
  // Embedded zero bytes count: keys are serialized bytes, not C strings.
  EXPECT_NE(KeyHash(std::string("a\0b", 3)), KeyHash(std::string("a\0c", 3)));
  EXPECT_NE(KeyHash(std::string("a\0", 2)), KeyHash("a"));
  for (size_t i = 0; i < key.size(); ++i) {
    std::string changed = key;
    changed[i] ^= 1;
    EXPECT_NE(KeyHash(changed), KeyHash(key)) << "byte " << i;
  }
}

TEST(KeyGroupTest, KeyGroupForKeyIsTheHashModuloMaxParallelism) {
  for (const char* key : {"", "a", "key-1", "sluice", "user-00042"}) {
    for (uint32_t max : {1u, 2u, 128u, 1000u, kMaxMaxParallelism}) {
      const uint32_t g = KeyGroupForKey(key, max);
      EXPECT_EQ(g, KeyHash(key) % max) << key << " " << max;
      EXPECT_EQ(g, KeyGroupForHash(KeyHash(key), max));
      EXPECT_LT(g, max);
    }
  }
  EXPECT_EQ(KeyGroupForKey("sluice", kDefaultMaxParallelism), 0x7e13095f1588691dull % 128);
}

TEST(KeyGroupTest, KeysSpreadOverAllGroups) {
  // Not a statistical test: 100 keys per group on average, none should be left empty.
  constexpr uint32_t kMax = kDefaultMaxParallelism;
  std::vector<int> per_group(kMax, 0);
  for (int i = 0; i < 100 * static_cast<int>(kMax); ++i) {
    ++per_group[KeyGroupForKey("key-" + std::to_string(i), kMax)];
  }
  for (uint32_t g = 0; g < kMax; ++g) EXPECT_GT(per_group[g], 0) << "group " << g;
}

TEST(KeyGroupTest, ValidateParallelismAcceptsTheSupportedRange) {
  EXPECT_TRUE(ValidateParallelism(1, 1).ok());
  EXPECT_TRUE(ValidateParallelism(1, kDefaultMaxParallelism).ok());
  EXPECT_TRUE(ValidateParallelism(kDefaultMaxParallelism, kDefaultMaxParallelism).ok());
  EXPECT_TRUE(ValidateParallelism(kMaxMaxParallelism, kMaxMaxParallelism).ok());
  EXPECT_TRUE(ValidateParallelism(3, kMaxMaxParallelism).ok());
}

TEST(KeyGroupTest, ValidateParallelismErrorsNameTheValues) {
  absl::Status s = ValidateParallelism(0, 128);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("parallelism 0"), HasSubstr("128")));

  s = ValidateParallelism(129, 128);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("parallelism 129"), HasSubstr("max parallelism 128")));

  s = ValidateParallelism(1, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("max parallelism 0"));

  s = ValidateParallelism(1, kMaxMaxParallelism + 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("max parallelism 32769"), HasSubstr("32768")));

  s = ValidateParallelism(0, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = ValidateParallelism(UINT32_MAX, UINT32_MAX);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sluice
