#include "tools/tool_output.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace sluice::tools {
namespace {

// An error message quotes at most this much of a value taken from the tool's output.
constexpr size_t kMaxQuoted = 200;

std::string Quote(absl::string_view text) {
  if (text.size() <= kMaxQuoted) return std::string(text);
  return absl::StrCat(text.substr(0, kMaxQuoted), "...");
}

// The number after the first '=' in `line`, if it is a duration sockperf could have measured.
std::optional<double> ValueAfterEquals(absl::string_view line) {
  const size_t eq = line.find('=');
  double value = 0;
  if (eq == absl::string_view::npos ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(line.substr(eq + 1)), &value) ||
      !std::isfinite(value) || value < 0) {
    return std::nullopt;
  }
  return value;
}

// The text of the value of `"key":` in `json` whose key starts in [from, to): a number, or a
// string's contents (escapes left as they are). A targeted look into iperf3's report.
std::optional<absl::string_view> JsonMember(absl::string_view json, absl::string_view key,
                                            size_t from = 0, size_t to = absl::string_view::npos) {
  const std::string quoted = absl::StrCat("\"", key, "\"");
  const size_t at = json.find(quoted, from);
  if (at == absl::string_view::npos || at >= to) return std::nullopt;
  size_t i = at + quoted.size();
  while (i < json.size() && (absl::ascii_isspace(json[i]) || json[i] == ':')) ++i;
  if (i >= json.size()) return std::nullopt;
  if (json[i] == '"') {
    size_t end = i + 1;
    while (end < json.size() && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
    return json.substr(i + 1, std::min(end, json.size()) - i - 1);
  }
  size_t end = i;
  while (end < json.size() && json[end] != ',' && json[end] != '}' && json[end] != ']' &&
         !absl::ascii_isspace(json[end])) {
    ++end;
  }
  return json.substr(i, end - i);
}

// Where the object or array that opens at `open` closes, strings skipped; npos when the text
// ends first. Brackets are counted, not matched by kind: this tells a whole report from a
// truncated one, and does not validate JSON.
size_t ClosingBracket(absl::string_view json, size_t open) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = open; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i;
    }
  }
  return absl::string_view::npos;
}

}  // namespace

std::string StripEscapes(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\x1b') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '[') {
      i += 2;
      while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7e)) ++i;
    }
    // A lone ESC goes too: kept, it could form a new sequence with what follows the one removed
    // after it ("ESC ESC[0m [" would leave "ESC [").
  }
  return out;
}

std::string OutputGist(absl::string_view output) {
  std::vector<absl::string_view> lines;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipWhitespace())) {
    lines.push_back(absl::StripAsciiWhitespace(line));
  }
  std::vector<absl::string_view> errors;
  for (absl::string_view line : lines) {
    if (absl::StrContains(absl::AsciiStrToLower(line), "error") && errors.size() < 3) {
      errors.push_back(line);
    }
  }
  if (errors.empty()) {
    errors.assign(lines.end() - std::min<size_t>(lines.size(), 3), lines.end());
  }
  if (errors.empty()) return "(it printed nothing)";
  std::string gist = absl::StrJoin(errors, " | ");
  if (gist.size() > 600) gist = absl::StrCat(gist.substr(0, 600), "...");
  return gist;
}

