#include "statestore/internal/rocksdb_backend.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "base/sync.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/metadata.h"
#include "rocksdb/options.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "statestore/internal/state_table.h"
#include "statestore/internal/ttl.h"

namespace sluice::statestore_internal {
namespace {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(std::string(what), ": ", s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsIOError()) return absl::UnavailableError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

void PutBigEndian32(std::string* out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(bytes, 4);
}

// [key group][key length][key][namespace length][namespace]: the prefix of every entry of one
// (key group, key, namespace).
std::string EntryPrefix(const EntryKey& k) {
  std::string out;
  out.reserve(2 + 4 + k.key.size() + 4 + k.ns.size() + k.user_key.size());
  out.push_back(static_cast<char>(k.key_group >> 8));
  out.push_back(static_cast<char>(k.key_group));
  PutBigEndian32(&out, static_cast<uint32_t>(k.key.size()));
  out.append(k.key);
  PutBigEndian32(&out, static_cast<uint32_t>(k.ns.size()));
  out.append(k.ns);
  return out;
}

uint32_t GetBigEndian32(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

// The key, namespace and user key of an entry's RocksDB key (see EntryPrefix); false when it is
// malformed.
bool DecodeKey(std::string_view key, EntryKey* k) {
  if (key.size() < 2 + 4) return false;
  const uint32_t key_length = GetBigEndian32(key.data() + 2);
  if (key.size() - 6 < key_length || key.size() - 6 - key_length < 4) return false;
  k->key = key.substr(6, key_length);
  const size_t ns_at = 6 + key_length + 4;
  const uint32_t ns_length = GetBigEndian32(key.data() + 6 + key_length);
  if (key.size() - ns_at < ns_length) return false;
  k->ns = key.substr(ns_at, ns_length);
  k->user_key = key.substr(ns_at + ns_length);
  return true;
}

// The smallest key greater than every key that starts with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
  return prefix;
}

// List state's add: the new bytes after the old ones.
class AppendOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    new_value->clear();
    if (existing != nullptr) new_value->assign(existing->data(), existing->size());
    new_value->append(value.data(), value.size());
    return true;
  }
  const char* Name() const override { return "sluice.append"; }
};

class RocksDbStateTable final : public StateTable {
 public:
  // `snapshot`: reads see the state as of a RocksDB snapshot (a pinned view's table).
  RocksDbStateTable(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, std::string name, bool map,
                    const rocksdb::Snapshot* snapshot = nullptr)
      : db_(db), cf_(cf), name_(std::move(name)), map_(map) {
    write_.disableWAL = true;
    read_.snapshot = snapshot;
  }

  absl::StatusOr<std::optional<std::string>> Get(const EntryKey& k) override {
    std::string value;
    const rocksdb::Status s = db_->Get(read_, cf_, Key(k), &value);
    if (s.IsNotFound()) return std::nullopt;
    SLUICE_RETURN_IF_ERROR(Checked(s, "get"));
    return value;
  }
  absl::Status Put(const EntryKey& k, std::string_view value) override {
    return Checked(db_->Put(write_, cf_, Key(k), rocksdb::Slice(value.data(), value.size())),
                   "put");
  }
  absl::Status Append(const EntryKey& k, std::string_view bytes) override {
    return Checked(db_->Merge(write_, cf_, Key(k), rocksdb::Slice(bytes.data(), bytes.size())),
                   "merge");
  }
  absl::Status Delete(const EntryKey& k) override {
    return Checked(db_->Delete(write_, cf_, Key(k)), "delete");
  }
  absl::Status ForEachUserKey(
      const EntryKey& k,
      absl::FunctionRef<bool(std::string_view user_key, std::string_view value)> fn) override {
    const std::string prefix = EntryPrefix(k);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_, cf_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      const rocksdb::Slice key = it->key();
      const rocksdb::Slice value = it->value();
      if (!fn(std::string_view(key.data() + prefix.size(), key.size() - prefix.size()),
              std::string_view(value.data(), value.size()))) {
        break;
      }
    }
    return Checked(it->status(), "iterate");
  }
  absl::Status ForEachInKeyGroup(
      uint32_t key_group,
      absl::FunctionRef<bool(const EntryKey& k, std::string_view value)> fn) override {
    const char prefix[2] = {static_cast<char>(key_group >> 8), static_cast<char>(key_group)};
    const rocksdb::Slice group(prefix, 2);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_, cf_));
    for (it->Seek(group); it->Valid() && it->key().starts_with(group); it->Next()) {
      const std::string_view key(it->key().data(), it->key().size());
      EntryKey k{key_group, {}, {}, {}};
      if (!DecodeKey(key, &k)) {
        return absl::DataLossError(absl::StrCat(Where("read"), ": a key of ", key.size(),
                                                " bytes does not decode (corrupt state)"));
      }
      if (!fn(k, std::string_view(it->value().data(), it->value().size()))) break;
    }
    return Checked(it->status(), "iterate");
  }

  absl::Status DeleteUserKeys(const EntryKey& k) override {
    const std::string prefix = EntryPrefix(k);
    const std::string end = PrefixEnd(prefix);
    return Checked(db_->DeleteRange(write_, cf_, prefix, end), "delete range");
  }

 private:
  std::string Key(const EntryKey& k) const {
    std::string key = EntryPrefix(k);
    if (map_) key.append(k.user_key);
    return key;
  }
  // The error naming this state and `op`; the message is only built for a failure.
  absl::Status Checked(const rocksdb::Status& s, std::string_view op) const {
    return s.ok() ? absl::OkStatus() : FromRocks(s, Where(op));
  }
  std::string Where(std::string_view op) const {
    return absl::StrCat("state '", name_, "': rocksdb ", std::string(op));
  }

  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const cf_;
  const std::string name_;
  const bool map_;
  rocksdb::ReadOptions read_;
  rocksdb::WriteOptions write_;
};

