// Command lookup, authentication and the commands that do not read state: connection handling
// (PING, ECHO, AUTH, HELLO, SELECT, CLIENT, QUIT) and what clients ask of a server when they
// start (COMMAND, INFO, CONFIG GET). Errors are worded as redis-server words them, so that
// clients that match on them behave.
#include "statestore/internal/resp_commands.h"

#include <unistd.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "statestore/resp.h"

namespace sluice::statestore_internal {
namespace {

// The redis-server version whose commands and replies the gateway follows.
constexpr std::string_view kRedisVersion = "7.0.0";
constexpr std::string_view kWrongPass =
    "WRONGPASS invalid username-password pair or user is disabled.";

struct CommandSpec {
  std::string_view name;  // lower case, as COMMAND lists it
  // As redis-server counts, the name included: N exactly N arguments, -N at least N.
  int arity;
  bool no_auth;            // allowed before AUTH
  std::string_view flags;  // for COMMAND, separated by spaces
  int first_key, last_key, step;
  After (*run)(Call&);
};

// redis-server's commands that write: refused with -READONLY rather than as unknown.
constexpr std::string_view kWriteCommands[] = {
    "append",
    "bitfield",
    "bitop",
    "blmove",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzpopmax",
    "bzpopmin",
    "copy",
    "decr",
    "decrby",
    "del",
    "expire",
    "expireat",
    "flushall",
    "flushdb",
    "geoadd",
    "getdel",
    "getex",
    "getset",
    "hdel",
    "hincrby",
    "hincrbyfloat",
    "hmset",
    "hset",
    "hsetnx",
    "incr",
    "incrby",
    "incrbyfloat",
    "linsert",
    "lmove",
    "lpop",
    "lpush",
    "lpushx",
    "lrem",
    "lset",
    "ltrim",
    "migrate",
    "move",
    "mset",
    "msetnx",
    "persist",
    "pexpire",
    "pexpireat",
    "pfadd",
    "pfmerge",
    "psetex",
    "rename",
    "renamenx",
    "restore",
    "rpop",
    "rpoplpush",
    "rpush",
    "rpushx",
    "sadd",
    "sdiffstore",
    "set",
    "setbit",
    "setex",
    "setnx",
    "setrange",
    "sinterstore",
    "smove",
    "spop",
    "srem",
    "sunionstore",
    "swapdb",
    "unlink",
    "xadd",
    "xautoclaim",
    "xclaim",
    "xdel",
    "xgroup",
    "xtrim",
    "zadd",
    "zincrby",
    "zinterstore",
    "zpopmax",
    "zpopmin",
    "zrem",
    "zremrangebyrank",
    "zremrangebyscore",
    "zunionstore",
};

bool ArityAllows(int arity, size_t args) {
  return arity >= 0 ? args == static_cast<size_t>(arity) : args >= static_cast<size_t>(-arity);
}

// Compares all of `token` whatever `given` is, so that the time taken does not tell how much of
// a guess was right.
bool TokenMatches(std::string_view given, std::string_view token) {
  size_t diff = given.size() ^ token.size();
  for (size_t i = 0; i < token.size(); ++i) {
    diff |= static_cast<unsigned char>(token[i]) ^
            static_cast<unsigned char>(i < given.size() ? given[i] : 0);
  }
  return diff == 0;
}

// Checks AUTH's or HELLO's credentials; the client is authenticated when they match.
bool Authenticate(Call& call, std::string_view user, std::string_view password) {
  const bool ok = user == "default" && TokenMatches(password, call.context->options.token);
  if (ok) {
    call.client.authenticated = true;
  } else {
    call.context->stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
  }
  return ok;
}

// redis-server's rule for CLIENT SETNAME: printable ASCII without spaces.
bool ValidClientName(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) { return c >= '!' && c <= '~'; });
}

void SendUnknownSubcommand(Call& call) {
  const std::string command = absl::AsciiStrToUpper(Absl(call.args[0]));
  call.SendError(
      absl::StrCat("ERR unknown subcommand '", Absl(call.args[1]), "'. Try ", command, " HELP."));
}

After Ping(Call& call) {
  if (call.args.size() > 2) {
    call.SendError("ERR wrong number of arguments for 'ping' command");
  } else if (call.args.size() == 2) {
    std::string out;
    AppendBulk(&out, call.args[1]);
    call.Send(std::move(out));
  } else {
    call.Send("+PONG\r\n");
  }
  return After::kContinue;
}

After Echo(Call& call) {
  std::string out;
  AppendBulk(&out, call.args[1]);
  call.Send(std::move(out));
  return After::kContinue;
}

