// `sluice state-server`: one worker's keyed state, filled with generated keys, kept changing,
// checkpointed, and served to queries over the native protocol (and RESP when asked), so that
// the query path can be used and measured before the scheduler exists.
//
// State of job --job (default "demo"):
//   key      value state: key "%012d" (0 .. N-1) -> "<epoch>:" padded to --value-size bytes, where
//            <epoch> is the id of the first checkpoint that will hold the write;
//   history  list state: the epochs of every update of keys that are multiples of 1000;
//   attrs    map state: {"epoch": <epoch>, "key": <key>} for multiples of 10000.
// The keys are those `redis-benchmark -t get -r N` asks for through the RESP gateway
// ("key:000000000123"). SIGUSR1 restores the newest checkpoint (queries answer Unavailable
// meanwhile); SIGINT and SIGTERM stop it.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/logging.h"
#include "base/status.h"
#include "statestore/completed_checkpoints.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/query_client.h"
#include "statestore/query_server.h"
#include "statestore/resp_gateway.h"
#include "statestore/state_query_service.h"
#include "tools/commands.h"

namespace sluice::tools {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_restore{false};

struct Options {
  uint64_t keys = 100000;
  uint64_t value_size = 32;
  std::string backend = "rocksdb";
  std::string job = "demo";
  std::string host = "127.0.0.1";
  uint64_t query_port = 0;
  uint64_t resp_port = 0;
  bool resp = false;
  std::string transport = "auto";
  uint64_t io_threads = 0;  // 0: the servers' default (one per two CPUs, 1 to 4)
  std::string token;
  uint64_t max_parallelism = kDefaultMaxParallelism;
  std::string key_groups;  // "first-last"; empty: all
  std::string locations;   // location table file
  std::string dir;
  uint64_t updates_per_second = 10000;
  double checkpoint_interval = 1.0;
  double latest_interval = 1.0;  // heap: how often the latest view is copied
  double restore_delay = 0;
  double seconds = 0;  // 0: until stopped
};

const StateDescriptor kValue = StateDescriptor::Value("key");
const StateDescriptor kHistory = StateDescriptor::List("history");
const StateDescriptor kAttrs = StateDescriptor::Map("attrs");

std::string KeyOf(uint64_t i) { return absl::StrFormat("%012d", i); }

class StateServer {
 public:
  explicit StateServer(const Options& options) : options_(options) {}

  absl::Status Run() {
    SLUICE_RETURN_IF_ERROR(Prepare());
    SLUICE_RETURN_IF_ERROR(Fill());
    SLUICE_RETURN_IF_ERROR(PublishLatest());
    SLUICE_RETURN_IF_ERROR(Checkpoint());
    const size_t threads = query_server_->io_threads();
    std::printf("query %s (%s) %zu I/O thread%s\n", query_server_->address().c_str(),
                std::string(query_server_->transport_name()).c_str(), threads,
                threads == 1 ? "" : "s");
    if (resp_gateway_ != nullptr) std::printf("resp %s\n", resp_gateway_->address().c_str());
    std::printf("ready\n");
    std::fflush(stdout);
    return Loop();
  }