// Local files: copies, links, and whole directories.
absl::Status LocalError(const std::string& what, const std::error_code& ec) {
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

absl::Status ResetDirectory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!ec) std::filesystem::create_directories(dir, ec);
  return ec ? LocalError(absl::StrCat("cannot make an empty ", dir.string()), ec)
            : absl::OkStatus();
}

// `to` as a hard link to `from`, or a copy where links cannot be made (another filesystem).
absl::Status LinkOrCopy(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  std::filesystem::create_hard_link(from, to, ec);
  if (!ec) return absl::OkStatus();
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  return ec ? LocalError(absl::StrCat("copy ", from.string(), " to ", to.string()), ec)
            : absl::OkStatus();
}

// The first `size` bytes of `from` as `to`.
absl::Status CopyPrefix(const std::filesystem::path& from, const std::filesystem::path& to,
                        uint64_t size) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  std::string chunk(1 << 20, '\0');
  while (in && out && size > 0) {
    const auto want = static_cast<std::streamsize>(std::min<uint64_t>(size, chunk.size()));
    in.read(chunk.data(), want);
    const std::streamsize got = in.gcount();
    out.write(chunk.data(), got);
    size -= static_cast<uint64_t>(got);
    if (got < want) break;
  }
  out.flush();
  if (size != 0 || !out) {
    return absl::UnavailableError(
        absl::StrCat("copy ", from.string(), " to ", to.string(), ": short read or write"));
  }
  return absl::OkStatus();
}

absl::Status WriteLocalFile(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  return out ? absl::OkStatus()
             : absl::UnavailableError(absl::StrCat("cannot write ", path.string()));
}

// Every file of `snapshot` from storage into `dir`; each is checked against its handle.
absl::Status Download(const BackendSnapshot& snapshot, CheckpointStorage& storage,
                      const std::filesystem::path& dir) {
  for (const SnapshotFile& f : snapshot.files) {
    SLUICE_ASSIGN_OR_RETURN(const std::string bytes, storage.Read(f.handle));
    SLUICE_RETURN_IF_ERROR(WriteLocalFile(dir / f.local_name, bytes));
  }
  return absl::OkStatus();
}

// The two-byte key-group prefix of every key of `key_group` (and of none other).
std::string KeyGroupPrefix(uint32_t key_group) {
  return std::string{static_cast<char>(key_group >> 8), static_cast<char>(key_group)};
}

// `kLocalComplete` is written into a local checkpoint directory after every file is there.
constexpr char kLocalComplete[] = "_complete";

// A RocksDB database opened with a column family per state.
struct OpenedDb {
  std::unique_ptr<rocksdb::DB> db;
  absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*> families;  // by state name
  rocksdb::ColumnFamilyHandle* default_family = nullptr;