// What `sockperf ping-pong` prints, e.g.
//   sockperf: == version #3.7-no.git ==
//   sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=7525; ReceivedMessages=7525
//   sockperf: Summary: Round trip is 73.076 usec      ("Latency is" without --full-rtt)
//   sockperf: Total 7525 observations; each percentile contains 75.25 observations
//   sockperf: ---> <MAX> observation = 2666.204
//   sockperf: ---> percentile 99.900 =  215.159
// (microseconds), once its colours are removed.
absl::StatusOr<SockperfReport> ParseSockperfOutput(absl::string_view raw_output) {
  const std::string output = StripEscapes(raw_output);
  SockperfReport r;
  bool has_p50 = false;
  bool has_max = false;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (absl::StrContains(line, "Summary: Round trip is")) r.round_trip = true;
    if (size_t at = line.find("version #"); at != absl::string_view::npos && r.version.empty()) {
      absl::string_view v = line.substr(at + 9);
      r.version = std::string(v.substr(0, v.find(' ')));
    }
    if (absl::StrContains(line, "[Valid Duration] RunTime=")) {
      absl::string_view v = line.substr(line.find("RunTime=") + 8);
      double seconds = 0;
      if (absl::SimpleAtod(v.substr(0, v.find(' ')), &seconds) && std::isfinite(seconds) &&
          seconds >= 0) {
        r.measured_seconds = seconds;
      }
    }
    if (size_t at = line.find("Total ");
        at != absl::string_view::npos && absl::StrContains(line, " observations;")) {
      absl::string_view v = line.substr(at + 6);
      uint64_t n = 0;
      if (absl::SimpleAtoi(v.substr(0, v.find(' ')), &n)) r.observations = n;
    }
    if (!absl::StrContains(line, "---> ")) continue;
    const std::optional<double> value = ValueAfterEquals(line);
    if (!value.has_value()) continue;
    if (absl::StrContains(line, "<MAX> observation")) {
      r.max_us = *value;
      has_max = true;
      continue;
    }
    const size_t at = line.find("percentile ");
    if (at == absl::string_view::npos) continue;
    absl::string_view p = line.substr(at + 11);
    double percentile = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(p.substr(0, p.find('='))), &percentile)) {
      continue;
    }
    auto is = [percentile](double want) { return std::abs(percentile - want) < 1e-6; };
    if (is(50)) {
      r.p50_us = *value;
      has_p50 = true;
    } else if (is(90)) {
      r.p90_us = *value;
    } else if (is(99)) {
      r.p99_us = *value;
    } else if (is(99.9)) {
      r.p999_us = *value;
    }
  }

  const char* missing = nullptr;
  if (!has_p50) {
    missing = "no median ('---> percentile 50.000 = ...')";
  } else if (!has_max) {
    missing = "no maximum ('---> <MAX> observation = ...')";
  } else if (r.observations == 0) {
    missing = "no observations ('Total <n> observations; ...')";
  }
  if (missing != nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("sockperf reported ", missing, ": ", OutputGist(output)));
  }
  return r;
}

// iperf3 -J prints one object: {"start": {..., "version": "iperf 3.12", "test_start": {...,
// "blksize": 131072}}, "intervals": [...], "end": {..., "sum_received": {"seconds": 1.000899,
// "bits_per_second": 19182181778.58}, ...}}, with "error": "..." beside them when it failed.
absl::StatusOr<Iperf3Report> ParseIperf3Json(absl::string_view json) {
  if (std::optional<absl::string_view> error = JsonMember(json, "error")) {
    return absl::UnavailableError(absl::StrCat("iperf3 reported an error: ", Quote(*error)));
  }
  const size_t open = json.find('{');
  if (open == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("iperf3 printed no JSON object: ", OutputGist(json)));
  }
  const size_t close = ClosingBracket(json, open);
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("iperf3's JSON report is truncated: the object that starts at byte ", open,
                     " does not end (", json.size() - open, " bytes of it)"));
  }
  json = json.substr(open, close + 1 - open);

  const size_t sum = json.find("\"sum_received\"");
  if (sum == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("iperf3 reported no end.sum_received: ", OutputGist(json)));
  }
  const size_t sum_end = json.find('}', sum);
  const std::optional<absl::string_view> bps = JsonMember(json, "bits_per_second", sum, sum_end);
  if (!bps.has_value()) {
    return absl::InvalidArgumentError("iperf3 reported no end.sum_received.bits_per_second");
  }
  Iperf3Report r;
  if (!absl::SimpleAtod(*bps, &r.bits_per_second) || !std::isfinite(r.bits_per_second) ||
      !(r.bits_per_second > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("iperf3's end.sum_received.bits_per_second is '",
                                                   Quote(*bps), "', not a positive number"));
  }
  if (std::optional<absl::string_view> s = JsonMember(json, "seconds", sum, sum_end)) {
    if (!absl::SimpleAtod(*s, &r.measured_seconds) || !std::isfinite(r.measured_seconds) ||
        r.measured_seconds < 0) {
      r.measured_seconds = 0;
    }
  }
  uint64_t block_size = 0;
  if (std::optional<absl::string_view> b = JsonMember(json, "blksize");
      b.has_value() && absl::SimpleAtoi(*b, &block_size)) {
    r.block_size = block_size;
  }
  if (std::optional<absl::string_view> v = JsonMember(json, "version")) r.version = std::string(*v);
  return r;
}

