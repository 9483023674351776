// The query path with real processes: `sluice state-server` children on loopback, read through
// QueryClient and the `sluice query` command line, on both backends; two servers that share a
// job's key groups (Moved, forwarding); a restore (Unavailable, then answers again).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "statestore/query_client.h"
#include "tests/integration/child_process.h"

namespace sluice {
namespace {

using integration::ChildProcess;

std::string SluiceBin() {
  const char* bin = std::getenv("SLUICE_BIN");
  return bin == nullptr ? "sluice" : bin;
}

struct Server {
  std::unique_ptr<ChildProcess> process;
  std::string address;
};

Server StartServer(std::vector<std::string> extra) {
  std::vector<std::string> argv = {SluiceBin(), "state-server",          "--generate",
                                   "3000",      "--checkpoint-interval", "0.2"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Server s;
  absl::StatusOr<std::unique_ptr<ChildProcess>> p = ChildProcess::Start(argv);
  EXPECT_TRUE(p.ok()) << p.status();
  s.process = *std::move(p);
  absl::StatusOr<std::string> line = s.process->WaitForLine("query ", absl::Seconds(60));
  EXPECT_TRUE(line.ok()) << line.status();
  if (line.ok()) s.address = std::vector<std::string>(absl::StrSplit(*line, ' '))[1];
  EXPECT_TRUE(s.process->WaitForLine("ready", absl::Seconds(60)).ok());
  return s;
}

std::unique_ptr<QueryClient> Client(const std::string& address) {
  QueryClientOptions o;
  o.address = address;
  o.deadline = absl::Seconds(20);
  return *QueryClient::Create(o);
}

std::string Key(int i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%012d", i);
  return buf;
}

// The epoch a generated value was written in ("<epoch>:xxx...").
uint64_t EpochOf(const std::string& value) {
  return std::strtoull(value.substr(0, value.find(':')).c_str(), nullptr, 10);
}

class QueryProcessTest : public ::testing::TestWithParam<std::string> {};

TEST_P(QueryProcessTest, GetMultiGetScanLatestAndCommitted) {
  Server server = StartServer({"--backend", GetParam()});
  auto client = Client(server.address);
  KeyResult one = client->Get("demo", "key", Key(42));
  ASSERT_EQ(one.status, QueryStatus::kOk) << one.message;
  ASSERT_TRUE(one.found);
  EXPECT_EQ(one.value.value.size(), 32u);
  EXPECT_FALSE(client->Get("demo", "key", "no-such-key").found);

  // A committed MultiGet reads one checkpoint, and no value written after it.
  QueryRequest mget;
  mget.type = QueryType::kMultiGet;
  mget.job = "demo";
  mget.state = "key";
  mget.consistency = Consistency::kCommitted;
  for (int i = 0; i < 3000; i += 7) mget.keys.push_back(Key(i));
  QueryResponse committed = client->Execute(mget);
  ASSERT_EQ(committed.status, QueryStatus::kOk) << committed.message;
  std::set<uint64_t> ids;
  for (const KeyResult& r : committed.results) {
    ASSERT_EQ(r.status, QueryStatus::kOk) << r.message;
    ASSERT_TRUE(r.found);
    ids.insert(r.checkpoint_id);
    EXPECT_LE(EpochOf(r.value.value), r.checkpoint_id);
  }
  EXPECT_EQ(ids.size(), 1u);
  // Latest reads see writes after that checkpoint as they come (10,000 updates a second over
  // 3,000 keys): within a few seconds, some key has a newer epoch than the committed read.
  bool newer = false;
  for (int attempt = 0; attempt < 50 && !newer; ++attempt) {
    mget.consistency = Consistency::kLatest;
    QueryResponse latest = client->Execute(mget);
    for (const KeyResult& r : latest.results) newer |= EpochOf(r.value.value) > *ids.begin();
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(newer);

  // The command line: a scan of 100 keys, and the exit code of an absent key.
  const std::string scan = absl::StrCat(SluiceBin(), " query scan key 0000000001 --addr ",
                                        server.address, " > /dev/null");
  EXPECT_EQ(std::system(scan.c_str()), 0);
  const std::string absent =
      absl::StrCat(SluiceBin(), " query get key nope --addr ", server.address, " > /dev/null");
  EXPECT_EQ(WEXITSTATUS(std::system(absent.c_str())), 3);
  QueryRequest prefix;
  prefix.type = QueryType::kPrefixScan;
  prefix.job = "demo";
  prefix.state = "key";
  prefix.prefix = "0000000001";
  prefix.limit = 9;
  int entries = 0;
  EXPECT_EQ(client->ScanAll(prefix, [&](const ScanEntry&) { return ++entries > 0; }).status,
            QueryStatus::kOk);
  EXPECT_EQ(entries, 100);
}

INSTANTIATE_TEST_SUITE_P(Backends, QueryProcessTest, ::testing::Values("heap", "rocksdb"),
                         [](const auto& p) { return p.param; });

// Two servers split the key groups; each knows the other from a location table. A client that
// starts at one finds keys of the other through Moved; a client without routing (the first
// server forwards) gets the same answers.
TEST(QueryProcess, MovedAndForwardingAcrossTwoServers) {
  const std::string dir =
      std::filesystem::temp_directory_path() / absl::StrCat("query_process_", getpid());
  std::filesystem::create_directories(dir);
  // Ports are known once a server listens: `a` (whose key groups a2 holds too) gives b its
  // address; a2 starts last and learns b's.
  Server a = StartServer({"--key-groups", "0-63"});
  const std::string table = dir + "/locations";
  {
    std::ofstream out(table);
    out << "job demo max-parallelism 128\ndemo * 0-63 " << a.address << "\n";
  }
  Server b = StartServer({"--key-groups", "64-127", "--locations", table});
  {
    std::ofstream out(table);
    out << "job demo max-parallelism 128\ndemo * 64-127 " << b.address << "\n";
  }
  Server a2 = StartServer({"--key-groups", "0-63", "--locations", table});
  auto client = Client(a2.address);
  int moved_keys = 0;
  for (int i = 0; i < 200; ++i) {
    KeyResult r = client->Get("demo", "key", Key(i));
    ASSERT_EQ(r.status, QueryStatus::kOk) << Key(i) << ": " << r.message;
    EXPECT_TRUE(r.found) << Key(i);
    if (KeyGroupForKey(Key(i), 128) >= 64) ++moved_keys;
  }
  EXPECT_GT(moved_keys, 0);
  QueryConnectionsOptions o;
  auto raw = *QueryConnections::Create(o);
  auto ask = [&](const std::string& address, const QueryRequest& request) {
    absl::Notification answered;
    QueryResponse out;
    raw->Send(address, request, [&](QueryResponse r) {
      out = std::move(r);
      answered.Notify();
    });
    EXPECT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(30)));
    return out;
  };
  // Moved: b, asked not to forward, names the holder of a key in 0-63.
  int low = 0;
  while (KeyGroupForKey(Key(low), 128) >= 64) ++low;
  QueryRequest get;
  get.job = "demo";
  get.state = "key";
  get.keys = {Key(low)};
  get.forward = false;
  QueryResponse moved = ask(b.address, get);
  ASSERT_EQ(moved.results.size(), 1u);
  EXPECT_EQ(moved.results[0].status, QueryStatus::kMoved);
  EXPECT_EQ(moved.results[0].location, a.address);
  // Forwarding: a request that lets the server forward, straight to a2, for keys on b.
  QueryRequest mget;
  mget.type = QueryType::kMultiGet;
  mget.job = "demo";
  mget.state = "key";
  for (int i = 0; i < 100; ++i) mget.keys.push_back(Key(i));
  QueryResponse forwarded = ask(a2.address, mget);
  ASSERT_EQ(forwarded.results.size(), 100u);
  for (const KeyResult& r : forwarded.results) {
    EXPECT_EQ(r.status, QueryStatus::kOk) << r.message;
    EXPECT_TRUE(r.found);
  }
  // Scans cross from a2's key groups to b's.
  QueryRequest scan;
  scan.type = QueryType::kPrefixScan;
  scan.job = "demo";
  scan.state = "key";
  scan.limit = 500;
  int entries = 0;
  EXPECT_EQ(client->ScanAll(scan, [&](const ScanEntry&) { return ++entries > 0; }).status,
            QueryStatus::kOk);
  EXPECT_EQ(entries, 3000);
  std::filesystem::remove_all(dir);
}

TEST(QueryProcess, UnavailableDuringRestoreThenAnswers) {
  Server server = StartServer({"--restore-delay", "1.5"});
  QueryClientOptions o;
  o.address = server.address;
  o.deadline = absl::Milliseconds(200);  // shorter than the restore: the answer is Unavailable
  auto impatient = *QueryClient::Create(o);
  ASSERT_EQ(impatient->Get("demo", "key", Key(1)).status, QueryStatus::kOk);
  server.process->Signal(SIGUSR1);
  QueryStatus seen = QueryStatus::kOk;
  for (int i = 0; i < 100 && seen != QueryStatus::kUnavailable; ++i) {
    seen = impatient->Get("demo", "key", Key(1)).status;
  }
  EXPECT_EQ(seen, QueryStatus::kUnavailable);
  // A patient client retries through the restore and gets the value.
  auto patient = Client(server.address);
  KeyResult r = patient->Get("demo", "key", Key(1));
  EXPECT_EQ(r.status, QueryStatus::kOk) << r.message;
  EXPECT_TRUE(r.found);
  EXPECT_TRUE(server.process->WaitForLine("restored checkpoint", absl::Seconds(30)).ok());
}

}  // namespace
}  // namespace sluice