  OpenedDb() = default;
  OpenedDb(OpenedDb&&) = default;
  OpenedDb& operator=(OpenedDb&& other) {
    Close();
    db = std::move(other.db);
    families = std::move(other.families);
    default_family = other.default_family;
    return *this;
  }
  ~OpenedDb() { Close(); }

  void Close() {
    if (db == nullptr) return;
    for (auto& [name, cf] : families) db->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
    if (default_family != nullptr) {
      db->DestroyColumnFamilyHandle(default_family).PermitUncheckedError();
    }
    families.clear();
    default_family = nullptr;
    db->Close().PermitUncheckedError();
    db.reset();
  }
};

// The options of the column family of a state: the setup's, with expired entries dropped by
// compaction when the state has a TTL.
rocksdb::ColumnFamilyOptions StateColumnFamilyOptions(const RocksDbSetup& setup, StateKind kind,
                                                      int64_t ttl_ms) {
  rocksdb::ColumnFamilyOptions out = setup.column_family;
  if (ttl_ms > 0) out.compaction_filter_factory = NewTtlCompactionFilterFactory(kind, setup.now_ms);
  return out;
}

// Opens the database in `dir` with the column families of `states` (made when missing).
absl::StatusOr<OpenedDb> OpenDb(const RocksDbSetup& setup, const std::string& dir,
                                const std::vector<SnapshotState>& states, bool read_only) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, setup.column_family}};
  for (const SnapshotState& s : states) {
    descriptors.emplace_back(s.name, StateColumnFamilyOptions(setup, s.kind, s.ttl_ms));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status opened =
      read_only ? rocksdb::DB::OpenForReadOnly(setup.db, dir, descriptors, &handles, &raw)
                : rocksdb::DB::Open(setup.db, dir, descriptors, &handles, &raw);
  SLUICE_RETURN_IF_ERROR(FromRocks(opened, absl::StrCat("open rocksdb in ", dir)));
  OpenedDb out;
  out.db.reset(raw);
  out.default_family = handles[0];
  for (size_t i = 0; i < states.size(); ++i) out.families[states[i].name] = handles[i + 1];
  return out;
}

// Writes the entries of `states` in `db` as of `snapshot` in the canonical format: savepoints.
absl::StatusOr<std::string> CanonicalSnapshot(
    rocksdb::DB* db, const absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*>& cfs,
    const rocksdb::Snapshot* snapshot, const BackendSnapshot& described, int64_t now_ms) {
  std::string scratch;
  SnapshotHeader header;
  header.max_parallelism = described.max_parallelism;
  header.key_groups = described.key_groups;
  header.states = described.states;
  SnapshotWriter writer(header);
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  read.fill_cache = false;
  for (uint32_t i = 0; i < header.states.size(); ++i) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, cfs.at(header.states[i].name)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view key(it->key().data(), it->key().size());
      EntryKey k;
      if (!DecodeKey(key, &k)) {
        return absl::DataLossError(absl::StrCat("state '", header.states[i].name, "': a key of ",
                                                key.size(),
                                                " bytes does not decode (corrupt state)"));
      }
      k.key_group = (uint32_t{static_cast<uint8_t>(key[0])} << 8) | static_cast<uint8_t>(key[1]);
      const std::optional<std::string_view> live =
          SnapshotValue(header.states[i].kind, header.states[i].ttl_ms,
                        std::string_view(it->value().data(), it->value().size()), now_ms, &scratch);
      if (live.has_value())
        writer.Add(SnapshotEntry{i, k.key_group, k.key, k.ns, k.user_key, *live});
    }
    SLUICE_RETURN_IF_ERROR(FromRocks(it->status(), "snapshot iteration"));
  }
  return std::move(writer).Finish();
}

class RocksDbBackend;

// The asynchronous part of a rocksdb snapshot; see RocksDbBackend::TakeSnapshot.
class RocksDbPendingSnapshot final : public PendingSnapshot {
 public:
  RocksDbPendingSnapshot(RocksDbBackend* backend, BackendSnapshot described, bool savepoint,
                         rocksdb::SequenceNumber barrier, const rocksdb::Snapshot* snapshot)
      : backend_(backend),
        described_(std::move(described)),
        savepoint_(savepoint),
        barrier_(barrier),
        snapshot_(snapshot) {}
  ~RocksDbPendingSnapshot() override;

  absl::StatusOr<BackendSnapshot> Write(CheckpointStorage& storage) override;

