#include "tools/cli.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/logging.h"

namespace sluice::tools {

OptionParser::OptionParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void OptionParser::AddOption(std::string name, std::string value_name, std::string help,
                             std::string default_text, Setter set) {
  options_.push_back(Option{std::move(name), std::move(value_name), std::move(help),
                            std::move(default_text), std::move(set), nullptr});
}

void OptionParser::AddFlag(std::string name, std::string help, bool* out) {
  options_.push_back(Option{std::move(name), "", std::move(help), "", nullptr, out});
}

void OptionParser::AddString(std::string name, std::string value_name, std::string help,
                             std::string* out) {
  AddOption(std::move(name), std::move(value_name), std::move(help), *out,
            [out](std::string_view v) {
              *out = std::string(v);
              return absl::OkStatus();
            });
}

void OptionParser::AddChoice(std::string name, std::vector<std::string> choices, std::string help,
                             std::string* out) {
  std::string value_name = absl::StrJoin(choices, "|");
  AddOption(std::move(name), std::move(value_name), std::move(help), *out,
            [out, choices](std::string_view v) {
              if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
                return absl::InvalidArgumentError(
                    absl::StrCat("expected one of ", absl::StrJoin(choices, ", ")));
              }
              *out = std::string(v);
              return absl::OkStatus();
            });
}

void OptionParser::AddCount(std::string name, std::string value_name, std::string help,
                            uint64_t min, uint64_t max, uint64_t* out) {
  AddOption(std::move(name), std::move(value_name), std::move(help), absl::StrCat(*out),
            [out, min, max](std::string_view v) -> absl::Status {
              absl::StatusOr<uint64_t> n = ParseCount(v);
              if (!n.ok()) return n.status();
              if (*n < min || *n > max) {
                return absl::InvalidArgumentError(
                    absl::StrFormat("expected a number between %d and %d", min, max));
              }
              *out = *n;
              return absl::OkStatus();
            });
}

void OptionParser::AddBytes(std::string name, std::string help, uint64_t min, uint64_t max,
                            uint64_t* out) {
  AddOption(std::move(name), "BYTES", std::move(help), FormatBytes(*out),
            [out, min, max](std::string_view v) -> absl::Status {
              absl::StatusOr<uint64_t> n = ParseBytes(v);
              if (!n.ok()) return n.status();
              if (*n < min || *n > max) {
                return absl::InvalidArgumentError(
                    absl::StrCat("expected between ", FormatBytes(min), " and ", FormatBytes(max)));
              }
              *out = *n;
              return absl::OkStatus();
            });
}

void OptionParser::AddSeconds(std::string name, std::string help, double min, double max,
                              double* out) {
  AddOption(std::move(name), "SECONDS", std::move(help), absl::StrFormat("%g", *out),
            [out, min, max](std::string_view v) -> absl::Status {
              absl::StatusOr<double> s = ParseSeconds(v);
              if (!s.ok()) return s.status();
              if (*s < min || *s > max) {
                return absl::InvalidArgumentError(
                    absl::StrFormat("expected between %g and %g seconds", min, max));
              }
              *out = *s;
              return absl::OkStatus();
            });
}

void OptionParser::AllowPositional(std::string usage_name, std::vector<std::string>* out) {
  positional_name_ = std::move(usage_name);
  positional_ = out;
}

const OptionParser::Option* OptionParser::Find(std::string_view name) const {
  for (const Option& o : options_) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

absl::StatusOr<OptionParser::Outcome> OptionParser::Parse(absl::Span<const std::string> args) {
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!only_positional && (arg == "--help" || arg == "-h")) {
      std::fputs(Help().c_str(), stdout);
      return Outcome::kHelpShown;
    }
    if (arg == "--") {  // everything after it is positional
      only_positional = true;
      continue;
    }
    if (only_positional || arg.size() < 2 || arg[0] != '-') {
      if (positional_ == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument '", arg, "' for '", command_, "'"));
      }
      positional_->push_back(arg);
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Option* o = Find(name);
    if (o == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option '", name, "' for '", command_, "'"));
    }
    if (o->flag != nullptr) {
      if (value.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("option ", name, " takes no value"));
      }
      *o->flag = true;
      continue;
    }
    if (!value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("option ", name, " needs a value (", o->value_name, ")"));
      }
      value = args[++i];
    }
    if (absl::Status s = o->set(*value); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value '", *value, "' for ", name, ": ", s.message()));
    }
  }
  return Outcome::kRun;
}

