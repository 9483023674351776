#include "statestore/location_table.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/status.h"

namespace sluice {
namespace {

absl::StatusOr<KeyGroupRange> ParseRange(std::string_view text, uint32_t max_parallelism) {
  std::vector<std::string> parts = absl::StrSplit(std::string(text), '-');
  uint32_t first = 0;
  uint32_t last = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &first) ||
      !absl::SimpleAtoi(parts[1], &last) || last < first) {
    return absl::InvalidArgumentError(absl::StrCat("key groups '", std::string(text),
                                                   "' must be <first>-<last> with first <= last"));
  }
  if (last >= max_parallelism) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key group ", last, " is past the job's maximum parallelism ", max_parallelism));
  }
  return KeyGroupRange{first, last - first + 1};
}

bool IsAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  return colon != std::string_view::npos && colon > 0 &&
         absl::SimpleAtoi(std::string(address.substr(colon + 1)), &port) && port > 0 &&
         port < 65536;
}

}  // namespace

absl::Status LocationTable::SetMaxParallelism(const std::string& job, uint32_t max_parallelism) {
  SLUICE_RETURN_IF_ERROR(ValidateParallelism(1, max_parallelism));
  max_parallelism_[job] = max_parallelism;
  return absl::OkStatus();
}

void LocationTable::Add(Entry entry) { entries_.push_back(std::move(entry)); }

absl::StatusOr<LocationTable> LocationTable::Parse(std::string_view text) {
  LocationTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> words = absl::StrSplit(std::string(line), ' ', absl::SkipWhitespace());
    auto error = [&](const absl::Status& s) {
      return absl::InvalidArgumentError(
          absl::StrCat("location table line ", line_number, ": ", s.message()));
    };
    if (words.size() == 4 && words[0] == "job" && words[2] == "max-parallelism") {
      uint32_t n = 0;
      if (!absl::SimpleAtoi(words[3], &n)) {
        return error(absl::InvalidArgumentError(
            absl::StrCat("max-parallelism '", words[3], "' is not a number")));
      }
      if (absl::Status s = table.SetMaxParallelism(words[1], n); !s.ok()) return error(s);
      continue;
    }
    if (words.size() != 4) {
      return error(absl::InvalidArgumentError(
          "expected 'job <job> max-parallelism <n>' or '<job> <state|*> <first>-<last> "
          "<host:port>'"));
    }
    const uint32_t max_parallelism = table.MaxParallelism(words[0]);
    if (max_parallelism == 0) {
      return error(absl::InvalidArgumentError(absl::StrCat(
          "job '", words[0], "' has no 'job ", words[0], " max-parallelism <n>' line before")));
    }
    absl::StatusOr<KeyGroupRange> range = ParseRange(words[2], max_parallelism);
    if (!range.ok()) return error(range.status());
    if (!IsAddress(words[3])) {
      return error(
          absl::InvalidArgumentError(absl::StrCat("address '", words[3], "' must be host:port")));
    }
    table.Add(Entry{words[0], words[1], StateLocation{*range, words[3]}});
  }
  return table;
}

absl::StatusOr<LocationTable> LocationTable::ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read location table '", path, "'"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<LocationTable> table = Parse(text.str());
  if (!table.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", table.status().message()));
  }
  return table;
}

std::string LocationTable::ToString() const {
  std::string out;
  for (const auto& [job, n] : max_parallelism_)
    absl::StrAppend(&out, "job ", job, " max-parallelism ", n, "\n");
  for (const Entry& e : entries_) {
    absl::StrAppend(&out, e.job, " ", e.state, " ", e.location.key_groups.first, "-",
                    e.location.key_groups.end() - 1, " ", e.location.address, "\n");
  }
  return out;
}

uint32_t LocationTable::MaxParallelism(std::string_view job) const {
  auto it = max_parallelism_.find(job);
  return it == max_parallelism_.end() ? 0 : it->second;
}

std::optional<std::string> LocationTable::Find(std::string_view job, std::string_view state,
                                               uint32_t key_group) const {
  for (const Entry& e : entries_) {
    if (e.job == job && (e.state == "*" || e.state == state) &&
        e.location.key_groups.Contains(key_group)) {
      return e.location.address;
    }
  }
  return std::nullopt;
}

std::vector<StateLocation> LocationTable::LocationsOf(std::string_view job,
                                                      std::string_view state) const {
  std::vector<StateLocation> out;
  for (const Entry& e : entries_) {
    if (e.job == job && (e.state == "*" || e.state == state)) out.push_back(e.location);
  }
  return out;
}

std::vector<std::string> LocationTable::Jobs() const {
  std::vector<std::string> out;
  for (const auto& [job, n] : max_parallelism_) out.push_back(job);
  return out;
}

}  // namespace sluice