After Auth(Call& call) {
  if (call.args.size() > 3) {
    call.SendError("ERR syntax error");
  } else if (call.context->options.token.empty()) {
    call.SendError(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?");
  } else if (!Authenticate(call, call.args.size() == 3 ? call.args[1] : "default",
                           call.args.back())) {
    call.SendError(kWrongPass);
  } else {
    call.SendOk();
  }
  return After::kContinue;
}

// HELLO's reply in RESP2: the map as a flat array of names and values.
std::string HelloReply(const ClientState& client) {
  std::string out;
  AppendArrayHeader(&out, 14);
  AppendBulk(&out, "server");
  AppendBulk(&out, "redis");
  AppendBulk(&out, "version");
  AppendBulk(&out, kRedisVersion);
  AppendBulk(&out, "proto");
  AppendInteger(&out, 2);
  AppendBulk(&out, "id");
  AppendInteger(&out, static_cast<int64_t>(client.id));
  AppendBulk(&out, "mode");
  AppendBulk(&out, "standalone");
  AppendBulk(&out, "role");
  AppendBulk(&out, "master");
  AppendBulk(&out, "modules");
  AppendArrayHeader(&out, 0);
  return out;
}

// HELLO [protover [AUTH user password] [SETNAME name]]: only protocol 2 (RESP3 is refused with
// -NOPROTO, which clients take as "stay on RESP2").
After Hello(Call& call) {
  const auto& args = call.args;
  if (args.size() >= 2) {
    int64_t version = 0;
    if (!absl::SimpleAtoi(Absl(args[1]), &version)) {
      call.SendError("ERR Protocol version is not an integer or out of range");
      return After::kContinue;
    }
    if (version != 2) {
      call.SendError("NOPROTO sorry, this protocol version is not supported.");
      return After::kContinue;
    }
  }
  std::string_view name;
  bool set_name = false;
  for (size_t i = 2; i < args.size(); ++i) {
    if (EqualsIgnoreCase(args[i], "AUTH") && i + 2 < args.size()) {
      if (!Authenticate(call, args[i + 1], args[i + 2])) {
        call.SendError(kWrongPass);
        return After::kContinue;
      }
      i += 2;
    } else if (EqualsIgnoreCase(args[i], "SETNAME") && i + 1 < args.size()) {
      name = args[++i];
      set_name = true;
    } else {
      call.SendError(absl::StrCat("ERR Syntax error in HELLO option '", Absl(args[i]), "'"));
      return After::kContinue;
    }
  }
  if (!call.client.authenticated) {
    call.SendError(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
        "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
        "select the RESP protocol version at the same time");
    return After::kContinue;
  }
  if (set_name && !ValidClientName(name)) {
    call.SendError("ERR Client names cannot contain spaces, newlines or special characters.");
    return After::kContinue;
  }
  if (set_name) call.client.name = std::string(name);
  call.Send(HelloReply(call.client));
  return After::kContinue;
}

After Select(Call& call) {
  int64_t db = 0;
  if (!absl::SimpleAtoi(Absl(call.args[1]), &db)) {
    call.SendError("ERR value is not an integer or out of range");
  } else if (db != 0) {
    call.SendError("ERR DB index is out of range");
  } else {
    call.SendOk();
  }
  return After::kContinue;
}

After Client(Call& call) {
  const std::string_view sub = call.args[1];
  const size_t n = call.args.size();
  std::string out;
  if (EqualsIgnoreCase(sub, "SETNAME") && n == 3) {
    if (!ValidClientName(call.args[2])) {
      call.SendError("ERR Client names cannot contain spaces, newlines or special characters.");
      return After::kContinue;
    }
    call.client.name = std::string(call.args[2]);
    call.SendOk();
  } else if (EqualsIgnoreCase(sub, "GETNAME") && n == 2) {
    call.client.name.empty() ? AppendNullBulk(&out) : AppendBulk(&out, call.client.name);
    call.Send(std::move(out));
  } else if (EqualsIgnoreCase(sub, "ID") && n == 2) {
    AppendInteger(&out, static_cast<int64_t>(call.client.id));
    call.Send(std::move(out));
  } else if ((EqualsIgnoreCase(sub, "SETINFO") && n == 4) ||
             ((EqualsIgnoreCase(sub, "NO-EVICT") || EqualsIgnoreCase(sub, "NO-TOUCH")) && n == 3)) {
    call.SendOk();  // nothing to evict or touch here
  } else {
    SendUnknownSubcommand(call);
  }
  return After::kContinue;
}

After Quit(Call& call) {
  call.SendOk();
  return After::kClose;
}

After Command(Call& call);
After Info(Call& call);
After Config(Call& call);

const CommandSpec kCommands[] = {
    {"get", 2, false, "readonly fast", 1, 1, 1, RunGet},
    {"mget", -2, false, "readonly fast", 1, -1, 1, RunMultiGet},
    {"exists", -2, false, "readonly fast", 1, -1, 1, RunExists},
    {"scan", -2, false, "readonly", 0, 0, 0, RunScan},
    {"ping", -1, false, "fast", 0, 0, 0, Ping},
    {"echo", 2, false, "fast", 0, 0, 0, Echo},
    {"auth", -2, true, "noscript loading stale fast no_auth", 0, 0, 0, Auth},
    {"hello", -1, true, "noscript loading stale fast no_auth", 0, 0, 0, Hello},
    // As in redis-server, a client may always say goodbye.
    {"quit", -1, true, "noscript loading stale fast no_auth", 0, 0, 0, Quit},
    {"select", 2, false, "loading stale fast", 0, 0, 0, Select},
    {"client", -2, false, "noscript loading stale", 0, 0, 0, Client},
    {"command", -1, false, "loading stale", 0, 0, 0, Command},
    {"info", -1, false, "loading stale", 0, 0, 0, Info},
    {"config", -2, false, "loading stale", 0, 0, 0, Config},
};

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& spec : kCommands) {
    if (EqualsIgnoreCase(name, spec.name)) return &spec;
  }
  return nullptr;
}