 private:
  absl::Status Prepare() {
    KeyGroupRange range{0, static_cast<uint32_t>(options_.max_parallelism)};
    if (!options_.key_groups.empty()) {
      std::vector<std::string> parts = absl::StrSplit(options_.key_groups, '-');
      uint32_t first = 0;
      uint32_t last = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &first) ||
          !absl::SimpleAtoi(parts[1], &last) || last < first || last >= options_.max_parallelism) {
        return absl::InvalidArgumentError(absl::StrCat("--key-groups '", options_.key_groups,
                                                       "' must be FIRST-LAST below ",
                                                       options_.max_parallelism));
      }
      range = KeyGroupRange{first, last - first + 1};
    }
    range_ = range;
    dir_ = options_.dir;
    if (dir_.empty()) {
      std::string pattern =
          (std::filesystem::temp_directory_path() / "sluice-state-XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
      dir_ = pattern;
      remove_dir_ = true;
    }
    SLUICE_ASSIGN_OR_RETURN(storage_, NewFilesystemCheckpointStorage(dir_ + "/checkpoints"));
    SLUICE_ASSIGN_OR_RETURN(CompletedCheckpointStore store,
                            CompletedCheckpointStore::Open(storage_.get(), 2));
    store_ = std::make_unique<CompletedCheckpointStore>(std::move(store));
    SLUICE_ASSIGN_OR_RETURN(backend_, NewBackend());

    QueryConnectionsOptions connections;
    connections.transport = options_.transport;
    connections.token = options_.token;
    SLUICE_ASSIGN_OR_RETURN(std::shared_ptr<QueryConnections> forwarder,
                            QueryConnections::Create(connections));
    QueryServerOptions server;
    server.host = options_.host;
    server.port = static_cast<uint16_t>(options_.query_port);
    server.transport = options_.transport;
    server.io_threads = options_.io_threads;
    server.token = options_.token;
    service_ = std::make_unique<StateQueryService>(StateQueryServiceOptions{}, forwarder);
    SLUICE_ASSIGN_OR_RETURN(query_server_, QueryServer::Create(server, *service_));
    service_->SetAddress(query_server_->address());
    if (options_.resp) {
      RespGatewayOptions resp;
      resp.host = options_.host;
      resp.port = static_cast<uint16_t>(options_.resp_port);
      resp.token = options_.token;
      resp.job = options_.job;
      resp.io_threads = options_.io_threads;
      SLUICE_ASSIGN_OR_RETURN(resp_gateway_, RespGateway::Create(*service_, resp));
    }
    if (!options_.locations.empty()) {
      SLUICE_ASSIGN_OR_RETURN(LocationTable table, LocationTable::ReadFile(options_.locations));
      service_->SetLocations(std::move(table));
    }
    SLUICE_ASSIGN_OR_RETURN(
        partition_,
        service_->Register(options_.job, range_, static_cast<uint32_t>(options_.max_parallelism)));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<KeyedStateBackend>> NewBackend() {
    KeyedStateBackendOptions o;
    o.kind = options_.backend;
    o.max_parallelism = static_cast<uint32_t>(options_.max_parallelism);
    o.key_groups = range_;
    o.directory = absl::StrCat(dir_, "/db-", ++generation_);
    return KeyedStateBackend::Create(o);
  }

  // Writes key `i` (when this subtask holds it) at the current epoch.
  absl::Status Write(uint64_t i) {
    const std::string key = KeyOf(i);
    if (!range_.Contains(KeyGroupForKey(key, static_cast<uint32_t>(options_.max_parallelism)))) {
      return absl::OkStatus();
    }
    SLUICE_RETURN_IF_ERROR(backend_->SetCurrentKey(key));
    std::string value = absl::StrCat(epoch_, ":");
    if (value.size() < options_.value_size) value.resize(options_.value_size, 'x');
    SLUICE_ASSIGN_OR_RETURN(ValueState * state, backend_->GetValueState(kValue));
    SLUICE_RETURN_IF_ERROR(state->Update(value));
    if (i % 1000 == 0) {
      SLUICE_ASSIGN_OR_RETURN(ListState * history, backend_->GetListState(kHistory));
      SLUICE_RETURN_IF_ERROR(history->Add(absl::StrCat(epoch_)));
    }
    if (i % 10000 == 0) {
      SLUICE_ASSIGN_OR_RETURN(MapState * attrs, backend_->GetMapState(kAttrs));
      SLUICE_RETURN_IF_ERROR(attrs->Put("epoch", absl::StrCat(epoch_)));
      SLUICE_RETURN_IF_ERROR(attrs->Put("key", key));
    }
    return absl::OkStatus();
  }

  absl::Status Fill() {
    // Declared up front, so that every view has all three.
    SLUICE_RETURN_IF_ERROR(backend_->GetValueState(kValue).status());
    SLUICE_RETURN_IF_ERROR(backend_->GetListState(kHistory).status());
    SLUICE_RETURN_IF_ERROR(backend_->GetMapState(kAttrs).status());
    for (uint64_t i = 0; i < options_.keys; ++i) SLUICE_RETURN_IF_ERROR(Write(i));
    return absl::OkStatus();
  }

  absl::Status PublishLatest() {
    SLUICE_ASSIGN_OR_RETURN(std::shared_ptr<const StateView> view, backend_->LiveView());
    partition_->PublishLatest(std::move(view));
    last_latest_ = absl::Now();
    return absl::OkStatus();
  }

  // A checkpoint of epoch_, written on this thread (the server has no other work to overlap).
  absl::Status Checkpoint() {
    const uint64_t id = epoch_++;
    SLUICE_RETURN_IF_ERROR(partition_->PinAtBarrier(id, *backend_));
    SnapshotOptions snapshot;
    snapshot.checkpoint_id = id;
    snapshot.owner = absl::StrCat(options_.job, "/", range_.first);
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<PendingSnapshot> pending, backend_->Snapshot(snapshot));
    SLUICE_ASSIGN_OR_RETURN(BackendSnapshot written, pending->Write(*storage_));
    CheckpointMetadata metadata;
    metadata.checkpoint_id = id;
    metadata.timestamp_ms = absl::ToUnixMillis(absl::Now());
    metadata.backends.push_back(std::move(written));
    SLUICE_RETURN_IF_ERROR(store_->Add(metadata));
    backend_->NotifyCheckpointComplete(id);
    service_->PublishCompleted(options_.job, id);
    SLUICE_LOG_DEBUG("state-server: checkpoint {} completed", id);
    return absl::OkStatus();
  }

