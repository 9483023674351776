// `sluice bench query` (tools/bench_query.h). The servers, started once before the rows:
//  - a state server: this binary's `state-server` in a second process, --keys keys of its value
//    state "key" (job "demo"), "%012d" of 0 .. keys-1 -> --value-size bytes, with no updates and
//    no checkpoints while it is measured, serving the native protocol and, when this build has
//    the gateway, RESP (`GET key:<12 digits>`);
//  - a Redis server, when installed (Debian's redis-tools installs it as redis-check-rdb, which
//    runs as the server when called redis-server), on a free loopback port, without persistence,
//    loaded with the same keys ("key:%012d") and values by pipelined SETs.
// The rows, for each client count C of --clients (1 and 50), GETs of keys picked uniformly at
// random, each client with one request outstanding at a time (a closed loop, like
// redis-benchmark's default -P 1), --warmup requests, then --requests measured:
//  - native-C: this process's load generator over the native protocol: one connection per
//    client, all driven by the one I/O thread of a net/ transport (or by --client-threads of
//    them), each next request sent from the callback that receives the last answer; an answer is
//    decoded and checked (found, of --value-size bytes) and its latency, from before its request
//    was queued to its arrival, is recorded in a histogram;
//  - resp-C: `redis-benchmark -t get -c C -r keys` against the RESP gateway (its warm-up is a
//    run of its own with -n --warmup);
//  - redis-C (baseline): the same redis-benchmark commands against Redis.
// Before a redis-benchmark row, a few GETs check that the server holds the keys: redis-benchmark
// counts error replies as answers.
#include "tools/bench_query.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/clock.h"
#include "base/histogram.h"
#include "base/status.h"
#include "net/frame.h"
#include "net/transport.h"
#include "statestore/query_client.h"
#include "statestore/query_protocol.h"
#include "statestore/query_service.h"
#include "tools/bench_common.h"
#include "tools/bench_peers.h"
#include "tools/bench_report.h"
#include "tools/cli.h"
#include "tools/peer_process.h"
#include "tools/raw_socket.h"
#include "tools/tool_output.h"
#include "tools/tool_process.h"

namespace sluice::tools {
namespace {

// What the state server serves (tools/state_server.cc).
constexpr char kJob[] = "demo";
constexpr char kState[] = "key";
constexpr size_t kKeyDigits = 12;
// RESP keys: what `redis-benchmark -t get -r N` asks for, "key:" and 12 digits.
constexpr char kRespKeyPrefix[] = "key:";
constexpr char kRedisServer[] = "redis-server";
constexpr char kRedisBenchmark[] = "redis-benchmark";

constexpr absl::Duration kStartTimeout = absl::Seconds(30);
// A row fails when no answer came for this long.
constexpr absl::Duration kStallTimeout = absl::Seconds(10);
constexpr absl::Duration kExitTimeout = absl::Seconds(10);

struct QueryBenchOptions {
  uint64_t keys = 100'000;
  uint64_t value_size = 32;
  uint64_t requests = 100'000;  // measured, per row
  uint64_t warmup = 10'000;     // per row, before the measured requests
  std::vector<uint64_t> clients = {1, 50};
  std::string backend = "rocksdb";
  std::string transport = "auto";
  uint64_t client_threads = 1;  // I/O threads of the native load generator
  uint64_t server_threads = 0;  // I/O threads of the state server (0: its default)
};

// CPU time per GET of the server and of the client while a row was measured, as extras of its
// entry; a figure that could not be read is left out.
void AddCpuPerGet(BenchEntry& e, uint64_t requests, std::optional<absl::Duration> server,
                  std::optional<absl::Duration> client) {
  auto per_get = [requests](absl::Duration d) {
    return absl::StrFormat("%.2f", absl::ToDoubleMicroseconds(d) / static_cast<double>(requests));
  };
  if (server.has_value()) e.extra.emplace_back("server_cpu_us_per_get", per_get(*server));
  if (client.has_value()) e.extra.emplace_back("client_cpu_us_per_get", per_get(*client));
}

// CPU time of `pid` since `start`, both read; nullopt if either could not be.
std::optional<absl::Duration> CpuSince(pid_t pid, std::optional<absl::Duration> start) {
  std::optional<absl::Duration> now = ProcessCpuTime(pid);
  if (!start.has_value() || !now.has_value()) return std::nullopt;
  return *now - *start;
}

std::string GroupOf(uint64_t clients) {
  return absl::StrCat("GET, ", clients, clients == 1 ? " client" : " clients");
}

// Key i's 12 digits, zero-padded, at `out`.
void WriteKeyDigits(uint64_t i, char* out) {
  for (size_t d = kKeyDigits; d-- > 0;) {
    out[d] = static_cast<char>('0' + i % 10);
    i /= 10;
  }
}

std::string StateKey(uint64_t i) {
  std::string key(kKeyDigits, '0');
  WriteKeyDigits(i, key.data());
  return key;
}

std::string RespKey(uint64_t i) { return absl::StrCat(kRespKeyPrefix, StateKey(i)); }

// The value the state server writes to every key at its first epoch: "1:" padded with 'x'.
std::string ValueOf(uint64_t value_size) {
  std::string value = "1:";
  if (value.size() < value_size) value.resize(value_size, 'x');
  return value;
}

// ---------------------------------------------------------------- processes

// ---------------------------------------------------------------- RESP

// One RESP reply of the kinds the checks and the loading read: simple string ('+'), error
// ('-'), integer (':') or bulk string ('$', nil when its length is -1).
struct RespReply {
  char type = 0;
  std::string text;
  bool nil = false;
  std::string Describe() const {
    if (nil) return "a nil bulk string";
    if (type == '$') return absl::StrCat("a bulk string of ", text.size(), " bytes");
    return absl::StrCat("'", std::string(1, type), text.substr(0, 200), "'");
  }
};

// Parses the reply at the start of `in` into `out`: the bytes it took, 0 when `in` holds only a
// part of it, InvalidArgument when it is not a reply of those kinds.
absl::StatusOr<size_t> ParseRespReply(std::string_view in, RespReply* out) {
  const size_t eol = in.find("\r\n");
  if (eol == std::string_view::npos) {
    if (in.size() > 64 << 10) return absl::InvalidArgumentError("a RESP line longer than 64 KiB");
    return 0;
  }
  if (eol == 0) return absl::InvalidArgumentError("an empty RESP line");
  const char type = in[0];
  const std::string_view line = in.substr(1, eol - 1);
  out->type = type;
  out->nil = false;
  switch (type) {
    case '+':
    case '-':
    case ':':
      out->text = std::string(line);
      return eol + 2;
    case '$': {
      int64_t length = 0;
      if (!absl::SimpleAtoi(absl::string_view(line.data(), line.size()), &length) || length < -1 ||
          length > (int64_t{64} << 20)) {
        return absl::InvalidArgumentError(
            absl::StrCat("a RESP bulk length of '", std::string(line.substr(0, 40)), "'"));
      }
      if (length == -1) {
        out->text.clear();
        out->nil = true;
        return eol + 2;
      }
      const size_t end = eol + 2 + static_cast<size_t>(length);
      if (in.size() < end + 2) return 0;
      if (in.substr(end, 2) != "\r\n") {
        return absl::InvalidArgumentError("a RESP bulk string not followed by CRLF");
      }
      out->text = std::string(in.substr(eol + 2, static_cast<size_t>(length)));
      return end + 2;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "a RESP reply of type '", absl::CHexEscape(std::string(1, type)), "' (not read here)"));
  }
}

// Appends `args` as a RESP command (an array of bulk strings) to `out`.
void AppendRespCommand(std::string* out, std::initializer_list<std::string_view> args) {
  absl::StrAppend(out, "*", args.size(), "\r\n");
  for (std::string_view a : args) {
    absl::StrAppend(out, "$", a.size(), "\r\n", absl::string_view(a.data(), a.size()), "\r\n");
  }
}

// A blocking RESP connection to 127.0.0.1, for checks and loading. Used by one thread.
class RespConnection {
 public:
  // `who` names the server in errors ("redis-server on port 6379").
  static absl::StatusOr<RespConnection> Connect(std::string who, uint16_t port,
                                                absl::Duration timeout) {
    absl::StatusOr<RawSocket> connected = RawSocket::Connect(port, timeout);
    if (!connected.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", who, ": ", connected.status().message()));
    }
    SLUICE_RETURN_IF_ERROR(connected->SetReceiveTimeout(kStallTimeout));
    return RespConnection(std::move(who), *std::move(connected));
  }