// `redis-benchmark -t get --csv` prints, e.g.
//   "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",...
//   "GET","42553.19","0.032","0.016","0.039","0.039","0.071","2.727"
// and, when it fails, "Could not connect to Redis at 127.0.0.1:6379: Connection refused" or
// "Error from server: ERR ..." instead of its row.
absl::StatusOr<RedisBenchmarkReport> ParseRedisBenchmarkCsv(absl::string_view output,
                                                            absl::string_view test) {
  auto fields_of = [](absl::string_view line) {
    std::vector<absl::string_view> fields;
    for (absl::string_view f : absl::StrSplit(line, ',')) {
      f = absl::StripAsciiWhitespace(f);
      if (f.size() >= 2 && f.front() == '"' && f.back() == '"') f = f.substr(1, f.size() - 2);
      fields.push_back(f);
    }
    return fields;
  };
  std::optional<absl::string_view> error;
  std::vector<absl::string_view> header;
  std::vector<absl::string_view> row;
  // Progress lines end in '\r' rather than '\n'.
  for (absl::string_view line :
       absl::StrSplit(output, absl::ByAnyChar("\r\n"), absl::SkipEmpty())) {
    line = absl::StripAsciiWhitespace(line);
    if (!error.has_value() && (absl::StartsWith(line, "Error from server") ||
                               absl::StartsWith(line, "Could not connect"))) {
      error = line;
    }
    std::vector<absl::string_view> fields = fields_of(line);
    if (fields.size() < 2) continue;
    if (fields[0] == "test") {
      header = std::move(fields);
    } else if (row.empty() && absl::EqualsIgnoreCase(fields[0], test)) {
      row = std::move(fields);
    }
  }
  if (error.has_value()) {
    return absl::UnavailableError(
        absl::StrCat("redis-benchmark reported an error: ", Quote(*error)));
  }
  if (row.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("redis-benchmark reported no \"", Quote(test),
                                                   "\" row: ", OutputGist(output)));
  }
  // The column called `name`, or `fallback` without a header; nothing when there is neither.
  auto column = [&](absl::string_view name,
                    std::optional<size_t> fallback) -> std::optional<absl::string_view> {
    std::optional<size_t> at = header.empty() ? fallback : std::nullopt;
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) at = i;
    }
    if (!at.has_value() || *at >= row.size()) return std::nullopt;
    return row[*at];
  };
  RedisBenchmarkReport r;
  const std::optional<absl::string_view> rps = column("rps", 1);
  if (!rps.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis-benchmark's \"", Quote(test), "\" row has no \"rps\" column"));
  }
  if (!absl::SimpleAtod(*rps, &r.requests_per_second) || !std::isfinite(r.requests_per_second) ||
      !(r.requests_per_second > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("redis-benchmark's \"", Quote(test),
                                                   "\" rps is '", Quote(*rps),
                                                   "', not a positive number"));
  }
  bool has_p50 = false;
  bool has_p99 = false;
  const std::pair<const char*, double*> latencies[] = {
      {"avg_latency_ms", &r.avg_ms}, {"min_latency_ms", &r.min_ms}, {"p50_latency_ms", &r.p50_ms},
      {"p95_latency_ms", &r.p95_ms}, {"p99_latency_ms", &r.p99_ms}, {"max_latency_ms", &r.max_ms}};
  for (const auto& [name, out] : latencies) {
    const std::optional<absl::string_view> text = column(name, std::nullopt);
    if (!text.has_value()) continue;
    double v = 0;
    if (!absl::SimpleAtod(*text, &v) || !std::isfinite(v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat("redis-benchmark's \"", Quote(test), "\" ",
                                                     name, " is '", Quote(*text),
                                                     "', not a duration"));
    }
    *out = v;
    has_p50 |= out == &r.p50_ms;
    has_p99 |= out == &r.p99_ms;
  }
  r.has_latency = has_p50 && has_p99;
  return r;
}

}  // namespace sluice::tools
