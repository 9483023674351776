// The RESP2 request parser and reply encoders: array and inline requests come out whole however
// the bytes are cut, binary-safe, with inline quoting as redis-server reads it; every kind of
// malformed request is refused with an error naming what was wrong and where it starts.
#include "statestore/resp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Command = std::vector<std::string>;
using namespace std::string_literals;

// Every command in `bytes` fed `chunk` bytes at a time, then the error if any.
struct Parsed {
  std::vector<Command> commands;
  absl::Status error;
  uint64_t error_offset = 0;
};

Parsed Parse(std::string_view bytes, size_t chunk = SIZE_MAX, RespLimits limits = {}) {
  RespParser parser(limits);
  Parsed out;
  std::vector<std::string_view> args;
  for (size_t at = 0; at < bytes.size() || at == 0; at += chunk) {
    parser.Feed(bytes.substr(at, chunk));
    while (true) {
      absl::StatusOr<bool> next = parser.Next(&args);
      if (!next.ok()) {
        out.error = next.status();
        out.error_offset = parser.error_offset();
        return out;
      }
      if (!*next) break;
      out.commands.emplace_back(args.begin(), args.end());
    }
    if (bytes.empty()) break;
  }
  return out;
}

TEST(RespParser, ReadsArraysOfBulkStrings) {
  const Parsed p = Parse("*2\r\n$3\r\nGET\r\n$9\r\nstate:key\r\n*1\r\n$4\r\nPING\r\n");
  ASSERT_TRUE(p.error.ok()) << p.error;
  EXPECT_THAT(p.commands, ElementsAre(Command{"GET", "state:key"}, Command{"PING"}));
}

TEST(RespParser, BulkStringsAreBinarySafe) {
  const std::string key("a\r\nb\0c", 6);
  const Parsed p = Parse("*2\r\n$3\r\nGET\r\n$6\r\n" + key + "\r\n*1\r\n$0\r\n\r\n");
  ASSERT_TRUE(p.error.ok()) << p.error;
  EXPECT_THAT(p.commands, ElementsAre(Command{"GET", key}, Command{""}));
}

TEST(RespParser, AnyChunkingGivesTheSameCommands) {
  const std::string stream =
      "*3\r\n$4\r\nMGET\r\n$3\r\na:1\r\n$10\r\nlonger:key\r\nPING\r\n\r\n*0\r\n"
      "GET \"quoted key\"\n*1\r\n$4\r\nQUIT\r\n";
  const Parsed whole = Parse(stream);
  ASSERT_TRUE(whole.error.ok()) << whole.error;
  ASSERT_EQ(whole.commands.size(), 4u);
  for (size_t chunk = 1; chunk < stream.size(); ++chunk) {
    const Parsed cut = Parse(stream, chunk);
    EXPECT_TRUE(cut.error.ok()) << "chunk " << chunk << ": " << cut.error;
    EXPECT_EQ(cut.commands, whole.commands) << "chunk " << chunk;
  }
}

TEST(RespParser, InlineCommandsSplitAndUnquoteAsRedisDoes) {
  const Parsed p = Parse(
      "PING\r\n"
      "  get   a:b  \n"
      "SET \"a b\" 'c\\'d' \"\\x41\\n\\t\" x\"y z\"\r\n"
      "ECHO \"\"\r\n");
  ASSERT_TRUE(p.error.ok()) << p.error;
  EXPECT_THAT(p.commands,
              ElementsAre(Command{"PING"}, Command{"get", "a:b"},
                          Command{"SET", "a b", "c'd", "A\n\t", "xy z"}, Command{"ECHO", ""}));
}

TEST(RespParser, EmptyRequestsAreSkipped) {
  const Parsed p = Parse("\r\n\n   \r\n*0\r\n*-1\r\nPING\r\n");
  ASSERT_TRUE(p.error.ok()) << p.error;
  EXPECT_THAT(p.commands, ElementsAre(Command{"PING"}));
}

TEST(RespParser, WaitsForTheRestOfACommand) {
  RespParser parser;
  std::vector<std::string_view> args;
  parser.Feed("*2\r\n$3\r\nGET\r\n$5\r\nsta");
  absl::StatusOr<bool> next = parser.Next(&args);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(*next);
  EXPECT_EQ(parser.buffered(), 20u);
  parser.Feed("te\r\n:");
  next = parser.Next(&args);
  ASSERT_TRUE(next.ok() && *next);
  EXPECT_THAT(args, ElementsAre("GET", "state"));
  EXPECT_EQ(parser.buffered(), 1u);  // the ':' that starts no command yet
}

