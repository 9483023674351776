// Benchmark charts: the SVG documents are well formed and escaped, show every entry with the axes
// its figures need (log ticks spanning the latencies, bars in proportion, ratios to the group's
// baseline), and WriteBenchPlots writes the files and page that show them, or says why not.
#include "tools/bench_plot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::tools {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kLatencyGroup[] = "one-way at 20 records/ms";

BenchEntry Latency(std::string name, double p50, double p90, double p99, double p999, double max) {
  BenchEntry e;
  e.name = std::move(name);
  e.group = kLatencyGroup;
  e.latency_kind = "one way, from the intended send time";
  e.latency = LatencySummary{1000, p50, p90, p99, p999, max};
  return e;
}

BenchEntry Throughput(std::string name, double records_per_ms, double gbytes_per_s = 0) {
  BenchEntry e;
  e.name = std::move(name);
  e.group = "throughput";
  e.records_per_ms = records_per_ms;
  e.gbytes_per_s = gbytes_per_s;
  return e;
}

// A baseline and a result (whose name needs escaping) in a latency group and a throughput group;
// latencies from 10 to 4000 µs, the result at half the baseline's throughput.
BenchReport TwoGroups() {
  BenchReport r;
  r.benchmark = "net";
  r.host.hostname = "testhost";
  r.host.cpus = 2;
  r.baselines = {Latency("raw-tcp", 10, 20, 100, 1000, 4000), Throughput("raw-tcp", 200000)};
  r.results = {Latency("net & <uring>", 20, 40, 200, 2000, 3000), Throughput("net/uring", 100000)};
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The widths of the throughput bars, in order.
std::vector<double> BarWidths(const std::string& svg) {
  static const std::regex kBar(R"re(<rect class="bar"[^>]* width="([0-9.]+)")re");
  std::vector<double> widths;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), kBar); it != std::sregex_iterator();
       ++it) {
    widths.push_back(std::stod((*it)[1].str()));
  }
  return widths;
}

// A fresh directory of this test's own under the test temporary directory.
std::string FreshDir(const std::string& name) {
  const std::string dir =
      (std::filesystem::path(testing::TempDir()) / ("bench_plot_test_" + name)).string();
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(BenchPlotTest, LatencyChartIsOneEscapedSvgDocument) {
  const std::string svg = LatencyChartSvg(TwoGroups(), kLatencyGroup);
  EXPECT_THAT(svg, StartsWith("<svg"));
  EXPECT_THAT(svg, EndsWith("</svg>\n"));
  EXPECT_THAT(svg, HasSubstr(R"(font-family="sans-serif")"));
  EXPECT_THAT(svg, HasSubstr("net: one-way at 20 records/ms latency"));
  EXPECT_THAT(svg, HasSubstr("one way, from the intended send time"));
  EXPECT_THAT(svg, HasSubstr("raw-tcp (baseline)"));
  EXPECT_THAT(svg, HasSubstr("net &amp; &lt;uring&gt;"));
  EXPECT_THAT(svg, Not(HasSubstr("net & <uring>")));
  EXPECT_THAT(svg, HasSubstr(">percentile<"));
  EXPECT_THAT(svg, HasSubstr(">latency (µs, log scale)<"));
  for (const char* label : {">p50<", ">p90<", ">p99<", ">p99.9<", ">max<"}) {
    EXPECT_THAT(svg, HasSubstr(label));
  }
}

TEST(BenchPlotTest, LatencyAxisTicksSpanTheFiguresOnAOneTwoFiveScale) {
  const std::string svg = LatencyChartSvg(TwoGroups(), kLatencyGroup);
  for (const char* tick : {">10<", ">20<", ">50<", ">100<", ">1,000<", ">5,000<"}) {
    EXPECT_THAT(svg, HasSubstr(tick));
  }
  // 10..4000 µs needs nothing below 10 nor above 5000.
  EXPECT_THAT(svg, Not(HasSubstr(">5<")));
  EXPECT_THAT(svg, Not(HasSubstr(">10,000<")));
}

TEST(BenchPlotTest, CloseLatenciesStillGetADecadeOfTicks) {
  BenchReport r;
  r.benchmark = "net";
  r.results = {Latency("flat", 100, 100, 100, 100, 100)};
  const std::string svg = LatencyChartSvg(r, kLatencyGroup);
  for (const char* tick : {">50<", ">100<", ">200<", ">500<"}) EXPECT_THAT(svg, HasSubstr(tick));
}

TEST(BenchPlotTest, BaselinesAreDashedAndResultsSolid) {
  const std::string svg = LatencyChartSvg(TwoGroups(), kLatencyGroup);
  // One line per entry, the baseline's (drawn first) dashed.
  static const std::regex kPolyline("<polyline[^>]*>");
  std::vector<std::string> lines;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), kPolyline);
       it != std::sregex_iterator(); ++it) {
    lines.push_back(it->str());
  }
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("stroke-dasharray"));
  EXPECT_THAT(lines[1], Not(HasSubstr("stroke-dasharray")));
}

TEST(BenchPlotTest, LatencyChartOfAGroupWithoutLatenciesSaysSo) {
  const std::string svg = LatencyChartSvg(TwoGroups(), "throughput");
  EXPECT_THAT(svg, StartsWith("<svg"));
  EXPECT_THAT(svg, HasSubstr("no latency figures"));
}

