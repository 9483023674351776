// `sluice bench state` (tools/bench_state.h). Every row runs the same workload in one thread:
//  - the key set: --keys keys, key i being i as 8 bytes big-endian (how a 64-bit id serializes).
//    A row makes key i from i when it picks it (one byte swap) rather than reading it from a
//    table: a table of a million keys would add a cache miss of its own to every pick;
//  - preload: one read-modify-write of every key, in order, so that the reads that follow find
//    their entry and the state holds --keys entries;
//  - warm-up, then the measured phase: read-modify-writes of keys picked uniformly at random by
//    one fixed-seed generator, so that every row sees the same sequence;
//  - check: every key's counter is read back, and they must sum to the read-modify-writes done
//    (preload, warm-up and measured), or the row fails: a run cannot have measured a no-op.
// A read-modify-write reads the key's value (absent counts as 0) and writes back --value-size
// bytes whose first 8 hold the counter plus one (host byte order), the rest zeros.
//
// `rocksdb` and `heap` go through KeyedStateBackend: SetCurrentKey, ValueState::Value, Update.
// `raw-rocksdb` does rocksdb::DB::Get and Put on a database opened as the rocksdb backend opens
// its own (statestore_internal::RocksDbSetupFor: DB, column family, read and write options, WAL
// off), in a column family of its own as the backend's state has, with the very bytes of the
// backend's keys ([key group][key length][key][namespace length][namespace]), which it builds
// itself, hashing the key to its key group as the backend does, in a buffer it reuses. What the
// ratio shows is the rest: the state layer's own cost.
#include "tools/bench_state.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "base/clock.h"
#include "base/key_group.h"
#include "base/status.h"
#include "rocksdb/db.h"
#include "statestore/internal/rocksdb_backend.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/state.h"
#include "tools/bench_common.h"
#include "tools/bench_report.h"
#include "tools/bench_state_checkpoint.h"
#include "tools/cli.h"

namespace sluice::tools {
namespace {

constexpr char kRawRocksDb[] = "raw-rocksdb";
constexpr size_t kKeySize = 8;
constexpr size_t kCounterSize = 8;
// The clock is read once per this many operations.
constexpr int kOpsPerClockRead = 64;

struct StateBenchOptions {
  uint64_t keys = 1'000'000;
  uint64_t value_size = 8;
  double warmup_seconds = 1;
  double seconds = 3;
};

// Writes key i (i as 8 bytes big-endian) to `out`.
void KeyOf(uint64_t i, char* out) {
  const uint64_t big_endian = __builtin_bswap64(i);
  std::memcpy(out, &big_endian, kKeySize);
}

// Values: the counter in the first 8 of --value-size bytes, zeros after.
class CounterCodec {
 public:
  explicit CounterCodec(size_t value_size) : buffer_(value_size, '\0') {}
  absl::StatusOr<uint64_t> Decode(std::string_view value) const {
    if (value.size() != buffer_.size()) {
      return absl::DataLossError(
          absl::StrFormat("read a value of %d bytes, wrote %d", value.size(), buffer_.size()));
    }
    uint64_t counter = 0;
    std::memcpy(&counter, value.data(), kCounterSize);
    return counter;
  }
  std::string_view Encode(uint64_t counter) {
    std::memcpy(buffer_.data(), &counter, kCounterSize);
    return buffer_;
  }

 private:
  std::string buffer_;
};

// Where a row's database goes: inside `dir`, so that what the backend keeps beside its directory
// ("<directory>-local", its local checkpoint copies) is inside too.
std::string DatabaseIn(const TempDir& dir) { return dir.path() + "/db"; }

// The stores a row measures: ReadModifyWrite(i) and Counter(i) of key i.

class BackendStore {
 public:
  // `directory`: the rocksdb backend's (unused by the heap backend).
  static absl::StatusOr<std::unique_ptr<BackendStore>> Open(const std::string& kind,
                                                            std::string directory,
                                                            size_t value_size) {
    KeyedStateBackendOptions options;
    options.kind = kind;
    options.directory = std::move(directory);
    auto store = std::unique_ptr<BackendStore>(new BackendStore(value_size));
    SLUICE_ASSIGN_OR_RETURN(store->backend_, KeyedStateBackend::Create(std::move(options)));
    SLUICE_ASSIGN_OR_RETURN(store->state_,
                            store->backend_->GetValueState(StateDescriptor::Value("counter")));
    return store;
  }