 private:
  // The files of the checkpoint into the local directory; false when they hold writes made
  // after the barrier, which can happen only when those filled a whole memtable meanwhile.
  absl::StatusOr<bool> CaptureFiles(const std::filesystem::path& local);
  absl::StatusOr<BackendSnapshot> Upload(CheckpointStorage& storage,
                                         const std::filesystem::path& local);
  absl::StatusOr<BackendSnapshot> WriteFull(CheckpointStorage& storage);

  RocksDbBackend* const backend_;
  BackendSnapshot described_;
  const bool savepoint_;
  const rocksdb::SequenceNumber barrier_;
  const rocksdb::Snapshot* snapshot_;  // savepoints only
  std::vector<std::string> captured_;  // local file names, SSTs first
};

class RocksDbBackend final : public KeyedStateBackend {
 public:
  RocksDbBackend(KeyedStateBackendOptions options, RocksDbSetup setup, OpenedDb db)
      : KeyedStateBackend(std::move(options)),
        setup_(std::move(setup)),
        db_(std::move(db)),
        local_(this->options().local_directory),
        instance_(absl::StrFormat("%016x", absl::Uniform<uint64_t>(absl::BitGen()))) {}

  rocksdb::DB* db() { return db_.db.get(); }
  const RocksDbSetup& setup() const { return setup_; }
  const std::filesystem::path& local_directory() const { return local_; }
  const absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*>& families() const {
    return db_.families;
  }

  // The shared handle of SST `local_name` when storage holds it already.
  std::optional<StateHandle> Uploaded(const std::string& local_name) {
    MutexLock lock(&mu_);
    auto it = uploaded_.find(local_name);
    if (it == uploaded_.end()) return std::nullopt;
    return it->second;
  }
  void AddUploaded(const std::string& local_name, const StateHandle& handle) {
    MutexLock lock(&mu_);
    uploaded_.insert_or_assign(local_name, handle);
  }
  std::string SharedName(const std::string& owner, const std::string& local_name) const {
    return absl::StrCat("shared/", owner, "/", instance_, "-", local_name);
  }

 protected:
  absl::StatusOr<std::unique_ptr<StateTable>> CreateTable(const StateDescriptor& d) override {
    auto it = db_.families.find(d.name);
    if (it == db_.families.end()) {
      rocksdb::ColumnFamilyHandle* cf = nullptr;
      SLUICE_RETURN_IF_ERROR(
          FromRocks(db()->CreateColumnFamily(
                        StateColumnFamilyOptions(setup_, d.kind, absl::ToInt64Milliseconds(d.ttl)),
                        d.name, &cf),
                    absl::StrCat("state '", d.name, "': create column family")));
      it = db_.families.emplace(d.name, cf).first;
    }
    return std::make_unique<RocksDbStateTable>(db(), it->second, d.name, d.kind == StateKind::kMap);
  }

  // The synchronous part. A checkpoint switches the memtable of every state (their flush is
  // scheduled, not waited for), so that every write before the barrier is in files that the
  // asynchronous part links once they are flushed. A savepoint pins a RocksDB snapshot, which
  // the asynchronous part reads. (Checkpoints pin none: releasing one makes RocksDB rewrite the
  // newest files to clear their sequence numbers, and each rewrite is a file to upload again.)
  absl::StatusOr<std::unique_ptr<PendingSnapshot>> TakeSnapshot(
      const SnapshotOptions& options) override {
    BackendSnapshot described;
    described.owner = options.owner;
    described.format =
        options.savepoint ? SnapshotFormat::kFull : SnapshotFormat::kRocksDbIncremental;
    described.checkpoint_id = options.checkpoint_id;
    described.max_parallelism = this->options().max_parallelism;
    described.key_groups = this->options().key_groups;
    described.states = DeclaredStates();
    if (!options.savepoint && !db_.families.empty()) {
      rocksdb::FlushOptions flush;
      flush.wait = false;
      flush.allow_write_stall = true;
      std::vector<rocksdb::ColumnFamilyHandle*> families;
      for (const auto& [name, cf] : db_.families) families.push_back(cf);
      // While writes are stopped (flushes behind), the switch waits for them to resume.
      rocksdb::Status switched = db()->Flush(flush, families);
      for (int retry = 0; switched.IsTryAgain() && retry < 10'000; ++retry) {
        absl::SleepFor(absl::Milliseconds(1));
        switched = db()->Flush(flush, families);
      }
      SLUICE_RETURN_IF_ERROR(FromRocks(switched, "switch memtables"));
    }
    const rocksdb::SequenceNumber barrier = db()->GetLatestSequenceNumber();
    return std::make_unique<RocksDbPendingSnapshot>(
        this, std::move(described), options.savepoint, barrier,
        options.savepoint ? db()->GetSnapshot() : nullptr);
  }