std::string OptionParser::Help() const {
  std::string out =
      absl::StrCat("Usage: ", command_, options_.empty() ? "" : " [options]",
                   positional_ != nullptr ? " " + positional_name_ : "", "\n\n", summary_, "\n");
  if (options_.empty()) return out;
  out += "\nOptions:\n";
  std::vector<std::string> left;
  size_t width = 0;
  for (const Option& o : options_) {
    left.push_back(o.value_name.empty() ? o.name : absl::StrCat(o.name, " ", o.value_name));
    width = std::max(width, left.back().size());
  }
  left.push_back("--help");
  width = std::min<size_t>(std::max(width, left.back().size()), 34);
  for (size_t i = 0; i < options_.size(); ++i) {
    const Option& o = options_[i];
    std::string text = o.help;
    if (!o.default_text.empty()) absl::StrAppend(&text, " (default: ", o.default_text, ")");
    if (left[i].size() > width) {
      absl::StrAppend(&out, "  ", left[i], "\n  ", std::string(width, ' '), "  ", text, "\n");
    } else {
      absl::StrAppend(&out, "  ", left[i], std::string(width - left[i].size(), ' '), "  ", text,
                      "\n");
    }
  }
  absl::StrAppend(&out, "  --help", std::string(width - 6, ' '), "  Show this help and exit\n");
  return out;
}

absl::StatusOr<uint64_t> ParseCount(std::string_view text) {
  uint64_t n = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return absl::InvalidArgumentError("expected a whole number");
  }
  return n;
}

absl::StatusOr<uint64_t> ParseBytes(std::string_view text) {
  const char* end = text.data() + text.size();
  uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  const std::string error = "expected a byte count such as 4096, 32KiB, 256M or 1GiB";
  if (text.empty() || ec != std::errc() || ptr == text.data()) {
    return absl::InvalidArgumentError(error);
  }
  std::string suffix = absl::AsciiStrToLower(std::string(ptr, end));
  int shift = 0;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else if (suffix == "k" || suffix == "kib") {
    shift = 10;
  } else if (suffix == "m" || suffix == "mib") {
    shift = 20;
  } else if (suffix == "g" || suffix == "gib") {
    shift = 30;
  } else {
    return absl::InvalidArgumentError(error);
  }
  if (shift > 0 && n > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError("byte count too large");
  }
  return n << shift;
}

absl::StatusOr<double> ParseSeconds(std::string_view text) {
  if (!text.empty() && text.back() == 's') text.remove_suffix(1);
  double v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(v)) {
    return absl::InvalidArgumentError("expected a number of seconds such as 2 or 0.5");
  }
  return v;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (unit < 4 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return absl::StrCat(bytes, " ", kUnits[unit]);
}

std::string CurrentLogLevelName() {
  switch (spdlog::get_level()) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

void AddLogLevelOption(OptionParser& parser) {
  parser.AddOption("--log-level", "LEVEL",
                   "trace, debug, info, warn, error, critical or off; overrides SLUICE_LOG_LEVEL",
                   "", [](std::string_view v) { return SetLogLevel(v); });
}

Table::Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void Table::AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

std::optional<std::string> FindOptionValue(absl::Span<const std::string> args,
                                           std::string_view name) {
  std::optional<std::string> value;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a == name && i + 1 < args.size()) {
      value = args[++i];
    } else if (a.size() > name.size() && a.compare(0, name.size(), name) == 0 &&
               a[name.size()] == '=') {
      value = a.substr(name.size() + 1);
    }
  }
  return value;
}

std::string Table::Render() const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c > 0) line += "  ";
      line += c == 0 ? row[c] + pad : pad + row[c];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace sluice::tools
