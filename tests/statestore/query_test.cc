// The query service in one process: StateQueryService over real backends (both kinds), the
// native QueryServer and QueryClient over loopback, the protocol codec and the location table.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/buffer_pool.h"
#include "gtest/gtest.h"
#include "net/transport.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/location_table.h"
#include "statestore/query_client.h"
#include "statestore/query_protocol.h"
#include "statestore/query_server.h"
#include "statestore/state_query_service.h"

namespace sluice {
namespace {

const StateDescriptor kCount = StateDescriptor::Value("count");
const StateDescriptor kEvents = StateDescriptor::List("events");
const StateDescriptor kAttrs = StateDescriptor::Map("attrs");

QueryResponse Ask(QueryService& service, QueryRequest request) {
  absl::Notification done;
  QueryResponse out;
  service.Execute(std::move(request), [&](QueryResponse r) {
    out = std::move(r);
    done.Notify();
  });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  return out;
}

QueryRequest Get(std::string state, std::string key, Consistency c = Consistency::kLatest) {
  QueryRequest r;
  r.type = QueryType::kGet;
  r.job = "job";
  r.state = std::move(state);
  r.keys = {std::move(key)};
  r.consistency = c;
  return r;
}

// One subtask's backend registered with a service, with a helper to write.
struct Subtask {
  std::unique_ptr<KeyedStateBackend> backend;
  std::unique_ptr<QueryablePartition> partition;

  void Put(const std::string& key, const std::string& value) {
    ASSERT_TRUE(backend->SetCurrentKey(key).ok());
    ASSERT_TRUE((*backend->GetValueState(kCount))->Update(value).ok());
  }
};

class QueryServiceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("query_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->random_seed(), "_", counter_++);
    service_ =
        std::make_unique<StateQueryService>(StateQueryServiceOptions{"127.0.0.1:1"}, nullptr);
  }
  void TearDown() override {
    subtasks_.clear();
    service_.reset();
    std::filesystem::remove_all(dir_);
  }

  Subtask& AddSubtask(KeyGroupRange range, uint32_t max_parallelism = 16) {
    KeyedStateBackendOptions o;
    o.kind = GetParam();
    o.max_parallelism = max_parallelism;
    o.key_groups = range;
    o.directory = (dir_ / absl::StrCat("db", subtasks_.size())).string();
    auto s = std::make_unique<Subtask>();
    s->backend = *KeyedStateBackend::Create(o);
    EXPECT_TRUE(s->backend->GetValueState(kCount).ok());
    EXPECT_TRUE(s->backend->GetListState(kEvents).ok());
    EXPECT_TRUE(s->backend->GetMapState(kAttrs).ok());
    s->partition = *service_->Register("job", range, max_parallelism);
    subtasks_.push_back(std::move(s));
    return *subtasks_.back();
  }

  // The subtask holding `key` among those added.
  Subtask& Owner(const std::string& key) {
    for (auto& s : subtasks_) {
      if (s->partition->key_groups().Contains(KeyGroupForKey(key, 16))) return *s;
    }
    ADD_FAILURE() << "no subtask for " << key;
    return *subtasks_[0];
  }

