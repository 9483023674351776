// RESP2, the Redis serialization protocol, as a server reads requests and writes replies.
//
// RespParser reads requests incrementally from bytes fed in chunks cut anywhere: arrays of bulk
// strings ("*2\r\n$3\r\nGET\r\n$5\r\nstate\r\n", what client libraries and redis-cli send) and
// inline commands ("PING\r\n", what telnet sends; quoting as redis-server reads it). A malformed
// request is an error that names what was wrong; the parser stops there, and a server answers
// "-ERR Protocol error: <message>" and closes, as redis-server does.
//
// The Append* functions encode replies. A RespParser is not thread-safe; the functions are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sluice {

struct RespLimits {
  size_t max_arguments = 64 * 1024;     // per command
  size_t max_bulk_bytes = 1 << 20;      // per argument
  size_t max_inline_bytes = 64 << 10;   // an inline command's line, without its newline
  size_t max_command_bytes = 64 << 20;  // one array request as it is on the wire
};

class RespParser {
 public:
  explicit RespParser(const RespLimits& limits = RespLimits()) : limits_(limits) {}

  // Appends received bytes.
  void Feed(std::string_view bytes);

  // True with the next complete command in `*args` (replacing what it held); false when more
  // bytes are needed. An InvalidArgument error names what was wrong (bad length, missing \r\n,
  // too many arguments, bulk too large, ...); from then on every call returns it. The views
  // point into the parser and stay valid until the next Feed.
  absl::StatusOr<bool> Next(std::vector<std::string_view>* args);

  // Stream offset (bytes from the first fed) of the request that failed; 0 before any error.
  uint64_t error_offset() const { return error_offset_; }
  // Bytes fed and not yet returned as commands.
  size_t buffered() const { return buf_.size() - start_; }

 private:
  enum class Step { kDone, kNeedMore };
  absl::StatusOr<Step> ParseArray();
  absl::StatusOr<Step> ParseInline();
  // The length in a header line ("*3\r\n", "$5\r\n") starting at start_ + at, or kNeedMore.
  absl::StatusOr<Step> ReadLength(size_t at, char type, int64_t* value, size_t* line_bytes);
  absl::Status Fail(size_t at, std::string message);
  void FinishCommand(size_t bytes, std::vector<std::string_view>* args);

  const RespLimits limits_;
  std::string buf_;
  size_t start_ = 0;       // where the current command starts in buf_
  uint64_t consumed_ = 0;  // stream offset of buf_[0]
  // The command in progress, relative to start_: arguments found so far and where to go on.
  std::vector<std::pair<size_t, size_t>> spans_;  // (offset, length)
  size_t scan_ = 0;
  int64_t args_left_ = -1;  // array: arguments still to read; -1 before its header
  int64_t bulk_length_ = -1;
  absl::Status error_;
  uint64_t error_offset_ = 0;
};

// A request as clients send it: an array of bulk strings.
std::string EncodeCommand(absl::Span<const std::string_view> args);

// Replies. Simple strings and errors are one line: a CR or LF in `text` is sent as a space.
// An error's text starts with its code ("ERR unknown command", "WRONGTYPE ...").
void AppendSimpleString(std::string* out, std::string_view text);
void AppendError(std::string* out, std::string_view text);
void AppendInteger(std::string* out, int64_t value);
void AppendBulk(std::string* out, std::string_view bytes);
void AppendNullBulk(std::string* out);
void AppendArrayHeader(std::string* out, size_t elements);
void AppendNullArray(std::string* out);

}  // namespace sluice
