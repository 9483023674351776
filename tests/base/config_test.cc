// Config: `key = value` text parses into settings, typed getters read them or fall back, and every
// error names the key (or the line) and what was wrong; CheckKnown catches typos under a prefix.
#include "base/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

Config MustParse(std::string_view text) {
  absl::StatusOr<Config> c = Config::Parse(text);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : Config();
}

TEST(ConfigTest, ParsesKeysAndValuesSkippingBlankLinesAndComments) {
  const Config c = MustParse(
      "# a comment\n"
      "\n"
      "shuffle.service = net\n"
      "   shuffle.buffer-timeout-ms=250   \n"
      "\t# an indented comment\n"
      "name = a = b\n"  // only the first '=' separates
      "empty =\n"
      "crlf = yes\r\n"
      "last = no newline");
  EXPECT_EQ(c.values().size(), 6u);
  EXPECT_EQ(c.GetString("shuffle.service", "?"), "net");
  EXPECT_EQ(c.GetString("shuffle.buffer-timeout-ms", "?"), "250");
  EXPECT_EQ(c.GetString("name", "?"), "a = b");
  EXPECT_TRUE(c.Has("empty"));
  EXPECT_EQ(c.GetString("empty", "?"), "");
  EXPECT_EQ(c.GetString("crlf", "?"), "yes");
  EXPECT_EQ(c.GetString("last", "?"), "no newline");
  EXPECT_FALSE(c.Has("# a comment"));
}

TEST(ConfigTest, EmptyTextIsAnEmptyConfig) {
  EXPECT_TRUE(MustParse("").values().empty());
  EXPECT_TRUE(MustParse("\n\n  \n# only comments\n").values().empty());
}

TEST(ConfigTest, ParseErrorsNameTheLine) {
  absl::StatusOr<Config> c = Config::Parse("a = 1\n\n# ok\nthis line has no equals sign\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(),
              AllOf(HasSubstr("line 4"), HasSubstr("this line has no equals sign")));

  c = Config::Parse("a = 1\n  = value without a key\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), AllOf(HasSubstr("line 2"), HasSubstr("empty key")));
}

TEST(ConfigTest, AKeySetTwiceIsAnError) {
  absl::StatusOr<Config> c = Config::Parse("a = 1\nb = 2\na = 3\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), AllOf(HasSubstr("line 3"), HasSubstr("a is set twice")));
}

TEST(ConfigTest, AnInfiniteDurationIsRefused) {
  Config c;
  c.Set("t", "inf");
  EXPECT_FALSE(c.GetDuration("t", absl::Seconds(1)).ok());
}

TEST(ConfigTest, SetAndHas) {
  Config c;
  EXPECT_FALSE(c.Has("k"));
  c.Set("k", "v1");
  EXPECT_TRUE(c.Has("k"));
  c.Set("k", "v2");
  EXPECT_EQ(c.GetString("k", "?"), "v2");
  EXPECT_EQ(c.values().size(), 1u);
}

TEST(ConfigTest, GetStringFallsBackWhenTheKeyIsMissing) {
  Config c;
  c.Set("present", "value");
  EXPECT_EQ(c.GetString("present", "fallback"), "value");
  EXPECT_EQ(c.GetString("absent", "fallback"), "fallback");
  EXPECT_EQ(c.GetString("Present", "fallback"), "fallback");  // keys are case-sensitive
}

TEST(ConfigTest, GetIntReadsIntegersWithinInclusiveBounds) {
  Config c;
  c.Set("low", "-1");
  c.Set("high", "1024");
  c.Set("big", "9223372036854775807");
  EXPECT_EQ(c.GetInt("low", 0, -1, 1024).value(), -1);
  EXPECT_EQ(c.GetInt("high", 0, -1, 1024).value(), 1024);
  EXPECT_EQ(c.GetInt("absent", 7, 0, 10).value(), 7);
  EXPECT_EQ(c.GetInt("big", 0, INT64_MIN, INT64_MAX).value(), INT64_MAX);
}

TEST(ConfigTest, GetIntErrorsNameTheKeyAndTheValue) {
  Config c;
  c.Set("shuffle.exclusive-buffers-per-channel", "two");
  c.Set("shuffle.floating-buffers-per-gate", "1.5");
  c.Set("empty", "");
  c.Set("too-big", "99999999999999999999");
  c.Set("above", "1025");
  c.Set("below", "0");

  absl::StatusOr<int64_t> v = c.GetInt("shuffle.exclusive-buffers-per-channel", 2, 1, 1024);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), AllOf(HasSubstr("shuffle.exclusive-buffers-per-channel"),
                                          HasSubstr("\"two\""), HasSubstr("not an integer")));

  for (const char* key : {"shuffle.floating-buffers-per-gate", "empty", "too-big"}) {
    v = c.GetInt(key, 0, INT64_MIN, INT64_MAX);
    ASSERT_FALSE(v.ok()) << key;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(v.status().message(), AllOf(HasSubstr(key), HasSubstr("not an integer")));
  }

  v = c.GetInt("above", 0, 1, 1024);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(),
              AllOf(HasSubstr("above"), HasSubstr("1025"), HasSubstr("[1, 1024]")));
  v = c.GetInt("below", 5, 1, 1024);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), AllOf(HasSubstr("below"), HasSubstr("[1, 1024]")));
}