  std::filesystem::path dir_;
  static inline int counter_ = 0;
  std::unique_ptr<StateQueryService> service_;
  std::vector<std::unique_ptr<Subtask>> subtasks_;
};

TEST_P(QueryServiceTest, UnavailableUntilPublishedThenReadsEveryKind) {
  Subtask& s = AddSubtask({0, 16});
  EXPECT_EQ(Ask(*service_, Get("count", "a")).results[0].status, QueryStatus::kUnavailable);
  s.Put("a", "1");
  ASSERT_TRUE(s.backend->SetCurrentKey("a").ok());
  ASSERT_TRUE((*s.backend->GetListState(kEvents))->Add("e1").ok());
  ASSERT_TRUE((*s.backend->GetListState(kEvents))->Add("e2").ok());
  ASSERT_TRUE((*s.backend->GetMapState(kAttrs))->Put("color", "red").ok());
  s.partition->PublishLatest(*s.backend->LiveView());

  KeyResult value = Ask(*service_, Get("count", "a")).results[0];
  ASSERT_EQ(value.status, QueryStatus::kOk) << value.message;
  EXPECT_TRUE(value.found);
  EXPECT_EQ(value.value.value, "1");
  KeyResult list = Ask(*service_, Get("events", "a")).results[0];
  EXPECT_EQ(list.value.kind, StateKind::kList);
  EXPECT_EQ(list.value.list, (std::vector<std::string>{"e1", "e2"}));
  KeyResult map = Ask(*service_, Get("attrs", "a")).results[0];
  ASSERT_EQ(map.value.map.size(), 1u);
  EXPECT_EQ(map.value.map[0], (std::pair<std::string, std::string>{"color", "red"}));

  KeyResult absent = Ask(*service_, Get("count", "nope")).results[0];
  EXPECT_EQ(absent.status, QueryStatus::kOk);
  EXPECT_FALSE(absent.found);
  KeyResult unknown_state = Ask(*service_, Get("nostate", "a")).results[0];
  EXPECT_EQ(unknown_state.status, QueryStatus::kUnknownState);
  EXPECT_NE(unknown_state.message.find("nostate"), std::string::npos);
  QueryRequest other_job = Get("count", "a");
  other_job.job = "other";
  EXPECT_EQ(Ask(*service_, other_job).status, QueryStatus::kUnknownJob);
  QueryRequest no_job = Get("count", "a");
  no_job.job.clear();  // the only job here
  EXPECT_EQ(Ask(*service_, no_job).results[0].value.value, "1");
}

// Committed reads see the state as of the barrier of the newest completed checkpoint, latest
// reads the live state; a checkpoint that has not completed changes nothing.
TEST_P(QueryServiceTest, CommittedReadsFollowCompletedCheckpoints) {
  Subtask& s = AddSubtask({0, 16});
  s.Put("k", "v1");
  s.partition->PublishLatest(*s.backend->LiveView());
  EXPECT_EQ(Ask(*service_, Get("count", "k", Consistency::kCommitted)).results[0].status,
            QueryStatus::kUnavailable);

  ASSERT_TRUE(s.partition->PinAtBarrier(1, *s.backend).ok());
  s.Put("k", "v2");  // after barrier 1
  if (GetParam() == "heap") s.partition->PublishLatest(*s.backend->LiveView());
  // Checkpoint 1 has not completed: still nothing committed.
  EXPECT_EQ(Ask(*service_, Get("count", "k", Consistency::kCommitted)).results[0].status,
            QueryStatus::kUnavailable);
  service_->PublishCompleted("job", 1);
  KeyResult committed = Ask(*service_, Get("count", "k", Consistency::kCommitted)).results[0];
  EXPECT_EQ(committed.value.value, "v1");
  EXPECT_EQ(committed.checkpoint_id, 1u);
  EXPECT_EQ(Ask(*service_, Get("count", "k")).results[0].value.value, "v2");

  ASSERT_TRUE(s.partition->PinAtBarrier(2, *s.backend).ok());
  s.Put("k", "v3");
  ASSERT_TRUE(s.partition->PinAtBarrier(3, *s.backend).ok());  // never completes
  service_->PublishCompleted("job", 2);
  committed = Ask(*service_, Get("count", "k", Consistency::kCommitted)).results[0];
  EXPECT_EQ(committed.value.value, "v2");
  EXPECT_EQ(committed.checkpoint_id, 2u);
  // The previous checkpoint stays readable by id; an older one is gone.
  QueryRequest at1 = Get("count", "k", Consistency::kCommitted);
  at1.checkpoint_id = 1;
  EXPECT_EQ(Ask(*service_, at1).results[0].value.value, "v1");
  ASSERT_TRUE(s.partition->PinAtBarrier(4, *s.backend).ok());
  service_->PublishCompleted("job", 4);
  EXPECT_EQ(Ask(*service_, Get("count", "k", Consistency::kCommitted)).results[0].value.value,
            "v3");
  EXPECT_EQ(Ask(*service_, at1).results[0].status, QueryStatus::kUnavailable);

  s.partition->SetRestoring();
  EXPECT_EQ(Ask(*service_, Get("count", "k")).results[0].status, QueryStatus::kUnavailable);
  EXPECT_EQ(Ask(*service_, Get("count", "k", Consistency::kCommitted)).results[0].status,
            QueryStatus::kUnavailable);
  s.partition->PublishLatest(*s.backend->LiveView());
  EXPECT_EQ(Ask(*service_, Get("count", "k")).results[0].value.value, "v3");
}

TEST_P(QueryServiceTest, MultiGetAndScanAcrossPartitionsWithMovedForOthers) {
  Subtask& a = AddSubtask({0, 8});
  Subtask& b = AddSubtask({8, 8});
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back(absl::StrCat(i % 2 ? "odd-" : "even-", 1000 + i));
  for (const std::string& k : keys) Owner(k).Put(k, "v" + k);
  a.partition->PublishLatest(*a.backend->LiveView());
  b.partition->PublishLatest(*b.backend->LiveView());

  QueryRequest mget = Get("count", "");
  mget.type = QueryType::kMultiGet;
  mget.keys = keys;
  QueryResponse got = Ask(*service_, mget);
  ASSERT_EQ(got.results.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(got.results[i].value.value, "v" + keys[i]);

  // A scan of "even-" in pages of 7 sees each even key once, in key-group order.
  QueryRequest scan = Get("count", "");
  scan.type = QueryType::kPrefixScan;
  scan.keys.clear();
  scan.prefix = "even-";
  scan.limit = 7;
  std::set<std::string> seen;
  int pages = 0;
  for (;; ++pages) {
    QueryResponse page = Ask(*service_, scan);
    ASSERT_EQ(page.status, QueryStatus::kOk) << page.message;
    ASSERT_LE(page.entries.size(), 7u);
    for (const ScanEntry& e : page.entries) {
      EXPECT_TRUE(seen.insert(e.key).second) << e.key;
      EXPECT_EQ(e.value.value, "v" + e.key);
    }
    if (page.continuation.empty()) break;
    scan.continuation = page.continuation;
  }
  EXPECT_EQ(seen.size(), 150u);
  EXPECT_GE(pages, 150 / 7);

  // Partition b leaves; the location table says where its key groups went; no forwarder here,
  // so keys there are answered Moved with the location.
  subtasks_.pop_back();
  LocationTable table =
      *LocationTable::Parse("job job max-parallelism 16\njob * 8-15 10.0.0.2:9\n");
  service_->SetLocations(table);
  const std::string on_b = [&] {
    for (const std::string& k : keys) {
      if (KeyGroupForKey(k, 16) >= 8) return k;
    }
    return std::string();
  }();
  KeyResult moved = Ask(*service_, Get("count", on_b)).results[0];
  EXPECT_EQ(moved.status, QueryStatus::kMoved);
  EXPECT_EQ(moved.location, "10.0.0.2:9");
  scan.continuation = EncodeScanPosition({8, 0, ""});
  QueryResponse scan_moved = Ask(*service_, scan);
  EXPECT_EQ(scan_moved.status, QueryStatus::kMoved);
  EXPECT_EQ(scan_moved.location, "10.0.0.2:9");
  scan.continuation = "garbage";
  EXPECT_EQ(Ask(*service_, scan).status, QueryStatus::kBadRequest);
  scan.continuation.clear();
  scan.limit = 1000000;
  EXPECT_EQ(Ask(*service_, scan).status, QueryStatus::kTooLarge);
}

TEST_P(QueryServiceTest, ListStatesNamesKindsTypesAndLocations) {
  Subtask& a = AddSubtask({0, 8});
  a.partition->PublishLatest(*a.backend->LiveView());
  service_->SetLocations(*LocationTable::Parse("job job max-parallelism 16\njob * 8-15 h:2\n"));
  QueryRequest list;
  list.type = QueryType::kListStates;
  QueryResponse r = Ask(*service_, list);
  ASSERT_EQ(r.states.size(), 3u);
  EXPECT_EQ(r.states[0].name, "attrs");
  EXPECT_EQ(r.states[0].kind, StateKind::kMap);
  EXPECT_EQ(r.states[2].name, "events");
  ASSERT_EQ(r.states[1].locations.size(), 2u);
  EXPECT_EQ(r.states[1].locations[0].address, "127.0.0.1:1");
  EXPECT_EQ(r.states[1].locations[1].key_groups, (KeyGroupRange{8, 8}));
  EXPECT_EQ(r.states[1].max_parallelism, 16u);
}

INSTANTIATE_TEST_SUITE_P(Backends, QueryServiceTest, ::testing::Values("heap", "rocksdb"),
                         [](const auto& p) { return p.param; });

TEST(QueryProtocol, RoundTripsAndRefusesGarbage) {
  QueryRequest r = Get("st", std::string("k\0y", 3), Consistency::kCommitted);
  r.type = QueryType::kMultiGet;
  r.keys.push_back("second");
  r.ns = "window-1";
  r.checkpoint_id = 7;
  r.forward = false;
  Buffer encoded = EncodeQueryRequest(r);
  // At an odd address too, as in a receive segment.
  std::string shifted = "x" + std::string(encoded.readable());
  absl::StatusOr<QueryRequest> back = DecodeQueryRequest(std::string_view(shifted).substr(1));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->keys, r.keys);
  EXPECT_EQ(back->ns, "window-1");
  EXPECT_EQ(back->consistency, Consistency::kCommitted);
  EXPECT_EQ(back->checkpoint_id, 7u);
  EXPECT_FALSE(back->forward);

  QueryResponse resp;
  resp.results.resize(2);
  resp.results[0].found = true;
  resp.results[0].value.kind = StateKind::kMap;
  resp.results[0].value.map = {{"a", "1"}};
  resp.results[1].status = QueryStatus::kMoved;
  resp.results[1].location = "h:1";
  resp.entries.push_back(ScanEntry{"k", QueryValue{StateKind::kList, "", {"x", "y"}, {}}});
  resp.continuation = "c";
  Buffer out = EncodeQueryResponse(resp);
  absl::StatusOr<QueryResponse> decoded = DecodeQueryResponse(out.readable());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->results[0].value, resp.results[0].value);
  EXPECT_EQ(decoded->results[1].location, "h:1");
  EXPECT_EQ(decoded->entries[0].value.list, (std::vector<std::string>{"x", "y"}));

