// `sluice bench` as a user runs it: the real binary (SLUICE_BIN), with its peer processes, on
// loopback. Short runs: these check that each benchmark runs end to end, checks its records,
// and writes what it says it writes; the figures themselves are for docs/benchmarks.md.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/child_process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Outcome {
  int exit_code = -1;
  std::string stdout_text;
};

// `env`: NAME=value settings for the child (through env(1)).
Outcome RunSluice(std::vector<std::string> args, std::vector<std::string> env = {}) {
  const char* bin = std::getenv("SLUICE_BIN");
  Outcome out;
  if (bin == nullptr) {
    ADD_FAILURE() << "SLUICE_BIN is not set (meson sets it to the sluice binary)";
    return out;
  }
  std::vector<std::string> argv;
  if (!env.empty()) {
    argv.push_back("/usr/bin/env");
    argv.insert(argv.end(), env.begin(), env.end());
  }
  argv.push_back(bin);
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = integration::ChildProcess::Start(argv);
  if (!child.ok()) {
    ADD_FAILURE() << child.status();
    return out;
  }
  (*child)->CloseStdin();
  absl::StatusOr<int> status = (*child)->Wait(absl::Seconds(240));
  if (!status.ok()) {
    ADD_FAILURE() << absl::StrJoin(args, " ") << ": " << status.status();
    return out;
  }
  (*child)->WaitForStdoutEof(absl::Seconds(5));
  out.exit_code = WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
  out.stdout_text = absl::StrJoin((*child)->Lines(), "\n");
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string TempPath(const std::string& name) {
  const std::string dir = testing::TempDir() + "/bench_cli_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  return dir + "/" + name;
}

TEST(BenchCliTest, LatencyLocalWritesTableJsonAndCharts) {
  const std::string json = TempPath("local.json");
  const std::string plots = TempPath("plots");
  const Outcome r = RunSluice({"bench", "shuffle", "--mode", "latency", "--transport", "local",
                               "--warmup", "0", "--seconds", "0.2", "--rates", "5", "--no-peers",
                               "--json", json, "--plot", plots});
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("ping-pong (latency: round trip"));
  EXPECT_THAT(r.stdout_text, HasSubstr("one-way at 5 records/ms"));
  EXPECT_THAT(r.stdout_text, HasSubstr("Targets:"));
  const std::string j = ReadFile(json);
  for (const char* key : {"\"benchmark\": \"shuffle-latency\"", "\"config\": {", "\"host\": {",
                          "\"results\": [", "\"baselines\": [", "\"p50_us\"", "\"p999_us\"",
                          "\"max_us\"", "\"name\": \"local\"", "\"name\": \"raw-tcp\""}) {
    EXPECT_THAT(j, HasSubstr(key));
  }
  EXPECT_TRUE(std::filesystem::exists(plots + "/shuffle-latency.html"));
  EXPECT_TRUE(std::filesystem::exists(plots + "/shuffle-latency-latency-ping-pong.svg"));
}