  absl::StatusOr<std::vector<std::unique_ptr<StateTable>>> PinTables(
      const std::vector<SnapshotState>& states, const std::vector<StateTable*>& /*live*/,
      bool follow, std::shared_ptr<void>* pin) override {
    rocksdb::DB* db = this->db();
    const rocksdb::Snapshot* snapshot = follow ? nullptr : db->GetSnapshot();
    if (snapshot != nullptr)
      *pin = std::shared_ptr<void>(const_cast<rocksdb::Snapshot*>(snapshot), [db](void* s) {
        db->ReleaseSnapshot(static_cast<const rocksdb::Snapshot*>(s));
      });
    std::vector<std::unique_ptr<StateTable>> out;
    for (const SnapshotState& s : states) {
      out.push_back(std::make_unique<RocksDbStateTable>(db, db_.families.at(s.name), s.name,
                                                        s.kind == StateKind::kMap, snapshot));
    }
    return out;
  }

  absl::Status Compact() override {
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    for (const auto& [name, cf] : db_.families) {
      SLUICE_RETURN_IF_ERROR(FromRocks(db()->CompactRange(compact, cf, nullptr, nullptr),
                                       absl::StrCat("state '", name, "': compact")));
    }
    return absl::OkStatus();
  }

  void CheckpointComplete(uint64_t checkpoint_id) override {
    // The local copy of the newest completed checkpoint stays, for local recovery.
    std::error_code ec;
    for (std::filesystem::directory_iterator it(local_, ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      uint64_t id = 0;
      if (absl::StartsWith(name, "chk-") && absl::SimpleAtoi(name.substr(4), &id) &&
          id < checkpoint_id) {
        std::error_code ignored;
        std::filesystem::remove_all(it->path(), ignored);
      }
    }
  }

  absl::Status RestoreSnapshots(const std::vector<BackendSnapshot>& snapshots,
                                CheckpointStorage& storage) override;

 private:
  // The local copy of checkpoint `snapshot` when it is there whole.
  std::optional<std::filesystem::path> LocalCopy(const BackendSnapshot& snapshot) const;
  // Reopens the database from the files of `base` (locally or from storage).
  absl::Status RestoreBase(const BackendSnapshot& base, CheckpointStorage& storage);
  // Adds the entries of `other` in this backend's key groups through SST ingestion.
  absl::Status IngestFrom(const BackendSnapshot& other, CheckpointStorage& storage);

  const RocksDbSetup setup_;
  OpenedDb db_;
  const std::filesystem::path local_;
  const std::string instance_;  // in the names of the SSTs this instance uploads
  Mutex mu_;
  // Local SST name -> its handle in storage, for every SST uploaded or restored.
  absl::flat_hash_map<std::string, StateHandle> uploaded_ ABSL_GUARDED_BY(mu_);
};

RocksDbPendingSnapshot::~RocksDbPendingSnapshot() {
  if (snapshot_ != nullptr) backend_->db()->ReleaseSnapshot(snapshot_);
}

absl::StatusOr<BackendSnapshot> RocksDbPendingSnapshot::Write(CheckpointStorage& storage) {
  if (savepoint_) return WriteFull(storage);
  const std::filesystem::path local =
      backend_->local_directory() / CheckpointDirectory(described_.checkpoint_id);
  absl::StatusOr<bool> captured = CaptureFiles(local);
  absl::StatusOr<BackendSnapshot> out =
      !captured.ok() ? captured.status()
      : *captured
          ? Upload(storage, local)
          : absl::AbortedError(absl::StrCat(
                "checkpoint ", described_.checkpoint_id, " of '", described_.owner,
                "' declined: writes made after its barrier filled a memtable and were flushed "
                "before its files were captured (the next checkpoint starts afresh)"));
  if (!out.ok()) {
    std::error_code ignored;
    std::filesystem::remove_all(local, ignored);
  }
  return out;
}

absl::StatusOr<bool> RocksDbPendingSnapshot::CaptureFiles(const std::filesystem::path& local) {
  rocksdb::DB* db = backend_->db();
  // Wait for the memtables switched at the barrier to reach files.
  const absl::Time deadline = absl::Now() + absl::Minutes(5);
  for (bool flushed = false; !flushed;) {
    flushed = true;
    for (const auto& [name, cf] : backend_->families()) {
      uint64_t immutable = 0;
      if (db->GetIntProperty(cf, "rocksdb.num-immutable-mem-table", &immutable) && immutable > 0) {
        flushed = false;
      }
    }
    if (flushed) break;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("checkpoint: memtables not flushed within 5 minutes");
    }
    absl::SleepFor(absl::Microseconds(200));
  }
  SLUICE_RETURN_IF_ERROR(ResetDirectory(local));
  SLUICE_RETURN_IF_ERROR(FromRocks(db->DisableFileDeletions(), "disable file deletions"));
  absl::Cleanup enable = [db] { db->EnableFileDeletions(/*force=*/false).PermitUncheckedError(); };
  std::vector<rocksdb::LiveFileMetaData> tables;
  db->GetLiveFilesMetaData(&tables);
  absl::flat_hash_map<std::string, rocksdb::SequenceNumber> largest;
  for (const rocksdb::LiveFileMetaData& t : tables) largest[t.relative_filename] = t.largest_seqno;
  rocksdb::LiveFilesStorageInfoOptions info_options;
  info_options.wal_size_for_flush = std::numeric_limits<uint64_t>::max();  // never flush here
  std::vector<rocksdb::LiveFileStorageInfo> files;
  SLUICE_RETURN_IF_ERROR(
      FromRocks(db->GetLiveFilesStorageInfo(info_options, &files), "list live files"));
  // Tables flushed after the barrier (a later memtable filled up meanwhile) would bring newer
  // writes into the checkpoint.
  for (const rocksdb::LiveFileStorageInfo& f : files) {
    if (f.file_type != rocksdb::kTableFile) continue;
    auto it = largest.find(f.relative_filename);
    if (it == largest.end() || it->second > barrier_) return false;
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    return (a.file_type == rocksdb::kTableFile) > (b.file_type == rocksdb::kTableFile);
  });
  for (const rocksdb::LiveFileStorageInfo& f : files) {
    const std::filesystem::path from = std::filesystem::path(f.directory) / f.relative_filename;
    const std::filesystem::path to = local / f.relative_filename;
    if (!f.replacement_contents.empty()) {
      SLUICE_RETURN_IF_ERROR(WriteLocalFile(to, f.replacement_contents));
    } else if (f.trim_to_size) {
      SLUICE_RETURN_IF_ERROR(CopyPrefix(from, to, f.size));
    } else {
      SLUICE_RETURN_IF_ERROR(LinkOrCopy(from, to));
    }
    captured_.push_back(f.relative_filename);
  }
  SLUICE_RETURN_IF_ERROR(WriteLocalFile(local / kLocalComplete, ""));
  return true;
}

