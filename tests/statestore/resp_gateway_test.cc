// The RESP gateway over real loopback sockets, in front of an in-memory QueryService: every
// command and its errors as a Redis client sees them, replies in request order when the service
// answers pipelined requests out of order on other threads, the token, bad clients (garbage,
// half-open connections, writes) refused while others are served, and redis-cli and
// redis-benchmark working against it when they are installed.
#include "statestore/resp_gateway.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "statestore/resp.h"
#include "tests/net/loopback_client.h"
#include "tests/statestore/fake_query_service.h"

namespace sluice {
namespace {

using ::sluice::testing_util::FakeQueryService;
using ::sluice::testing_util::LoopbackClient;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::Duration kWait = absl::Seconds(30);
constexpr char kJob[] = "orders";

// Parses one reply at `*pos` into a readable form ("OK", "(error) ERR ...", "(integer) 3",
// "\"bytes\"", "(nil)", "[a, b]"); false when it is not complete yet.
bool ParseReply(const std::string& b, size_t* pos, std::string* out) {
  const size_t eol = b.find("\r\n", *pos);
  if (eol == std::string::npos) return false;
  const char type = b[*pos];
  const std::string line = b.substr(*pos + 1, eol - *pos - 1);
  size_t next = eol + 2;
  if (type == '+') {
    *out = line;
  } else if (type == '-') {
    *out = "(error) " + line;
  } else if (type == ':') {
    *out = "(integer) " + line;
  } else if (type == '$' || type == '*') {
    const long long n = std::atoll(line.c_str());
    if (n < 0) {
      *out = type == '$' ? "(nil)" : "(nil array)";
    } else if (type == '$') {
      if (b.size() < next + n + 2) return false;
      *out = "\"" + b.substr(next, n) + "\"";
      next += n + 2;
    } else {
      *out = "[";
      for (long long i = 0; i < n; ++i) {
        std::string element;
        if (!ParseReply(b, &next, &element)) return false;
        absl::StrAppend(out, i > 0 ? ", " : "", element);
      }
      *out += "]";
    }
  } else {
    *out = "(not RESP) " + line;
  }
  *pos = next;
  return true;
}

// A blocking Redis client of the gateway.
class RespClient {
 public:
  explicit RespClient(uint16_t port) : conn_(port) {}

  // Sends one command and returns its reply.
  std::string Run(std::vector<std::string_view> args) {
    Send(args);
    return Reply();
  }
  void Send(const std::vector<std::string_view>& args) {
    EXPECT_TRUE(conn_.Send(EncodeCommand(args)));
  }
  void SendRaw(std::string_view bytes) { EXPECT_TRUE(conn_.Send(bytes)); }
  // The next reply, or "(no reply)" when none came.
  std::string Reply() {
    const absl::Time deadline = absl::Now() + kWait;
    while (true) {
      size_t pos = 0;
      std::string out;
      if (!conn_.buffer().empty() && ParseReply(conn_.buffer(), &pos, &out)) {
        conn_.buffer().erase(0, pos);
        return out;
      }
      if (!conn_.ReadMore(deadline)) return "(no reply)";
    }
  }
  LoopbackClient& connection() { return conn_; }

 private:
  LoopbackClient conn_;
};

class RespGatewayTest : public ::testing::Test {
 protected:
  RespGatewayTest() : service_(kJob) {
    service_.AddValue("counts", "alice", "3");
    service_.AddValue("counts", "bob", "5");
    service_.AddValue("counts", "carol", "8");
    service_.AddValue("totals", "alice", "300");
    QueryValue list;
    list.list = {"a", "b"};
    service_.Add("recent", StateKind::kList, "alice", list);
    QueryValue sum;
    sum.value = "42.5";
    service_.Add("sums", StateKind::kReducing, "alice", sum);
  }

  // States whose every request fails, one per QueryStatus that a client can meet.
  void AddFailingStates() {
    service_.SetStatus("restoring", QueryStatus::kUnavailable, "state is being restored");
    service_.SetStatus("elsewhere", QueryStatus::kMoved, "10.0.0.7:7001");
    service_.SetStatus("broken", QueryStatus::kInternal, "disk on fire");
    service_.SetStatus("guarded", QueryStatus::kUnauthorized, "wrong service token");
  }