  EXPECT_FALSE(DecodeQueryRequest("").ok());
  EXPECT_FALSE(DecodeQueryRequest("not a flatbuffer at all").ok());
  std::string bad_type(encoded.readable());
  EXPECT_FALSE(DecodeQueryResponse(bad_type).ok() && false);
}

TEST(LocationTable, ParsesAndNamesBadLines) {
  absl::StatusOr<LocationTable> t = LocationTable::Parse(
      "# where\njob wc max-parallelism 8\nwc * 0-3 127.0.0.1:1\nwc counts 4-7 127.0.0.1:2\n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->Find("wc", "x", 2), "127.0.0.1:1");
  EXPECT_EQ(t->Find("wc", "counts", 5), "127.0.0.1:2");
  EXPECT_EQ(t->Find("wc", "other", 5), std::nullopt);
  EXPECT_EQ(LocationTable::Parse(t->ToString())->entries().size(), 2u);
  for (const auto& [text, needle] : std::vector<std::pair<std::string, std::string>>{
           {"wc * 0-3 h:1", "line 1: job 'wc' has no"},
           {"job wc max-parallelism 8\nwc * 0-8 h:1", "past the job's maximum parallelism"},
           {"job wc max-parallelism 8\nwc * 3-1 h:1", "first <= last"},
           {"job wc max-parallelism 8\nwc * 0-1 nohost", "must be host:port"},
           {"job wc max-parallelism x", "not a number"},
           {"what is this", "expected"}}) {
    absl::StatusOr<LocationTable> bad = LocationTable::Parse(text);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_NE(bad.status().message().find(needle), std::string_view::npos) << bad.status();
  }
}

// The native server and client over loopback.
class QueryServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("query_server_test_", getpid());
    KeyedStateBackendOptions o;
    o.kind = "heap";
    backend_ = *KeyedStateBackend::Create(o);
    for (int i = 0; i < 1000; ++i) {
      ASSERT_TRUE(backend_->SetCurrentKey(absl::StrCat("key", i)).ok());
      ASSERT_TRUE((*backend_->GetValueState(kCount))->Update(absl::StrCat("value", i)).ok());
    }
    service_ = std::make_unique<StateQueryService>(StateQueryServiceOptions{}, nullptr);
    partition_ = *service_->Register("job", {0, kDefaultMaxParallelism}, kDefaultMaxParallelism);
    partition_->PublishLatest(*backend_->LiveView());
  }

  std::unique_ptr<QueryServer> StartServer(QueryServerOptions options = {}) {
    absl::StatusOr<std::unique_ptr<QueryServer>> server = QueryServer::Create(options, *service_);
    EXPECT_TRUE(server.ok()) << server.status();
    return *std::move(server);
  }

  std::unique_ptr<QueryClient> Client(const std::string& address, std::string token = "") {
    QueryClientOptions o;
    o.address = address;
    o.connections.token = std::move(token);
    o.deadline = absl::Seconds(5);
    return *QueryClient::Create(o);
  }

  std::filesystem::path dir_;
  std::unique_ptr<KeyedStateBackend> backend_;
  std::unique_ptr<StateQueryService> service_;
  std::unique_ptr<QueryablePartition> partition_;
};