absl::StatusOr<BackendSnapshot> RocksDbPendingSnapshot::Upload(CheckpointStorage& storage,
                                                               const std::filesystem::path& local) {
  BackendSnapshot out = described_;
  const std::string own = absl::StrCat(CheckpointDirectory(out.checkpoint_id), "/", out.owner);
  for (const std::string& name : captured_) {
    const bool table = absl::EndsWith(name, ".sst");
    std::optional<StateHandle> handle = table ? backend_->Uploaded(name) : std::nullopt;
    if (!handle.has_value()) {
      const std::string stored =
          table ? backend_->SharedName(out.owner, name) : absl::StrCat(own, "/", name);
      SLUICE_ASSIGN_OR_RETURN(handle, storage.Upload(stored, (local / name).string()));
      if (table) backend_->AddUploaded(name, *handle);
    }
    out.files.push_back(SnapshotFile{name, *std::move(handle), table});
  }
  return out;
}

absl::StatusOr<BackendSnapshot> RocksDbPendingSnapshot::WriteFull(CheckpointStorage& storage) {
  SLUICE_ASSIGN_OR_RETURN(const std::string bytes,
                          CanonicalSnapshot(backend_->db(), backend_->families(), snapshot_,
                                            described_, backend_->options().clock_ms()));
  BackendSnapshot out = described_;
  out.format = SnapshotFormat::kFull;
  const std::string name =
      absl::StrCat(CheckpointDirectory(out.checkpoint_id), "/", out.owner, "/full.snapshot");
  SLUICE_ASSIGN_OR_RETURN(StateHandle handle, storage.Write(name, bytes));
  out.files = {SnapshotFile{"full.snapshot", std::move(handle), false}};
  return out;
}