  absl::Status ReadModifyWrite(uint64_t i) {
    SLUICE_RETURN_IF_ERROR(SetKey(i));
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> value, state_->Value());
    uint64_t counter = 0;
    if (value.has_value()) {
      SLUICE_ASSIGN_OR_RETURN(counter, codec_.Decode(*value));
    }
    return state_->Update(codec_.Encode(counter + 1));
  }
  absl::StatusOr<std::optional<uint64_t>> Counter(uint64_t i) {
    SLUICE_RETURN_IF_ERROR(SetKey(i));
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> value, state_->Value());
    if (!value.has_value()) return std::nullopt;
    return codec_.Decode(*value);
  }

 private:
  explicit BackendStore(size_t value_size) : codec_(value_size) {}
  absl::Status SetKey(uint64_t i) {
    KeyOf(i, key_);
    return backend_->SetCurrentKey(std::string_view(key_, kKeySize));
  }

  char key_[kKeySize] = {};
  CounterCodec codec_;
  std::unique_ptr<KeyedStateBackend> backend_;
  ValueState* state_ = nullptr;
};

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(kRawRocksDb, ": ", what, ": ", s.ToString()));
}

class RawRocksDbStore {
 public:
  static absl::StatusOr<std::unique_ptr<RawRocksDbStore>> Open(const std::string& directory,
                                                               size_t value_size) {
    KeyedStateBackendOptions options;
    options.kind = "rocksdb";
    options.directory = directory;
    auto store = std::unique_ptr<RawRocksDbStore>(new RawRocksDbStore(
        statestore_internal::RocksDbSetupFor(options), options.max_parallelism, value_size));
    rocksdb::DB* db = nullptr;
    SLUICE_RETURN_IF_ERROR(
        FromRocks(rocksdb::DB::Open(rocksdb::Options(store->setup_.db, store->setup_.column_family),
                                    directory, &db),
                  absl::StrCat("open ", directory)));
    store->db_.reset(db);
    SLUICE_RETURN_IF_ERROR(FromRocks(
        store->db_->CreateColumnFamily(store->setup_.column_family, "counter", &store->cf_),
        "create column family"));
    return store;
  }
  ~RawRocksDbStore() {
    if (db_ == nullptr) return;
    if (cf_ != nullptr) db_->DestroyColumnFamilyHandle(cf_).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }
  RawRocksDbStore(const RawRocksDbStore&) = delete;
  RawRocksDbStore& operator=(const RawRocksDbStore&) = delete;

  absl::Status ReadModifyWrite(uint64_t i) {
    const rocksdb::Slice key = Key(i);
    const rocksdb::Status s = db_->Get(setup_.read, cf_, key, &read_);
    uint64_t counter = 0;
    if (!s.IsNotFound()) {
      SLUICE_RETURN_IF_ERROR(FromRocks(s, "get"));
      SLUICE_ASSIGN_OR_RETURN(counter, codec_.Decode(read_));
    }
    const std::string_view value = codec_.Encode(counter + 1);
    return FromRocks(db_->Put(setup_.write, cf_, key, rocksdb::Slice(value.data(), value.size())),
                     "put");
  }
  absl::StatusOr<std::optional<uint64_t>> Counter(uint64_t i) {
    const rocksdb::Status s = db_->Get(setup_.read, cf_, Key(i), &read_);
    if (s.IsNotFound()) return std::nullopt;
    SLUICE_RETURN_IF_ERROR(FromRocks(s, "get"));
    return codec_.Decode(read_);
  }

 private:
  RawRocksDbStore(statestore_internal::RocksDbSetup setup, uint32_t max_parallelism,
                  size_t value_size)
      : setup_(std::move(setup)), max_parallelism_(max_parallelism), codec_(value_size) {
    key_[5] = static_cast<char>(kKeySize);  // the key's length; the namespace's stays 0
  }
  // The rocksdb backend's key of key i in the empty namespace (rocksdb_backend.h): [key group,
  // 2 bytes big-endian][key length, 4 bytes big-endian][key][namespace length: 4 zero bytes].
  rocksdb::Slice Key(uint64_t i) {
    char* key = key_ + 6;
    KeyOf(i, key);
    const uint32_t group = KeyGroupForKey(std::string_view(key, kKeySize), max_parallelism_);
    key_[0] = static_cast<char>(group >> 8);
    key_[1] = static_cast<char>(group);
    return rocksdb::Slice(key_, sizeof(key_));
  }

