#include "statestore/internal/rocksdb_backend.h"

#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "statestore/internal/state_table.h"

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
  RocksDbStateTable(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, std::string name, bool map)
      : db_(db), cf_(cf), name_(std::move(name)), map_(map) {
    write_.disableWAL = true;
  }

  absl::StatusOr<std::optional<std::string>> Get(const EntryKey& k) override {
    std::string value;
    const rocksdb::Status s = db_->Get(read_, cf_, Key(k), &value);
    if (s.IsNotFound()) return std::nullopt;
    SLUICE_RETURN_IF_ERROR(FromRocks(s, Where("get")));
    return value;
  }
  absl::Status Put(const EntryKey& k, std::string_view value) override {
    return FromRocks(db_->Put(write_, cf_, Key(k), rocksdb::Slice(value.data(), value.size())),
                     Where("put"));
  }
  absl::Status Append(const EntryKey& k, std::string_view bytes) override {
    return FromRocks(db_->Merge(write_, cf_, Key(k), rocksdb::Slice(bytes.data(), bytes.size())),
                     Where("merge"));
  }
  absl::Status Delete(const EntryKey& k) override {
    return FromRocks(db_->Delete(write_, cf_, Key(k)), Where("delete"));
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
    return FromRocks(it->status(), Where("iterate"));
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
    return FromRocks(it->status(), Where("iterate"));
  }

  absl::Status DeleteUserKeys(const EntryKey& k) override {
    const std::string prefix = EntryPrefix(k);
    const std::string end = PrefixEnd(prefix);
    return FromRocks(db_->DeleteRange(write_, cf_, prefix, end), Where("delete range"));
  }

 private:
  std::string Key(const EntryKey& k) const {
    std::string key = EntryPrefix(k);
    if (map_) key.append(k.user_key);
    return key;
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

class RocksDbBackend final : public KeyedStateBackend {
 public:
  RocksDbBackend(KeyedStateBackendOptions options, std::unique_ptr<rocksdb::DB> db,
                 rocksdb::ColumnFamilyOptions cf_options)
      : KeyedStateBackend(std::move(options)),
        db_(std::move(db)),
        cf_options_(std::move(cf_options)) {}

  ~RocksDbBackend() override {
    for (rocksdb::ColumnFamilyHandle* cf : families_) {
      db_->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
    }
    db_->Close().PermitUncheckedError();
  }

 protected:
  absl::StatusOr<std::unique_ptr<StateTable>> CreateTable(const StateDescriptor& d) override {
    rocksdb::ColumnFamilyHandle* cf = nullptr;
    SLUICE_RETURN_IF_ERROR(FromRocks(db_->CreateColumnFamily(cf_options_, d.name, &cf),
                                     absl::StrCat("state '", d.name, "': create column family")));
    families_.push_back(cf);
    return std::make_unique<RocksDbStateTable>(db_.get(), cf, d.name, d.kind == StateKind::kMap);
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyOptions cf_options_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;
};

}  // namespace

RocksDbSetup RocksDbSetupFor(const KeyedStateBackendOptions& options) {
  RocksDbSetup setup;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  setup.column_family.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  setup.column_family.merge_operator = std::make_shared<AppendOperator>();
  setup.db.create_if_missing = true;
  setup.db.create_missing_column_families = true;
  setup.write.disableWAL = true;
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
  rocksdb::DB* raw = nullptr;
  SLUICE_RETURN_IF_ERROR(FromRocks(
      rocksdb::DB::Open(rocksdb::Options(db_options, cf_options), options.directory, &raw),
      absl::StrCat("open rocksdb in ", options.directory)));
  return std::unique_ptr<KeyedStateBackend>(
      new RocksDbBackend(std::move(options), std::unique_ptr<rocksdb::DB>(raw), cf_options));
}

}  // namespace sluice::statestore_internal
