#include "tools/bench_plot.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "tools/bench_common.h"

namespace sluice::tools {
namespace {

// ---------------------------------------------------------------- text

std::string XmlEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Lowercase letters and digits kept, every other run of characters one '-', none at the ends;
// `fallback` when nothing is left.
std::string Slug(absl::string_view s, absl::string_view fallback) {
  std::string out;
  for (char c : s) {
    const char lower = absl::ascii_tolower(static_cast<unsigned char>(c));
    if (absl::ascii_isalnum(static_cast<unsigned char>(lower))) {
      out += lower;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  if (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? std::string(fallback) : out;
}

// 103295.4 -> "103,295".
std::string Grouped(double v) {
  const std::string digits = absl::StrCat(std::llabs(std::llround(v)));
  std::string out = v <= -0.5 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// Whole numbers grouped ("20,000"), fractions as short as they go ("0.25").
std::string TickLabel(double v) {
  if (v >= 1 && std::abs(v - std::round(v)) < 1e-9 * v) return Grouped(v);
  return absl::StrFormat("%g", v);
}

std::string Micros(double us) { return us < 100 ? absl::StrFormat("%.1f", us) : Grouped(us); }

// ---------------------------------------------------------------- axes

struct Tick {
  double value = 0;
  std::string label;  // empty: a gridline only
};

struct Axis {
  double lo = 0;
  double hi = 1;
  bool log = false;
  std::vector<Tick> ticks;

  // Where `v` falls: 0 at `lo`, 1 at `hi`.
  double Fraction(double v) const {
    return log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
               : (v - lo) / (hi - lo);
  }
};

// The i-th of ..., 0.5, 1, 2, 5, 10, 20, ...; i = 0 is 1.
double OneTwoFive(int i) {
  static constexpr double kMantissa[] = {1, 2, 5};
  const int decade = static_cast<int>(std::floor(i / 3.0));
  return kMantissa[i - 3 * decade] * std::pow(10.0, decade);
}

// Keeps a figure that is exactly a tick (100 µs) on the tick despite rounding.
constexpr double kSlack = 1e-9;

// A logarithmic axis over [min, max] (0 < min <= max) from a 1-2-5 value to a 1-2-5 value, at
// least a decade wide so that close figures still get gridlines to be read against. Each 1-2-5
// value is a gridline; beyond four decades only powers of ten are labelled, or labels collide.
Axis LogAxis(double min, double max) {
  int lo = 3 * static_cast<int>(std::floor(std::log10(min)));
  while (OneTwoFive(lo + 1) <= min * (1 + kSlack)) ++lo;
  int hi = lo;
  while (OneTwoFive(hi) < max * (1 - kSlack)) ++hi;
  for (bool up = true; OneTwoFive(hi) / OneTwoFive(lo) < 10 * (1 - kSlack); up = !up) {
    if (up) {
      ++hi;
    } else {
      --lo;
    }
  }
  Axis axis{OneTwoFive(lo), OneTwoFive(hi), true, {}};
  const bool label_all = hi - lo <= 12;
  for (int i = lo; i <= hi; ++i) {
    const bool labelled = label_all || i % 3 == 0;
    axis.ticks.push_back({OneTwoFive(i), labelled ? TickLabel(OneTwoFive(i)) : ""});
  }
  return axis;
}

// A linear axis from 0 to a multiple of a 1-2-5 step at or above `max` (> 0): 3 to 6 ticks.
Axis LinearAxis(double max) {
  int step_index = 3 * static_cast<int>(std::floor(std::log10(max / 5)));
  while (5 * OneTwoFive(step_index) < max * (1 - kSlack)) ++step_index;
  const double step = OneTwoFive(step_index);
  const int steps = static_cast<int>(std::ceil(max / step - kSlack));
  Axis axis{0, steps * step, false, {}};
  for (int i = 0; i <= steps; ++i) axis.ticks.push_back({i * step, TickLabel(i * step)});
  return axis;
}

// ---------------------------------------------------------------- SVG pieces

// Clearly distinct on white, in the order entries get them (Tableau's, less grey and olive).
constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#17becf"};
constexpr char kBaselineGrey[] = "#a0a0a0";
constexpr char kGrid[] = R"(stroke="#d8d8d8" stroke-width="1")";
constexpr char kMinorGrid[] = R"(stroke="#efefef" stroke-width="1")";
constexpr char kDashes[] = R"( stroke-dasharray="7 4")";
constexpr absl::string_view kBaselineSuffix = " (baseline)";
// About how wide a character of 12px sans-serif is, to make room for names.
constexpr double kCharWidth = 7;

std::string Px(double v) { return absl::StrFormat("%.1f", v); }

std::string SvgOpen(double width, double height) {
  return absl::StrCat(R"(<svg xmlns="http://www.w3.org/2000/svg" width=")", Px(width),
                      R"(" height=")", Px(height), R"(" viewBox="0 0 )", Px(width), " ", Px(height),
                      R"(" font-family="sans-serif">)", "\n",
                      R"(<rect width="100%" height="100%" fill="white"/>)", "\n");
}

// `markup` (already escaped) in a <text> at (x, y), with `attributes` as they are.
std::string RawText(double x, double y, absl::string_view markup, absl::string_view attributes) {
  return absl::StrCat("<text x=\"", Px(x), "\" y=\"", Px(y), "\" ", attributes, ">", markup,
                      "</text>\n");
}

std::string Text(double x, double y, absl::string_view text, absl::string_view attributes) {
  return RawText(x, y, XmlEscape(text), attributes);
}

std::string Line(double x1, double y1, double x2, double y2, absl::string_view attributes) {
  return absl::StrFormat("<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" %s/>\n", Px(x1), Px(y1),
                         Px(x2), Px(y2), attributes);
}

// The title and the line under it that every chart opens with.
std::string Heading(absl::string_view title, absl::string_view subtitle) {
  return Text(20, 30, title, R"(font-size="18" font-weight="bold")") +
         Text(20, 50, subtitle, R"(font-size="13" fill="#555")");
}

// A hover tooltip for the element it is put in.
std::string Tooltip(absl::string_view text) {
  return absl::StrCat("<title>", XmlEscape(text), "</title>");
}

// A point of a latency line, with its figure as a tooltip when `tooltip` is not empty.
std::string Marker(double x, double y, absl::string_view fill, absl::string_view colour,
                   absl::string_view tooltip) {
  return absl::StrCat("<circle cx=\"", Px(x), "\" cy=\"", Px(y), "\" r=\"3.5\" fill=\"", fill,
                      "\" stroke=\"", colour, "\" stroke-width=\"1.5\">",
                      tooltip.empty() ? "" : Tooltip(tooltip), "</circle>\n");
}

// ---------------------------------------------------------------- entries

struct Plotted {
  const BenchEntry* entry;
  bool baseline;
};

bool HasLatency(const BenchEntry& e) { return e.latency.has_value(); }
bool HasThroughput(const BenchEntry& e) { return e.has_throughput(); }

// The entries of `group` that `keep` accepts, baselines first.
std::vector<Plotted> EntriesOf(const BenchReport& report, const std::string& group,
                               bool (*keep)(const BenchEntry&)) {
  std::vector<Plotted> out;
  for (const BenchEntry& e : report.baselines) {
    if (e.group == group && keep(e)) out.push_back({&e, true});
  }
  for (const BenchEntry& e : report.results) {
    if (e.group == group && keep(e)) out.push_back({&e, false});
  }
  return out;
}

// The percentiles on the "nines" axis: log10(1 / (1 - p)), and the maximum one step beyond.
struct Percentile {
  const char* label;
  double position;
  double LatencySummary::*us;
};
constexpr Percentile kPercentiles[] = {
    {"p50", 0.30103, &LatencySummary::p50_us}, {"p90", 1, &LatencySummary::p90_us},
    {"p99", 2, &LatencySummary::p99_us},       {"p99.9", 3, &LatencySummary::p999_us},
    {"max", 4, &LatencySummary::max_us},
};

}  // namespace

// ---------------------------------------------------------------- latency

std::string LatencyChartSvg(const BenchReport& report, const std::string& group) {
  const std::vector<Plotted> entries = EntriesOf(report, group, HasLatency);
  double min = HUGE_VAL;
  double max = 0;
  size_t longest_name = 0;
  for (const Plotted& p : entries) {
    for (const Percentile& pc : kPercentiles) {
      const double us = (*p.entry->latency).*pc.us;
      // A zero has no place on a logarithmic axis; the point is left out.
      if (us > 0) {
        min = std::min(min, us);
        max = std::max(max, us);
      }
    }
    longest_name =
        std::max(longest_name, p.entry->name.size() + (p.baseline ? kBaselineSuffix.size() : 0));
  }
  if (max == 0) {  // nothing measured: an empty chart, with an axis
    min = 1;
    max = 10;
  }
  const Axis y_axis = LogAxis(min, max);

  constexpr double kLeft = 80, kTop = 75, kPlotWidth = 540, kLegendRow = 40;
  const double plot_height = std::max(380.0, kLegendRow * static_cast<double>(entries.size()));
  const double legend_x = kLeft + kPlotWidth + 30;
  const double width = std::max(900.0, legend_x + 50 + kCharWidth * longest_name);
  const double height = kTop + plot_height + 65;
  const double bottom = kTop + plot_height;
  // The axis runs from a little before p50 to a little after max.
  auto x_of = [&](double position) { return kLeft + kPlotWidth * (position - 0.1) / 4.1; };
  auto y_of = [&](double us) { return bottom - plot_height * y_axis.Fraction(us); };

  const std::string kind = entries.empty() ? "" : entries.front().entry->latency_kind;
  std::string svg = SvgOpen(width, height);
  svg += Heading(absl::StrCat(report.benchmark, ": ", group, " latency"),
                 kind.empty() ? "lower is better" : absl::StrCat(kind, "; lower is better"));
  for (const Tick& t : y_axis.ticks) {
    svg += Line(kLeft, y_of(t.value), kLeft + kPlotWidth, y_of(t.value),
                t.label.empty() ? kMinorGrid : kGrid);
    if (!t.label.empty()) {
      svg += Text(kLeft - 8, y_of(t.value) + 4, t.label, R"(font-size="11" text-anchor="end")");
    }
  }
  for (const Percentile& pc : kPercentiles) {
    svg += Line(x_of(pc.position), kTop, x_of(pc.position), bottom, kGrid);
    svg += Text(x_of(pc.position), bottom + 18, pc.label, R"(font-size="12" text-anchor="middle")");
  }
  absl::StrAppend(&svg, "<rect x=\"", Px(kLeft), "\" y=\"", Px(kTop), "\" width=\"", Px(kPlotWidth),
                  "\" height=\"", Px(plot_height), "\" fill=\"none\" stroke=\"#888\"/>\n");
  svg += Text(kLeft + kPlotWidth / 2, bottom + 42, "percentile",
              R"(font-size="13" text-anchor="middle")");
  svg += Text(
      0, 0, "latency (µs, log scale)",
      absl::StrFormat(
          R"svg(font-size="13" text-anchor="middle" transform="translate(%s %s) rotate(-90)")svg",
          Px(24), Px(kTop + plot_height / 2)));
  if (entries.empty()) {
    svg += Text(kLeft + kPlotWidth / 2, kTop + plot_height / 2, "no latency figures",
                R"(font-size="14" text-anchor="middle" fill="#888")");
  }

  for (size_t i = 0; i < entries.size(); ++i) {
    const BenchEntry& e = *entries[i].entry;
    const bool baseline = entries[i].baseline;
    const std::string colour = kPalette[i % std::size(kPalette)];
    const std::string stroke =
        absl::StrCat("stroke=\"", colour, "\" stroke-width=\"2\"", baseline ? kDashes : "");
    // Baselines get hollow markers as well as dashes, to tell them apart where lines overlap.
    const std::string marker_fill = baseline ? "white" : colour;
    std::vector<std::string> points;
    std::string markers;
    for (const Percentile& pc : kPercentiles) {
      const double us = (*e.latency).*pc.us;
      if (us <= 0) continue;
      const double x = x_of(pc.position);
      const double y = y_of(us);
      points.push_back(absl::StrCat(Px(x), ",", Px(y)));
      markers += Marker(x, y, marker_fill, colour,
                        absl::StrCat(e.name, " ", pc.label, ": ", Micros(us), " µs"));
    }
    absl::StrAppend(&svg, "<polyline fill=\"none\" ", stroke, " points=\"",
                    absl::StrJoin(points, " "), "\"/>\n", markers);

    // The legend: the line's look, the name, and the figures most read, so that no value
    // labels need to crowd the lines.
    const double ly = kTop + 12 + kLegendRow * static_cast<double>(i);
    svg += Line(legend_x, ly, legend_x + 28, ly, stroke);
    svg += Marker(legend_x + 14, ly, marker_fill, colour, "");
    svg += Text(legend_x + 36, ly + 4, baseline ? absl::StrCat(e.name, kBaselineSuffix) : e.name,
                R"(font-size="12")");
    svg +=
        Text(legend_x + 36, ly + 20,
             absl::StrCat("p50 ", Micros(e.latency->p50_us), " · p99 ", Micros(e.latency->p99_us),
                          " · max ", Micros(e.latency->max_us), " µs"),
             R"(font-size="11" fill="#555")");
  }
  svg += "</svg>\n";
  return svg;
}

// ---------------------------------------------------------------- throughput

std::string ThroughputChartSvg(const BenchReport& report) {
  std::vector<std::pair<std::string, std::vector<Plotted>>> groups;
  // The unit every entry has: ops/s, else records/ms, else GB/s.
  bool by_ops = true;
  bool by_records = true;
  double max = 0;
  size_t bars = 0;
  // The width the names left of the bars need, and the group headings above them (in bold).
  double name_room = 0;
  for (const std::string& group : report.Groups()) {
    std::vector<Plotted> entries = EntriesOf(report, group, HasThroughput);
    if (entries.empty()) continue;
    name_room = std::max(name_room, 1.2 * kCharWidth * group.size());
    for (const Plotted& p : entries) {
      by_ops &= p.entry->ops_per_s > 0;
      by_records &= p.entry->records_per_ms > 0;
      name_room = std::max(name_room, kCharWidth * p.entry->name.size());
    }
    bars += entries.size();
    groups.emplace_back(group, std::move(entries));
  }
  if (by_ops) by_records = false;
  auto value_of = [by_ops, by_records](const BenchEntry& e) {
    return by_ops ? e.ops_per_s : by_records ? e.records_per_ms : e.gbytes_per_s;
  };
  for (const auto& [group, entries] : groups) {
    for (const Plotted& p : entries) max = std::max(max, value_of(*p.entry));
  }
  const Axis x_axis = LinearAxis(max > 0 ? max : 1);
  const std::string unit = by_ops ? "ops/s" : by_records ? "records/ms" : "GB/s";

  constexpr double kTop = 70, kGroupRow = 28, kBarRow = 24, kBarHeight = 16;
  // Room on the right for the value and ratio labels past the longest bar.
  constexpr double kLabelRoom = 260;
  const double bar_x = std::clamp(name_room + 30, 140.0, 360.0);
  const double width = std::max(900.0, bar_x + 400 + kLabelRoom);
  const double bar_width = width - bar_x - kLabelRoom;
  const double bottom = kTop + kGroupRow * groups.size() + kBarRow * bars + 6;
  const double height = bottom + 55;
  auto x_of = [&](double v) { return bar_x + bar_width * x_axis.Fraction(v); };

  std::string svg = SvgOpen(width, height);
  svg += Heading(absl::StrCat(report.benchmark, ": throughput"),
                 absl::StrCat(unit,
                              "; higher is better; grey bars are baselines, ratios are against "
                              "the first baseline of the group"));
  for (const Tick& t : x_axis.ticks) {
    svg += Line(x_of(t.value), kTop, x_of(t.value), bottom, kGrid);
    svg += Text(x_of(t.value), bottom + 16, t.label, R"(font-size="11" text-anchor="middle")");
  }
  svg += Text(bar_x + bar_width / 2, bottom + 40, unit, R"(font-size="13" text-anchor="middle")");
  if (groups.empty()) {
    svg += Text(width / 2, kTop + 20, "no throughput figures",
                R"(font-size="14" text-anchor="middle" fill="#888")");
  }

  double y = kTop;
  for (const auto& [group, entries] : groups) {
    svg += Text(20, y + 20, group, R"(font-size="13" font-weight="bold")");
    y += kGroupRow;
    for (const Plotted& p : entries) {
      const BenchEntry& e = *p.entry;
      const double value = value_of(e);
      std::string label = by_ops       ? absl::StrCat(Grouped(value), " ops/s")
                          : by_records ? absl::StrCat(Grouped(value), " records/ms")
                                       : absl::StrFormat("%.2f GB/s", value);
      // Only in GB/s charts can an entry lack the unit (it measured records/ms or ops/s alone).
      if (value <= 0) {
        label = e.records_per_ms > 0
                    ? absl::StrCat(Grouped(e.records_per_ms), " records/ms, no GB/s")
                    : absl::StrCat(Grouped(e.ops_per_s), " ops/s, no GB/s");
      }
      std::string markup = XmlEscape(label);
      const BenchEntry* reference = p.baseline ? nullptr : report.ReferenceFor(e);
      if (reference != nullptr && value > 0 && value_of(*reference) > 0) {
        absl::StrAppend(
            &markup, " <tspan dx=\"6\" font-weight=\"bold\">",
            XmlEscape(absl::StrFormat("%.2fx %s", value / value_of(*reference), reference->name)),
            "</tspan>");
      }
      const double end = x_of(std::max(value, 0.0));
      svg += Text(bar_x - 8, y + 16, e.name,
                  p.baseline ? R"(font-size="12" text-anchor="end" fill="#666")"
                             : R"(font-size="12" text-anchor="end")");
      absl::StrAppend(&svg, "<rect class=\"bar\" x=\"", Px(bar_x), "\" y=\"",
                      Px(y + (kBarRow - kBarHeight) / 2), "\" width=\"", Px(end - bar_x),
                      "\" height=\"", Px(kBarHeight), "\" fill=\"",
                      p.baseline ? kBaselineGrey : kPalette[0], "\">",
                      Tooltip(absl::StrCat(e.name, ": ", label)), "</rect>\n");
      svg += RawText(end + 6, y + 16, markup, R"(font-size="12")");
      y += kBarRow;
    }
  }
  svg += Line(bar_x, kTop, bar_x, bottom, R"(stroke="#888" stroke-width="1")");
  svg += "</svg>\n";
  return svg;
}

// ---------------------------------------------------------------- files

namespace {

// The page that shows the charts, with where they were measured.
std::string HtmlPage(const BenchReport& report, const std::vector<std::string>& charts) {
  const HostInfo& h = report.host;
  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>sluice bench ",
      XmlEscape(report.benchmark),
      "</title>\n<style>body { font-family: sans-serif; margin: 2em; } img { display: block; "
      "margin: 1.5em 0; max-width: 100%; }</style>\n</head>\n<body>\n<h1>sluice bench ",
      XmlEscape(report.benchmark), "</h1>\n<p>host: ",
      XmlEscape(
          absl::StrFormat("%s, %d CPUs, %s, Linux %s", h.hostname, h.cpus, h.cpu_model, h.kernel)),
      "</p>\n");
  if (!report.config.empty()) {
    std::vector<std::string> config;
    for (const auto& [key, value] : report.config)
      config.push_back(absl::StrCat(key, " = ", value));
    absl::StrAppend(&html, "<p>config: ", XmlEscape(absl::StrJoin(config, ", ")), "</p>\n");
  }
  // A failed row is missing from the charts; say so where they are read.
  for (const auto& [name, error] : report.failures) {
    absl::StrAppend(&html, "<p><b>failed</b>: ", XmlEscape(name), ": ", XmlEscape(error), "</p>\n");
  }
  for (const std::string& chart : charts) {
    absl::StrAppend(&html, "<img src=\"", XmlEscape(chart), "\" alt=\"", XmlEscape(chart), "\">\n");
  }
  return html + "</body>\n</html>\n";
}

}  // namespace

absl::StatusOr<std::vector<std::string>> WriteBenchPlots(const BenchReport& report,
                                                         const std::string& dir) {
  // The benchmark name is slugged too: it becomes part of file names in `dir`.
  const std::string stem = Slug(report.benchmark, "bench");
  std::vector<std::pair<std::string, std::string>> files;  // (name, contents)
  std::set<std::string> taken;
  for (const std::string& group : report.Groups()) {
    if (EntriesOf(report, group, HasLatency).empty()) continue;
    // Groups may slug alike ("a b", "a-b"): number the later ones rather than overwrite.
    const std::string base = absl::StrCat(stem, "-latency-", Slug(group, "group"));
    std::string name = absl::StrCat(base, ".svg");
    for (int n = 2; taken.contains(name); ++n) name = absl::StrCat(base, "-", n, ".svg");
    taken.insert(name);
    files.emplace_back(name, LatencyChartSvg(report, group));
  }
  for (const auto* list : {&report.baselines, &report.results}) {
    if (std::any_of(list->begin(), list->end(), HasThroughput)) {
      files.emplace_back(absl::StrCat(stem, "-throughput.svg"), ThroughputChartSvg(report));
      break;
    }
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "nothing to plot: no entry of bench ", report.benchmark, " has a latency or a throughput"));
  }
  std::vector<std::string> charts;
  for (const auto& file : files) charts.push_back(file.first);
  files.emplace_back(absl::StrCat(stem, ".html"), HtmlPage(report, charts));

  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create directory ", dir, ": ", error.message()));
  }
  std::vector<std::string> written;
  for (const auto& [name, contents] : files) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    if (absl::Status s = WriteFileAtomically(path, contents); !s.ok()) return s;
    written.push_back(path);
  }
  return written;
}

}  // namespace sluice::tools