  statestore_internal::RocksDbSetup setup_;
  const uint32_t max_parallelism_;
  char key_[2 + 4 + kKeySize + 4] = {};
  CounterCodec codec_;
  std::string read_;  // Get's buffer, reused
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* cf_ = nullptr;
};

// Read-modify-writes of random keys for about `seconds`: how many, and how long they took.
template <typename Store>
absl::Status RunFor(Store& store, KeyPicker& picker, double seconds, uint64_t* ops,
                    double* elapsed) {
  const int64_t start = MonotonicNanos();
  const int64_t end = start + static_cast<int64_t>(seconds * 1e9);
  int64_t now = start;
  uint64_t done = 0;
  while (now < end) {
    for (int j = 0; j < kOpsPerClockRead; ++j) {
      SLUICE_RETURN_IF_ERROR(store.ReadModifyWrite(picker.Next()));
    }
    done += kOpsPerClockRead;
    now = MonotonicNanos();
  }
  *ops = done;
  *elapsed = static_cast<double>(now - start) / 1e9;
  return absl::OkStatus();
}

// The row described at the top of this file, on an open store.
template <typename Store>
absl::StatusOr<BenchEntry> MeasureRow(Store& store, const StateBenchOptions& o) {
  const int64_t preload_start = MonotonicNanos();
  for (uint64_t i = 0; i < o.keys; ++i) SLUICE_RETURN_IF_ERROR(store.ReadModifyWrite(i));
  const double preload_seconds = static_cast<double>(MonotonicNanos() - preload_start) / 1e9;
  KeyPicker picker(o.keys);
  uint64_t warmup_ops = 0;
  double warmup_elapsed = 0;
  SLUICE_RETURN_IF_ERROR(RunFor(store, picker, o.warmup_seconds, &warmup_ops, &warmup_elapsed));
  uint64_t ops = 0;
  double seconds = 0;
  SLUICE_RETURN_IF_ERROR(RunFor(store, picker, o.seconds, &ops, &seconds));

  const uint64_t expected = o.keys + warmup_ops + ops;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < o.keys; ++i) {
    SLUICE_ASSIGN_OR_RETURN(std::optional<uint64_t> counter, store.Counter(i));
    if (!counter.has_value()) {
      return absl::DataLossError(absl::StrFormat("key %d has no value after the run", i));
    }
    sum += *counter;
  }
  if (sum != expected) {
    return absl::DataLossError(absl::StrFormat(
        "the counters sum to %d, but %d read-modify-writes were done", sum, expected));
  }
  BenchEntry e;
  e.ops_per_s = static_cast<double>(ops) / seconds;
  e.extra = {{"ops", absl::StrCat(ops)},
             {"seconds", absl::StrFormat("%.4f", seconds)},
             {"ns_per_op", absl::StrFormat("%.1f", seconds * 1e9 / static_cast<double>(ops))},
             {"preload_seconds", absl::StrFormat("%.4f", preload_seconds)},
             {"checked_ops", absl::StrCat(expected)}};
  return e;
}

absl::StatusOr<BenchEntry> RunBackendRow(const std::string& kind, const StateBenchOptions& o) {
  std::unique_ptr<TempDir> dir;
  if (kind == "rocksdb") {
    SLUICE_ASSIGN_OR_RETURN(dir, TempDir::Create(absl::StrCat("state-", kind)));
  }
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<BackendStore> store,
      BackendStore::Open(kind, dir != nullptr ? DatabaseIn(*dir) : std::string(), o.value_size));
  absl::StatusOr<BenchEntry> e = MeasureRow(*store, o);
  store.reset();  // closes the database before its directory goes
  return e;
}

absl::StatusOr<BenchEntry> RunRawRocksDbRow(const StateBenchOptions& o) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<TempDir> dir,
                          TempDir::Create(absl::StrCat("state-", kRawRocksDb)));
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<RawRocksDbStore> store,
                          RawRocksDbStore::Open(DatabaseIn(*dir), o.value_size));
  absl::StatusOr<BenchEntry> e = MeasureRow(*store, o);
  store.reset();
  return e;
}