  absl::Status Restore() {
    partition_->SetRestoring();
    const absl::Time started = absl::Now();
    const CheckpointMetadata* latest = store_->Latest();
    if (latest == nullptr) return absl::FailedPreconditionError("no checkpoint to restore");
    // Views handed out before may still be read: the old backend stays until the end.
    retired_.push_back(std::move(backend_));
    SLUICE_ASSIGN_OR_RETURN(backend_, NewBackend());
    SLUICE_RETURN_IF_ERROR(backend_->Restore(latest->backends, *storage_));
    SLUICE_RETURN_IF_ERROR(backend_->GetValueState(kValue).status());
    SLUICE_RETURN_IF_ERROR(backend_->GetListState(kHistory).status());
    SLUICE_RETURN_IF_ERROR(backend_->GetMapState(kAttrs).status());
    epoch_ = latest->checkpoint_id + 1;
    absl::SleepFor(absl::Seconds(options_.restore_delay) - (absl::Now() - started));
    SLUICE_RETURN_IF_ERROR(PublishLatest());
    std::printf("restored checkpoint %llu\n",
                static_cast<unsigned long long>(latest->checkpoint_id));
    std::fflush(stdout);
    return absl::OkStatus();
  }

  absl::Status Loop() {
    std::mt19937_64 random(42);
    const absl::Duration tick = absl::Milliseconds(10);
    const uint64_t per_tick = options_.updates_per_second / 100;
    const absl::Time end = options_.seconds > 0 ? absl::Now() + absl::Seconds(options_.seconds)
                                                : absl::InfiniteFuture();
    absl::Time next_checkpoint = absl::Now() + absl::Seconds(options_.checkpoint_interval);
    while (!g_stop.load() && absl::Now() < end) {
      if (g_restore.exchange(false)) SLUICE_RETURN_IF_ERROR(Restore());
      for (uint64_t n = 0; n < per_tick && options_.keys > 0; ++n) {
        SLUICE_RETURN_IF_ERROR(Write(random() % options_.keys));
      }
      if (options_.backend == "heap" &&
          absl::Now() - last_latest_ >= absl::Seconds(options_.latest_interval)) {
        SLUICE_RETURN_IF_ERROR(PublishLatest());
      }
      if (options_.checkpoint_interval > 0 && absl::Now() >= next_checkpoint) {
        SLUICE_RETURN_IF_ERROR(Checkpoint());
        next_checkpoint = absl::Now() + absl::Seconds(options_.checkpoint_interval);
      }
      absl::SleepFor(tick);
    }
    return absl::OkStatus();
  }

 public:
  ~StateServer() {
    resp_gateway_.reset();
    query_server_.reset();
    partition_.reset();
    service_.reset();
    if (remove_dir_) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

 private:
  const Options options_;
  KeyGroupRange range_;
  std::string dir_;
  bool remove_dir_ = false;
  int generation_ = 0;
  uint64_t epoch_ = 1;
  absl::Time last_latest_;
  std::unique_ptr<CheckpointStorage> storage_;
  std::unique_ptr<CompletedCheckpointStore> store_;
  std::vector<std::unique_ptr<KeyedStateBackend>> retired_;
  std::unique_ptr<KeyedStateBackend> backend_;
  std::unique_ptr<StateQueryService> service_;
  std::unique_ptr<QueryServer> query_server_;
  std::unique_ptr<RespGateway> resp_gateway_;
  std::unique_ptr<QueryablePartition> partition_;
};

}  // namespace

