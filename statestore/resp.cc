#include "statestore/resp.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice {
namespace {

// A length line holds at most this many characters between its type byte and its \r\n
// ("-9223372036854775808" is 20; anything longer is not a length).
constexpr size_t kMaxLengthChars = 20;

// Quoted, for error messages: printable ASCII as it is, the rest escaped.
std::string Quote(std::string_view bytes) {
  return absl::StrCat("'", absl::CHexEscape(std::string(bytes)), "'");
}

// A decimal length as redis-server reads one: an optional '-', then digits without leading
// zeros; at most 18 digits, so that it always fits.
bool ParseLength(std::string_view text, int64_t* value) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  if (digits.empty() || digits.size() > 18 || (digits.size() > 1 && digits.front() == '0')) {
    return false;
  }
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(std::string(text), value);
}

bool IsInlineSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

char Unescaped(char c) {
  switch (c) {
    case 'n':
      return '\n';
    case 'r':
      return '\r';
    case 't':
      return '\t';
    case 'b':
      return '\b';
    case 'a':
      return '\a';
    default:
      return c;
  }
}

bool IsHexEscape(const char* line, size_t p, size_t size) {
  return p + 3 < size && line[p + 1] == 'x' &&
         absl::ascii_isxdigit(static_cast<unsigned char>(line[p + 2])) &&
         absl::ascii_isxdigit(static_cast<unsigned char>(line[p + 3]));
}

// Reads one quoted part of an inline argument, from just after the opening quote at `*p`,
// writing the unescaped bytes at `*w` (never ahead of `*p`). False when the quote is not closed
// or its closing quote is followed by something other than white space.
bool ReadQuoted(char* line, size_t size, char quote, size_t* p, size_t* w) {
  while (*p < size) {
    const char c = line[*p];
    if (c == quote) {
      ++*p;
      return *p == size || IsInlineSpace(line[*p]);
    }
    if (c == '\\' && quote == '"' && IsHexEscape(line, *p, size)) {
      line[(*w)++] = absl::HexStringToBytes(absl::string_view(line + *p + 2, 2))[0];
      *p += 4;
    } else if (c == '\\' && *p + 1 < size && (quote == '"' || line[*p + 1] == '\'')) {
      line[(*w)++] = quote == '"' ? Unescaped(line[*p + 1]) : '\'';
      *p += 2;
    } else {
      line[(*w)++] = line[(*p)++];
    }
  }
  return false;
}

// Splits an inline request in place, as redis-server's sdssplitargs does: white space separates
// arguments; "double quotes" take \n \r \t \b \a \xHH and backslash-escaped characters, 'single
// quotes' take \'. Appends each argument's (offset, length); false on unbalanced quotes.
bool SplitInline(char* line, size_t size, std::vector<std::pair<size_t, size_t>>* spans) {
  size_t p = 0;
  while (true) {
    while (p < size && IsInlineSpace(line[p])) ++p;
    if (p == size) return true;
    const size_t begin = p;
    size_t w = p;
    while (p < size && !IsInlineSpace(line[p])) {
      const char c = line[p];
      if (c == '"' || c == '\'') {
        ++p;
        if (!ReadQuoted(line, size, c, &p, &w)) return false;
        break;
      }
      line[w++] = line[p++];
    }
    spans->emplace_back(begin, w - begin);
  }
}

void AppendLine(std::string* out, char type, std::string_view text) {
  out->push_back(type);
  const size_t at = out->size();
  out->append(text);
  std::replace_if(
      out->begin() + static_cast<std::ptrdiff_t>(at), out->end(),
      [](char c) { return c == '\r' || c == '\n'; }, ' ');
  out->append("\r\n");
}

}  // namespace

void RespParser::Feed(std::string_view bytes) {
  if (start_ > 0 && start_ * 2 >= buf_.size()) {
    consumed_ += start_;
    buf_.erase(0, start_);
    start_ = 0;
  }
  buf_.append(bytes);
}

absl::StatusOr<bool> RespParser::Next(std::vector<std::string_view>* args) {
  if (!error_.ok()) return error_;
  while (start_ < buf_.size()) {
    absl::StatusOr<Step> step = buf_[start_] == '*' ? ParseArray() : ParseInline();
    if (!step.ok()) return step.status();
    if (*step == Step::kNeedMore) return false;
    const bool empty = spans_.empty();  // "*0\r\n" or a blank line: nothing to run
    FinishCommand(scan_, args);
    if (!empty) return true;
  }
  return false;
}

void RespParser::FinishCommand(size_t bytes, std::vector<std::string_view>* args) {
  args->clear();
  const char* base = buf_.data() + start_;
  for (const auto& [offset, length] : spans_) args->emplace_back(base + offset, length);
  start_ += bytes;
  spans_.clear();
  scan_ = 0;
  args_left_ = -1;
  bulk_length_ = -1;
}

absl::Status RespParser::Fail(size_t at, std::string message) {
  error_ = absl::InvalidArgumentError(std::move(message));
  error_offset_ = consumed_ + start_ + at;
  return error_;
}

