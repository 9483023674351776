#include "tools/tool_output.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::tools {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// What `sockperf ping-pong --tcp -i 127.0.0.1 -p 12399 -t 1 -m 14 --full-rtt` printed (sockperf
// 3.7, stdout and stderr), its colours written as "ESC[": it colours its lines even into a file.
constexpr char kSockperfPingPong[] = R"(sockperf: ESC[2;35m== version #3.7-no.git == ESC[0m
sockperf[CLIENT] send on:sockperf: using recvfrom() to block on socket(s)

[ 0] IP = 127.0.0.1       PORT = 12399 # TCP
sockperf: Warmup stage (sending a few dummy messages)...
sockperf: Starting test...
sockperf: Test end (interrupted by timer)
sockperf: Test ended
sockperf: [Total Run] RunTime=1.001 sec; Warm up time=400 msec; SentMessages=18724; ReceivedMessages=18723
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=7525; ReceivedMessages=7525
sockperf: ESC[2;35m====> avg-rtt=73.076 (std-dev=39.131)ESC[0m
sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0
sockperf: Summary: Round trip is 73.076 usec
sockperf: ESC[2;35mTotal 7525 observationsESC[0m; each percentile contains 75.25 observations
sockperf: ---> <MAX> observation = 2666.204
sockperf: ---> percentile 99.999 = 2666.204
sockperf: ---> percentile 99.990 = 1278.996
sockperf: ---> percentile 99.900 =  215.159
sockperf: ---> percentile 99.000 =  115.691
sockperf: ---> percentile 90.000 =   85.346
sockperf: ---> percentile 75.000 =   79.087
sockperf: ---> percentile 50.000 =   72.557
sockperf: ---> percentile 25.000 =   67.299
sockperf: ---> <MIN> observation =   14.401
)";

// The same against a port where nothing listens: sockperf exits with status 0 all the same.
constexpr char kSockperfRefused[] = R"(sockperf: ESC[2;35m== version #3.7-no.git == ESC[0m
sockperf: ERROR: Can`t connect socket (errno=111 Connection refused)
)";

std::string Coloured(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"ESC[", "\x1b["}});
}

// What `iperf3 -c 127.0.0.1 -p 12398 -t 1 -J` printed (iperf3 3.12), trimmed: the members the
// benchmark reads, and around them the ones that could be mistaken for them (the intervals' and
// sum_sent's bits_per_second). iperf3 indents with tabs; spaces here.
constexpr char kIperf3Report[] = R"({
  "start":  {
    "connected":  [{
        "socket": 5,
        "local_host": "127.0.0.1",
        "local_port": 44276,
        "remote_host":  "127.0.0.1",
        "remote_port":  12398
      }],
    "version":  "iperf 3.12",
    "system_info":  "Linux vm 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64",
    "tcp_mss_default":  32768,
    "test_start": {
      "protocol": "TCP",
      "num_streams":  1,
      "blksize":  131072,
      "omit": 0,
      "duration": 1
    }
  },
  "intervals":  [{
      "sum":  {
        "start":  0,
        "end":  1.000112,
        "seconds":  1.0001120567321777,
        "bytes":  2399928320,
        "bits_per_second":  19197275376.054642,
        "retransmits":  0,
        "omitted":  false,
        "sender": true
      }
    }],
  "end":  {
    "sum_sent": {
      "start":  0,
      "end":  1.000112,
      "seconds":  1.000112,
      "bytes":  2399928320,
      "bits_per_second":  19197276465.035919,
      "retransmits":  0,
      "sender": true
    },
    "sum_received": {
      "start":  0,
      "end":  1.000899,
      "seconds":  1.000899,
      "bytes":  2399928320,
      "bits_per_second":  19182181778.581055,
      "sender": true
    },
    "sender_tcp_congestion":  "bbr",
    "receiver_tcp_congestion":  "bbr"
  }
}
)";

// The same against a port where nothing listens (iperf3 exits with status 1).
constexpr char kIperf3Refused[] = R"({
  "start":  {
    "connected":  [],
    "version":  "iperf 3.12",
    "system_info":  "Linux vm 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64"
  },
  "intervals":  [],
  "end":  {
  },
  "error":  "unable to connect to server: Connection refused"
}
)";

// ---------------------------------------------------------------- sockperf

TEST(ParseSockperfOutput, ReadsTheFiguresOfARealRun) {
  const absl::StatusOr<SockperfReport> r = ParseSockperfOutput(Coloured(kSockperfPingPong));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->p50_us, 72.557);
  EXPECT_DOUBLE_EQ(r->p90_us, 85.346);
  EXPECT_DOUBLE_EQ(r->p99_us, 115.691);
  EXPECT_DOUBLE_EQ(r->p999_us, 215.159);  // not 99.990 or 99.999
  EXPECT_DOUBLE_EQ(r->max_us, 2666.204);
  // The count sits between colour codes in sockperf's line.
  EXPECT_EQ(r->observations, 7525u);
  EXPECT_TRUE(r->round_trip);
  EXPECT_DOUBLE_EQ(r->measured_seconds, 0.550);  // the valid duration, not the total run
  EXPECT_EQ(r->version, "3.7-no.git");
}

TEST(ParseSockperfOutput, OneWayFiguresWithoutFullRtt) {
  const std::string output = absl::StrReplaceAll(
      Coloured(kSockperfPingPong), {{"Summary: Round trip is", "Summary: Latency is"}});
  const absl::StatusOr<SockperfReport> r = ParseSockperfOutput(output);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->round_trip);
  EXPECT_DOUBLE_EQ(r->p50_us, 72.557);  // as printed: the caller decides what to make of them
}

TEST(ParseSockperfOutput, OnlyTheRequiredLinesAreRequired) {
  const absl::StatusOr<SockperfReport> r = ParseSockperfOutput(
      "sockperf: Total 3 observations; each percentile contains 0.03 observations\n"
      "sockperf: ---> <MAX> observation = 9.5\n"
      "sockperf: ---> percentile 50.000 = 4.25\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->p50_us, 4.25);
  EXPECT_DOUBLE_EQ(r->max_us, 9.5);
  EXPECT_EQ(r->p99_us, 0);
  EXPECT_EQ(r->measured_seconds, 0);
  EXPECT_EQ(r->version, "");
  EXPECT_FALSE(r->round_trip);
}

TEST(ParseSockperfOutput, NoPercentilesQuotesSockperfsError) {
  const absl::StatusOr<SockperfReport> r = ParseSockperfOutput(Coloured(kSockperfRefused));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("no median"));
  EXPECT_THAT(r.status().message(),
              HasSubstr("sockperf: ERROR: Can`t connect socket (errno=111 Connection refused)"));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("\x1b")));
}

TEST(ParseSockperfOutput, NoErrorLineQuotesTheLastLines) {
  const absl::StatusOr<SockperfReport> r =
      ParseSockperfOutput("sockperf: Starting test...\nsockperf: Test ended\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("sockperf: Starting test... | sockperf: Test ended"));
}

TEST(ParseSockperfOutput, EachRequiredFigureIsNamedWhenMissing) {
  const std::string full = Coloured(kSockperfPingPong);
  struct Case {
    std::string drop;
    std::string named;
  };
  for (const Case& c : std::vector<Case>{
           {"sockperf: ---> percentile 50.000 =   72.557\n", "no median"},
           {"sockperf: ---> <MAX> observation = 2666.204\n", "no maximum"},
           {"Total 7525", "no observations"},
       }) {
    const absl::StatusOr<SockperfReport> r =
        ParseSockperfOutput(absl::StrReplaceAll(full, {{c.drop, ""}}));
    ASSERT_FALSE(r.ok()) << c.drop;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.named));
  }
}

TEST(ParseSockperfOutput, FiguresThatAreNotDurationsDoNotCount) {
  for (const char* value : {"nan", "inf", "-3", "", "12abc"}) {
    const std::string output = absl::StrCat(
        "sockperf: Total 3 observations; x\nsockperf: ---> <MAX> observation = 9.5\n"
        "sockperf: ---> percentile 50.000 = ",
        value, "\n");
    const absl::StatusOr<SockperfReport> r = ParseSockperfOutput(output);
    ASSERT_FALSE(r.ok()) << value;
    EXPECT_THAT(r.status().message(), HasSubstr("no median")) << value;
  }
}

TEST(StripEscapes, RemovesColoursOnly) {
  EXPECT_EQ(StripEscapes("a\x1b[2;35mb\x1b[0mc"), "abc");
  EXPECT_EQ(StripEscapes("plain [text] = 1"), "plain [text] = 1");
  EXPECT_EQ(StripEscapes("esc\x1b alone"), "esc alone");
  // Found by fuzz_tool_output: a lone ESC before a sequence made a new one once it was removed.
  EXPECT_EQ(StripEscapes("\x1b\x1b[0m[1m"), "[1m");
  EXPECT_EQ(StripEscapes("cut\x1b[2;3"), "cut");  // ends inside a sequence
  EXPECT_EQ(StripEscapes("\x1b["), "");
}

// ---------------------------------------------------------------- iperf3

TEST(ParseIperf3Json, ReadsTheFiguresOfARealRun) {
  const absl::StatusOr<Iperf3Report> r = ParseIperf3Json(kIperf3Report);
  ASSERT_TRUE(r.ok()) << r.status();
  // end.sum_received, not sum_sent or an interval's.
  EXPECT_DOUBLE_EQ(r->bits_per_second, 19182181778.581055);
  EXPECT_DOUBLE_EQ(r->measured_seconds, 1.000899);
  ASSERT_TRUE(r->block_size.has_value());
  EXPECT_EQ(*r->block_size, 131072u);
  EXPECT_EQ(r->version, "iperf 3.12");
}

TEST(ParseIperf3Json, TextAroundTheObjectIsIgnored) {
  // stdout and stderr are read together: a warning may come before or after the report.
  const absl::StatusOr<Iperf3Report> r =
      ParseIperf3Json(absl::StrCat("iperf3: a warning\n", kIperf3Report, "iperf3: done\n"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->bits_per_second, 19182181778.581055);
}

TEST(ParseIperf3Json, AnErrorMemberIsIperf3sError) {
  const absl::StatusOr<Iperf3Report> r = ParseIperf3Json(kIperf3Refused);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("unable to connect to server: Connection refused"));
}

TEST(ParseIperf3Json, EveryTruncationIsAnError) {
  const std::string full = kIperf3Report;
  const size_t last = full.rfind('}');
  for (size_t size = 0; size < last + 1; ++size) {
    const absl::StatusOr<Iperf3Report> r = ParseIperf3Json(full.substr(0, size));
    ASSERT_FALSE(r.ok()) << "cut at " << size;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << "cut at " << size;
    EXPECT_THAT(r.status().message(), HasSubstr(size == 0 ? "no JSON object" : "truncated"))
        << "cut at " << size;
  }
  EXPECT_TRUE(ParseIperf3Json(full.substr(0, last + 1)).ok());
}

TEST(ParseIperf3Json, MissingOrBadRateIsNamed) {
  const std::string full = kIperf3Report;
  struct Case {
    std::string from;
    std::string to;
    std::string named;
  };
  for (const Case& c : std::vector<Case>{
           {"\"sum_received\"", "\"sum_receipt\"", "no end.sum_received"},
           {"\"bits_per_second\":  19182181778.581055,", "", "no end.sum_received.bits_per_second"},
           {"19182181778.581055", "0", "bits_per_second is '0', not a positive number"},
           {"19182181778.581055", "\"fast\"", "bits_per_second is 'fast'"},
           {"19182181778.581055", "-1e9", "bits_per_second is '-1e9'"},
           {"19182181778.581055", "nan", "bits_per_second is 'nan'"},
       }) {
    const absl::StatusOr<Iperf3Report> r =
        ParseIperf3Json(absl::StrReplaceAll(full, {{c.from, c.to}}));
    ASSERT_FALSE(r.ok()) << c.named;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.named));
  }
}