TEST_F(QueryServerTest, GetMultiGetScanOverTheWire) {
  auto server = StartServer();
  auto client = Client(server->address());
  KeyResult r = client->Get("job", "count", "key7");
  ASSERT_EQ(r.status, QueryStatus::kOk) << r.message;
  EXPECT_EQ(r.value.value, "value7");
  QueryRequest scan;
  scan.type = QueryType::kPrefixScan;
  scan.job = "job";
  scan.state = "count";
  scan.prefix = "key99";
  scan.limit = 3;
  std::set<std::string> keys;
  QueryResponse done = client->ScanAll(scan, [&](const ScanEntry& e) {
    keys.insert(e.key);
    return true;
  });
  EXPECT_EQ(done.status, QueryStatus::kOk);
  EXPECT_EQ(keys, (std::set<std::string>{"key99", "key990", "key991", "key992", "key993", "key994",
                                         "key995", "key996", "key997", "key998", "key999"}));
}

TEST_F(QueryServerTest, MemoryTransportHasOneIoThread) {
  QueryServerOptions o;
  o.transport = "memory";
  o.io_threads = 4;  // a memory port takes one listener
  auto server = StartServer(o);
  EXPECT_EQ(server->io_threads(), 1u);
  EXPECT_EQ(server->transport_name(), "memory");
  QueryClientOptions c;
  c.address = server->address();
  c.connections.transport = "memory";
  c.deadline = absl::Seconds(5);
  EXPECT_EQ((*QueryClient::Create(c))->Get("job", "count", "key3").value.value, "value3");
}