TEST(ConfigTest, GetBytesReadsSizesWithBinarySuffixes) {
  Config c;
  const struct {
    const char* text;
    uint64_t bytes;
  } cases[] = {
      {"0", 0},
      {"100", 100},
      {"64k", 64 * 1024},
      {"64K", 64 * 1024},
      {"64kb", 64 * 1024},
      {"64KB", 64 * 1024},
      {"4m", 4u << 20},
      {"4MB", 4u << 20},
      {"2g", uint64_t{2} << 30},
      {"3b", 3},
      {"16777215g", uint64_t{16777215} << 30},
      {"18446744073709551615", UINT64_MAX},
  };
  for (const auto& t : cases) {
    c.Set("size", t.text);
    absl::StatusOr<uint64_t> v = c.GetBytes("size", 0);
    ASSERT_TRUE(v.ok()) << t.text << ": " << v.status();
    EXPECT_EQ(*v, t.bytes) << t.text;
  }
  EXPECT_EQ(c.GetBytes("absent", 12345).value(), 12345u);
}

TEST(ConfigTest, GetBytesErrorsNameTheKeyAndTheValue) {
  Config c;
  for (const char* bad : {"", "k", "kb", "b", "1.5m", "-1", "12x", "1t", "ten", "1 2k",
                          "17179869184g" /* 2^64 bytes */, "18446744073709551616"}) {
    c.Set("shuffle.max-record-size", bad);
    absl::StatusOr<uint64_t> v = c.GetBytes("shuffle.max-record-size", 1);
    ASSERT_FALSE(v.ok()) << "\"" << bad << "\" read as " << *v;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(v.status().message(),
                AllOf(HasSubstr("shuffle.max-record-size"),
                      HasSubstr("\"" + std::string(bad) + "\""), HasSubstr("not a size")));
  }
}

TEST(ConfigTest, GetDurationReadsAbslDurations) {
  Config c;
  const struct {
    const char* text;
    absl::Duration d;
  } cases[] = {
      {"0", absl::ZeroDuration()},      {"250ms", absl::Milliseconds(250)},
      {"10s", absl::Seconds(10)},       {"1m", absl::Minutes(1)},
      {"1h30m", absl::Minutes(90)},     {"1.5s", absl::Milliseconds(1500)},
      {"20us", absl::Microseconds(20)},
  };
  for (const auto& t : cases) {
    c.Set("timeout", t.text);
    absl::StatusOr<absl::Duration> v = c.GetDuration("timeout", absl::Seconds(99));
    ASSERT_TRUE(v.ok()) << t.text << ": " << v.status();
    EXPECT_EQ(*v, t.d) << t.text;
  }
  EXPECT_EQ(c.GetDuration("absent", absl::Seconds(10)).value(), absl::Seconds(10));
}

TEST(ConfigTest, GetDurationErrorsNameTheKeyAndTheValue) {
  Config c;
  for (const char* bad : {"", "10", "ten seconds", "-5s", "5 s", "s"}) {
    c.Set("shuffle.partition-request-timeout", bad);
    absl::StatusOr<absl::Duration> v =
        c.GetDuration("shuffle.partition-request-timeout", absl::Seconds(1));
    ASSERT_FALSE(v.ok()) << "\"" << bad << "\" read as " << *v;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(v.status().message(),
                AllOf(HasSubstr("shuffle.partition-request-timeout"),
                      HasSubstr("\"" + std::string(bad) + "\""), HasSubstr("not a duration")));
  }
}

TEST(ConfigTest, CheckKnownAcceptsKnownKeysAndIgnoresOtherPrefixes) {
  const Config c = MustParse(
      "shuffle.service = local\n"
      "shuffle.buffer-timeout-ms = 10\n"
      "net.engine = uring\n"
      "shuffle = not under the prefix\n"
      "shufflex.key = neither\n");
  EXPECT_TRUE(c.CheckKnown("shuffle.", {"shuffle.service", "shuffle.buffer-timeout-ms"}).ok());
  EXPECT_TRUE(c.CheckKnown("state.", {}).ok());
  EXPECT_TRUE(Config().CheckKnown("", {}).ok());
}

TEST(ConfigTest, CheckKnownNamesEveryUnknownKeyUnderThePrefix) {
  const Config c = MustParse(
      "shuffle.service = local\n"
      "shuffle.servce = net\n"  // the typo a user makes
      "net.engine = uring\n");
  absl::Status s = c.CheckKnown("shuffle.", {"shuffle.service", "shuffle.max-record-size"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("unknown option shuffle.servce"), HasSubstr("shuffle.service"),
                    HasSubstr("shuffle.max-record-size"), Not(HasSubstr("net.engine"))));

  const Config two = MustParse("shuffle.a = 1\nshuffle.b = 2\nshuffle.service = x\n");
  s = two.CheckKnown("shuffle.", {"shuffle.service"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("unknown options shuffle.a, shuffle.b"));

  // An empty prefix checks every key.
  s = c.CheckKnown("", {"shuffle.service", "shuffle.servce"});
  EXPECT_THAT(s.message(), HasSubstr("unknown option net.engine"));
}

}  // namespace
}  // namespace sluice