std::optional<std::filesystem::path> RocksDbBackend::LocalCopy(
    const BackendSnapshot& snapshot) const {
  const std::filesystem::path dir = local_ / CheckpointDirectory(snapshot.checkpoint_id);
  std::error_code ec;
  if (!std::filesystem::exists(dir / kLocalComplete, ec)) return std::nullopt;
  for (const SnapshotFile& f : snapshot.files) {
    if (std::filesystem::file_size(dir / f.local_name, ec) != f.handle.size || ec) {
      return std::nullopt;
    }
  }
  return dir;
}

absl::Status RocksDbBackend::RestoreBase(const BackendSnapshot& base, CheckpointStorage& storage) {
  const std::string dir = options().directory;
  db_.Close();
  SLUICE_RETURN_IF_ERROR(ResetDirectory(dir));
  std::optional<std::filesystem::path> local;
  if (base.key_groups == options().key_groups) local = LocalCopy(base);
  if (local.has_value()) {
    for (const SnapshotFile& f : base.files) {
      SLUICE_RETURN_IF_ERROR(
          LinkOrCopy(*local / f.local_name, std::filesystem::path(dir) / f.local_name));
    }
    mutable_restore_stats().from_local_copy = true;
  } else {
    SLUICE_RETURN_IF_ERROR(Download(base, storage, dir));
    mutable_restore_stats().bytes_downloaded += base.TotalBytes();
  }
  SLUICE_ASSIGN_OR_RETURN(db_, OpenDb(setup_, dir, base.states, /*read_only=*/false));
  {
    MutexLock lock(&mu_);
    for (const SnapshotFile& f : base.files) {
      if (f.shared) uploaded_.insert_or_assign(f.local_name, f.handle);
    }
  }
  // Delete the key groups that are not this backend's.
  const KeyGroupRange mine = options().key_groups;
  for (const auto& [name, cf] : db_.families) {
    if (mine.first > 0) {
      SLUICE_RETURN_IF_ERROR(FromRocks(
          db()->DeleteRange(setup_.write, cf, KeyGroupPrefix(0), KeyGroupPrefix(mine.first)),
          absl::StrCat("state '", name, "': delete foreign key groups")));
    }
    if (mine.end() < options().max_parallelism) {
      SLUICE_RETURN_IF_ERROR(
          FromRocks(db()->DeleteRange(setup_.write, cf, KeyGroupPrefix(mine.end()),
                                      KeyGroupPrefix(options().max_parallelism)),
                    absl::StrCat("state '", name, "': delete foreign key groups")));
    }
  }
  return absl::OkStatus();
}

absl::Status RocksDbBackend::IngestFrom(const BackendSnapshot& other, CheckpointStorage& storage) {
  const std::filesystem::path scratch =
      std::filesystem::path(options().directory + "-restore") / other.owner;
  SLUICE_RETURN_IF_ERROR(ResetDirectory(scratch));
  absl::Cleanup remove = [&scratch] {
    std::error_code ignored;
    std::filesystem::remove_all(scratch.parent_path(), ignored);
  };
  SLUICE_RETURN_IF_ERROR(Download(other, storage, scratch));
  mutable_restore_stats().bytes_downloaded += other.TotalBytes();
  SLUICE_ASSIGN_OR_RETURN(OpenedDb source,
                          OpenDb(setup_, scratch.string(), other.states, /*read_only=*/true));
  const KeyGroupRange wanted = other.key_groups.Intersect(options().key_groups);
  rocksdb::ReadOptions read;
  read.fill_cache = false;
  for (const SnapshotState& state : other.states) {
    SLUICE_RETURN_IF_ERROR(DeclareStates({state}));
    const std::string sst = (scratch / absl::StrCat(state.name, ".ingest.sst")).string();
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(),
                                  rocksdb::Options(setup_.db, setup_.column_family));
    SLUICE_RETURN_IF_ERROR(FromRocks(writer.Open(sst), absl::StrCat("create ", sst)));
    std::unique_ptr<rocksdb::Iterator> it(
        source.db->NewIterator(read, source.families.at(state.name)));
    const std::string end = KeyGroupPrefix(wanted.end());
    uint64_t entries = 0;
    for (it->Seek(KeyGroupPrefix(wanted.first)); it->Valid() && it->key().compare(end) < 0;
         it->Next()) {
      SLUICE_RETURN_IF_ERROR(FromRocks(writer.Put(it->key(), it->value()),
                                       absl::StrCat("state '", state.name, "': write ", sst)));
      ++entries;
    }
    SLUICE_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("read ", other.owner)));
    mutable_restore_stats().entries_ingested += entries;
    if (entries == 0) continue;
    SLUICE_RETURN_IF_ERROR(FromRocks(writer.Finish(), absl::StrCat("finish ", sst)));
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;
    SLUICE_RETURN_IF_ERROR(
        FromRocks(db()->IngestExternalFile(db_.families.at(state.name), {sst}, ingest),
                  absl::StrCat("state '", state.name, "': ingest ", sst)));
  }
  return absl::OkStatus();
}