  absl::Status Write(std::string_view bytes) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    absl::Status s = socket_.WriteAll(&iov, 1);
    if (!s.ok()) return absl::UnavailableError(absl::StrCat(who_, ": ", s.message()));
    return absl::OkStatus();
  }

  absl::StatusOr<RespReply> Read() {
    RespReply reply;
    while (true) {
      absl::StatusOr<size_t> taken =
          ParseRespReply(std::string_view(buffer_).substr(begin_), &reply);
      if (!taken.ok()) {
        return absl::DataLossError(absl::StrCat(who_, " sent ", taken.status().message()));
      }
      if (*taken > 0) {
        begin_ += *taken;
        return reply;
      }
      buffer_.erase(0, begin_);
      begin_ = 0;
      char chunk[64 << 10];
      const ssize_t n = recv(socket_.fd(), chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return absl::DeadlineExceededError(
            absl::StrCat(who_, " did not answer within ", absl::FormatDuration(kStallTimeout)));
      }
      if (n < 0) return absl::UnavailableError(absl::StrCat(who_, ": ", std::strerror(errno)));
      if (n == 0) return absl::UnavailableError(absl::StrCat(who_, " closed the connection"));
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Sends one command and reads its reply.
  absl::StatusOr<RespReply> Call(std::initializer_list<std::string_view> args) {
    std::string command;
    AppendRespCommand(&command, args);
    SLUICE_RETURN_IF_ERROR(Write(command));
    return Read();
  }

 private:
  RespConnection(std::string who, RawSocket socket)
      : who_(std::move(who)), socket_(std::move(socket)) {}

  std::string who_;
  RawSocket socket_;
  std::string buffer_;
  size_t begin_ = 0;
};

// Checks that the server behind `connection` holds the first, a middle and the last key, each
// with a value of the expected size: redis-benchmark would count error replies as answers.
absl::Status CheckRespGets(RespConnection& connection, const std::string& who,
                           const QueryBenchOptions& o) {
  for (const uint64_t i : {uint64_t{0}, o.keys / 2, o.keys - 1}) {
    const std::string key = RespKey(i);
    SLUICE_ASSIGN_OR_RETURN(const RespReply reply, connection.Call({"GET", key}));
    if (reply.type != '$' || reply.nil || reply.text.size() != o.value_size) {
      return absl::FailedPreconditionError(absl::StrCat(who, " answered GET ", key, " with ",
                                                        reply.Describe(), ", not a value of ",
                                                        o.value_size, " bytes"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- the state server

// The state server in a second process, stopped (SIGTERM) and its directory removed when this
// goes. Not thread-safe.
class StateServerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<StateServerProcess>> Start(const QueryBenchOptions& o);
  ~StateServerProcess() {
    if (process_ != nullptr) {
      kill(process_->pid(), SIGTERM);
      if (absl::Status s = process_->Wait(kExitTimeout); !s.ok()) {
        absl::FPrintF(stderr, "sluice bench query: the state server: %s\n", s.message());
      }
    }
  }
  StateServerProcess(const StateServerProcess&) = delete;
  StateServerProcess& operator=(const StateServerProcess&) = delete;

  const std::string& query_address() const { return query_address_; }
  const std::string& transport() const { return transport_; }
  pid_t pid() const { return process_->pid(); }
  int io_threads() const { return io_threads_; }  // as it printed them; 0: it did not say
  // "host:port" of the RESP gateway, or why there is none.
  const absl::StatusOr<std::string>& resp_address() const { return resp_address_; }

 private:
  StateServerProcess() = default;

  std::unique_ptr<TempDir> dir_;  // destroyed after the process has stopped
  std::unique_ptr<PeerProcess> process_;
  std::string query_address_;
  std::string transport_;
  int io_threads_ = 0;
  absl::StatusOr<std::string> resp_address_;
};

absl::StatusOr<std::unique_ptr<StateServerProcess>> StateServerProcess::Start(
    const QueryBenchOptions& o) {
  auto server = std::unique_ptr<StateServerProcess>(new StateServerProcess());
  SLUICE_ASSIGN_OR_RETURN(server->dir_, TempDir::Create("query"));
  // No updates and no checkpoints: the rows read a state that does not change, so the heap
  // backend need not copy its tables for a new latest view either.
  std::vector<std::string> args = {"state-server",
                                   "--generate",
                                   absl::StrCat(o.keys),
                                   "--value-size",
                                   absl::StrCat(o.value_size),
                                   "--backend",
                                   o.backend,
                                   "--transport",
                                   o.transport,
                                   "--io-threads",
                                   absl::StrCat(o.server_threads),
                                   "--updates",
                                   "0",
                                   "--checkpoint-interval",
                                   "0",
                                   "--latest-interval",
                                   "3600",
                                   "--dir",
                                   server->dir_->path()};
  // Its info lines ("listening on ...") would land in the middle of the report; warnings and
  // errors still show, and a more verbose level asked of the benchmark is passed on.
  if (CurrentLogLevelName() == "info") args.insert(args.end(), {"--log-level", "warn"});
  args.insert(args.end(), {"--resp-port", "0"});
  SLUICE_ASSIGN_OR_RETURN(server->process_,
                          PeerProcess::Spawn(absl::StrCat("state server (", o.backend, ")"), args));
  PeerProcess& p = *server->process_;
  // Filling takes about 10 s per million keys on rocksdb on a small VM.
  const absl::Duration timeout =
      kStartTimeout + absl::Seconds(30 * static_cast<double>(o.keys) / 1e6);
  const std::string who = absl::StrCat(p.name(), ", pid ", p.pid());
  bool resp_printed = false;
  while (true) {
    absl::StatusOr<std::string> line = p.ReadLine(timeout);
    if (absl::IsUnavailable(line.status())) {
      const absl::Status exited = p.Wait(kExitTimeout);
      return absl::UnavailableError(absl::StrCat(who, ": exited before it was ready (",
                                                 exited.ok() ? "status 0" : exited.message(), ")"));
    }
    if (absl::IsDeadlineExceeded(line.status())) {
      return absl::DeadlineExceededError(
          absl::StrCat(who, ": not ready within ", absl::FormatDuration(timeout)));
    }
    SLUICE_RETURN_IF_ERROR(line.status());
    if (*line == "ready") break;
    // "query 127.0.0.1:40123 (uring) 2 I/O threads"
    if (absl::StartsWith(*line, "query ")) {
      std::vector<std::string> parts = absl::StrSplit(line->substr(6), ' ');
      server->query_address_ = parts[0];
      if (parts.size() > 1 && parts[1].size() > 2) {
        server->transport_ = parts[1].substr(1, parts[1].size() - 2);
      }
      if (parts.size() > 2 && !absl::SimpleAtoi(parts[2], &server->io_threads_)) {
        server->io_threads_ = 0;
      }
    } else if (absl::StartsWith(*line, "resp ")) {
      server->resp_address_ = line->substr(5);
      resp_printed = true;
    }
  }
  if (server->query_address_.empty()) {
    return absl::DataLossError(
        absl::StrCat(who, ": printed no 'query HOST:PORT (transport)' line before 'ready'"));
  }
  if (!resp_printed) {
    server->resp_address_ =
        absl::DataLossError(absl::StrCat(who, ": printed no 'resp HOST:PORT' line"));
  }
  return server;
}

// ---------------------------------------------------------------- native load

// A GET request of the state server's value state, encoded once, with where its key's digits
// lie: a request for another key is a copy with those 12 bytes changed (as redis-benchmark does
// with __rand_int__). Thread-compatible; For() may be called from any thread.
class GetRequestTemplate {
 public:
  static absl::StatusOr<GetRequestTemplate> Create() {
    QueryRequest request;
    request.type = QueryType::kGet;
    request.job = kJob;
    request.state = kState;
    const std::string placeholder(kKeyDigits, '#');
    request.keys = {placeholder};
    const Buffer encoded = EncodeQueryRequest(request);
    GetRequestTemplate t;
    t.bytes_ = std::string(encoded.readable());
    t.digits_at_ = t.bytes_.find(placeholder);
    if (t.digits_at_ == std::string::npos ||
        t.bytes_.find(placeholder, t.digits_at_ + 1) != std::string::npos) {
      return absl::InternalError("the key of an encoded GET request cannot be found in it");
    }
    // The copies must decode to the request they stand for.
    const Buffer probe = t.For(123);
    absl::StatusOr<QueryRequest> decoded = DecodeQueryRequest(probe.readable());
    if (!decoded.ok() || decoded->keys.size() != 1 || decoded->keys[0] != StateKey(123) ||
        decoded->job != kJob || decoded->state != kState) {
      return absl::InternalError("a GET request with its key bytes replaced does not decode");
    }
    return t;
  }

  Buffer For(uint64_t key) const {
    Buffer b = Buffer::AllocateUnpooled(bytes_.size());
    b.Append(bytes_);
    WriteKeyDigits(key, b.data() + b.reader_index() + digits_at_);
    return b;
  }

 private:
  GetRequestTemplate() = default;
  std::string bytes_;
  size_t digits_at_ = 0;
};

// The closed loops of one native row. Own connections (Send/Answer): over `threads` transports,
// client i is connection i,
// on transport i % threads, whose one I/O thread runs its handler. Each client's first request
// is sent by the thread that starts the row, before that client can have an answer; every other
// one from the I/O thread that received the previous answer. The counters the I/O threads share
// are atomic; each records latencies in a histogram of its own, read by the starting thread once
// every transport is gone. Shared (SendShared): the clients' requests go through one
// QueryConnections, whose one I/O thread runs the callbacks.
class NativeLoad {
 public:
  // `requests`: the encoded GETs of the own-connection rows; null for the shared rows, whose
  // requests the library encodes.
  NativeLoad(const QueryBenchOptions& o, const GetRequestTemplate* requests, size_t clients,
             size_t threads, pid_t server_pid)
      : options_(o), requests_(requests), server_pid_(server_pid), latency_(threads) {
    clients_.reserve(clients);
    for (size_t i = 0; i < clients; ++i) {
      clients_.emplace_back(o.keys, 0x5eed + i * 7919, &latency_[i % threads]);
    }
  }

  // Sends the next request of `client`.
  absl::Status Send(size_t client, net::Connection& c) {
    Client& cl = clients_[client];
    cl.key = cl.picker.Next();
    net::FrameHeader h;
    h.type = kQueryRequestFrame;
    h.channel = ++cl.id;
    Buffer request = requests_->For(cl.key);
    cl.sent_at = MonotonicNanos();
    return c.Send(h, std::move(request));
  }

  // An answer to `client`'s outstanding request over its own connection.
  void Answer(size_t client, net::Connection& c, const net::FrameHeader& h, Buffer payload) {
    const int64_t now = MonotonicNanos();
    if (finished_.load(std::memory_order_relaxed)) return;
    if (absl::Status s = CheckFrame(clients_[client], h, std::move(payload)); !s.ok()) {
      Fail(std::move(s));
      return;
    }
    if (!Answered(client, now)) return;
    if (absl::Status s = Send(client, c); !s.ok()) Fail(std::move(s));
  }

  // Sends the next request of `client` through `connections` (the shared rows).
  void SendShared(size_t client, QueryConnections& connections, const std::string& address) {
    Client& cl = clients_[client];
    cl.key = cl.picker.Next();
    QueryRequest request;
    request.job = kJob;
    request.state = kState;
    request.keys = {StateKey(cl.key)};
    cl.sent_at = MonotonicNanos();
    connections.Send(address, std::move(request),
                     [this, client, &connections, &address](QueryResponse response) {
                       const int64_t now = MonotonicNanos();
                       if (finished_.load(std::memory_order_relaxed)) return;
                       if (absl::Status s = CheckResponse(clients_[client], response); !s.ok()) {
                         Fail(std::move(s));
                         return;
                       }
                       if (Answered(client, now)) SendShared(client, connections, address);
                     });
  }

  void Closed(const absl::Status& cause) {
    if (finished_.load()) return;
    Fail(absl::UnavailableError(absl::StrCat("the state server closed a connection: ",
                                             cause.ok() ? "in order" : cause.message())));
  }

  // The first failure wins; the row stops.
  void Fail(absl::Status cause) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failure_.ok()) failure_ = std::move(cause);
    }
    if (!finished_.exchange(true)) done_.Notify();
  }

  // Until the row is done or failed, or no answer came for kStallTimeout. OK when done.
  absl::Status Wait() {
    uint64_t seen = 0;
    absl::Time last_progress = absl::Now();
    while (!done_.WaitForNotificationWithTimeout(absl::Milliseconds(500))) {
      const uint64_t answers = answers_.load(std::memory_order_relaxed);
      if (answers != seen) {
        seen = answers;
        last_progress = absl::Now();
      } else if (absl::Now() - last_progress >= kStallTimeout) {
        Fail(absl::DeadlineExceededError(absl::StrCat("the state server answered nothing for ",
                                                      absl::FormatDuration(kStallTimeout), " (",
                                                      answers, " answers so far)")));
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    return failure_;
  }

  // REQUIRES: every transport is gone, and Wait returned OK.
  uint64_t measured() const { return measured_answers_.load(); }
  // From the answer that ended the warm-up to the last measured answer.
  double seconds() const { return static_cast<double>(end_ - start_) / 1e9; }
  // CPU time of the state server and of this process while measured; nullopt if unreadable.
  std::optional<absl::Duration> server_cpu() const { return server_cpu_; }
  std::optional<absl::Duration> client_cpu() const { return client_cpu_; }
  Histogram latency() const {
    Histogram all;
    for (const Histogram& h : latency_) all.Merge(h);
    return all;
  }

 private:
  struct Client {
    Client(uint64_t keys, uint64_t seed, Histogram* histogram)
        : picker(keys, seed), latency(histogram) {}
    KeyPicker picker;
    Histogram* latency;  // its I/O thread's, nanoseconds
    uint64_t key = 0;
    uint32_t id = 0;
    int64_t sent_at = 0;
    bool measured = false;
  };

  // Counts an answer to `client` that arrived at `now`; whether the client sends another.
  bool Answered(size_t client, int64_t now) {
    Client& cl = clients_[client];
    answers_.fetch_add(1, std::memory_order_relaxed);
    if (cl.measured) {
      cl.latency->Record(static_cast<uint64_t>(now - cl.sent_at));
      if (measured_answers_.fetch_add(1) + 1 == options_.requests) {
        end_ = now;
        server_cpu_ = CpuSince(server_pid_, server_cpu_);
        client_cpu_ = CpuSince(getpid(), client_cpu_);
        if (!finished_.exchange(true)) done_.Notify();
        return false;
      }
    } else if (!measuring_.load(std::memory_order_acquire) &&
               warmup_answers_.fetch_add(1) + 1 == options_.warmup) {
      start_ = now;
      server_cpu_ = ProcessCpuTime(server_pid_);
      client_cpu_ = ProcessCpuTime(getpid());
      measuring_.store(true, std::memory_order_release);
    }
    cl.measured = false;
    if (measuring_.load(std::memory_order_acquire)) {
      // Claims one of the measured requests; none left: this client is done.
      if (measured_sent_.fetch_add(1) >= options_.requests) return false;
      cl.measured = true;
    }
    return true;
  }

  absl::Status CheckFrame(const Client& cl, const net::FrameHeader& h, Buffer payload) const {
    if (h.type != kQueryResponseFrame) {
      return absl::DataLossError(
          absl::StrCat("the state server sent a frame of type ", net::FrameTypeName(h.type)));
    }
    if (h.channel != cl.id) {
      return absl::DataLossError(absl::StrCat("the state server answered request ", h.channel,
                                              " while request ", cl.id, " was outstanding"));
    }
    SLUICE_ASSIGN_OR_RETURN(const QueryResponse r, DecodeQueryResponse(payload.readable()));
    return CheckResponse(cl, r);
  }

  // The answer must be the value of the key asked for.
  absl::Status CheckResponse(const Client& cl, const QueryResponse& r) const {
    const std::string key = StateKey(cl.key);
    if (r.status != QueryStatus::kOk) {
      return absl::DataLossError(absl::StrCat(
          "GET ", key, " answered ", std::string(QueryStatusName(r.status)), ": ", r.message));
    }
    if (r.results.size() != 1) {
      return absl::DataLossError(
          absl::StrCat("GET ", key, " answered with ", r.results.size(), " results"));
    }
    const KeyResult& result = r.results[0];
    if (result.status != QueryStatus::kOk) {
      return absl::DataLossError(absl::StrCat("GET ", key, " answered ",
                                              std::string(QueryStatusName(result.status)), ": ",
                                              result.message));
    }
    if (!result.found || result.value.value.size() != options_.value_size) {
      return absl::DataLossError(absl::StrCat(
          "GET ", key, " found ",
          result.found ? absl::StrCat("a value of ", result.value.value.size(), " bytes")
                       : std::string("no value"),
          ", not one of ", options_.value_size, " bytes"));
    }
    return absl::OkStatus();
  }

  const QueryBenchOptions& options_;
  const GetRequestTemplate* const requests_;
  const pid_t server_pid_;
  std::vector<Client> clients_;     // each touched by one thread at a time (see above)
  std::vector<Histogram> latency_;  // one per I/O thread
  std::atomic<bool> measuring_{false};
  std::atomic<uint64_t> warmup_answers_{0};
  std::atomic<uint64_t> measured_sent_{0};
  std::atomic<uint64_t> measured_answers_{0};
  // start_ is published by measuring_; end_ by finished_ and the transports' joins; the CPU
  // times with them (read at the start, then replaced by what was used until the end).
  int64_t start_ = 0;
  int64_t end_ = 0;
  std::optional<absl::Duration> server_cpu_;
  std::optional<absl::Duration> client_cpu_;
  std::atomic<uint64_t> answers_{0};  // progress, for Wait
  std::atomic<bool> finished_{false};
  absl::Notification done_;
  std::mutex mu_;
  absl::Status failure_;  // guarded by mu_
};

class NativeClient final : public net::ConnectionHandler {
 public:
  NativeClient(NativeLoad& load, size_t index) : load_(load), index_(index) {}
  void OnFrame(net::Connection& c, const net::FrameHeader& h, Buffer payload) override {
    load_.Answer(index_, c, h, std::move(payload));
  }
  void OnClosed(net::Connection&, const absl::Status& cause) override { load_.Closed(cause); }

 private:
  NativeLoad& load_;
  const size_t index_;
};

// The entry of a native row whose load is done; `client` says what drove it.
BenchEntry NativeEntry(const NativeLoad& load, uint64_t clients, const StateServerProcess& server,
                       const std::string& client) {
  BenchEntry e;
  e.latency_kind = "request to answer, one request in flight per client";
  e.ops_per_s = static_cast<double>(load.measured()) / load.seconds();
  e.SetLatency(load.latency());
  e.extra = {{"clients", absl::StrCat(clients)},
             {"requests", absl::StrCat(load.measured())},
             {"seconds", absl::StrFormat("%.4f", load.seconds())},
             {"client", JsonString(client)},
             {"server_transport", JsonString(server.transport())}};
  AddCpuPerGet(e, load.measured(), load.server_cpu(), load.client_cpu());
  return e;
}

absl::StatusOr<BenchEntry> RunNativeRow(const QueryBenchOptions& o,
                                        const StateServerProcess& server, uint64_t clients) {
  SLUICE_ASSIGN_OR_RETURN(const GetRequestTemplate requests, GetRequestTemplate::Create());
  const size_t colon = server.query_address().rfind(':');
  SLUICE_ASSIGN_OR_RETURN(const uint16_t port, PortOfAddress(server.query_address()));
  net::ConnectOptions connect;
  connect.host = server.query_address().substr(0, colon);
  connect.port = port;
  const size_t threads = std::min<size_t>(o.client_threads, clients);

  // Declared in this order so that the transports (and their I/O threads) go first.
  BufferPoolOptions pool_options;
  pool_options.num_segments = 256 * threads;
  pool_options.try_hugepages = false;
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<BufferPool> pool, BufferPool::Create(pool_options));
  NativeLoad load(o, &requests, clients, threads, server.pid());
  std::vector<std::unique_ptr<net::Transport>> transports;
  for (size_t t = 0; t < threads; ++t) {
    net::TransportOptions transport_options;
    transport_options.pool = pool.get();
    transport_options.name = "bench-query";
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<net::Transport> transport,
                            net::Transport::Create(o.transport, transport_options));
    transports.push_back(std::move(transport));
  }
  const std::string client_transport(transports[0]->name());
  std::vector<std::shared_ptr<net::Connection>> connections;
  for (size_t i = 0; i < clients; ++i) {
    absl::StatusOr<std::shared_ptr<net::Connection>> c =
        transports[i % threads]->Connect(connect, std::make_shared<NativeClient>(load, i));
    if (!c.ok()) {
      return absl::UnavailableError(absl::StrCat("connection ", i + 1, " of ", clients, " to ",
                                                 server.query_address(), ": ",
                                                 c.status().message()));
    }
    connections.push_back(*std::move(c));
  }
  for (size_t i = 0; i < clients; ++i) {
    if (absl::Status s = load.Send(i, *connections[i]); !s.ok()) {
      load.Fail(std::move(s));
      break;
    }
  }
  const absl::Status status = load.Wait();
  for (const std::shared_ptr<net::Connection>& c : connections) c->Close();
  connections.clear();
  transports.clear();  // joins the I/O threads: what they recorded is this thread's to read
  SLUICE_RETURN_IF_ERROR(status);

  BenchEntry e = NativeEntry(load, clients, server,
                             absl::StrCat("sluice, ", threads, " ", client_transport,
                                          threads == 1 ? " I/O thread" : " I/O threads"));
  e.extra.emplace_back("client_threads", absl::StrCat(threads));
  e.extra.emplace_back("transport", JsonString(client_transport));
  return e;
}

// A native-shared-C row: the C closed loops go through one QueryConnections (the client
// library's connection layer, what QueryClient sends with): one connection to the state server,
// the clients' requests pipelined on it, answers matched to them by request id. Each request is
// built and encoded as the library does it; the answers arrive on its one I/O thread.
absl::StatusOr<BenchEntry> RunSharedRow(const QueryBenchOptions& o,
                                        const StateServerProcess& server, uint64_t clients) {
  const std::string address = server.query_address();
  // Declared in this order so that the connections (and their threads) go first.
  NativeLoad load(o, /*requests=*/nullptr, clients, /*threads=*/1, server.pid());
  QueryConnectionsOptions options;
  options.transport = o.transport;
  options.name = "bench-query";
  SLUICE_ASSIGN_OR_RETURN(std::shared_ptr<QueryConnections> connections,
                          QueryConnections::Create(options));
  for (size_t i = 0; i < clients; ++i) load.SendShared(i, *connections, address);
  const absl::Status status = load.Wait();
  connections.reset();  // joins its threads: what they recorded is this thread's to read
  SLUICE_RETURN_IF_ERROR(status);

  return NativeEntry(load, clients, server, "sluice QueryConnections, one connection");
}

// ---------------------------------------------------------------- redis-benchmark rows

// Runs redis-benchmark's GET test against host:port; a failure quotes what it printed.
// What one redis-benchmark run measured, and the CPU time it used itself.
struct RedisBenchmarkRun {
  RedisBenchmarkReport report;
  std::optional<absl::Duration> cpu;
};

absl::StatusOr<RedisBenchmarkRun> RunRedisBenchmark(const std::string& path,
                                                    const std::string& host, uint16_t port,
                                                    uint64_t clients, uint64_t requests,
                                                    uint64_t keys) {
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<ToolProcess> bench,
      ToolProcess::Start(
          kRedisBenchmark, path, kRedisBenchmark,
          {"-h", host, "-p", absl::StrCat(port), "-t", "get", "-n", absl::StrCat(requests), "-c",
           absl::StrCat(clients), "-r", absl::StrCat(keys), "--csv"}));
  // It spins forever when it cannot connect: it gets 30 s, plus 1 ms per request per client
  // (1000 GETs/s each), plus 20 us per request.
  const absl::Duration timeout =
      kStartTimeout + absl::Milliseconds(static_cast<int64_t>(requests / clients) + requests / 50);
  if (absl::Status s = bench->Wait(timeout); !s.ok()) {
    bench->Kill();
    return absl::DeadlineExceededError(
        absl::StrCat(s.message(), ": ", OutputGist(bench->Output())));
  }
  const std::string output = bench->Output();
  absl::StatusOr<RedisBenchmarkReport> report = ParseRedisBenchmarkCsv(output, "GET");
  if (!report.ok()) {
    return absl::Status(report.status().code(),
                        absl::StrCat(kRedisBenchmark, " (", bench->DescribeExit(),
                                     "): ", report.status().message()));
  }
  if (!bench->ExitedWithZero()) {
    return absl::InternalError(
        absl::StrCat(kRedisBenchmark, " ", bench->DescribeExit(), ": ", OutputGist(output)));
  }
  return RedisBenchmarkRun{*std::move(report), bench->cpu_time()};
}

// A resp-C or redis-C row: `address` is the server's "host:port", or why there is none.
// `server_pid` is the server's, whose CPU time is counted.
absl::StatusOr<BenchEntry> RunRedisBenchmarkRow(const QueryBenchOptions& o,
                                                const absl::StatusOr<std::string>& address,
                                                const std::string& who, uint64_t clients,
                                                pid_t server_pid) {
  SLUICE_RETURN_IF_ERROR(address.status());
  const std::optional<std::string> path = FindOnPath(kRedisBenchmark);
  if (!path.has_value()) {
    return absl::NotFoundError(
        "redis-benchmark is not installed (not on PATH; on Debian: apt-get install redis-tools)");
  }
  SLUICE_ASSIGN_OR_RETURN(const uint16_t port, PortOfAddress(*address));
  const std::string host = address->substr(0, address->rfind(':'));
  {
    SLUICE_ASSIGN_OR_RETURN(
        RespConnection check,
        RespConnection::Connect(absl::StrCat(who, " at ", *address), port, kStartTimeout));
    SLUICE_RETURN_IF_ERROR(CheckRespGets(check, who, o));
  }
  if (o.warmup > 0) {
    SLUICE_RETURN_IF_ERROR(
        RunRedisBenchmark(*path, host, port, clients, std::max(o.warmup, clients), o.keys)
            .status());
  }
  const std::optional<absl::Duration> server_start = ProcessCpuTime(server_pid);
  SLUICE_ASSIGN_OR_RETURN(const RedisBenchmarkRun run,
                          RunRedisBenchmark(*path, host, port, clients, o.requests, o.keys));
  const std::optional<absl::Duration> server_cpu = CpuSince(server_pid, server_start);
  const RedisBenchmarkReport& r = run.report;
  BenchEntry e;
  e.latency_kind = "request to answer, one request in flight per client";
  e.ops_per_s = r.requests_per_second;
  if (r.has_latency) {
    e.latency = LatencySummary{.samples = o.requests,
                               .p50_us = r.p50_ms * 1e3,
                               .p90_us = 0,
                               .p99_us = r.p99_ms * 1e3,
                               .p999_us = 0,
                               .max_us = r.max_ms * 1e3};
  }
  e.extra = {
      {"clients", absl::StrCat(clients)},
      {"requests", absl::StrCat(o.requests)},
      {"seconds", absl::StrFormat("%.4f", static_cast<double>(o.requests) / r.requests_per_second)},
      {"client", JsonString("redis-benchmark -t get -P 1")},
      {"avg_us", absl::StrFormat("%.1f", r.avg_ms * 1e3)},
      {"p95_us", absl::StrFormat("%.1f", r.p95_ms * 1e3)}};
  AddCpuPerGet(e, o.requests, server_cpu, run.cpu);
  return e;
}

// ---------------------------------------------------------------- Redis

// A Redis server on a free loopback port, without persistence, loaded with the benchmark's keys.
// Killed when this goes. Not thread-safe.
class RedisServer {
 public:
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(const std::string& path,
                                                            const QueryBenchOptions& o) {
    SLUICE_ASSIGN_OR_RETURN(const uint16_t port, FreeLoopbackPort());
    auto server = std::unique_ptr<RedisServer>(new RedisServer(port));
    SLUICE_ASSIGN_OR_RETURN(
        server->process_,
        ToolProcess::Start(kRedisServer, path, kRedisServer,
                           {"--port", absl::StrCat(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--daemonize", "no"}));
    const std::string who = absl::StrCat(kRedisServer, " on port ", port);
    // Connect retries until it listens, unless it exits first.
    absl::StatusOr<RespConnection> c = absl::UnavailableError("not tried");
    const absl::Time deadline = absl::Now() + kStartTimeout;
    while (true) {
      c = RespConnection::Connect(who, port, absl::Milliseconds(100));
      if (c.ok()) break;
      if (server->process_->Exited()) {
        return absl::UnavailableError(
            absl::StrCat(who, " ", server->process_->DescribeExit(),
                         " before it listened: ", OutputGist(server->process_->Output())));
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat(who, " did not listen within ", absl::FormatDuration(kStartTimeout)));
      }
    }
    SLUICE_RETURN_IF_ERROR(server->Load(*c, who, o));
    SLUICE_ASSIGN_OR_RETURN(const RespReply info, c->Call({"INFO", "server"}));
    for (absl::string_view line : absl::StrSplit(info.text, absl::ByAnyChar("\r\n"))) {
      if (absl::ConsumePrefix(&line, "redis_version:")) server->version_ = std::string(line);
    }
    return server;
  }

  uint16_t port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  const std::string& version() const { return version_; }  // "7.0.15"; empty if unknown
  pid_t pid() const { return process_->pid(); }

 private:
  explicit RedisServer(uint16_t port) : port_(port) {}

  // SETs every key, pipelined in batches, then checks that it holds as many as it should.
  absl::Status Load(RespConnection& c, const std::string& who, const QueryBenchOptions& o) {
    constexpr uint64_t kBatch = 1000;
    const std::string value = ValueOf(o.value_size);
    for (uint64_t first = 0; first < o.keys; first += kBatch) {
      const uint64_t end = std::min(o.keys, first + kBatch);
      std::string commands;
      for (uint64_t i = first; i < end; ++i)
        AppendRespCommand(&commands, {"SET", RespKey(i), value});
      SLUICE_RETURN_IF_ERROR(c.Write(commands));
      for (uint64_t i = first; i < end; ++i) {
        SLUICE_ASSIGN_OR_RETURN(const RespReply reply, c.Read());
        if (reply.type != '+' || reply.text != "OK") {
          return absl::InternalError(
              absl::StrCat(who, " answered SET ", RespKey(i), " with ", reply.Describe()));
        }
      }
    }
    SLUICE_ASSIGN_OR_RETURN(const RespReply size, c.Call({"DBSIZE"}));
    if (size.type != ':' || size.text != absl::StrCat(o.keys)) {
      return absl::InternalError(
          absl::StrCat(who, " holds ", size.Describe(), " keys after ", o.keys, " were set"));
    }
    return absl::OkStatus();
  }

  const uint16_t port_;
  std::unique_ptr<ToolProcess> process_;
  std::string version_;
};

// Where the Redis server binary is: redis-server, or Debian redis-tools' redis-check-rdb (the
// same binary, which runs as the server when called redis-server).
std::optional<std::string> FindRedisServer() {
  if (std::optional<std::string> p = FindOnPath(kRedisServer)) return p;
  return FindOnPath("redis-check-rdb");
}

// "redis-benchmark 7.0.15" -> "7.0.15"; empty when it cannot say.
std::string RedisBenchmarkVersion(const std::string& path) {
  absl::StatusOr<std::unique_ptr<ToolProcess>> p =
      ToolProcess::Start(kRedisBenchmark, path, kRedisBenchmark, {"--version"});
  if (!p.ok() || !(*p)->Wait(kExitTimeout).ok()) return "";
  std::vector<std::string> words = absl::StrSplit((*p)->Output(), absl::ByAnyChar(" \n"));
  return words.size() >= 2 ? words[1] : "";
}

absl::StatusOr<std::vector<uint64_t>> ParseClientCounts(std::string_view text) {
  std::vector<uint64_t> counts;
  for (absl::string_view piece : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(piece, &n) || n == 0 || n > 1000) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected a comma-separated list of client "
                       "counts from 1 to 1000, not '",
                       std::string(text), "'"));
    }
    if (std::find(counts.begin(), counts.end(), n) == counts.end()) counts.push_back(n);
  }
  return counts;
}

// A figure of an entry's extra members, or "-".
std::string Extra(const BenchEntry& e, std::string_view key) {
  for (const auto& [k, v] : e.extra) {
    if (k == key) return v;
  }
  return "-";
}

}  // namespace

