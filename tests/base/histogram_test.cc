// Histogram: percentiles within 1% of the exact value from a sorted array, for several
// distributions; Merge equals recording everything into one; buckets tile the whole range.
#include "base/histogram.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace sluice {
namespace {

using ::testing::HasSubstr;

constexpr double kMaxRelativeError = 0.01;
constexpr double kQuantiles[] = {0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0};

// The ceil(q * n)-th smallest value (1-based), as Histogram::Percentile defines it.
uint64_t ExactPercentile(const std::vector<uint64_t>& sorted, double q) {
  const uint64_t n = sorted.size();
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(n)));
  rank = std::clamp<uint64_t>(rank, 1, n);
  return sorted[rank - 1];
}

void ExpectAccurate(const std::vector<uint64_t>& values, const char* distribution) {
  Histogram h;
  for (uint64_t v : values) h.Record(v);
  std::vector<uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());

  ASSERT_EQ(h.count(), values.size());
  EXPECT_EQ(h.min(), sorted.front());
  EXPECT_EQ(h.max(), sorted.back());
  long double sum = 0;
  for (uint64_t v : values) sum += static_cast<long double>(v);
  const double exact_mean = static_cast<double>(sum / static_cast<long double>(values.size()));
  // The running sum is a uint64_t: the mean is only meaningful while the sum fits.
  if (sum < static_cast<long double>(std::numeric_limits<uint64_t>::max())) {
    EXPECT_NEAR(h.mean(), exact_mean, exact_mean * 1e-9) << distribution;
  }

  for (double q : kQuantiles) {
    const uint64_t exact = ExactPercentile(sorted, q);
    const uint64_t got = h.Percentile(q);
    if (exact == 0) {
      EXPECT_EQ(got, 0u) << distribution << " q=" << q;
      continue;
    }
    const double error = std::abs(static_cast<double>(got) - static_cast<double>(exact)) /
                         static_cast<double>(exact);
    EXPECT_LE(error, kMaxRelativeError)
        << distribution << " q=" << q << " exact=" << exact << " histogram=" << got;
  }
  // The named shortcuts are the same quantiles.
  EXPECT_EQ(h.p50(), h.Percentile(0.5));
  EXPECT_EQ(h.p90(), h.Percentile(0.9));
  EXPECT_EQ(h.p99(), h.Percentile(0.99));
  EXPECT_EQ(h.p999(), h.Percentile(0.999));
}

std::vector<uint64_t> Generate(size_t n, const std::function<uint64_t()>& next) {
  std::vector<uint64_t> out(n);
  for (uint64_t& v : out) v = next();
  return out;
}