// COMMAND's description of one command, in redis-server 7's ten fields.
void AppendCommandInfo(const CommandSpec& spec, std::string* out) {
  AppendArrayHeader(out, 10);
  AppendBulk(out, spec.name);
  AppendInteger(out, spec.arity);
  const std::vector<absl::string_view> flags = absl::StrSplit(Absl(spec.flags), ' ');
  AppendArrayHeader(out, flags.size());
  for (absl::string_view flag : flags) AppendSimpleString(out, {flag.data(), flag.size()});
  AppendInteger(out, spec.first_key);
  AppendInteger(out, spec.last_key);
  AppendInteger(out, spec.step);
  for (int i = 0; i < 4; ++i) AppendArrayHeader(out, 0);  // ACL categories, tips, keys, subs
}

// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS (empty: clients fall back to their
// own help).
After Command(Call& call) {
  std::string out;
  const auto& args = call.args;
  if (args.size() == 1) {
    AppendArrayHeader(&out, std::size(kCommands));
    for (const CommandSpec& spec : kCommands) AppendCommandInfo(spec, &out);
  } else if (EqualsIgnoreCase(args[1], "COUNT") && args.size() == 2) {
    AppendInteger(&out, static_cast<int64_t>(std::size(kCommands)));
  } else if (EqualsIgnoreCase(args[1], "DOCS")) {
    AppendArrayHeader(&out, 0);
  } else if (EqualsIgnoreCase(args[1], "INFO")) {
    AppendArrayHeader(&out, args.size() - 2);
    for (size_t i = 2; i < args.size(); ++i) {
      const CommandSpec* spec = FindCommand(args[i]);
      spec == nullptr ? AppendNullBulk(&out) : AppendCommandInfo(*spec, &out);
    }
  } else {
    SendUnknownSubcommand(call);
    return After::kContinue;
  }
  call.Send(std::move(out));
  return After::kContinue;
}

uint64_t Relaxed(const std::atomic<uint64_t>& counter) {
  return counter.load(std::memory_order_relaxed);
}

std::string InfoText(const GatewayContext& context, std::string_view section) {
  const bool all = section.empty() || EqualsIgnoreCase(section, "all") ||
                   EqualsIgnoreCase(section, "default") || EqualsIgnoreCase(section, "everything");
  auto wanted = [&](std::string_view name) { return all || EqualsIgnoreCase(section, name); };
  const net::StreamServer* server = context.server.load();
  const net::StreamServerStats empty;
  const net::StreamServerStats& traffic = server != nullptr ? server->stats() : empty;
  const RespGatewayStats& stats = context.stats;
  const int64_t uptime = absl::ToInt64Seconds(absl::Now() - context.started);
  std::string text;
  if (wanted("server")) {
    absl::StrAppend(
        &text, "# Server\r\nredis_version:", Absl(kRedisVersion),
        "\r\nredis_mode:standalone\r\nos:Linux\r\narch_bits:64\r\nprocess_id:", getpid(),
        "\r\ntcp_port:", server != nullptr ? server->port() : 0, "\r\nuptime_in_seconds:", uptime,
        "\r\nuptime_in_days:", uptime / 86400, "\r\n\r\n");
  }
  if (wanted("clients")) {
    absl::StrAppend(&text, "# Clients\r\nconnected_clients:", Relaxed(traffic.open),
                    "\r\nmaxclients:", context.options.max_connections, "\r\n\r\n");
  }
  if (wanted("stats")) {
    absl::StrAppend(&text, "# Stats\r\ntotal_connections_received:", Relaxed(traffic.accepted),
                    "\r\ntotal_commands_processed:", Relaxed(stats.commands),
                    "\r\ntotal_net_input_bytes:", Relaxed(traffic.bytes_received),
                    "\r\ntotal_net_output_bytes:", Relaxed(traffic.bytes_sent),
                    "\r\nrejected_connections:", Relaxed(traffic.refused),
                    "\r\nkeyspace_hits:", Relaxed(stats.keyspace_hits),
                    "\r\nkeyspace_misses:", Relaxed(stats.keyspace_misses),
                    "\r\ntotal_error_replies:", Relaxed(stats.error_replies), "\r\n");
    absl::StrAppend(&text, "protocol_errors:", Relaxed(stats.protocol_errors),
                    "\r\nauth_failures:", Relaxed(stats.auth_failures),
                    "\r\nrefused_writes:", Relaxed(stats.refused_writes),
                    "\r\nidle_closed_connections:", Relaxed(traffic.closed_idle),
                    "\r\nslow_closed_connections:", Relaxed(traffic.closed_slow), "\r\n\r\n");
  }
  if (wanted("gateway")) {
    absl::StrAppend(&text, "# Gateway\r\njob:", context.options.job,
                    "\r\nconsistency:", Absl(ConsistencyName(context.options.consistency)),
                    "\r\nread_only:1\r\nauth_required:", context.options.token.empty() ? 0 : 1,
                    "\r\n\r\n");
  }
  return text;
}