TEST(BenchCliTest, LatencyOverTheNetServiceBetweenTwoProcesses) {
  const std::string json = TempPath("net.json");
  const Outcome r =
      RunSluice({"bench", "shuffle", "--mode", "latency", "--transport", "epoll", "--warmup", "0",
                 "--seconds", "0.2", "--rates", "5", "--no-peers", "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text;
  const std::string j = ReadFile(json);
  EXPECT_THAT(j, HasSubstr("\"name\": \"net/epoll\", \"group\": \"ping-pong\""));
  EXPECT_THAT(j, HasSubstr("\"vs\": {\"raw-tcp\": {\"p50\": "));
  EXPECT_THAT(j, HasSubstr("\"group\": \"one-way at 5 records/ms\""));
  EXPECT_THAT(j, HasSubstr("\"failures\": []"));
}

TEST(BenchCliTest, ThroughputWithTheZeroMqBaseline) {
  const std::string json = TempPath("tp.json");
  const Outcome r =
      RunSluice({"bench", "shuffle", "--transport", "epoll", "--warmup", "0", "--seconds", "0.3",
                 "--writers", "1", "--channels", "10", "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text;
  const std::string j = ReadFile(json);
  EXPECT_THAT(j, HasSubstr("\"name\": \"raw-tcp\""));
  EXPECT_THAT(j, HasSubstr("\"name\": \"net/epoll\""));
  EXPECT_THAT(j, HasSubstr("\"records_per_ms\""));
#if SLUICE_HAVE_ZMQ
  EXPECT_THAT(j, HasSubstr("\"name\": \"zeromq push/pull\""));
  EXPECT_THAT(r.stdout_text, HasSubstr("/ zeromq push/pull"));
#endif
}

TEST(BenchCliTest, StateMeasuresBothBackendsAgainstRawRocksDb) {
  const std::string json = TempPath("state.json");
  // The rocksdb rows' databases go under TMPDIR.
  const std::string tmp = TempPath("state-tmp");
  std::filesystem::create_directories(tmp);
  const Outcome r =
      RunSluice({"bench", "state", "--keys", "1000", "--warmup", "0", "--seconds", "0.2",
                 "--value-size", "24", "--checkpoint-bytes", "4MiB", "--json", json},
                {"TMPDIR=" + tmp});
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("ratios against raw-rocksdb"));
  EXPECT_THAT(r.stdout_text, HasSubstr("rocksdb ops/s / raw-rocksdb ops/s"));
  EXPECT_THAT(r.stdout_text, HasSubstr("heap ops/s, millions"));
  const std::string j = ReadFile(json);
  EXPECT_THAT(j, HasSubstr("\"benchmark\": \"state\""));
  EXPECT_THAT(j, HasSubstr("\"failures\": []"));
  // Each row with its ops/s, above zero.
  constexpr std::string_view kOps = "\"ops_per_s\": ";
  for (const char* name : {"rocksdb", "heap", "raw-rocksdb"}) {
    const size_t at = j.find(absl::StrCat("{\"name\": \"", name, "\""));
    ASSERT_NE(at, std::string::npos) << name << " missing from " << j;
    const std::string entry = j.substr(at, j.find('}', at) - at);
    const size_t ops = entry.find(kOps);
    ASSERT_NE(ops, std::string::npos) << entry;
    EXPECT_GT(std::strtod(entry.c_str() + ops + kOps.size(), nullptr), 0) << entry;
  }
  // The checkpoint's figures: a state of about 4 MiB, part of it uploaded.
  const size_t checkpoint = j.find("\"checkpoint\": {\"sync_ms\": ");
  ASSERT_NE(checkpoint, std::string::npos) << j;
  const std::string figures = j.substr(checkpoint, j.find('}', checkpoint) - checkpoint);
  for (const char* field : {"total_ms", "uploaded_bytes", "state_bytes"}) {
    EXPECT_THAT(figures, HasSubstr(absl::StrCat("\"", field, "\": "))) << figures;
  }
  const size_t state_at = figures.find("\"state_bytes\": ");
  EXPECT_GT(std::strtod(figures.c_str() + state_at + 15, nullptr), 4e6) << figures;
  EXPECT_THAT(r.stdout_text, HasSubstr("checkpoint bytes uploaded / state bytes"));
  // rocksdb and heap are results, compared with the baseline raw-rocksdb.
  const size_t baselines = j.find("\"baselines\": [");
  ASSERT_NE(baselines, std::string::npos);
  EXPECT_LT(j.find("{\"name\": \"heap\""), baselines);
  EXPECT_LT(j.find("{\"name\": \"rocksdb\""), baselines);
  EXPECT_GT(j.find("{\"name\": \"raw-rocksdb\""), baselines);
  EXPECT_THAT(j, HasSubstr("\"vs\": {\"raw-rocksdb\": {\"ops_per_s\": "));
  // And are gone.
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
}

// Whether `program` is an executable file in a directory of $PATH.
bool OnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

TEST(BenchCliTest, QueryAgainstAStateServerProcess) {
  const std::string json = TempPath("query.json");
  const Outcome r =
      RunSluice({"bench", "query", "--keys", "2000", "--requests", "3000", "--warmup", "300",
                 "--clients", "1,8", "--backend", "heap", "--server-threads", "2", "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("2 I/O threads"));
  EXPECT_THAT(r.stdout_text, HasSubstr("server CPU us/GET"));
  const std::string j = ReadFile(json);
  for (const char* name : {"native-1", "native-8", "native-shared-8"}) {
    EXPECT_THAT(j, HasSubstr(absl::StrCat("{\"name\": \"", name, "\"")));
  }
  EXPECT_THAT(j, HasSubstr("\"server_cpu_us_per_get\""));
  EXPECT_THAT(j, HasSubstr("\"client_cpu_us_per_get\""));
  EXPECT_THAT(j, HasSubstr("\"server_io_threads\": 2"));
  if (OnPath("redis-benchmark")) {
    for (const char* name : {"resp-1", "resp-8", "redis-1", "redis-8"}) {
      EXPECT_THAT(j, HasSubstr(absl::StrCat("{\"name\": \"", name, "\"")));
    }
    EXPECT_THAT(j, HasSubstr("native-shared-8 ops/s / redis-8 ops/s"));
  } else {
    GTEST_LOG_(INFO) << "redis-benchmark is not on PATH: the RESP and Redis rows are not checked";
  }
}

TEST(BenchCliTest, BadOptionsAreUsageErrors) {
  Outcome r = RunSluice({"bench", "shuffle", "--mode", "latency", "--rates", "fast"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunSluice({"bench", "shuffle", "--mode", "latency", "--record-size", "8"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunSluice({"bench", "shuffle", "--mode", "sideways"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunSluice({"bench", "state", "--value-size", "4"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunSluice({"bench", "net", "--runs", "0"});
  EXPECT_EQ(r.exit_code, 2);
  // Nothing was measured, so nothing is printed as a result.
  EXPECT_THAT(r.stdout_text, Not(HasSubstr("baseline")));
}

}  // namespace
}  // namespace sluice
