#include "base/config.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sluice {

absl::StatusOr<Config> Config::Parse(std::string_view text) {
  Config c;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "config line %d: expected `key = value`, got \"%s\"", line_no, std::string(line)));
    }
    const absl::string_view key = absl::StripAsciiWhitespace(line.substr(0, eq));
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("config line %d: empty key", line_no));
    }
    if (c.Has(std::string(key))) {
      return absl::InvalidArgumentError(
          absl::StrFormat("config line %d: %s is set twice", line_no, std::string(key)));
    }
    c.Set(std::string(key), std::string(absl::StripAsciiWhitespace(line.substr(eq + 1))));
  }
  return c;
}

std::string Config::GetString(std::string_view key, std::string_view fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? std::string(fallback) : it->second;
}

absl::StatusOr<int64_t> Config::GetInt(std::string_view key, int64_t fallback, int64_t min,
                                       int64_t max) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  int64_t v = 0;
  if (!absl::SimpleAtoi(it->second, &v)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: \"%s\" is not an integer", std::string(key), it->second));
  }
  if (v < min || v > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %d is outside [%d, %d]", std::string(key), v, min, max));
  }
  return v;
}

absl::StatusOr<uint64_t> Config::GetBytes(std::string_view key, uint64_t fallback) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  std::string s = absl::AsciiStrToLower(it->second);
  uint64_t unit = 1;
  if (!s.empty() && (s.back() == 'b')) s.pop_back();
  if (!s.empty()) {
    switch (s.back()) {
      case 'k':
        unit = uint64_t{1} << 10;
        break;
      case 'm':
        unit = uint64_t{1} << 20;
        break;
      case 'g':
        unit = uint64_t{1} << 30;
        break;
      default:
        break;
    }
    if (unit != 1) s.pop_back();
  }
  uint64_t v = 0;
  if (!absl::SimpleAtoi(s, &v) || v > UINT64_MAX / unit) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: \"%s\" is not a size (a number with an optional k, m or g suffix)",
                        std::string(key), it->second));
  }
  return v * unit;
}

absl::StatusOr<absl::Duration> Config::GetDuration(std::string_view key,
                                                   absl::Duration fallback) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  absl::Duration d;
  if (!absl::ParseDuration(it->second, &d) || d < absl::ZeroDuration() ||
      d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: \"%s\" is not a duration (like 250ms, 10s, 1m)", std::string(key), it->second));
  }
  return d;
}

absl::Status Config::CheckKnown(std::string_view prefix,
                                const std::vector<std::string_view>& known) const {
  std::vector<std::string> unknown;
  for (const auto& [key, value] : values_) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    if (std::find(known.begin(), known.end(), key) == known.end()) unknown.push_back(key);
  }
  if (unknown.empty()) return absl::OkStatus();
  std::vector<std::string> names(known.begin(), known.end());
  return absl::InvalidArgumentError(
      absl::StrFormat("unknown option%s %s (known: %s)", unknown.size() > 1 ? "s" : "",
                      absl::StrJoin(unknown, ", "), absl::StrJoin(names, ", ")));
}

}  // namespace sluice
