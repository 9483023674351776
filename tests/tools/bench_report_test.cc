#include "tools/bench_report.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::tools {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

BenchEntry Latency(std::string name, std::string group, std::vector<uint64_t> nanos) {
  Histogram h;
  for (uint64_t v : nanos) h.Record(v);
  BenchEntry e;
  e.name = std::move(name);
  e.group = std::move(group);
  e.latency_kind = "round trip";
  e.SetLatency(h);
  return e;
}

BenchEntry Throughput(std::string name, std::string group, double records_per_ms) {
  BenchEntry e;
  e.name = std::move(name);
  e.group = std::move(group);
  e.records_per_ms = records_per_ms;
  e.gbytes_per_s = records_per_ms * 8 * 1e3 / 1e9;
  return e;
}

BenchReport SampleReport() {
  BenchReport r;
  r.benchmark = "shuffle";
  r.config = {{"transport", "\"uring\""}, {"record_size", "16"}};
  r.host.hostname = "box";
  r.host.cpus = 2;
  r.baselines.push_back(Latency("raw-tcp", "ping-pong", {10'000, 20'000, 40'000}));
  r.baselines.push_back(Latency("zeromq req/rep", "ping-pong", {40'000, 80'000, 160'000}));
  r.results.push_back(Latency("net/uring", "ping-pong", {20'000, 30'000, 60'000}));
  r.baselines.push_back(Throughput("zeromq push/pull", "throughput", 8'000));
  r.results.push_back(Throughput("net/uring", "throughput", 120'000));
  return r;
}

TEST(BenchReportTest, ReferenceIsTheFirstBaselineOfTheGroup) {
  const BenchReport r = SampleReport();
  ASSERT_NE(r.ReferenceFor(r.results[0]), nullptr);
  EXPECT_EQ(r.ReferenceFor(r.results[0])->name, "raw-tcp");
  EXPECT_EQ(r.ReferenceFor(r.results[1])->name, "zeromq push/pull");
  BenchEntry lonely = Throughput("x", "nothing to compare", 1);
  EXPECT_EQ(r.ReferenceFor(lonely), nullptr);
  EXPECT_EQ(r.FindBaseline("ping-pong", "zeromq req/rep"), &r.baselines[1]);
  EXPECT_EQ(r.FindResult("throughput", "net/uring"), &r.results[1]);
  EXPECT_EQ(r.FindResult("throughput", "raw-tcp"), nullptr);
}

TEST(BenchReportTest, SummaryShowsRatiosAgainstTheReference) {
  const std::string table = RenderSummary(SampleReport());
  // p50: 20 us against 20 us; 15x zeromq's throughput.
  EXPECT_THAT(table, HasSubstr("ping-pong (latency: round trip); ratios against raw-tcp"));
  EXPECT_THAT(table, HasSubstr("15.00x"));
  EXPECT_THAT(table, HasSubstr("baseline"));
  EXPECT_THAT(table, HasSubstr("120000"));
  // zeromq's p50 (80 us) is 4x raw-tcp's (20 us): baselines are compared with the reference too.
  EXPECT_THAT(table, HasSubstr("4.00x"));
}

TEST(BenchReportTest, OperationsPerSecondHaveTheirColumnRatiosAndJson) {
  BenchReport r;
  r.benchmark = "state";
  BenchEntry raw;
  raw.name = "raw-rocksdb";
  raw.group = "read-modify-write";
  raw.ops_per_s = 400'000;
  BenchEntry heap = raw;
  heap.name = "heap";
  heap.ops_per_s = 5'000'000;
  r.baselines.push_back(raw);
  r.results.push_back(heap);
  const std::string table = RenderSummary(r);
  EXPECT_THAT(table, HasSubstr("ops/s"));
  EXPECT_THAT(table, HasSubstr("5000000"));
  EXPECT_THAT(table, HasSubstr("12.50x"));
  EXPECT_THAT(table, Not(HasSubstr("records/ms")));
  const std::string json = ReportJson(r);
  EXPECT_THAT(json, HasSubstr("\"ops_per_s\": 5e+06"));
  EXPECT_THAT(json, HasSubstr("\"ops_per_s\": 400000"));
  EXPECT_THAT(json, HasSubstr("\"vs\": {\"raw-rocksdb\": {\"ops_per_s\": 12.5}}"));
}

TEST(BenchReportTest, JsonHasTheDocumentedShape) {
  BenchReport r = SampleReport();
  r.targets.push_back({"net/uring p50 / raw-tcp p50", 1.5, 1.15, true});
  r.failures.emplace_back("sockperf ping-pong", "it said \"no\"");
  const std::string json = ReportJson(r);
  for (const char* key :
       {"\"benchmark\": \"shuffle\"", "\"config\": {\"transport\": \"uring\", \"record_size\": 16}",
        "\"host\": {", "\"results\": [", "\"baselines\": [", "\"records_per_ms\": 120000",
        "\"gbytes_per_s\": 0.96", "\"p50_us\": 20", "\"p90_us\"", "\"p99_us\"", "\"p999_us\"",
        "\"max_us\"", "\"vs\": {\"zeromq push/pull\": {\"records_per_ms\": 15", "\"met\": false",
        "\"at_most\": 1.15", "it said \\\"no\\\""}) {
    EXPECT_THAT(json, HasSubstr(key)) << json;
  }
  // A throughput-only entry has no latency fields, and baselines carry no ratios.
  const size_t push_pull = json.find("{\"name\": \"zeromq push/pull\"");
  ASSERT_NE(push_pull, std::string::npos);
  const std::string entry = json.substr(push_pull, json.find('}', push_pull) - push_pull);
  EXPECT_THAT(entry, Not(HasSubstr("p50_us")));
  EXPECT_THAT(entry, Not(HasSubstr("\"vs\"")));
}

TEST(BenchReportTest, TargetsSayWhetherTheyAreMet) {
  BenchReport r;
  r.targets.push_back({"p50 ratio", 1.10, 1.15, true});
  r.targets.push_back({"p99 ratio", 1.40, 1.3, true});
  r.targets.push_back({"throughput vs zeromq", 16, 15, false});
  EXPECT_TRUE(r.targets[0].met());
  EXPECT_FALSE(r.targets[1].met());
  EXPECT_TRUE(r.targets[2].met());
  const std::string text = RenderTargets(r);
  EXPECT_THAT(text, HasSubstr("NOT met"));
  EXPECT_THAT(text, HasSubstr("(goal >= 15.00)"));
}

TEST(BenchReportTest, CombineRunsTakesTheMedianThroughputAndMergesLatencies) {
  std::vector<BenchEntry> runs = {Throughput("a", "g", 100), Throughput("a", "g", 300),
                                  Throughput("a", "g", 200)};
  BenchEntry combined = CombineRuns(runs);
  EXPECT_EQ(combined.records_per_ms, 200);

  BenchEntry l = CombineRuns({Latency("a", "g", {1'000, 1'000}), Latency("a", "g", {9'000})});
  ASSERT_TRUE(l.latency.has_value());
  EXPECT_EQ(l.latency->samples, 3u);
  EXPECT_DOUBLE_EQ(l.latency->max_us, 9.0);
  EXPECT_NEAR(l.latency->p50_us, 1.0, 0.01);  // a bucket's midpoint

  // Latencies without a histogram (an external tool's): each percentile's median.
  BenchEntry x;
  x.latency = LatencySummary{10, 5, 6, 7, 8, 9};
  BenchEntry y;
  y.latency = LatencySummary{10, 1, 2, 3, 4, 5};
  BenchEntry z;
  z.latency = LatencySummary{10, 3, 4, 5, 6, 100};
  BenchEntry m = CombineRuns({x, y, z});
  EXPECT_EQ(m.latency->samples, 30u);
  EXPECT_DOUBLE_EQ(m.latency->p50_us, 3);
  EXPECT_DOUBLE_EQ(m.latency->max_us, 9);
}

TEST(BenchHarnessTest, RunsRowsInRoundsAndReportsFailures) {
  BenchHarness harness("test");
  OptionParser parser("test", "");
  harness.AddOptions(parser);
  ASSERT_TRUE(parser.Parse({"--runs", "3"}).ok());
  std::vector<std::string> order;
  int calls = 0;
  harness.Add({"base", "g", true, 0, [&] {
                 order.push_back("base");
                 return absl::StatusOr<BenchEntry>(Throughput("", "", 100 + calls++));
               }});
  harness.Add({"ours", "g", false, 0, [&] {
                 order.push_back("ours");
                 return absl::StatusOr<BenchEntry>(absl::InternalError("broke"));
               }});
  const BenchReport report = harness.Run();
  // Rounds: every row once, then again; a failed row is not run again.
  EXPECT_EQ(order, (std::vector<std::string>{"base", "ours", "base", "base"}));
  ASSERT_EQ(report.baselines.size(), 1u);
  EXPECT_EQ(report.baselines[0].name, "base");
  EXPECT_EQ(report.baselines[0].group, "g");
  EXPECT_EQ(report.baselines[0].records_per_ms, 101);
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_EQ(report.failures[0].second, "broke");
  EXPECT_TRUE(report.results.empty());
}

TEST(BenchHarnessTest, FinishWritesJsonAndFailsOnAFailedRow) {
  const std::string path = testing::TempDir() + "/bench-report.json";
  BenchHarness harness("test");
  OptionParser parser("test", "");
  harness.AddOptions(parser);
  ASSERT_TRUE(parser.Parse({"--json", path}).ok());
  BenchReport r = SampleReport();
  EXPECT_EQ(harness.Finish(r), kExitOk);
  FILE* f = std::fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  r.failures.emplace_back("x", "y");
  EXPECT_EQ(harness.Finish(r), kExitFailure);

  BenchHarness bad("test");
  OptionParser bad_parser("test", "");
  bad.AddOptions(bad_parser);
  ASSERT_TRUE(bad_parser.Parse({"--json", "/nonexistent-dir/x.json"}).ok());
  EXPECT_EQ(bad.Finish(SampleReport()), kExitFailure);
}

TEST(FindOptionValueTest, BothSpellingsAndTheLastWins) {
  const std::vector<std::string> args = {"--mode", "latency", "--x=1", "--mode=throughput"};
  EXPECT_EQ(FindOptionValue(args, "--mode"), "throughput");
  EXPECT_EQ(FindOptionValue(args, "--x"), "1");
  EXPECT_EQ(FindOptionValue(args, "--y"), std::nullopt);
  EXPECT_EQ(FindOptionValue(std::vector<std::string>{"--mode"}, "--mode"), std::nullopt);
  EXPECT_EQ(FindOptionValue(std::vector<std::string>{"--modex=1"}, "--mode"), std::nullopt);
}

}  // namespace
}  // namespace sluice::tools