After Info(Call& call) {
  std::string out;
  AppendBulk(&out, InfoText(*call.context, call.args.size() > 1 ? call.args[1] : ""));
  call.Send(std::move(out));
  return After::kContinue;
}

// CONFIG GET name...: the few settings clients look at (redis-benchmark asks for save and
// appendonly), "*" for all of them. Nothing can be set.
After Config(Call& call) {
  if (!EqualsIgnoreCase(call.args[1], "GET") || call.args.size() < 3) {
    SendUnknownSubcommand(call);
    return After::kContinue;
  }
  const RespGatewayOptions& o = call.context->options;
  const int64_t timeout =
      o.idle_timeout == absl::InfiniteDuration() ? 0 : absl::ToInt64Seconds(o.idle_timeout);
  const std::pair<std::string_view, std::string> settings[] = {
      {"save", ""},
      {"appendonly", "no"},
      {"databases", "1"},
      {"maxclients", absl::StrCat(o.max_connections)},
      {"timeout", absl::StrCat(timeout)},
  };
  std::string body;
  size_t found = 0;
  for (const auto& [name, value] : settings) {
    for (size_t i = 2; i < call.args.size(); ++i) {
      if (call.args[i] != "*" && !EqualsIgnoreCase(call.args[i], name)) continue;
      AppendBulk(&body, name);
      AppendBulk(&body, value);
      ++found;
      break;
    }
  }
  std::string out;
  AppendArrayHeader(&out, found * 2);
  out += body;
  call.Send(std::move(out));
  return After::kContinue;
}

void SendUnknownCommand(Call& call) {
  for (std::string_view write : kWriteCommands) {
    if (EqualsIgnoreCase(call.args[0], write)) {
      call.context->stats.refused_writes.fetch_add(1, std::memory_order_relaxed);
      call.SendError("READONLY You can't write against a read only state store.");
      return;
    }
  }
  // As redis-server: the name and the start of the arguments, 128 characters at most.
  std::string text = absl::StrCat("ERR unknown command '", Absl(call.args[0].substr(0, 128)),
                                  "', with args beginning with: ");
  size_t budget = 128;
  for (size_t i = 1; i < call.args.size() && budget > 0; ++i) {
    const std::string_view arg = call.args[i].substr(0, budget);
    absl::StrAppend(&text, "'", Absl(arg), "' ");
    budget -= arg.size();
  }
  call.SendError(text);
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(Absl(a), Absl(b));
}

void Call::SendError(std::string_view text) {
  std::string out;
  AppendError(&out, text);
  Send(std::move(out));
}

void Call::SendOk() { Send("+OK\r\n"); }

After RunCommand(Call call) {
  const CommandSpec* spec = FindCommand(call.args[0]);
  // Before anything else, so that an unauthenticated client learns nothing, not even which
  // commands exist.
  if (!call.client.authenticated && (spec == nullptr || !spec->no_auth)) {
    call.SendError("NOAUTH Authentication required.");
    return After::kContinue;
  }
  if (spec == nullptr) {
    SendUnknownCommand(call);
    return After::kContinue;
  }
  if (!ArityAllows(spec->arity, call.args.size())) {
    call.SendError(
        absl::StrCat("ERR wrong number of arguments for '", Absl(spec->name), "' command"));
    return After::kContinue;
  }
  return spec->run(call);
}

}  // namespace sluice::statestore_internal