int RunBenchQuery(Args args) {
  QueryBenchOptions o;
  BenchHarness harness("query");
  OptionParser parser(
      "sluice bench query",
      "GET rate and latency of keyed-state queries on loopback, at each client count of\n"
      "--clients, each client one connection with one request in flight (a closed loop), keys\n"
      "picked uniformly at random from --keys, --warmup requests then --requests measured:\n"
      "  native-C  the native query protocol from this process (one I/O thread drives every\n"
      "            connection, or --client-threads of them) against a `sluice state-server` in\n"
      "            a second process that holds the keys (000000000000 ..) in value state, not\n"
      "            updated while measured\n"
      "  native-shared-C (C > 1) the same GETs, but the C clients share one connection: they\n"
      "            send through the client library's QueryConnections, which pipelines them\n"
      "  resp-C    redis-benchmark -t get -c C -r KEYS against the state server's RESP gateway\n"
      "  redis-C   (baseline) the same against a Redis server started here on a free port,\n"
      "            without persistence, holding the same keys (key:000000000000 ..) and values\n"
      "ops/s counts GETs answered. Targets, at the largest client count: native (both rows) at\n"
      "least 2x Redis's rate, RESP at least 1x, and the p99 of each no higher than Redis's.\n"
      "Each row's CPU time per GET, of the server and of the client process, is reported.");
  // Keys have 12 digits.
  parser.AddCount("--keys", "N", "Keys held by every server", 1, 999'999'999'999ull, &o.keys);
  parser.AddBytes("--value-size", "Bytes per value", 2, 1 << 20, &o.value_size);
  parser.AddCount("--requests", "N", "Measured GETs per row", 1, 1'000'000'000, &o.requests);
  parser.AddCount("--warmup", "N", "GETs per row before the measured ones", 1, 1'000'000'000,
                  &o.warmup);
  parser.AddOption("--clients", "LIST", "Comma-separated client counts", "1,50",
                   [&o](std::string_view v) -> absl::Status {
                     SLUICE_ASSIGN_OR_RETURN(o.clients, ParseClientCounts(v));
                     return absl::OkStatus();
                   });
  parser.AddChoice("--backend", {"rocksdb", "heap"}, "The state server's state backend",
                   &o.backend);
  parser.AddChoice("--transport", {"auto", "uring", "epoll"},
                   "The net/ transport of the state server and of the native clients",
                   &o.transport);
  parser.AddCount("--server-threads", "N",
                  "I/O threads of the state server's query server and RESP gateway (default 0: "
                  "one per two CPUs, 1 to 4)",
                  0, 64, &o.server_threads);
  parser.AddCount("--client-threads", "N",
                  "I/O threads of the native load generator, each with its own transport", 1, 64,
                  &o.client_threads);
  harness.AddOptions(parser);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;

  absl::PrintF(
      "sluice bench query: GET of %d keys, %s values, %s clients; each row %d warm-up then %d "
      "measured requests\n\n",
      o.keys, FormatBytes(o.value_size), absl::StrJoin(o.clients, ","), o.warmup, o.requests);
  absl::PrintF("state server (%s): filling %d keys...\n", o.backend, o.keys);
  std::fflush(stdout);
  absl::StatusOr<std::unique_ptr<StateServerProcess>> started_server = StateServerProcess::Start(o);
  const absl::Status server_status = started_server.status();
  std::unique_ptr<StateServerProcess> server;
  std::string server_transport;
  int server_threads = 0;
  if (started_server.ok()) {
    server = *std::move(started_server);
    server_transport = server->transport();
    server_threads = server->io_threads();
    const absl::StatusOr<std::string>& resp = server->resp_address();
    absl::PrintF("state server: native queries at %s (%s, %d I/O thread%s), RESP: %s\n",
                 server->query_address(), server_transport, server->io_threads(),
                 server->io_threads() == 1 ? "" : "s",
                 resp.ok() ? *resp : std::string(resp.status().message()));
  } else {
    absl::PrintF("state server: %s\n", server_status.message());
  }

  const std::optional<std::string> benchmark_path = FindOnPath(kRedisBenchmark);
  const std::optional<std::string> redis_path = FindRedisServer();
  std::unique_ptr<RedisServer> redis;
  std::string redis_version;
  // The baselines' server: "host:port", or why there is none (its rows fail with the reason).
  absl::StatusOr<std::string> redis_address = absl::UnavailableError("not started");
  if (!redis_path.has_value() || !benchmark_path.has_value()) {
    absl::PrintF(
        "redis: %s is not installed (on Debian: apt-get install redis-tools); the redis "
        "baselines are skipped\n",
        redis_path.has_value() ? kRedisBenchmark : kRedisServer);
  } else {
    absl::PrintF("redis: loading %d keys into %s...\n", o.keys, *redis_path);
    std::fflush(stdout);
    absl::StatusOr<std::unique_ptr<RedisServer>> started = RedisServer::Start(*redis_path, o);
    if (started.ok()) {
      redis = *std::move(started);
      redis_version = redis->version();
      redis_address = redis->address();
      absl::PrintF("redis: %s %s at %s\n", kRedisServer, redis->version(), redis->address());
    } else {
      redis_address = started.status();
      absl::PrintF("redis: %s\n", started.status().message());
    }
  }
  absl::PrintF("\n");
  std::fflush(stdout);

  const StateServerProcess* state_server = server.get();
  const bool redis_rows = redis_path.has_value() && benchmark_path.has_value();
  for (const uint64_t c : o.clients) {
    const std::string group = GroupOf(c);
    // For the progress bar: about 20k GETs/s with one client, 80k with more, on a small VM.
    const double planned =
        static_cast<double>(o.warmup + o.requests) / (c == 1 ? 20'000.0 : 80'000.0);
    if (redis_rows) {
      harness.Add(
          {absl::StrCat("redis-", c), group, true, planned, [&o, &redis_address, &redis, c] {
             return RunRedisBenchmarkRow(o, redis_address, kRedisServer, c,
                                         redis != nullptr ? redis->pid() : 0);
           }});
    }
    harness.Add({absl::StrCat("native-", c), group, false, planned,
                 [&o, state_server, &server_status, c]() -> absl::StatusOr<BenchEntry> {
                   if (state_server == nullptr) return server_status;
                   return RunNativeRow(o, *state_server, c);
                 }});
    if (c > 1) {
      harness.Add({absl::StrCat("native-shared-", c), group, false, planned,
                   [&o, state_server, &server_status, c]() -> absl::StatusOr<BenchEntry> {
                     if (state_server == nullptr) return server_status;
                     return RunSharedRow(o, *state_server, c);
                   }});
    }
    harness.Add({absl::StrCat("resp-", c), group, false, planned,
                 [&o, state_server, &server_status, c]() -> absl::StatusOr<BenchEntry> {
                   if (state_server == nullptr) return server_status;
                   return RunRedisBenchmarkRow(o, state_server->resp_address(),
                                               "the state server's RESP gateway", c,
                                               state_server->pid());
                 }});
  }
  BenchReport report = harness.Run();
  server.reset();
  redis.reset();

  std::vector<std::string> clients_json;
  for (const uint64_t c : o.clients) clients_json.push_back(absl::StrCat(c));
  report.config = {
      {"keys", absl::StrCat(o.keys)},
      {"value_size", absl::StrCat(o.value_size)},
      {"requests", absl::StrCat(o.requests)},
      {"warmup", absl::StrCat(o.warmup)},
      {"clients", absl::StrCat("[", absl::StrJoin(clients_json, ", "), "]")},
      {"backend", JsonString(o.backend)},
      {"transport", JsonString(o.transport)},
      {"server_transport", JsonString(server_transport)},
      {"server_io_threads", absl::StrCat(server_threads)},
      {"server", JsonString("sluice state-server, second process, 127.0.0.1, no updates, no "
                            "checkpoints")},
      {"redis_version", JsonString(redis_version)},
      {"redis_benchmark_version",
       JsonString(benchmark_path.has_value() ? RedisBenchmarkVersion(*benchmark_path) : "")},
      {"runs", absl::StrCat(harness.runs())}};

  // Targets at the largest client count. The native goal is shown for both ways of connecting:
  // a connection per client (as redis-benchmark's clients have) and one shared connection.
  const uint64_t most = *std::max_element(o.clients.begin(), o.clients.end());
  const std::string group = GroupOf(most);
  const BenchEntry* base = report.FindBaseline(group, absl::StrCat("redis-", most));
  for (const auto& [name, rate] :
       {std::pair<std::string, double>{absl::StrCat("native-", most), 2},
        std::pair<std::string, double>{absl::StrCat("native-shared-", most), 2},
        std::pair<std::string, double>{absl::StrCat("resp-", most), 1}}) {
    const BenchEntry* e = report.FindResult(group, name);
    if (base == nullptr || e == nullptr) continue;
    report.targets.push_back({absl::StrCat(name, " ops/s / redis-", most, " ops/s"),
                              e->ops_per_s / base->ops_per_s, rate, false});
    if (e->latency.has_value() && base->latency.has_value() && base->latency->p99_us > 0) {
      report.targets.push_back({absl::StrCat(name, " p99 / redis-", most, " p99"),
                                e->latency->p99_us / base->latency->p99_us, 1, true});
    }
  }

  Table table({"name", "clients", "requests", "seconds", "server CPU us/GET", "client CPU us/GET",
               "client"});
  for (const std::vector<BenchEntry>* list : {&report.baselines, &report.results}) {
    for (const BenchEntry& e : *list) {
      std::string client = Extra(e, "client");
      if (client.size() >= 2 && client.front() == '"') client = client.substr(1, client.size() - 2);
      table.AddRow({e.name, Extra(e, "clients"), Extra(e, "requests"), Extra(e, "seconds"),
                    Extra(e, "server_cpu_us_per_get"), Extra(e, "client_cpu_us_per_get"), client});
    }
  }
  report.details = absl::StrCat(
      "The measured phase of each row", harness.runs() > 1 ? " (the median run)" : "",
      "; CPU time is user + system of every thread of the process, per GET answered:\n",
      table.Render());
  return harness.Finish(report);
}

}  // namespace sluice::tools