TEST(ParseIperf3Json, OptionalMembersMayBeMissing) {
  const absl::StatusOr<Iperf3Report> r =
      ParseIperf3Json(R"({"end": {"sum_received": {"bits_per_second": 8e9}}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->bits_per_second, 8e9);
  EXPECT_EQ(r->measured_seconds, 0);
  EXPECT_FALSE(r->block_size.has_value());
  EXPECT_EQ(r->version, "");
}

// ---------------------------------------------------------------- both

TEST(ToolOutput, GarbageIsAnErrorNotACrash) {
  const std::vector<std::string> inputs = {
      "",
      "\n\n\n",
      std::string("\0\xff\x1b[\x1b", 5),
      "---> percentile = \n---> <MAX> observation =",
      "Total  observations;\nversion #",
      "RunTime=",
      "{",
      "}{",
      "{\"error\"",
      "{\"error\":",
      "\"error\": \"\\",
      "{\"sum_received\"",
      "{\"sum_received\": {\"bits_per_second\"",
      "{\"sum_received\": {\"bits_per_second\":}}",
      "{\"a\": \"}\\\"",
      std::string(10000, '{'),
      std::string(10000, '['),
  };
  for (const std::string& input : inputs) {
    EXPECT_FALSE(ParseSockperfOutput(input).ok()) << input;
    const absl::StatusOr<Iperf3Report> r = ParseIperf3Json(input);
    ASSERT_FALSE(r.ok()) << input;
    EXPECT_FALSE(r.status().message().empty()) << input;
  }
}

// ---------------------------------------------------------------- redis-benchmark

// What `redis-benchmark -p 16399 -t get -n 2000 -c 2 -r 1000 --csv` printed (7.0.15).
constexpr char kRedisBenchmarkGet[] =
    "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\","
    "\"p99_latency_ms\",\"max_latency_ms\"\n"
    "\"GET\",\"42553.19\",\"0.032\",\"0.016\",\"0.039\",\"0.039\",\"0.071\",\"2.727\"\n";

TEST(ParseRedisBenchmarkCsv, ReadsTheFiguresOfARealRun) {
  const absl::StatusOr<RedisBenchmarkReport> r = ParseRedisBenchmarkCsv(kRedisBenchmarkGet, "GET");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->requests_per_second, 42553.19);
  EXPECT_DOUBLE_EQ(r->avg_ms, 0.032);
  EXPECT_DOUBLE_EQ(r->min_ms, 0.016);
  EXPECT_DOUBLE_EQ(r->p50_ms, 0.039);
  EXPECT_DOUBLE_EQ(r->p95_ms, 0.039);
  EXPECT_DOUBLE_EQ(r->p99_ms, 0.071);
  EXPECT_DOUBLE_EQ(r->max_ms, 2.727);
  EXPECT_TRUE(r->has_latency);
}

