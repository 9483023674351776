// Config: flat "key = value" settings (from a file, flags or code) with typed getters whose
// errors name the key and what was wrong with its value. Unknown keys under a component's
// prefix are reported, so that a typo is an error rather than a silently ignored option.
// Not thread-safe for writes; const methods may be called concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice {

class Config {
 public:
  Config() = default;

  // Parses lines of `key = value`; blank lines and lines starting with '#' are skipped.
  static absl::StatusOr<Config> Parse(std::string_view text);

  void Set(std::string key, std::string value) { values_[std::move(key)] = std::move(value); }
  bool Has(std::string_view key) const { return values_.find(key) != values_.end(); }

  std::string GetString(std::string_view key, std::string_view fallback) const;
  // Integers in [min, max].
  absl::StatusOr<int64_t> GetInt(std::string_view key, int64_t fallback, int64_t min,
                                 int64_t max) const;
  // Byte sizes with an optional k/m/g suffix (powers of 1024).
  absl::StatusOr<uint64_t> GetBytes(std::string_view key, uint64_t fallback) const;
  // Durations in absl form ("100ms", "10s").
  absl::StatusOr<absl::Duration> GetDuration(std::string_view key, absl::Duration fallback) const;

  // An error naming every key that starts with `prefix` and is not in `known`.
  absl::Status CheckKnown(std::string_view prefix,
                          const std::vector<std::string_view>& known) const;

  const std::map<std::string, std::string, std::less<>>& values() const { return values_; }

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

}  // namespace sluice