TEST_F(QueryServerTest, TokenIsRequiredWhenConfigured) {
  QueryServerOptions o;
  o.token = "secret";
  auto server = StartServer(o);
  EXPECT_EQ(Client(server->address(), "wrong")->Get("job", "count", "key1").status,
            QueryStatus::kUnauthorized);
  EXPECT_EQ(Client(server->address())->Get("job", "count", "key1").status,
            QueryStatus::kUnauthorized);
  EXPECT_EQ(Client(server->address(), "secret")->Get("job", "count", "key1").value.value, "value1");
}

TEST_F(QueryServerTest, OversizedAnswersAreTooLargeAndTheConnectionGoesOn) {
  QueryServerOptions o;
  o.max_response_bytes = 512;
  auto server = StartServer(o);
  auto client = Client(server->address());
  QueryRequest mget;
  mget.type = QueryType::kMultiGet;
  mget.job = "job";
  mget.state = "count";
  for (int i = 0; i < 100; ++i) mget.keys.push_back(absl::StrCat("key", i));
  QueryResponse big = client->Execute(mget);
  ASSERT_EQ(big.results.size(), 100u);
  EXPECT_EQ(big.results[0].status, QueryStatus::kTooLarge);
  EXPECT_NE(big.results[0].message.find("512"), std::string::npos) << big.results[0].message;
  EXPECT_EQ(client->Get("job", "count", "key1").value.value, "value1");
  EXPECT_GE(server->stats().too_large.load(), 1u);
}