TEST(BenchPlotTest, ThroughputBarsAreInProportionWithRatiosToTheBaseline) {
  const std::string svg = ThroughputChartSvg(TwoGroups());
  EXPECT_THAT(svg, StartsWith("<svg"));
  EXPECT_THAT(svg, EndsWith("</svg>\n"));
  EXPECT_THAT(svg, HasSubstr(">throughput<"));  // the group's heading
  EXPECT_THAT(svg, HasSubstr("200,000 records/ms"));
  EXPECT_THAT(svg, HasSubstr("100,000 records/ms"));
  EXPECT_THAT(svg, HasSubstr("0.50x raw-tcp"));
  // Only the entries with a throughput have bars: baseline first, then the result at half.
  const std::vector<double> widths = BarWidths(svg);
  ASSERT_EQ(widths.size(), 2u);
  EXPECT_GT(widths[0], 100);
  EXPECT_NEAR(widths[1], widths[0] / 2, 0.2);
  EXPECT_THAT(svg, Not(HasSubstr("net &amp;")));  // latencies only: no bar
}

TEST(BenchPlotTest, ThroughputInGigabytesWhenAnEntryLacksRecords) {
  BenchReport r;
  r.benchmark = "net";
  r.baselines = {Throughput("memcpy", 0, 4.5)};
  r.results = {Throughput("net/uring", 90000, 1.234)};
  const std::string svg = ThroughputChartSvg(r);
  EXPECT_THAT(svg, HasSubstr("4.50 GB/s"));
  EXPECT_THAT(svg, HasSubstr("1.23 GB/s"));
  EXPECT_THAT(svg, HasSubstr("0.27x memcpy"));
  EXPECT_THAT(svg, Not(HasSubstr("records/ms<")));
}

TEST(BenchPlotTest, ThroughputInOperationsPerSecondWhenEveryEntryHasThem) {
  BenchReport r;
  r.benchmark = "state";
  r.baselines = {Throughput("raw-rocksdb", 0)};
  r.baselines[0].ops_per_s = 500000;
  r.results = {Throughput("heap", 0)};
  r.results[0].ops_per_s = 2000000;
  const std::string svg = ThroughputChartSvg(r);
  EXPECT_THAT(svg, HasSubstr("500,000 ops/s"));
  EXPECT_THAT(svg, HasSubstr("2,000,000 ops/s"));
  EXPECT_THAT(svg, HasSubstr("4.00x raw-rocksdb"));
  const std::vector<double> widths = BarWidths(svg);
  ASSERT_EQ(widths.size(), 2u);
  EXPECT_NEAR(widths[0], widths[1] / 4, 0.2);
}

TEST(BenchPlotTest, WritesEachChartAndAPageShowingThem) {
  const std::string dir = FreshDir("writes");
  BenchReport r = TwoGroups();
  r.host.cpu_model = "Test CPU <model>";
  const absl::StatusOr<std::vector<std::string>> written = WriteBenchPlots(r, dir + "/a/b");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_THAT(*written, ElementsAre(dir + "/a/b/net-latency-one-way-at-20-records-ms.svg",
                                    dir + "/a/b/net-throughput.svg", dir + "/a/b/net.html"));
  EXPECT_EQ(ReadFile((*written)[0]), LatencyChartSvg(r, kLatencyGroup));
  EXPECT_EQ(ReadFile((*written)[1]), ThroughputChartSvg(r));
  const std::string html = ReadFile((*written)[2]);
  EXPECT_THAT(html, HasSubstr(R"(<img src="net-latency-one-way-at-20-records-ms.svg")"));
  EXPECT_THAT(html, HasSubstr(R"(<img src="net-throughput.svg")"));
  EXPECT_THAT(html, HasSubstr("testhost"));
  EXPECT_THAT(html, HasSubstr("Test CPU &lt;model&gt;"));
  // Nothing is left behind but the files named.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir + "/a/b"),
                          std::filesystem::directory_iterator()),
            3);
}

TEST(BenchPlotTest, GroupsThatSlugAlikeGetFilesOfTheirOwn) {
  const std::string dir = FreshDir("slugs");
  BenchReport r;
  r.benchmark = "Net Bench";
  r.results = {Latency("a", 1, 2, 3, 4, 5), Latency("b", 1, 2, 3, 4, 5)};
  r.results[0].group = "Ping Pong";
  r.results[1].group = "ping-pong!";
  const absl::StatusOr<std::vector<std::string>> written = WriteBenchPlots(r, dir);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_THAT(*written,
              ElementsAre(dir + "/net-bench-latency-ping-pong.svg",
                          dir + "/net-bench-latency-ping-pong-2.svg", dir + "/net-bench.html"));
}

TEST(BenchPlotTest, NothingToPlotIsAnErrorAndCreatesNothing) {
  const std::string dir = FreshDir("nothing");
  BenchReport r;
  r.benchmark = "net";
  r.results = {Throughput("idle", 0)};
  const absl::StatusOr<std::vector<std::string>> written = WriteBenchPlots(r, dir);
  EXPECT_EQ(written.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(written.status().message(), HasSubstr("nothing to plot"));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(BenchPlotTest, ADirectoryThatCannotBeMadeIsAnErrorNamingIt) {
  const std::string dir = FreshDir("unwritable");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/file") << "not a directory";
  const std::string plots = dir + "/file/plots";
  const absl::StatusOr<std::vector<std::string>> written = WriteBenchPlots(TwoGroups(), plots);
  EXPECT_FALSE(written.ok());
  EXPECT_THAT(written.status().message(), HasSubstr(plots));
}

}  // namespace
}  // namespace sluice::tools