// A figure from an entry's extra members.
std::string Extra(const BenchEntry& e, std::string_view key) {
  for (const auto& [k, v] : e.extra) {
    if (k == key) return v;
  }
  return "-";
}

// Measures one incremental checkpoint and adds its figures, its targets and the JSON field
// "checkpoint" to `report` (or a failure).
void AddCheckpointFigures(const CheckpointBenchOptions& options, BenchReport* report) {
  absl::PrintF("checkpoint of %s of rocksdb state, %g%% of the keys changed...\n",
               FormatBytes(options.state_bytes), options.changed * 100);
  std::fflush(stdout);
  absl::StatusOr<CheckpointBenchResult> r = MeasureIncrementalCheckpoint(options);
  if (!r.ok()) {
    report->failures.emplace_back("checkpoint", std::string(r.status().message()));
    return;
  }
  const double uploaded_share =
      r->state_bytes == 0 ? 0 : static_cast<double>(r->uploaded_bytes) / r->state_bytes;
  report->sections.emplace_back(
      "checkpoint",
      absl::StrFormat("{\"sync_ms\": %.3f, \"total_ms\": %.1f, \"uploaded_bytes\": %d, "
                      "\"state_bytes\": %d, \"uploaded_files\": %d, \"files\": %d, "
                      "\"keys\": %d, \"changed_keys\": %d, \"first_total_ms\": %.1f}",
                      r->sync_ms, r->total_ms, r->uploaded_bytes, r->state_bytes, r->uploaded_files,
                      r->files, r->keys, r->changed_keys, r->first_total_ms));
  report->targets.push_back({"checkpoint synchronous part, ms", r->sync_ms, 10, true});
  report->targets.push_back({"checkpoint whole, ms", r->total_ms, 1000, true});
  report->targets.push_back(
      {"checkpoint bytes uploaded / state bytes", uploaded_share, 0.05, true});
  absl::StrAppend(
      &report->details,
      absl::StrFormat("\nCheckpoint of %s in %d keys (%d files), %d keys rewritten:\n"
                      "  first checkpoint (everything uploaded) %.0f ms; the next: synchronous "
                      "part %.3f ms, whole %.1f ms,\n  uploaded %s in %d files (%.2f%% of the "
                      "state)\n",
                      FormatBytes(r->state_bytes), r->keys, r->files, r->changed_keys,
                      r->first_total_ms, r->sync_ms, r->total_ms, FormatBytes(r->uploaded_bytes),
                      r->uploaded_files, uploaded_share * 100));
}

}  // namespace