TEST(ParseRedisBenchmarkCsv, ColumnsAreFoundByName) {
  const absl::StatusOr<RedisBenchmarkReport> r = ParseRedisBenchmarkCsv(
      "WARNING: Could not fetch server CONFIG\n"
      "\"test\",\"p99_latency_ms\",\"rps\",\"p50_latency_ms\"\r\n"
      "\"SET\",\"9.0\",\"1.0\",\"9.0\"\r\n"
      "\"GET\",\"0.5\",\"1000.5\",\"0.1\"\r\n",
      "GET");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->requests_per_second, 1000.5);
  EXPECT_DOUBLE_EQ(r->p50_ms, 0.1);
  EXPECT_DOUBLE_EQ(r->p99_ms, 0.5);
  EXPECT_EQ(r->max_ms, 0);
  EXPECT_TRUE(r->has_latency);
}

TEST(ParseRedisBenchmarkCsv, OlderVersionsPrintOnlyTheRate) {
  const absl::StatusOr<RedisBenchmarkReport> r =
      ParseRedisBenchmarkCsv("\"GET\",\"81234.57\"\n", "GET");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->requests_per_second, 81234.57);
  EXPECT_FALSE(r->has_latency);
}

TEST(ParseRedisBenchmarkCsv, ItsErrorsAreQuoted) {
  for (const char* output : {
           "Could not connect to Redis at 127.0.0.1:16398: Connection refused\n"
           "WARNING: Could not fetch server CONFIG\n",
           "Error from server: ERR unknown command 'GET'\n"
           "\"test\",\"rps\",\"avg_latency_ms\"\n",
       }) {
    const absl::StatusOr<RedisBenchmarkReport> r = ParseRedisBenchmarkCsv(output, "GET");
    ASSERT_FALSE(r.ok()) << output;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("redis-benchmark reported an error: "));
    EXPECT_THAT(r.status().message(), HasSubstr(absl::string_view(output).substr(0, 30)));
  }
}