  void Start(RespGatewayOptions options = {}) {
    options.job = kJob;
    auto gateway = RespGateway::Create(service_, options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = std::move(gateway).value();
  }
  RespClient Client() { return RespClient(gateway_->port()); }

  FakeQueryService service_;
  std::unique_ptr<RespGateway> gateway_;
};

TEST_F(RespGatewayTest, PingEchoSelectAndClient) {
  Start();
  RespClient c = Client();
  EXPECT_EQ(c.Run({"PING"}), "PONG");
  EXPECT_EQ(c.Run({"ping", "hello"}), "\"hello\"");
  EXPECT_EQ(c.Run({"PING", "a", "b"}), "(error) ERR wrong number of arguments for 'ping' command");
  EXPECT_EQ(c.Run({"ECHO", "x y"}), "\"x y\"");
  EXPECT_EQ(c.Run({"SELECT", "0"}), "OK");
  EXPECT_EQ(c.Run({"SELECT", "1"}), "(error) ERR DB index is out of range");
  EXPECT_EQ(c.Run({"CLIENT", "GETNAME"}), "(nil)");
  EXPECT_EQ(c.Run({"CLIENT", "SETNAME", "reporter"}), "OK");
  EXPECT_EQ(c.Run({"CLIENT", "GETNAME"}), "\"reporter\"");
  EXPECT_EQ(c.Run({"CLIENT", "SETNAME", "two words"}),
            "(error) ERR Client names cannot contain spaces, newlines or special characters.");
  EXPECT_EQ(c.Run({"CLIENT", "ID"}), "(integer) 1");
  EXPECT_EQ(c.Run({"CLIENT", "KILL", "x"}),
            "(error) ERR unknown subcommand 'KILL'. Try CLIENT HELP.");
}

TEST_F(RespGatewayTest, InlineCommandsAsTelnetSendsThem) {
  Start();
  RespClient c = Client();
  c.SendRaw("PING\r\nGET counts:alice\r\nGET \"counts:bob\"\n");
  EXPECT_EQ(c.Reply(), "PONG");
  EXPECT_EQ(c.Reply(), "\"3\"");
  EXPECT_EQ(c.Reply(), "\"5\"");
}

TEST_F(RespGatewayTest, GetAnswersEveryKindOfState) {
  Start();
  RespClient c = Client();
  EXPECT_EQ(c.Run({"GET", "counts:alice"}), "\"3\"");
  EXPECT_EQ(c.Run({"GET", "counts:nobody"}), "(nil)");
  EXPECT_EQ(c.Run({"GET", "sums:alice"}), "\"42.5\"");
  EXPECT_EQ(c.Run({"GET", "recent:alice"}),
            "(error) WRONGTYPE Operation against a key holding the wrong kind of value");
  EXPECT_EQ(c.Run({"GET", "nosuch:alice"}), "(error) ERR unknown state 'nosuch'");
  EXPECT_EQ(c.Run({"GET", "alice"}), "(error) ERR key must be spelled state:key");
  EXPECT_EQ(c.Run({"GET", ":alice"}), "(error) ERR key must be spelled state:key");
  EXPECT_EQ(c.Run({"GET"}), "(error) ERR wrong number of arguments for 'get' command");
  // The key is everything after the first ':'.
  service_.AddValue("counts", "a:b", "colon");
  EXPECT_EQ(c.Run({"GET", "counts:a:b"}), "\"colon\"");
  EXPECT_EQ(gateway_->stats().keyspace_hits.load(), 3u);
  EXPECT_EQ(gateway_->stats().keyspace_misses.load(), 1u);
}

TEST_F(RespGatewayTest, QueryStatusesBecomeRedisErrors) {
  AddFailingStates();
  Start();
  RespClient c = Client();
  EXPECT_EQ(c.Run({"GET", "restoring:a"}), "(error) TRYAGAIN unavailable: state is being restored");
  EXPECT_EQ(c.Run({"GET", "elsewhere:a"}), "(error) ERR moved to 10.0.0.7:7001");
  EXPECT_EQ(c.Run({"GET", "broken:a"}), "(error) ERR internal: disk on fire");
  EXPECT_EQ(c.Run({"GET", "guarded:a"}), "(error) NOAUTH unauthorized: wrong service token");
}

TEST_F(RespGatewayTest, RequestsCarryTheJobAndConsistency) {
  RespGatewayOptions options;
  options.consistency = Consistency::kCommitted;
  Start(options);
  RespClient c = Client();
  ASSERT_EQ(c.Run({"GET", "counts:alice"}), "\"3\"");
  const std::vector<QueryRequest> requests = service_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].type, QueryType::kGet);
  EXPECT_EQ(requests[0].job, kJob);
  EXPECT_EQ(requests[0].state, "counts");
  EXPECT_THAT(requests[0].keys, ElementsAre("alice"));
  EXPECT_EQ(requests[0].consistency, Consistency::kCommitted);
}

TEST_F(RespGatewayTest, MultiGetAsksOncePerStateAndAnswersNilForWhatIsNotAValue) {
  AddFailingStates();
  Start();
  RespClient c = Client();
  EXPECT_EQ(c.Run({"MGET", "counts:alice", "totals:alice", "counts:nobody", "counts:bob",
                   "recent:alice", "nosuch:x", "unspelled", "restoring:a"}),
            "[\"3\", \"300\", (nil), \"5\", (nil), (nil), (nil), (nil)]");
  std::vector<std::string> states;
  for (const QueryRequest& r : service_.requests()) states.push_back(r.state);
  EXPECT_THAT(states, ElementsAre("counts", "totals", "recent", "nosuch", "restoring"));
  EXPECT_EQ(service_.requests()[0].type, QueryType::kMultiGet);
  EXPECT_THAT(service_.requests()[0].keys, ElementsAre("alice", "nobody", "bob"));
}

TEST_F(RespGatewayTest, ExistsCountsKeysThatHaveAValue) {
  AddFailingStates();
  Start();
  RespClient c = Client();
  EXPECT_EQ(c.Run({"EXISTS", "counts:alice"}), "(integer) 1");
  EXPECT_EQ(c.Run({"EXISTS", "counts:alice", "counts:alice", "recent:alice", "counts:nobody",
                   "nosuch:x", "unspelled"}),
            "(integer) 3");
  EXPECT_EQ(c.Run({"EXISTS", "counts:alice", "restoring:a"}),
            "(error) TRYAGAIN unavailable: state is being restored");
}

// SCAN until the cursor is 0; the keys found, in order.
std::vector<std::string> ScanAll(RespClient& c, std::vector<std::string_view> options, int* pages) {
  std::vector<std::string> keys;
  std::string cursor = "0";
  *pages = 0;
  do {
    std::vector<std::string_view> args = {"SCAN", cursor};
    args.insert(args.end(), options.begin(), options.end());
    const std::string reply = c.Run(args);
    ++*pages;
    // ["<cursor>", [<keys>]]
    const size_t open = reply.find('[', 1);
    EXPECT_TRUE(reply.starts_with("[\"") && open != std::string::npos) << reply;
    if (open == std::string::npos) break;
    cursor = reply.substr(2, reply.find('"', 2) - 2);
    EXPECT_EQ(cursor.find_first_not_of("0123456789"), std::string::npos) << cursor;
    const std::string list = reply.substr(open + 1, reply.size() - open - 3);
    for (absl::string_view k : absl::StrSplit(list, ", ", absl::SkipEmpty())) {
      keys.emplace_back(std::string(k.substr(1, k.size() - 2)));
    }
  } while (cursor != "0" && *pages < 100);
  return keys;
}

TEST_F(RespGatewayTest, ScanWalksAStatePageByPageWithNumericCursors) {
  for (int i = 0; i < 7; ++i) service_.AddValue("counts", absl::StrCat("zed", i), "1");
  Start();
  RespClient c = Client();
  int pages = 0;
  EXPECT_THAT(ScanAll(c, {"MATCH", "counts:zed*", "COUNT", "3"}, &pages),
              ElementsAre("counts:zed0", "counts:zed1", "counts:zed2", "counts:zed3", "counts:zed4",
                          "counts:zed5", "counts:zed6"));
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(ScanAll(c, {"MATCH", "counts:*"}, &pages), ::testing::SizeIs(10));
  EXPECT_EQ(pages, 1);
}

TEST_F(RespGatewayTest, ScanWithoutMatchWalksEveryState) {
  Start();
  RespClient c = Client();
  int pages = 0;
  EXPECT_THAT(ScanAll(c, {"COUNT", "2"}, &pages),
              ElementsAre("counts:alice", "counts:bob", "counts:carol", "recent:alice",
                          "sums:alice", "totals:alice"));
  EXPECT_EQ(c.Run({"SCAN", "0", "MATCH", "nosuch:*"}), "(error) ERR unknown state 'nosuch'");
}

TEST_F(RespGatewayTest, ScanRefusesWhatItCannotDo) {
  Start();
  RespClient c = Client();
  const std::string hint =
      "' is not supported: use state:prefix* (a state name, ':', a literal key prefix, a "
      "trailing '*')";
  EXPECT_EQ(c.Run({"SCAN", "0", "MATCH", "counts:a?c*"}),
            "(error) ERR MATCH pattern 'counts:a?c*" + hint);
  EXPECT_EQ(c.Run({"SCAN", "0", "MATCH", "counts:alice"}),
            "(error) ERR MATCH pattern 'counts:alice" + hint);
  EXPECT_EQ(c.Run({"SCAN", "0", "MATCH", "*alice*"}), "(error) ERR MATCH pattern '*alice*" + hint);
  EXPECT_EQ(c.Run({"SCAN", "12345"}), "(error) ERR invalid cursor");
  EXPECT_EQ(c.Run({"SCAN", "abc"}), "(error) ERR invalid cursor");
  EXPECT_EQ(c.Run({"SCAN", "0", "COUNT", "0"}), "(error) ERR syntax error");
  EXPECT_EQ(c.Run({"SCAN", "0", "COUNT"}), "(error) ERR syntax error");
  EXPECT_THAT(c.Run({"SCAN", "0", "TYPE", "string"}),
              HasSubstr("SCAN option 'TYPE' is not supported"));
}

TEST_F(RespGatewayTest, ServerCommandsThatClientsAskWhenTheyStart) {
  Start();
  RespClient c = Client();
  EXPECT_EQ(c.Run({"HELLO"}),
            "[\"server\", \"redis\", \"version\", \"7.0.0\", \"proto\", (integer) 2, \"id\", "
            "(integer) 1, \"mode\", \"standalone\", \"role\", \"master\", \"modules\", []]");
  EXPECT_THAT(c.Run({"HELLO", "2", "SETNAME", "me"}), StartsWith("[\"server\""));
  EXPECT_EQ(c.Run({"CLIENT", "GETNAME"}), "\"me\"");
  EXPECT_EQ(c.Run({"HELLO", "3"}),
            "(error) NOPROTO sorry, this protocol version is not supported.");
  EXPECT_EQ(c.Run({"COMMAND", "DOCS"}), "[]");
  EXPECT_EQ(c.Run({"COMMAND", "COUNT"}), "(integer) 14");
  EXPECT_EQ(c.Run({"COMMAND", "INFO", "get", "set"}),
            "[[\"get\", (integer) 2, [readonly, fast], (integer) 1, (integer) 1, (integer) 1, "
            "[], [], [], []], (nil)]");
  EXPECT_THAT(c.Run({"COMMAND"}), StartsWith("[[\"get\""));
  EXPECT_EQ(c.Run({"CONFIG", "GET", "save"}), "[\"save\", \"\"]");
  EXPECT_EQ(c.Run({"CONFIG", "GET", "appendonly", "databases"}),
            "[\"appendonly\", \"no\", \"databases\", \"1\"]");
  const std::string info = c.Run({"INFO"});
  EXPECT_THAT(info, HasSubstr("# Server\r\nredis_version:7.0.0\r\n"));
  EXPECT_THAT(info, HasSubstr(absl::StrCat("tcp_port:", gateway_->port())));
  EXPECT_THAT(info, HasSubstr("connected_clients:1\r\n"));
  EXPECT_THAT(info, HasSubstr("total_commands_processed:11\r\n"));
  EXPECT_THAT(info, HasSubstr("job:orders\r\n"));
  EXPECT_EQ(c.Run({"INFO", "clients"}),
            "\"# Clients\r\nconnected_clients:1\r\nmaxclients:10000\r\n\r\n\"");
}

TEST_F(RespGatewayTest, WritesAreRefusedAndUnknownCommandsNamed) {
  Start();
  RespClient c = Client();
  EXPECT_EQ(c.Run({"SET", "counts:alice", "4"}),
            "(error) READONLY You can't write against a read only state store.");
  EXPECT_EQ(c.Run({"del", "counts:alice"}),
            "(error) READONLY You can't write against a read only state store.");
  EXPECT_EQ(c.Run({"FLUSHALL"}),
            "(error) READONLY You can't write against a read only state store.");
  EXPECT_EQ(c.Run({"FROB", "a", "b"}),
            "(error) ERR unknown command 'FROB', with args beginning with: 'a' 'b' ");
  EXPECT_EQ(c.Run({"GET", "counts:alice"}), "\"3\"");  // nothing changed
  EXPECT_EQ(gateway_->stats().refused_writes.load(), 3u);
}

TEST_F(RespGatewayTest, QuitAnswersThenCloses) {
  Start();
  RespClient c = Client();
  c.Send({"QUIT"});
  c.Send({"PING"});  // never run
  EXPECT_EQ(c.Reply(), "OK");
  EXPECT_TRUE(c.connection().WaitClosed(kWait));
  EXPECT_EQ(c.connection().buffer(), "");
}

TEST_F(RespGatewayTest, TokenIsRequiredBeforeAnythingElse) {
  RespGatewayOptions options;
  options.token = "s3cret";
  Start(options);
  RespClient c = Client();
  EXPECT_EQ(c.Run({"GET", "counts:alice"}), "(error) NOAUTH Authentication required.");
  EXPECT_EQ(c.Run({"PING"}), "(error) NOAUTH Authentication required.");
  EXPECT_EQ(c.Run({"FROB"}), "(error) NOAUTH Authentication required.");
  EXPECT_EQ(c.Run({"SET", "a:b", "c"}), "(error) NOAUTH Authentication required.");
  EXPECT_THAT(c.Run({"HELLO", "2"}), StartsWith("(error) NOAUTH HELLO must be called"));
  EXPECT_EQ(c.Run({"AUTH", "guess"}),
            "(error) WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(c.Run({"AUTH", "admin", "s3cret"}),
            "(error) WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(c.Run({"AUTH", "s3cret"}), "OK");
  EXPECT_EQ(c.Run({"GET", "counts:alice"}), "\"3\"");
  EXPECT_EQ(gateway_->stats().auth_failures.load(), 2u);

  RespClient d = Client();
  EXPECT_EQ(c.Run({"AUTH", "default", "s3cret"}), "OK");
  EXPECT_THAT(d.Run({"HELLO", "2", "AUTH", "default", "wrong"}), StartsWith("(error) WRONGPASS"));
  EXPECT_THAT(d.Run({"HELLO", "2", "AUTH", "default", "s3cret"}), StartsWith("[\"server\""));
  EXPECT_EQ(d.Run({"GET", "counts:bob"}), "\"5\"");

  RespClient e = Client();
  e.Send({"QUIT"});
  EXPECT_EQ(e.Reply(), "OK");
  EXPECT_TRUE(e.connection().WaitClosed(kWait));
}

TEST_F(RespGatewayTest, AuthWithoutATokenConfiguredIsAnError) {
  Start();
  RespClient c = Client();
  EXPECT_THAT(c.Run({"AUTH", "x"}), StartsWith("(error) ERR AUTH <password> called without"));
}

TEST_F(RespGatewayTest, PipelinedRepliesKeepRequestOrderWhenAnsweredOutOfOrder) {
  service_.AddValue("counts", "slow1", "s1");
  service_.AddValue("counts", "slow2", "s2");
  service_.DeferKeysStartingWith("slow");
  Start();
  RespClient c = Client();
  c.SendRaw(EncodeCommand({"GET", "counts:slow1"}) + EncodeCommand({"GET", "counts:alice"}) +
            EncodeCommand({"GET", "counts:slow2"}) + EncodeCommand({"PING"}));
  ASSERT_TRUE(service_.WaitDeferred(2));
  service_.ReleaseDeferredInReverse();  // slow2 first, from another thread
  EXPECT_EQ(c.Reply(), "\"s1\"");
  EXPECT_EQ(c.Reply(), "\"3\"");
  EXPECT_EQ(c.Reply(), "\"s2\"");
  EXPECT_EQ(c.Reply(), "PONG");
}

TEST_F(RespGatewayTest, LongPipelinesStayInOrderUnderTheInFlightLimit) {
  constexpr int kCommands = 3000;
  for (int i = 0; i < 50; ++i) service_.AddValue("counts", absl::StrCat("k", i), absl::StrCat(i));
  service_.StartAsync();
  RespGatewayOptions options;
  options.max_in_flight = 16;
  Start(options);
  RespClient c = Client();
  std::string pipeline;
  for (int i = 0; i < kCommands; ++i) {
    pipeline += i % 7 == 3 ? EncodeCommand({"PING"})
                           : EncodeCommand({"GET", absl::StrCat("counts:k", i % 50)});
  }
  c.SendRaw(pipeline);
  for (int i = 0; i < kCommands; ++i) {
    ASSERT_EQ(c.Reply(), i % 7 == 3 ? "PONG" : absl::StrCat("\"", i % 50, "\"")) << "reply " << i;
  }
}

TEST_F(RespGatewayTest, ClientThatStopsSendingStillGetsEveryReply) {
  service_.AddValue("counts", "slow1", "s1");
  service_.DeferKeysStartingWith("slow");
  Start();
  RespClient c = Client();
  c.SendRaw(EncodeCommand({"GET", "counts:slow1"}) + EncodeCommand({"PING"}));
  c.connection().ShutdownWrite();
  ASSERT_TRUE(service_.WaitDeferred(1));
  service_.ReleaseDeferredInReverse();
  EXPECT_EQ(c.Reply(), "\"s1\"");
  EXPECT_EQ(c.Reply(), "PONG");
  EXPECT_TRUE(c.connection().WaitClosed(kWait));
}

TEST_F(RespGatewayTest, GarbageIsAProtocolErrorThatClosesOnlyThatConnection) {
  Start();
  RespClient good = Client();
  RespClient bad = Client();
  EXPECT_EQ(good.Run({"PING"}), "PONG");
  bad.SendRaw("PING\r\n*1\r\n$3\r\nabcdef\r\n*1\r\n$4\r\nPING\r\n");
  EXPECT_EQ(bad.Reply(), "PONG");
  EXPECT_EQ(bad.Reply(),
            "(error) ERR Protocol error: missing \\r\\n after a bulk string of 3 bytes");
  EXPECT_TRUE(bad.connection().WaitClosed(kWait));
  EXPECT_EQ(bad.connection().buffer(), "");

  RespClient binary = Client();
  binary.SendRaw(std::string("*\x01\x02\xff\r\n", 6));
  EXPECT_EQ(binary.Reply(),
            "(error) ERR Protocol error: invalid multibulk length '\\x01\\x02\\xff'");
  EXPECT_TRUE(binary.connection().WaitClosed(kWait));

  EXPECT_EQ(good.Run({"GET", "counts:bob"}), "\"5\"");
  EXPECT_EQ(gateway_->stats().protocol_errors.load(), 2u);
}

TEST_F(RespGatewayTest, HalfOpenConnectionIsClosedByTheIdleTimeout) {
  RespGatewayOptions options;
  options.idle_timeout = absl::Milliseconds(300);
  Start(options);
  RespClient half = Client();
  half.SendRaw("*2\r\n$3\r\nGET\r\n$12\r\ncounts:al");
  EXPECT_TRUE(half.connection().WaitClosed(kWait));
  EXPECT_EQ(half.connection().buffer(), "");
  RespClient next = Client();
  EXPECT_EQ(next.Run({"GET", "counts:alice"}), "\"3\"");
  EXPECT_EQ(gateway_->server_stats().closed_idle.load(), 1u);
}

TEST_F(RespGatewayTest, RepliesOverTheLimitBecomeAnError) {
  service_.AddValue("counts", "huge", std::string(2000, 'x'));
  RespGatewayOptions options;
  options.max_reply_bytes = 1024;
  Start(options);
  RespClient c = Client();
  EXPECT_EQ(c.Run({"GET", "counts:huge"}),
            "(error) ERR reply of 2009 bytes exceeds the gateway's limit of 1024 bytes (max "
            "reply bytes)");
  EXPECT_EQ(c.Run({"GET", "counts:alice"}), "\"3\"");
}

TEST_F(RespGatewayTest, ConnectionsOverTheLimitAreToldSo) {
  RespGatewayOptions options;
  options.max_connections = 1;
  Start(options);
  RespClient first = Client();
  EXPECT_EQ(first.Run({"PING"}), "PONG");
  RespClient second = Client();
  EXPECT_EQ(second.Reply(), "(error) ERR max number of clients reached");
}

// The path of an installed program, or "" when it is not on PATH.
std::string FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(std::string(dir), "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout
};

// Runs `command` through the shell, bounded by `timeout` (coreutils) so that a hang fails.
ProcessResult RunProcess(const std::string& command) {
  ProcessResult result;
  FILE* pipe = popen(absl::StrCat("timeout 120 ", command).c_str(), "r");
  if (pipe == nullptr) return result;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), pipe)) > 0) result.output.append(chunk, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class RespGatewayRedisToolsTest : public RespGatewayTest {
 protected:
  void SetUp() override {
    cli_ = FindProgram("redis-cli");
    benchmark_ = FindProgram("redis-benchmark");
    if (cli_.empty() || benchmark_.empty()) {
      GTEST_SKIP() << "redis-cli or redis-benchmark is not installed (Debian: redis-tools)";
    }
    service_.AddValue("key", "__rand_int__", "benchmark value");
    Start();
  }
  std::string cli_, benchmark_;
};

TEST_F(RespGatewayRedisToolsTest, RedisCliGets) {
  const ProcessResult r =
      RunProcess(absl::StrCat(cli_, " -p ", gateway_->port(), " GET counts:bob"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "5\n");
}

TEST_F(RespGatewayRedisToolsTest, RedisCliScans) {
  for (int i = 0; i < 25; ++i) service_.AddValue("counts", absl::StrCat("user", i), "1");
  const ProcessResult r =
      RunProcess(absl::StrCat(cli_, " -p ", gateway_->port(), " --scan --pattern 'counts:*'"));
  EXPECT_EQ(r.exit_code, 0);
  std::vector<std::string> keys = absl::StrSplit(r.output, '\n', absl::SkipEmpty());
  std::sort(keys.begin(), keys.end());
  ASSERT_EQ(keys.size(), 28u) << r.output;
  EXPECT_EQ(keys[0], "counts:alice");
  EXPECT_EQ(keys[27], "counts:user9");
}

TEST_F(RespGatewayRedisToolsTest, RedisBenchmarkFinishes) {
  const ProcessResult r =
      RunProcess(absl::StrCat(benchmark_, " -p ", gateway_->port(), " -t get -n 2000 -c 10 -q"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("GET: "));
  EXPECT_GE(gateway_->stats().keyspace_hits.load(), 2000u);
}

}  // namespace
}  // namespace sluice