int RunStateServer(Args args) {
  Options o;
  OptionParser parser(
      "sluice state-server",
      "Fills a keyed state with generated keys, keeps updating them, takes checkpoints and\n"
      "serves queries ('sluice query'), until stopped. States of the job: 'key' (value state,\n"
      "keys 000000000000..N-1), 'history' (list), 'attrs' (map). SIGUSR1 restores the newest\n"
      "checkpoint. Prints 'query HOST:PORT (transport) N I/O threads', 'resp HOST:PORT' with\n"
      "--resp-port, then 'ready'. Through RESP, keys are spelled STATE:KEY ('redis-cli -p R GET "
      "key:000000000042').");
  parser.AddCount("--generate", "N", "keys to generate (default 100000)", 0, 1ull << 32, &o.keys);
  parser.AddCount("--value-size", "BYTES", "bytes per value (default 32)", 1, 1 << 20,
                  &o.value_size);
  parser.AddChoice("--backend", KeyedStateBackend::Kinds(), "state backend (default rocksdb)",
                   &o.backend);
  parser.AddString("--job", "NAME", "job name (default demo)", &o.job);
  parser.AddString("--host", "HOST", "address to listen on (default 127.0.0.1)", &o.host);
  parser.AddCount("--query-port", "PORT", "native query port (default 0: any free)", 0, 65535,
                  &o.query_port);
  parser.AddOption("--resp-port", "PORT",
                   "also serve the Redis protocol (read-only) here; 0: any free port", "off",
                   [&o](std::string_view v) -> absl::Status {
                     absl::StatusOr<uint64_t> port = ParseCount(v);
                     if (!port.ok() || *port > 65535) {
                       return absl::InvalidArgumentError("expected a port number (0-65535)");
                     }
                     o.resp = true;
                     o.resp_port = *port;
                     return absl::OkStatus();
                   });
  parser.AddString("--transport", "NAME", "uring, epoll or auto (default auto)", &o.transport);
  parser.AddCount(
      "--io-threads", "N",
      "I/O threads of the query server and of the RESP gateway each (default 0: one per "
      "two CPUs, 1 to 4)",
      0, 64, &o.io_threads);
  parser.AddString("--token", "T", "token every client must present", &o.token);
  parser.AddCount("--max-parallelism", "N", "key groups of the job (default 128)", 1,
                  kMaxMaxParallelism, &o.max_parallelism);
  parser.AddString("--key-groups", "FIRST-LAST", "the key groups held here (default all)",
                   &o.key_groups);
  parser.AddString("--locations", "FILE", "location table of the other workers' key groups",
                   &o.locations);
  parser.AddString("--dir", "DIR", "state and checkpoint directory (default: a temporary one)",
                   &o.dir);
  parser.AddCount("--updates", "N", "updates per second (default 10000)", 0, 100000000,
                  &o.updates_per_second);
  parser.AddSeconds("--checkpoint-interval", "seconds between checkpoints (default 1; 0: none)", 0,
                    3600, &o.checkpoint_interval);
  parser.AddSeconds("--latest-interval",
                    "heap: seconds between copies of the live state (default 1)", 0.01, 3600,
                    &o.latest_interval);
  parser.AddSeconds("--restore-delay", "a restore keeps queries Unavailable at least this long", 0,
                    3600, &o.restore_delay);
  parser.AddSeconds("--seconds", "stop after this long (default: when stopped)", 0, 1e9,
                    &o.seconds);
  AddLogLevelOption(parser);
  if (std::optional<int> exit = ParseOrExit(parser, args)) return *exit;
  std::signal(SIGINT, [](int) { g_stop.store(true); });
  std::signal(SIGTERM, [](int) { g_stop.store(true); });
  std::signal(SIGUSR1, [](int) { g_restore.store(true); });
  StateServer server(o);
  if (absl::Status s = server.Run(); !s.ok()) {
    std::fprintf(stderr, "sluice state-server: %s\n", std::string(s.message()).c_str());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace sluice::tools
