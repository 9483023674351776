#include "base/histogram.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace sluice {

int Histogram::BucketOf(uint64_t value) {
  if (value < kLinearLimit) return static_cast<int>(value);
  const int msb = 63 - __builtin_clzll(value);  // >= kSubBits + 1
  const int shift = msb - kSubBits;              // value >> shift lies in [64, 128)
  const uint64_t sub = (value >> shift) - (1u << kSubBits);
  return static_cast<int>(kLinearLimit + static_cast<uint64_t>(shift - 1) * (1u << kSubBits) + sub);
}

uint64_t Histogram::BucketLow(int bucket) {
  if (bucket < static_cast<int>(kLinearLimit)) return static_cast<uint64_t>(bucket);
  const int rel = bucket - static_cast<int>(kLinearLimit);
  const int shift = rel / (1 << kSubBits) + 1;
  const uint64_t sub = static_cast<uint64_t>(rel % (1 << kSubBits));
  return ((1u << kSubBits) + sub) << shift;
}

uint64_t Histogram::BucketHigh(int bucket) {
  if (bucket < static_cast<int>(kLinearLimit)) return static_cast<uint64_t>(bucket);
  const int shift = (bucket - static_cast<int>(kLinearLimit)) / (1 << kSubBits) + 1;
  return BucketLow(bucket) + ((uint64_t{1} << shift) - 1);
}

void Histogram::Reset() {
  buckets_.fill(0);
  count_ = 0;
  sum_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
}

void Histogram::RecordN(uint64_t value, uint64_t count) {
  if (count == 0) return;
  buckets_[BucketOf(value)] += count;
  count_ += count;
  sum_ += value * count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void Histogram::Merge(const Histogram& other) {
  for (int i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      const uint64_t low = BucketLow(i);
      const uint64_t mid = low + (BucketHigh(i) - low) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

std::string Histogram::Summary(double scale, const char* unit) const {
  auto v = [&](uint64_t x) { return static_cast<double>(x) / scale; };
  return absl::StrFormat("n=%d p50=%.2f%s p90=%.2f%s p99=%.2f%s p99.9=%.2f%s max=%.2f%s", count_,
                         v(p50()), unit, v(p90()), unit, v(p99()), unit, v(p999()), unit, v(max()),
                         unit);
}

}  // namespace sluice