int RunBenchState(Args args) {
  StateBenchOptions o;
  BenchHarness harness("state");
  OptionParser parser(
      "sluice bench state",
      "Value-state read-modify-write throughput: set the current key, read the value, write\n"
      "back the counter it holds plus one. Keys are --keys 8-byte big-endian integers, picked\n"
      "uniformly at random (the same sequence for every row); values are --value-size bytes,\n"
      "a counter in the first 8. Each row first writes every key once (preload), then runs\n"
      "--warmup, then --seconds measured; at the end the counters must sum to the operations\n"
      "done.\n"
      "  rocksdb      KeyedStateBackend \"rocksdb\" in a temporary directory (removed after)\n"
      "  heap         KeyedStateBackend \"heap\"\n"
      "  raw-rocksdb  (baseline) rocksdb::DB Get + Put of the bytes the rocksdb backend writes\n"
      "               (key group, key, namespace), with the backend's options (WAL off)\n"
      "One thread; ops/s counts read-modify-writes.\n"
      "Then a checkpoint of a rocksdb backend holding --checkpoint-bytes of value state (1 KiB\n"
      "values), after a first checkpoint and --changed of its keys rewritten at random, into\n"
      "filesystem checkpoint storage on the same disk: its synchronous part (on the task\n"
      "thread), its whole time until every file is stored, and the bytes uploaded against the\n"
      "bytes the checkpoint refers to. It is restored and sampled afterwards.");
  parser.AddCount("--keys", "N", "Distinct keys", 1, 100'000'000, &o.keys);
  parser.AddBytes("--value-size", "Bytes per value (the counter is the first 8)", kCounterSize,
                  1 << 20, &o.value_size);
  parser.AddSeconds("--seconds", "Measured time of each row, after its preload and warm-up", 0.01,
                    3600, &o.seconds);
  parser.AddSeconds("--warmup", "Warm-up of each row, after its preload", 0, 3600,
                    &o.warmup_seconds);
  CheckpointBenchOptions checkpoint;
  parser.AddBytes("--checkpoint-bytes", "State in the checkpoint measurement, 1GiB (0: skip)", 0,
                  uint64_t{1} << 40, &checkpoint.state_bytes);
  checkpoint.state_bytes = uint64_t{1} << 30;
  parser.AddOption("--changed", "F", "Fraction of the keys rewritten before the checkpoint", "0.01",
                   [&checkpoint](std::string_view value) {
                     double f = 0;
                     if (!absl::SimpleAtod(std::string(value), &f) || !(f > 0) || f > 1) {
                       return absl::InvalidArgumentError(absl::StrCat(
                           "--changed wants a fraction in (0, 1], got '", std::string(value), "'"));
                     }
                     checkpoint.changed = f;
                     return absl::OkStatus();
                   });
  harness.AddOptions(parser);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;

  absl::PrintF(
      "sluice bench state: value read-modify-write, %d keys of 8 bytes, %s values, keys picked "
      "uniformly at random\neach row: preload of every key, %gs warm-up, then %gs measured\n\n",
      o.keys, FormatBytes(o.value_size), o.warmup_seconds, o.seconds);
  std::fflush(stdout);

  const std::string group = absl::StrCat("value read-modify-write, ", o.keys, " keys, ",
                                         FormatBytes(o.value_size), " values");
  // For the progress bar: preload and check took about 10 s per million keys on rocksdb, 1 s on
  // the heap, on a 2-vCPU VM.
  auto row_seconds = [&o](double seconds_per_million_keys) {
    return o.warmup_seconds + o.seconds +
           seconds_per_million_keys * static_cast<double>(o.keys) / 1e6;
  };
  harness.Add({std::string(kRawRocksDb), group, true, row_seconds(10),
               [o] { return RunRawRocksDbRow(o); }});
  harness.Add(
      {"rocksdb", group, false, row_seconds(10), [o] { return RunBackendRow("rocksdb", o); }});
  harness.Add({"heap", group, false, row_seconds(1), [o] { return RunBackendRow("heap", o); }});
  BenchReport report = harness.Run();
  const KeyedStateBackendOptions defaults;
  report.config = {{"keys", absl::StrCat(o.keys)},
                   {"key_size", absl::StrCat(kKeySize)},
                   {"value_size", absl::StrCat(o.value_size)},
                   {"seconds", absl::StrFormat("%g", o.seconds)},
                   {"warmup", absl::StrFormat("%g", o.warmup_seconds)},
                   {"runs", absl::StrCat(harness.runs())},
                   {"max_parallelism", absl::StrCat(defaults.max_parallelism)},
                   {"block_cache_bytes", absl::StrCat(defaults.block_cache_bytes)}};
  const BenchEntry* raw = report.FindBaseline(group, std::string(kRawRocksDb));
  const BenchEntry* rocks = report.FindResult(group, "rocksdb");
  const BenchEntry* heap = report.FindResult(group, "heap");
  if (raw != nullptr && rocks != nullptr) {
    report.targets.push_back(
        {"rocksdb ops/s / raw-rocksdb ops/s", rocks->ops_per_s / raw->ops_per_s, 0.8, false});
  }
  if (heap != nullptr) {
    report.targets.push_back({"heap ops/s, millions", heap->ops_per_s / 1e6, 10, false});
  }

  Table table({"name", "ns/op", "preload s", "ops checked"});
  for (const BenchEntry* e : {raw, rocks, heap}) {
    if (e == nullptr) continue;
    table.AddRow(
        {e->name, Extra(*e, "ns_per_op"), Extra(*e, "preload_seconds"), Extra(*e, "checked_ops")});
  }
  report.details = absl::StrCat(
      "Time per read-modify-write (measured phase), the preload's length, and the operations\n"
      "the counters were checked against (preload, warm-up and measured)",
      harness.runs() > 1 ? ", of the median run" : "", ":\n", table.Render());
  if (checkpoint.state_bytes > 0) AddCheckpointFigures(checkpoint, &report);
  return harness.Finish(report);
}

}  // namespace sluice::tools
