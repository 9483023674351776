// `sluice query`: reads keyed state from a running job's query servers through QueryClient.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "statestore/query_client.h"
#include "tools/bench_common.h"
#include "tools/commands.h"

namespace sluice::tools {
namespace {

// Exit codes beyond the common ones (cli.h).
constexpr int kExitAbsent = 3;       // get: the key has no value
constexpr int kExitUnavailable = 4;  // restoring, or no worker reachable, until the deadline
constexpr int kExitUnauthorized = 5;

int ExitCodeOf(QueryStatus status) {
  switch (status) {
    case QueryStatus::kOk:
      return kExitOk;
    case QueryStatus::kUnavailable:
      return kExitUnavailable;
    case QueryStatus::kUnauthorized:
      return kExitUnauthorized;
    case QueryStatus::kBadRequest:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

// Bytes as text when they are printable, else as a C-escaped string in quotes.
std::string Readable(std::string_view bytes) {
  for (char c : bytes) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return absl::StrCat("\"", absl::CEscape(std::string(bytes)), "\"");
    }
  }
  return std::string(bytes);
}

// `v` with each string written by `atom`, `comma` between items and `colon` between a map's
// key and value.
std::string FormatValue(const QueryValue& v, std::string (*atom)(std::string_view),
                        const char* comma, const char* colon) {
  switch (v.kind) {
    case StateKind::kList: {
      std::vector<std::string> items;
      for (const std::string& s : v.list) items.push_back(atom(s));
      return absl::StrCat("[", absl::StrJoin(items, comma), "]");
    }
    case StateKind::kMap: {
      std::vector<std::string> items;
      for (const auto& [k, value] : v.map)
        items.push_back(absl::StrCat(atom(k), colon, atom(value)));
      return absl::StrCat("{", absl::StrJoin(items, comma), "}");
    }
    default:
      return atom(v.value);
  }
}

std::string ValueText(const QueryValue& v) { return FormatValue(v, Readable, ", ", ": "); }
std::string ValueJson(const QueryValue& v) { return FormatValue(v, JsonString, ",", ":"); }

std::string StatusJson(QueryStatus status, const std::string& message) {
  return absl::StrCat("\"status\":", JsonString(QueryStatusName(status)),
                      message.empty() ? "" : absl::StrCat(",\"message\":", JsonString(message)));
}

std::string KeyJson(const std::string& key, const KeyResult& r) {
  std::string out =
      absl::StrCat("{\"key\":", JsonString(key), ",", StatusJson(r.status, r.message));
  if (r.status == QueryStatus::kOk) {
    absl::StrAppend(&out, ",\"found\":", r.found ? "true" : "false");
    if (r.found) {
      absl::StrAppend(&out, ",\"kind\":", JsonString(StateKindName(r.value.kind)),
                      ",\"value\":", ValueJson(r.value));
    }
    if (r.checkpoint_id != 0) absl::StrAppend(&out, ",\"checkpoint_id\":", r.checkpoint_id);
  }
  return out + "}";
}

void PrintError(QueryStatus status, const std::string& message) {
  std::fprintf(stderr, "sluice query: %s: %s\n", std::string(QueryStatusName(status)).c_str(),
               message.c_str());
}

struct QueryOptions {
  std::string addr;
  std::string job;
  std::string consistency = "latest";
  std::string ns;
  std::string token;
  std::string transport = "auto";
  bool json = false;
  double timeout = 10;
  uint64_t limit = 0;  // scan: entries in all (0: all)
  uint64_t page = 100;
};

// Prints a failed answer as the output asks; its exit code.
int Failed(const QueryResponse& response, const QueryOptions& o) {
  if (o.json) {
    std::printf("{%s}\n", StatusJson(response.status, response.message).c_str());
  } else {
    PrintError(response.status, response.message);
  }
  return ExitCodeOf(response.status);
}

int RunGet(QueryClient& client, QueryRequest request, const QueryOptions& o) {
  QueryResponse response = client.Execute(request);
  if (response.status != QueryStatus::kOk) return Failed(response, o);
  int exit = kExitOk;
  std::vector<std::string> json;
  for (size_t i = 0; i < response.results.size(); ++i) {
    const KeyResult& r = response.results[i];
    const std::string& key = request.keys[i];
    if (r.status != QueryStatus::kOk && exit == kExitOk) exit = ExitCodeOf(r.status);
    if (o.json) {
      json.push_back(KeyJson(key, r));
      continue;
    }
    const std::string where =
        r.checkpoint_id != 0 ? absl::StrCat("  (checkpoint ", r.checkpoint_id, ")") : "";
    std::string text =
        r.status != QueryStatus::kOk
            ? absl::StrCat("(", std::string(QueryStatusName(r.status)), ": ", r.message, ")")
        : r.found ? ValueText(r.value)
                  : "(absent)";
    if (request.type == QueryType::kGet) {
      std::printf("%s%s\n", text.c_str(), where.c_str());
    } else {
      std::printf("%s\t%s%s\n", Readable(key).c_str(), text.c_str(), where.c_str());
    }
  }
  if (o.json) {
    std::printf("%s\n", request.type == QueryType::kGet
                            ? json[0].c_str()
                            : absl::StrCat("[", absl::StrJoin(json, ","), "]").c_str());
  }
  if (request.type == QueryType::kGet && exit == kExitOk && !response.results[0].found) {
    return kExitAbsent;
  }
  return exit;
}

int RunScan(QueryClient& client, QueryRequest request, const QueryOptions& o) {
  request.limit = static_cast<uint32_t>(o.page);
  uint64_t printed = 0;
  std::vector<std::string> json;
  uint64_t checkpoint_id = 0;
  QueryResponse last = client.ScanAll(request, [&](const ScanEntry& e) {
    if (o.json) {
      json.push_back(
          absl::StrCat("{\"key\":", JsonString(e.key), ",\"value\":", ValueJson(e.value), "}"));
    } else {
      std::printf("%s\t%s\n", Readable(e.key).c_str(), ValueText(e.value).c_str());
    }
    return ++printed != o.limit;
  });
  (void)checkpoint_id;
  if (o.json) {
    std::printf("{%s,\"entries\":[%s]}\n", StatusJson(last.status, last.message).c_str(),
                absl::StrJoin(json, ",").c_str());
  } else if (last.status != QueryStatus::kOk) {
    PrintError(last.status, last.message);
  }
  return ExitCodeOf(last.status);
}

int RunStates(QueryClient& client, QueryRequest request, const QueryOptions& o) {
  QueryResponse response = client.Execute(request);
  if (response.status != QueryStatus::kOk) return Failed(response, o);
  std::vector<std::string> json;
  Table table({"job", "state", "kind", "key type", "value type", "key groups"});
  for (const StateInfo& s : response.states) {
    std::vector<std::string> where;
    std::vector<std::string> where_json;
    for (const StateLocation& l : s.locations) {
      where.push_back(
          absl::StrCat(l.key_groups.first, "-", l.key_groups.end() - 1, "@", l.address));
      where_json.push_back(absl::StrCat("{\"first\":", l.key_groups.first,
                                        ",\"count\":", l.key_groups.count,
                                        ",\"address\":", JsonString(l.address), "}"));
    }
    table.AddRow({s.job, s.name, std::string(StateKindName(s.kind)),
                  s.key_type.empty() ? "bytes" : s.key_type,
                  s.value_type.empty() ? "bytes" : s.value_type, absl::StrJoin(where, " ")});
    json.push_back(absl::StrCat(
        "{\"job\":", JsonString(s.job), ",\"name\":", JsonString(s.name),
        ",\"kind\":", JsonString(StateKindName(s.kind)), ",\"key_type\":", JsonString(s.key_type),
        ",\"value_type\":", JsonString(s.value_type), ",\"max_parallelism\":", s.max_parallelism,
        ",\"locations\":[", absl::StrJoin(where_json, ","), "]}"));
  }
  if (o.json) {
    std::printf("[%s]\n", absl::StrJoin(json, ",").c_str());
  } else {
    std::fputs(table.Render().c_str(), stdout);
  }
  return kExitOk;
}

}  // namespace

int RunQuery(Args args) {
  QueryOptions o;
  std::vector<std::string> positional;
  OptionParser parser(
      "sluice query",
      "Reads keyed state from a running job's query servers.\n\n"
      "  sluice query get STATE KEY         one key's value\n"
      "  sluice query mget STATE KEY...     several keys, one line each\n"
      "  sluice query scan STATE [PREFIX]   every key (that starts with PREFIX) and its value\n"
      "  sluice query states                the job's states, their types and key groups\n\n"
      "Exit codes: 0 answered, 1 failed, 2 bad command line or request, 3 key absent (get),\n"
      "4 unavailable (restoring or unreachable until the timeout), 5 unauthorized.");
  parser.AddString("--addr", "HOST:PORT", "any worker's query address (required)", &o.addr);
  parser.AddString("--job", "NAME", "the job (default: the only one the worker knows)", &o.job);
  parser.AddChoice("--consistency", {"latest", "committed"},
                   "latest: live state; committed: as of the last completed checkpoint",
                   &o.consistency);
  parser.AddString("--namespace", "NS", "the namespace (default empty)", &o.ns);
  parser.AddString("--token", "T", "the servers' token", &o.token);
  parser.AddString("--transport", "NAME", "uring, epoll or auto (default auto)", &o.transport);
  parser.AddFlag("--json", "print JSON", &o.json);
  parser.AddSeconds("--timeout", "give up after this long, retries included (default 10)", 0.01,
                    3600, &o.timeout);
  parser.AddCount("--limit", "N", "scan: stop after N entries (default: all)", 0, 1ull << 40,
                  &o.limit);
  parser.AddCount("--page", "N", "scan: entries per request (default 100)", 1, 100000, &o.page);
  parser.AllowPositional("get|mget|scan|states ...", &positional);
  AddLogLevelOption(parser);
  if (std::optional<int> exit = ParseOrExit(parser, args)) return *exit;
  auto usage = [&](const std::string& what) {
    return ReportUsageError("query", absl::InvalidArgumentError(what));
  };
  if (positional.empty()) return usage("name a query: get, mget, scan or states");
  if (o.addr.empty()) return usage("--addr HOST:PORT is required");
  const std::string& verb = positional[0];
  QueryRequest request;
  request.job = o.job;
  request.ns = o.ns;
  request.consistency =
      o.consistency == "committed" ? Consistency::kCommitted : Consistency::kLatest;
  if (verb == "get" || verb == "mget") {
    if (positional.size() < 3 || (verb == "get" && positional.size() != 3)) {
      return usage(absl::StrCat(verb, " takes STATE KEY", verb == "mget" ? "..." : ""));
    }
    request.type = verb == "get" ? QueryType::kGet : QueryType::kMultiGet;
    request.state = positional[1];
    request.keys.assign(positional.begin() + 2, positional.end());
  } else if (verb == "scan") {
    if (positional.size() < 2 || positional.size() > 3) return usage("scan takes STATE [PREFIX]");
    request.type = QueryType::kPrefixScan;
    request.state = positional[1];
    if (positional.size() == 3) request.prefix = positional[2];
  } else if (verb == "states") {
    if (positional.size() != 1) return usage("states takes no arguments");
    request.type = QueryType::kListStates;
  } else {
    return usage(absl::StrCat("unknown query '", verb, "': get, mget, scan or states"));
  }
  QueryClientOptions client_options;
  client_options.address = o.addr;
  client_options.deadline = absl::Seconds(o.timeout);
  client_options.connections.token = o.token;
  client_options.connections.transport = o.transport;
  client_options.connections.connect_timeout = absl::Seconds(o.timeout);
  absl::StatusOr<std::unique_ptr<QueryClient>> client = QueryClient::Create(client_options);
  if (!client.ok()) return usage(std::string(client.status().message()));
  if (request.type == QueryType::kPrefixScan) return RunScan(**client, request, o);
  if (request.type == QueryType::kListStates) return RunStates(**client, request, o);
  return RunGet(**client, request, o);
}

}  // namespace sluice::tools