TEST(ParseRedisBenchmarkCsv, MissingOrBadFiguresAreNamed) {
  const std::string full = kRedisBenchmarkGet;
  struct Case {
    std::string from;
    std::string to;
    std::string named;
  };
  for (const Case& c : std::vector<Case>{
           {"\"GET\",", "\"SET\",", "no \"GET\" row"},
           {"\"rps\"", "\"rate\"", "no \"rps\" column"},
           {"42553.19", "0", "rps is '0', not a positive number"},
           {"42553.19", "fast", "rps is 'fast'"},
           {"42553.19", "nan", "rps is 'nan'"},
           {"0.071", "-1", "p99_latency_ms is '-1', not a duration"},
           {"0.039\",\"0.039", "inf\",\"0.039", "p50_latency_ms is 'inf'"},
       }) {
    const absl::StatusOr<RedisBenchmarkReport> r =
        ParseRedisBenchmarkCsv(absl::StrReplaceAll(full, {{c.from, c.to}}), "GET");
    ASSERT_FALSE(r.ok()) << c.named;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.named));
  }
}

TEST(ParseRedisBenchmarkCsv, NothingPrintedIsNoRow) {
  const absl::StatusOr<RedisBenchmarkReport> r = ParseRedisBenchmarkCsv("", "GET");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("it printed nothing"));
}

}  // namespace
}  // namespace sluice::tools
