// Histogram: latency (or any non-negative integer) distribution with log-linear buckets.
// Values below 128 are exact; above, each power of two is cut into 64 buckets, so a reported
// percentile is within 0.8% of a recorded value. Mergeable, so each thread records into its own
// and the results are combined. Not thread-safe: one writer at a time.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace sluice {

class Histogram {
 public:
  Histogram() { Reset(); }

  void Record(uint64_t value) { RecordN(value, 1); }
  void RecordN(uint64_t value, uint64_t count);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }

  // The value at quantile q in [0, 1]: the midpoint of the bucket holding the ceil(q * count)-th
  // smallest value, clamped to [min, max]. 0 when empty.
  uint64_t Percentile(double q) const;
  uint64_t p50() const { return Percentile(0.50); }
  uint64_t p90() const { return Percentile(0.90); }
  uint64_t p99() const { return Percentile(0.99); }
  uint64_t p999() const { return Percentile(0.999); }

  // "n=... p50=... p90=... p99=... p99.9=... max=..." with values divided by `scale`.
  std::string Summary(double scale = 1.0, const char* unit = "") const;

  static constexpr int kSubBits = 6;                     // 64 buckets per power of two
  static constexpr uint64_t kLinearLimit = 2u << kSubBits;  // exact below 128
  static constexpr int kBuckets = kLinearLimit + (64 - kSubBits - 1) * (1 << kSubBits);

  static int BucketOf(uint64_t value);
  static uint64_t BucketLow(int bucket);
  static uint64_t BucketHigh(int bucket);  // inclusive

 private:
  std::array<uint64_t, kBuckets> buckets_;
  uint64_t count_;
  uint64_t sum_;
  uint64_t min_;
  uint64_t max_;
};

}  // namespace sluice