absl::Status RocksDbBackend::RestoreSnapshots(const std::vector<BackendSnapshot>& snapshots,
                                              CheckpointStorage& storage) {
  // The incremental snapshot sharing the most key groups becomes the database; the entries of
  // the others in this backend's key groups are added to it.
  const BackendSnapshot* base = nullptr;
  for (const BackendSnapshot& s : snapshots) {
    if (s.format != SnapshotFormat::kRocksDbIncremental) continue;
    if (base == nullptr || s.key_groups.Intersect(options().key_groups).count >
                               base->key_groups.Intersect(options().key_groups).count) {
      base = &s;
    }
  }
  if (base != nullptr) {
    SLUICE_RETURN_IF_ERROR(RestoreBase(*base, storage));
    SLUICE_RETURN_IF_ERROR(DeclareStates(base->states));
  }
  for (const BackendSnapshot& s : snapshots) {
    if (&s == base) continue;
    if (s.format == SnapshotFormat::kFull) {
      SLUICE_RETURN_IF_ERROR(KeyedStateBackend::RestoreSnapshots({s}, storage));
    } else {
      SLUICE_RETURN_IF_ERROR(IngestFrom(s, storage));
    }
  }
  return absl::OkStatus();
}

}  // namespace

RocksDbSetup RocksDbSetupFor(const KeyedStateBackendOptions& options) {
  RocksDbSetup setup;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Point reads (state access, queries) find their key in a data block by a hash probe rather
  // than a binary search; range reads still use the binary index. About 5% more block space.
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  table.data_block_hash_table_util_ratio = 0.75;
  setup.column_family.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  setup.column_family.merge_operator = std::make_shared<AppendOperator>();
  setup.column_family.write_buffer_size = options.write_buffer_bytes;
  if (options.row_cache_bytes > 0)
    setup.db.row_cache = rocksdb::NewLRUCache(options.row_cache_bytes);
  setup.db.create_if_missing = true;
  setup.db.create_missing_column_families = true;
  setup.write.disableWAL = true;
  setup.now_ms = options.clock_ms;
  return setup;
}

absl::StatusOr<std::unique_ptr<KeyedStateBackend>> NewRocksDbBackend(
    KeyedStateBackendOptions options) {
  if (options.directory.empty()) {
    return absl::InvalidArgumentError("the rocksdb state backend needs a directory");
  }
  std::error_code ec;
  std::filesystem::create_directories(options.directory, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create state directory ", options.directory, ": ", ec.message()));
  }
  const RocksDbSetup setup = RocksDbSetupFor(options);
  const rocksdb::DBOptions& db_options = setup.db;
  const rocksdb::ColumnFamilyOptions& cf_options = setup.column_family;
  // The state of a fresh backend starts empty: what a previous run left is restored from a
  // checkpoint, not found lying in the directory.
  rocksdb::Options destroy_options(db_options, cf_options);
  SLUICE_RETURN_IF_ERROR(FromRocks(rocksdb::DestroyDB(options.directory, destroy_options),
                                   absl::StrCat("clear state directory ", options.directory)));
  SLUICE_ASSIGN_OR_RETURN(OpenedDb db, OpenDb(setup, options.directory, {}, false));
  if (options.local_directory.empty()) options.local_directory = options.directory + "-local";
  return std::unique_ptr<KeyedStateBackend>(
      new RocksDbBackend(std::move(options), setup, std::move(db)));
}

}  // namespace sluice::statestore_internal