struct BadInput {
  std::string bytes;
  std::string message;
  uint64_t offset;
};

TEST(RespParser, MalformedRequestsAreErrorsNamingWhatAndWhere) {
  const std::string ok = "*1\r\n$4\r\nPING\r\n";  // 14 bytes before every bad request below
  const BadInput cases[] = {
      {"*abc\r\n", "invalid multibulk length 'abc'", 0},
      {"*01\r\n", "invalid multibulk length '01'", 0},
      {"*1\r\n+PING\r\n", "expected '$' at argument 1, got '+'", 4},
      {"*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$' at argument 2, got ':'", 13},
      {"*1\r\n$-3\r\n", "invalid bulk length '-3'", 4},
      {"*1\r\n$x\r\n", "invalid bulk length 'x'", 4},
      {"*1\r\n$3\r\nabcd\r\n", "missing \\r\\n after a bulk string of 3 bytes", 8},
      {"*1\r\r", "missing \\n after the multibulk length '1'", 0},
      {"*1\r\n$3\rX", "missing \\n after the bulk length '3'", 4},
      {"*" + std::string(30, '1') + "\r\n", "invalid multibulk length: no \\r\\n within 21", 0},
      {"*1\r\n$" + std::string(25, '9'), "invalid bulk length: no \\r\\n within 21", 4},
      {"*5\r\n", "too many arguments: 5 (at most 4)", 0},
      {"A B C D E\r\n", "too many arguments: 5 (at most 4)", 0},
      {"*1\r\n$65\r\n", "bulk string of 65 bytes is too large (at most 64)", 4},
      {std::string(65, 'x'), "inline request of more than 64 bytes without a newline", 0},
      {std::string(65, 'x') + "\n", "inline request of more than 64 bytes without a newline", 0},
      {"GET \"abc\r\n", "unbalanced quotes in inline request", 0},
      {"GET 'abc'd\r\n", "unbalanced quotes in inline request", 0},
      {"*3\r\n$64\r\n" + std::string(64, 'a') + "\r\n$64\r\n" + std::string(64, 'b') +
           "\r\n$64\r\n",
       "request of more than 150 bytes", 0},
  };
  RespLimits limits;
  limits.max_arguments = 4;
  limits.max_bulk_bytes = 64;
  limits.max_inline_bytes = 64;
  limits.max_command_bytes = 150;
  for (const BadInput& c : cases) {
    for (const size_t chunk : {SIZE_MAX, size_t{1}, size_t{3}}) {
      const Parsed p = Parse(ok + c.bytes, chunk, limits);
      SCOPED_TRACE(c.bytes + " in chunks of " + std::to_string(chunk));
      ASSERT_THAT(p.commands, ElementsAre(Command{"PING"}));
      EXPECT_TRUE(absl::IsInvalidArgument(p.error)) << p.error;
      EXPECT_THAT(std::string(p.error.message()), HasSubstr(c.message));
      EXPECT_EQ(p.error_offset, ok.size() + c.offset);
    }
  }
}

TEST(RespParser, AnErrorStays) {
  RespParser parser;
  std::vector<std::string_view> args;
  parser.Feed("*x\r\n");
  EXPECT_FALSE(parser.Next(&args).ok());
  parser.Feed("*1\r\n$4\r\nPING\r\n");
  absl::StatusOr<bool> again = parser.Next(&args);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("invalid multibulk length"));
}

TEST(RespParser, EncodedCommandsParseBackToThemselves) {
  const std::vector<std::string_view> args = {"MGET", "", std::string_view("a\0\r\n", 4),
                                              "state:key"};
  const std::string wire = EncodeCommand(args);
  EXPECT_EQ(wire, "*4\r\n$4\r\nMGET\r\n$0\r\n\r\n$4\r\na\0\r\n\r\n$9\r\nstate:key\r\n"s);
  const Parsed p = Parse(wire);
  ASSERT_TRUE(p.error.ok()) << p.error;
  EXPECT_THAT(p.commands, ElementsAre(Command(args.begin(), args.end())));
}

TEST(RespReplies, EncodeEveryKind) {
  std::string out;
  AppendSimpleString(&out, "OK");
  AppendError(&out, "ERR bad\r\nthing");
  AppendInteger(&out, -42);
  AppendBulk(&out, std::string_view("v\0", 2));
  AppendNullBulk(&out);
  AppendArrayHeader(&out, 3);
  AppendNullArray(&out);
  EXPECT_EQ(out, "+OK\r\n-ERR bad  thing\r\n:-42\r\n$2\r\nv\0\r\n$-1\r\n*3\r\n*-1\r\n"s);
}

}  // namespace
}  // namespace sluice