TEST(HistogramTest, UniformOverAWideRangeIsWithinOnePercent) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<uint64_t> dist(0, 1'000'000'000'000);
  ExpectAccurate(Generate(200'000, [&] { return dist(rng); }), "uniform[0,1e12]");
}

TEST(HistogramTest, LognormalIsWithinOnePercent) {
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> dist(10.0, 2.0);  // median ~22k, heavy tail
  ExpectAccurate(Generate(200'000, [&] { return static_cast<uint64_t>(dist(rng)); }),
                 "lognormal(10,2)");
}

TEST(HistogramTest, LatencyLikeNanosecondsAreWithinOnePercent) {
  // Mostly a few microseconds, with a sparse tail of milliseconds.
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> body(std::log(3000.0), 0.3);
  std::exponential_distribution<double> tail(1.0 / 2'000'000);
  std::bernoulli_distribution in_tail(0.005);
  ExpectAccurate(
      Generate(
          100'000,
          [&] { return static_cast<uint64_t>(in_tail(rng) ? 10'000 + tail(rng) : body(rng)); }),
      "latency mix");
}

TEST(HistogramTest, ValuesAcrossEveryMagnitudeAreWithinOnePercent) {
  std::mt19937_64 rng(4);
  std::uniform_int_distribution<int> bits(0, 63);
  ExpectAccurate(Generate(100'000,
                          [&] {
                            const int b = bits(rng);
                            const uint64_t top = uint64_t{1} << b;
                            return top | (rng() & (top - 1));
                          }),
                 "every magnitude");
  ExpectAccurate({0, 1, std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint64_t>::max()},
                 "extremes");
}

TEST(HistogramTest, SmallValuesAreExact) {
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<uint64_t> dist(0, Histogram::kLinearLimit - 1);
  std::vector<uint64_t> values = Generate(50'000, [&] { return dist(rng); });
  Histogram h;
  for (uint64_t v : values) h.Record(v);
  std::sort(values.begin(), values.end());
  for (double q : kQuantiles) {
    EXPECT_EQ(h.Percentile(q), ExactPercentile(values, q)) << "q=" << q;
  }
}

TEST(HistogramTest, FewDistinctValues) {
  Histogram h;
  h.RecordN(5, 90);
  h.RecordN(1'000'000, 10);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.p50(), 5u);
  EXPECT_EQ(h.p90(), 5u);
  EXPECT_NEAR(static_cast<double>(h.p99()), 1e6, 1e6 * kMaxRelativeError);
  EXPECT_EQ(h.max(), 1'000'000u);

  Histogram one;
  one.Record(123'456'789);
  for (double q : kQuantiles) EXPECT_EQ(one.Percentile(q), 123'456'789u) << "q=" << q;
}

TEST(HistogramTest, RecordNEqualsRepeatedRecord) {
  Histogram a;
  Histogram b;
  a.RecordN(777, 5);
  a.RecordN(9'999'999, 3);
  a.RecordN(42, 0);  // counts nothing
  for (int i = 0; i < 5; ++i) b.Record(777);
  for (int i = 0; i < 3; ++i) b.Record(9'999'999);
  EXPECT_EQ(a.count(), b.count());
  EXPECT_EQ(a.min(), b.min());
  EXPECT_EQ(a.max(), b.max());
  EXPECT_DOUBLE_EQ(a.mean(), b.mean());
  for (double q : kQuantiles) EXPECT_EQ(a.Percentile(q), b.Percentile(q));
}

TEST(HistogramTest, EmptyHistogramReportsZeros) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  for (double q : kQuantiles) EXPECT_EQ(h.Percentile(q), 0u);
  EXPECT_THAT(h.Summary(), HasSubstr("n=0"));
}

TEST(HistogramTest, ResetForgetsEverything) {
  Histogram h;
  h.Record(1000);
  h.Record(5);
  h.Reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.p50(), 0u);
  h.Record(300);
  EXPECT_EQ(h.min(), 300u);
  EXPECT_EQ(h.max(), 300u);
  EXPECT_EQ(h.p50(), 300u);
}

void ExpectSame(const Histogram& a, const Histogram& b) {
  EXPECT_EQ(a.count(), b.count());
  EXPECT_EQ(a.min(), b.min());
  EXPECT_EQ(a.max(), b.max());
  EXPECT_DOUBLE_EQ(a.mean(), b.mean());
  for (int i = 0; i <= 1000; ++i) {
    const double q = i / 1000.0;
    ASSERT_EQ(a.Percentile(q), b.Percentile(q)) << "q=" << q;
  }
}

TEST(HistogramTest, MergeEqualsRecordingAllIntoOne) {
  std::mt19937_64 rng(6);
  std::lognormal_distribution<double> dist(8.0, 1.5);
  Histogram all;
  Histogram parts[3];
  for (int i = 0; i < 60'000; ++i) {
    const uint64_t v = static_cast<uint64_t>(dist(rng));
    all.Record(v);
    parts[rng() % 3].Record(v);
  }
  Histogram merged;
  for (const Histogram& p : parts) merged.Merge(p);
  ExpectSame(merged, all);

  // Merging an empty histogram changes nothing, in either direction.
  Histogram empty;
  merged.Merge(empty);
  ExpectSame(merged, all);
  empty.Merge(all);
  ExpectSame(empty, all);
}

TEST(HistogramTest, MergeKeepsTheSmallestMinimum) {
  Histogram a;
  Histogram b;
  a.Record(500);
  b.Record(20);
  b.Record(9000);
  a.Merge(b);
  EXPECT_EQ(a.min(), 20u);
  EXPECT_EQ(a.max(), 9000u);
  EXPECT_EQ(a.count(), 3u);
}

TEST(HistogramTest, SummaryScalesValues) {
  Histogram h;
  for (int i = 0; i < 100; ++i) h.Record(2000);
  const std::string s = h.Summary(1000.0, "us");
  EXPECT_THAT(s, HasSubstr("n=100"));
  EXPECT_THAT(s, HasSubstr("p50=2.00us"));
  EXPECT_THAT(s, HasSubstr("max=2.00us"));
}

TEST(HistogramTest, BucketsTileTheWholeRangeInOrder) {
  EXPECT_EQ(Histogram::BucketOf(0), 0);
  EXPECT_EQ(Histogram::BucketLow(0), 0u);
  EXPECT_EQ(Histogram::BucketOf(std::numeric_limits<uint64_t>::max()), Histogram::kBuckets - 1);
  EXPECT_EQ(Histogram::BucketHigh(Histogram::kBuckets - 1), std::numeric_limits<uint64_t>::max());
  for (int b = 0; b < Histogram::kBuckets; ++b) {
    const uint64_t low = Histogram::BucketLow(b);
    const uint64_t high = Histogram::BucketHigh(b);
    ASSERT_LE(low, high) << "bucket " << b;
    ASSERT_EQ(Histogram::BucketOf(low), b) << "bucket " << b;
    ASSERT_EQ(Histogram::BucketOf(high), b) << "bucket " << b;
    if (b + 1 < Histogram::kBuckets) {
      ASSERT_EQ(Histogram::BucketLow(b + 1), high + 1) << "gap or overlap after bucket " << b;
    }
    if (low < Histogram::kLinearLimit) {
      ASSERT_EQ(low, high) << "small values get a bucket each";
    } else {
      // Half a bucket is the most a midpoint can be off: it must stay within 1% of the low end.
      ASSERT_LE(static_cast<double>(high - low) / 2, static_cast<double>(low) * kMaxRelativeError)
          << "bucket " << b;
    }
  }
}

TEST(HistogramTest, EveryValueFallsInsideItsBucket) {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> values;
  for (uint64_t v = 0; v < 4096; ++v) values.push_back(v);
  for (int shift = 0; shift < 64; ++shift) {
    const uint64_t p = uint64_t{1} << shift;
    values.push_back(p);
    values.push_back(p - 1);
    values.push_back(p + 1);
  }
  for (int i = 0; i < 200'000; ++i) values.push_back(rng() >> (rng() % 64));
  for (uint64_t v : values) {
    const int b = Histogram::BucketOf(v);
    ASSERT_GE(b, 0) << v;
    ASSERT_LT(b, Histogram::kBuckets) << v;
    ASSERT_LE(Histogram::BucketLow(b), v) << "bucket " << b;
    ASSERT_GE(Histogram::BucketHigh(b), v) << "bucket " << b;
  }
  // Buckets are ordered like their values.
  std::sort(values.begin(), values.end());
  for (size_t i = 1; i < values.size(); ++i) {
    ASSERT_LE(Histogram::BucketOf(values[i - 1]), Histogram::BucketOf(values[i])) << values[i];
  }
}

}  // namespace
}  // namespace sluice