absl::StatusOr<RespParser::Step> RespParser::ReadLength(size_t at, char type, int64_t* value,
                                                        size_t* line_bytes) {
  const char* what = type == '*' ? "multibulk" : "bulk";
  const size_t begin = start_ + at + 1;
  const size_t window = std::min(buf_.size(), begin + kMaxLengthChars + 1);
  const void* cr =
      begin < window ? std::memchr(buf_.data() + begin, '\r', window - begin) : nullptr;
  if (cr == nullptr) {
    if (window < begin + kMaxLengthChars + 1) return Step::kNeedMore;
    return Fail(at, absl::StrFormat("invalid %s length: no \\r\\n within %d bytes", what,
                                    kMaxLengthChars + 1));
  }
  const size_t cr_at = static_cast<size_t>(static_cast<const char*>(cr) - buf_.data());
  if (cr_at + 1 >= buf_.size()) return Step::kNeedMore;
  const std::string_view text(buf_.data() + begin, cr_at - begin);
  if (buf_[cr_at + 1] != '\n') {
    return Fail(at, absl::StrFormat("missing \\n after the %s length %s", what, Quote(text)));
  }
  if (!ParseLength(text, value) || (type == '$' && *value < 0)) {
    return Fail(at, absl::StrFormat("invalid %s length %s", what, Quote(text)));
  }
  *line_bytes = cr_at + 2 - (start_ + at);
  return Step::kDone;
}

absl::StatusOr<RespParser::Step> RespParser::ParseArray() {
  if (args_left_ < 0) {
    int64_t count = 0;
    size_t line = 0;
    absl::StatusOr<Step> step = ReadLength(0, '*', &count, &line);
    if (!step.ok() || *step == Step::kNeedMore) return step;
    if (count > 0 && static_cast<uint64_t>(count) > limits_.max_arguments) {
      return Fail(
          0, absl::StrFormat("too many arguments: %d (at most %d)", count, limits_.max_arguments));
    }
    scan_ = line;
    args_left_ = std::max<int64_t>(count, 0);  // "*0" and "*-1": an empty request
  }
  while (args_left_ > 0) {
    if (bulk_length_ < 0) {
      if (start_ + scan_ >= buf_.size()) return Step::kNeedMore;
      if (buf_[start_ + scan_] != '$') {
        return Fail(scan_, absl::StrFormat("expected '$' at argument %d, got %s", spans_.size() + 1,
                                           Quote(buf_.substr(start_ + scan_, 1))));
      }
      int64_t length = 0;
      size_t line = 0;
      absl::StatusOr<Step> step = ReadLength(scan_, '$', &length, &line);
      if (!step.ok() || *step == Step::kNeedMore) return step;
      const size_t bytes = static_cast<size_t>(length);
      if (bytes > limits_.max_bulk_bytes) {
        return Fail(scan_, absl::StrFormat("bulk string of %d bytes is too large (at most %d)",
                                           bytes, limits_.max_bulk_bytes));
      }
      if (scan_ + line + bytes + 2 > limits_.max_command_bytes) {
        return Fail(0, absl::StrFormat("request of more than %d bytes", limits_.max_command_bytes));
      }
      scan_ += line;
      bulk_length_ = length;
    }
    const size_t bytes = static_cast<size_t>(bulk_length_);
    const size_t end = start_ + scan_ + bytes;
    if (buf_.size() < end + 2) return Step::kNeedMore;
    if (buf_[end] != '\r' || buf_[end + 1] != '\n') {
      return Fail(scan_, absl::StrFormat("missing \\r\\n after a bulk string of %d bytes", bytes));
    }
    spans_.emplace_back(scan_, bytes);
    scan_ += bytes + 2;
    bulk_length_ = -1;
    --args_left_;
  }
  return Step::kDone;
}

absl::StatusOr<RespParser::Step> RespParser::ParseInline() {
  const size_t buffered_bytes = buf_.size() - start_;
  const void* nl = std::memchr(buf_.data() + start_ + scan_, '\n', buffered_bytes - scan_);
  const size_t line =
      nl == nullptr ? buffered_bytes
                    : static_cast<size_t>(static_cast<const char*>(nl) - (buf_.data() + start_));
  if (line > limits_.max_inline_bytes) {
    return Fail(0, absl::StrFormat("inline request of more than %d bytes without a newline",
                                   limits_.max_inline_bytes));
  }
  if (nl == nullptr) {
    scan_ = buffered_bytes;  // searched up to here
    return Step::kNeedMore;
  }
  if (!SplitInline(buf_.data() + start_, line, &spans_)) {
    spans_.clear();
    return Fail(0, "unbalanced quotes in inline request");
  }
  if (spans_.size() > limits_.max_arguments) {
    const size_t count = spans_.size();
    spans_.clear();
    return Fail(
        0, absl::StrFormat("too many arguments: %d (at most %d)", count, limits_.max_arguments));
  }
  scan_ = line + 1;
  return Step::kDone;
}

std::string EncodeCommand(absl::Span<const std::string_view> args) {
  std::string out;
  AppendArrayHeader(&out, args.size());
  for (std::string_view a : args) AppendBulk(&out, a);
  return out;
}

void AppendSimpleString(std::string* out, std::string_view text) { AppendLine(out, '+', text); }

void AppendError(std::string* out, std::string_view text) { AppendLine(out, '-', text); }

void AppendInteger(std::string* out, int64_t value) { absl::StrAppend(out, ":", value, "\r\n"); }

void AppendBulk(std::string* out, std::string_view bytes) {
  absl::StrAppend(out, "$", bytes.size(), "\r\n");
  out->append(bytes);
  out->append("\r\n");
}

void AppendNullBulk(std::string* out) { out->append("$-1\r\n"); }

void AppendArrayHeader(std::string* out, size_t elements) {
  absl::StrAppend(out, "*", elements, "\r\n");
}

void AppendNullArray(std::string* out) { out->append("*-1\r\n"); }

}  // namespace sluice