// Answers the query frames of one connection.
class Answers final : public net::ConnectionHandler {
 public:
  void OnFrame(net::Connection&, const net::FrameHeader& h, Buffer payload) override {
    absl::StatusOr<QueryResponse> r = DecodeQueryResponse(payload.readable());
    absl::MutexLock lock(&mu_);
    answer_ =
        r.ok() && r->results.size() == 1 ? r->results[0].value.value : std::string("bad answer");
    id_ = h.channel;
  }
  void OnClosed(net::Connection&, const absl::Status&) override {}
  std::string Wait(uint32_t* id) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](std::string* a) { return !a->empty(); }, &answer_),
                         absl::Seconds(60));
    *id = id_;
    return answer_;
  }

 private:
  absl::Mutex mu_;
  std::string answer_;
  uint32_t id_ = 0;
};

TEST_F(QueryServerTest, ThousandConcurrentClients) {
  QueryServerOptions o;
  o.io_threads = 3;  // the connections are spread over three transports on one port
  auto server = StartServer(o);
  ASSERT_EQ(server->io_threads(), 3u);
  // Each open connection may hold a receive segment.
  auto pool = *BufferPool::Create(BufferPoolOptions{32 * 1024, 4096, false});
  net::TransportOptions t;
  t.pool = pool.get();
  t.receive_max_segments = 4096;
  auto transport = *net::Transport::Create("auto", t);
  constexpr int kClients = 1000;
  std::vector<std::shared_ptr<Answers>> answers;
  std::vector<std::shared_ptr<net::Connection>> connections;
  net::ConnectOptions c;
  c.port = server->port();
  for (int i = 0; i < kClients; ++i) {  // all open at once
    answers.push_back(std::make_shared<Answers>());
    absl::StatusOr<std::shared_ptr<net::Connection>> conn = transport->Connect(c, answers.back());
    ASSERT_TRUE(conn.ok()) << i << ": " << conn.status();
    connections.push_back(*std::move(conn));
  }
  for (int i = 0; i < kClients; ++i) {
    net::FrameHeader h;
    h.type = kQueryRequestFrame;
    h.channel = static_cast<uint32_t>(i);
    ASSERT_TRUE(
        connections[i]->Send(h, EncodeQueryRequest(Get("count", absl::StrCat("key", i)))).ok());
  }
  for (int i = 0; i < kClients; ++i) {
    uint32_t id = 0;
    EXPECT_EQ(answers[i]->Wait(&id), absl::StrCat("value", i));
    EXPECT_EQ(id, static_cast<uint32_t>(i));
  }
  for (auto& conn : connections) conn->Close();
}

// Raw sockets: bytes that are not frames, a half-open connection, and a client that never
// reads; the server closes each and keeps serving.
TEST_F(QueryServerTest, GarbageHalfOpenAndIdleConnectionsAreClosed) {
  QueryServerOptions o;
  o.idle_timeout = absl::Milliseconds(300);
  auto server = StartServer(o);
  auto connect = [&] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server->port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
  };
  auto closed_by_server = [](int fd) {
    char buf[256];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "read: " << n << " " << strerror(errno);
        return n == 0 || errno == ECONNRESET;
      }
    }
  };
  int garbage = connect();
  const std::string junk(100, '\x7f');
  ASSERT_EQ(write(garbage, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  EXPECT_TRUE(closed_by_server(garbage));
  close(garbage);
  int half_open = connect();  // says nothing: the handshake times out
  ASSERT_EQ(write(half_open, "SL", 2), 2);
  EXPECT_TRUE(closed_by_server(half_open));
  close(half_open);
  EXPECT_EQ(Client(server->address())->Get("job", "count", "key3").value.value, "value3");
}

}  // namespace
}  // namespace sluice
