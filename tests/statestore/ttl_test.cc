// TTL expiry at compaction: the verdict on stored bytes of every kind of state, and the
// compaction filter in a real RocksDB (state written directly, and state written by the backend's
// own handles).
#include "statestore/internal/ttl.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/table_properties.h"
#include "statestore/internal/rocksdb_backend.h"
#include "statestore/keyed_state_backend.h"

namespace sluice::statestore_internal {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

void AppendLittleEndian(uint64_t value, size_t size, std::string* out) {
  for (size_t i = 0; i < size; ++i) out->push_back(static_cast<char>(value >> (8 * i)));
}

// A value as state with a TTL stores it (state_impl.h).
std::string WithExpiry(int64_t expiry, std::string_view value) {
  std::string out;
  AppendLittleEndian(static_cast<uint64_t>(expiry), 8, &out);
  out.append(value);
  return out;
}

// One list element as state with a TTL stores it: [length][expiry][bytes].
std::string Element(int64_t expiry, std::string_view bytes) {
  std::string out;
  AppendLittleEndian(bytes.size(), 4, &out);
  AppendLittleEndian(static_cast<uint64_t>(expiry), 8, &out);
  out.append(bytes);
  return out;
}

constexpr StateKind kSingleValueKinds[] = {StateKind::kValue, StateKind::kMap, StateKind::kReducing,
                                           StateKind::kAggregating};

TEST(FilterExpiredTest, SingleValuesGoAtTheirExpiry) {
  for (StateKind kind : kSingleValueKinds) {
    SCOPED_TRACE(StateKindName(kind));
    std::string rewritten = "untouched";
    EXPECT_EQ(FilterExpired(kind, WithExpiry(999, "v"), 1000, &rewritten), TtlVerdict::kRemove);
    // At the expiry reads treat it as gone already (state_impl.cc), so compaction does too.
    EXPECT_EQ(FilterExpired(kind, WithExpiry(1000, "v"), 1000, &rewritten), TtlVerdict::kRemove);
    EXPECT_EQ(FilterExpired(kind, WithExpiry(1001, "v"), 1000, &rewritten), TtlVerdict::kKeep);
    EXPECT_EQ(FilterExpired(kind, WithExpiry(1001, ""), 1000, &rewritten), TtlVerdict::kKeep);
    EXPECT_EQ(FilterExpired(kind, WithExpiry(5, ""), 1000, &rewritten), TtlVerdict::kRemove);
    // The expiry is little-endian: 0x0100 is 256, not 1.
    EXPECT_EQ(FilterExpired(kind, WithExpiry(256, "v"), 200, &rewritten), TtlVerdict::kKeep);
    EXPECT_EQ(FilterExpired(kind, WithExpiry(-1, "v"), 0, &rewritten), TtlVerdict::kRemove);
    EXPECT_EQ(rewritten, "untouched");
  }
}

TEST(FilterExpiredTest, MalformedSingleValuesAreKept) {
  for (StateKind kind : kSingleValueKinds) {
    SCOPED_TRACE(StateKindName(kind));
    std::string rewritten;
    EXPECT_EQ(FilterExpired(kind, "", 1000, &rewritten), TtlVerdict::kKeep);
    EXPECT_EQ(FilterExpired(kind, std::string(7, '\0'), 1000, &rewritten), TtlVerdict::kKeep);
  }
}

TEST(FilterExpiredTest, ListsLoseTheirExpiredElements) {
  std::string rewritten;
  const std::string live = Element(2000, "b") + Element(3000, "") + Element(1500, "dd");
  EXPECT_EQ(FilterExpired(StateKind::kList, live, 1000, &rewritten), TtlVerdict::kKeep);

  const std::string dead = Element(10, "a") + Element(1000, "bb");
  EXPECT_EQ(FilterExpired(StateKind::kList, dead, 1000, &rewritten), TtlVerdict::kRemove);
  EXPECT_EQ(FilterExpired(StateKind::kList, Element(999, std::string(300, 'x')), 1000, &rewritten),
            TtlVerdict::kRemove);

  // Live elements keep their order, bytes and own expiry times.
  const std::string mixed = Element(500, "a") + Element(2000, "b") + Element(1000, "c") +
                            Element(3000, std::string("\0\xff", 2)) + Element(999, "e");
  ASSERT_EQ(FilterExpired(StateKind::kList, mixed, 1000, &rewritten), TtlVerdict::kRewrite);
  EXPECT_EQ(rewritten, Element(2000, "b") + Element(3000, std::string("\0\xff", 2)));

  // A long element whose length needs every byte of the length field.
  const std::string big(70000, 'z');
  ASSERT_EQ(FilterExpired(StateKind::kList, Element(1, "a") + Element(5000, big), 1000, &rewritten),
            TtlVerdict::kRewrite);
  EXPECT_EQ(rewritten, Element(5000, big));

  // An empty list is nothing to drop.
  EXPECT_EQ(FilterExpired(StateKind::kList, "", 1000, &rewritten), TtlVerdict::kKeep);
}

TEST(FilterExpiredTest, MalformedListsAreKeptWhole) {
  std::string rewritten = "untouched";
  const std::string expired = Element(1, "gone");
  // An element header cut short, after an expired element.
  EXPECT_EQ(FilterExpired(StateKind::kList, expired + std::string(11, '\0'), 1000, &rewritten),
            TtlVerdict::kKeep);
  // A length that runs past the end.
  std::string overlong = Element(1, "abc");
  overlong.pop_back();
  EXPECT_EQ(FilterExpired(StateKind::kList, expired + overlong, 1000, &rewritten),
            TtlVerdict::kKeep);
  std::string huge;
  AppendLittleEndian(0xffffffff, 4, &huge);
  AppendLittleEndian(1, 8, &huge);
  EXPECT_EQ(FilterExpired(StateKind::kList, expired + huge + "x", 1000, &rewritten),
            TtlVerdict::kKeep);
  // Damage after live elements too.
  EXPECT_EQ(
      FilterExpired(StateKind::kList, Element(5000, "a") + expired + "\x01", 1000, &rewritten),
      TtlVerdict::kKeep);
  EXPECT_EQ(rewritten, "untouched");
}

TEST(TtlCompactionFilterTest, ListAppendsAreFilteredLikeLists) {
  auto factory = NewTtlCompactionFilterFactory(StateKind::kList, [] { return int64_t{1000}; });
  EXPECT_STREQ(factory->Name(), "sluice.ttl");
  rocksdb::CompactionFilter::Context context{};
  context.reason = rocksdb::TableFileCreationReason::kCompaction;
  std::unique_ptr<rocksdb::CompactionFilter> filter = factory->CreateCompactionFilter(context);
  EXPECT_STREQ(filter->Name(), "sluice.ttl");
  const std::string expired = Element(1, "a");
  std::string new_value;
  std::string skip_until;
  EXPECT_EQ(filter->FilterV2(1, "k", rocksdb::CompactionFilter::ValueType::kMergeOperand, expired,
                             &new_value, &skip_until),
            rocksdb::CompactionFilter::Decision::kRemove);
  EXPECT_EQ(filter->FilterV2(1, "k", rocksdb::CompactionFilter::ValueType::kMergeOperand,
                             expired + Element(2000, "b"), &new_value, &skip_until),
            rocksdb::CompactionFilter::Decision::kChangeValue);
  EXPECT_EQ(new_value, Element(2000, "b"));
  EXPECT_EQ(filter->FilterV2(1, "k", rocksdb::CompactionFilter::ValueType::kValue, expired,
                             &new_value, &skip_until),
            rocksdb::CompactionFilter::Decision::kRemove);
  EXPECT_EQ(filter->FilterV2(1, "k", rocksdb::CompactionFilter::ValueType::kValue,
                             expired + Element(2000, "b"), &new_value, &skip_until),
            rocksdb::CompactionFilter::Decision::kChangeValue);
  EXPECT_EQ(new_value, Element(2000, "b"));
}

// A RocksDB in a temporary directory, one column family per kind of state, each compacted through
// the TTL filter with a clock the test moves.
class TtlCompactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = absl::StrCat(testing::TempDir(), "/ttl_", getpid(), "_",
                              testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory_);
  }
  void TearDown() override {
    Close();
    std::filesystem::remove_all(directory_);
  }

  // Opens the database at directory_ with every column family in `kinds` (by name) filtered for
  // its kind; the append merge operator is the backend's.
  void Open(const std::map<std::string, StateKind>& kinds) {
    const RocksDbSetup setup = RocksDbSetupFor(KeyedStateBackendOptions{});
    rocksdb::DBOptions db_options = setup.db;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, setup.column_family}};
    for (const auto& [name, kind] : kinds) {
      rocksdb::ColumnFamilyOptions cf = setup.column_family;
      cf.compaction_filter_factory =
          NewTtlCompactionFilterFactory(kind, [this] { return now_ms_.load(); });
      families.emplace_back(name, cf);
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(db_options, directory_, families, &handles, &db);
    ASSERT_TRUE(s.ok()) << s.ToString();
    db_.reset(db);
    for (size_t i = 0; i < families.size(); ++i) families_[families[i].name] = handles[i];
  }
  void Close() {
    if (db_ == nullptr) return;
    for (auto& [name, cf] : families_) ASSERT_TRUE(db_->DestroyColumnFamilyHandle(cf).ok());
    families_.clear();
    ASSERT_TRUE(db_->Close().ok());
    db_.reset();
  }

  void Put(const std::string& family, const std::string& key, const std::string& value) {
    ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), families_.at(family), key, value).ok());
  }
  void Merge(const std::string& family, const std::string& key, const std::string& value) {
    ASSERT_TRUE(db_->Merge(rocksdb::WriteOptions(), families_.at(family), key, value).ok());
  }
  // Flushes the memtable and compacts every file of `family`, through the filter.
  void Compact(const std::string& family) {
    rocksdb::ColumnFamilyHandle* cf = families_.at(family);
    ASSERT_TRUE(db_->Flush(rocksdb::FlushOptions(), cf).ok());
    rocksdb::CompactRangeOptions options;
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    const rocksdb::Status s = db_->CompactRange(options, cf, nullptr, nullptr);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::vector<std::pair<std::string, std::string>> Entries(const std::string& family) {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), families_.at(family)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return out;
  }
  // What the family's files physically hold: entries, and deletions among them.
  std::pair<uint64_t, uint64_t> FileEntries(const std::string& family) {
    rocksdb::TablePropertiesCollection tables;
    EXPECT_TRUE(db_->GetPropertiesOfAllTables(families_.at(family), &tables).ok());
    uint64_t entries = 0;
    uint64_t deletions = 0;
    for (const auto& [file, properties] : tables) {
      entries += properties->num_entries;
      deletions += properties->num_deletions;
    }
    return {entries, deletions};
  }

  std::atomic<int64_t> now_ms_{1000};
  std::string directory_;
  std::unique_ptr<rocksdb::DB> db_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families_;
};

TEST_F(TtlCompactionTest, ExpiredValuesAndMapEntriesLeaveTheFiles) {
  Open({{"value", StateKind::kValue}, {"map", StateKind::kMap}, {"plain", StateKind::kValue}});
  Put("value", "a", WithExpiry(1500, "first"));
  Put("value", "b", WithExpiry(2000, "second"));
  Put("value", "c", WithExpiry(3000, "third"));
  Put("value", "damaged", "abc");
  Put("map", "k/u1", WithExpiry(1500, "x"));
  Put("map", "k/u2", WithExpiry(2500, "y"));
  Put("map", "k/u3", WithExpiry(1999, "z"));

  // Nothing has expired yet: compaction keeps everything.
  Compact("value");
  EXPECT_EQ(Entries("value").size(), 4u);

  now_ms_ = 2000;
  Compact("value");
  Compact("map");
  EXPECT_THAT(Entries("value"),
              ElementsAre(Pair("c", WithExpiry(3000, "third")), Pair("damaged", "abc")));
  EXPECT_THAT(Entries("map"), ElementsAre(Pair("k/u2", WithExpiry(2500, "y"))));
  // Gone from disk, not hidden behind tombstones.
  EXPECT_EQ(FileEntries("value"), std::make_pair(uint64_t{2}, uint64_t{0}));
  EXPECT_EQ(FileEntries("map"), std::make_pair(uint64_t{1}, uint64_t{0}));

  // An overwrite with a later expiry is what counts.
  Put("value", "c", WithExpiry(9000, "renewed"));
  now_ms_ = 5000;
  Compact("value");
  EXPECT_THAT(Entries("value"),
              ElementsAre(Pair("c", WithExpiry(9000, "renewed")), Pair("damaged", "abc")));
  EXPECT_EQ(FileEntries("value"), std::make_pair(uint64_t{2}, uint64_t{0}));
}

TEST_F(TtlCompactionTest, ListsAreRewrittenWithoutTheirExpiredElements) {
  Open({{"list", StateKind::kList}});
  Put("list", "mixed",
      Element(1500, "a") + Element(3000, "b") + Element(1800, "c") + Element(4000, "d"));
  Put("list", "dead", Element(1500, "a") + Element(1999, "b"));
  Put("list", "live", Element(3000, "a"));
  Put("list", "damaged", Element(1500, "a") + "xy");
  // Appends are merge operands, filtered like lists.
  Merge("list", "appended", Element(1500, "old"));
  Merge("list", "appended", Element(5000, "new"));

  now_ms_ = 2000;
  Compact("list");
  Compact("list");
  EXPECT_THAT(Entries("list"), ElementsAre(Pair("appended", Element(5000, "new")),
                                           Pair("damaged", Element(1500, "a") + "xy"),
                                           Pair("live", Element(3000, "a")),
                                           Pair("mixed", Element(3000, "b") + Element(4000, "d"))));
  EXPECT_EQ(FileEntries("list"), std::make_pair(uint64_t{4}, uint64_t{0}));

  // An append to a list that compaction shortened goes after what is left.
  Merge("list", "mixed", Element(6000, "e"));
  now_ms_ = 3500;
  Compact("list");
  Compact("list");
  for (const auto& [key, value] : Entries("list")) {
    if (key == "mixed") {
      EXPECT_EQ(value, Element(4000, "d") + Element(6000, "e"));
    }
    EXPECT_NE(key, "live");
  }
}

// The filter against bytes the state handles themselves wrote: the rocksdb backend's database,
// reopened with the filter installed once the backend is gone (closing it flushes its memtables,
// since it writes without a log).
TEST_F(TtlCompactionTest, StateWrittenByTheHandlesExpiresAtCompaction) {
  {
    KeyedStateBackendOptions o;
    o.kind = "rocksdb";
    o.directory = directory_;
    o.clock_ms = [this] { return now_ms_.load(); };
    o.block_cache_bytes = 8 << 20;
    absl::StatusOr<std::unique_ptr<KeyedStateBackend>> b = KeyedStateBackend::Create(o);
    ASSERT_TRUE(b.ok()) << b.status();
    KeyedStateBackend& backend = **b;
    auto with_ttl = [](StateDescriptor d) {
      d.ttl = absl::Milliseconds(100);
      return d;
    };
    ValueState* value = *backend.GetValueState(with_ttl(StateDescriptor::Value("value")));
    ListState* list = *backend.GetListState(with_ttl(StateDescriptor::List("list")));
    MapState* map = *backend.GetMapState(with_ttl(StateDescriptor::Map("map")));
    ReducingState* reducing = *backend.GetReducingState(
        with_ttl(StateDescriptor::Reducing("reducing", [](std::string_view x, std::string_view y) {
          return std::string(x) + std::string(y);
        })));

    now_ms_ = 1000;
    ASSERT_TRUE(backend.SetCurrentKey("early").ok());
    ASSERT_TRUE(value->Update("v1").ok());
    ASSERT_TRUE(list->Add("e1").ok());
    ASSERT_TRUE(map->Put("u1", "m1").ok());
    ASSERT_TRUE(reducing->Add("r1").ok());
    ASSERT_TRUE(backend.SetCurrentKey("mixed").ok());
    ASSERT_TRUE(list->Update({"m1", "m2"}).ok());
    now_ms_ = 1050;
    ASSERT_TRUE(list->Add("m3").ok());
    ASSERT_TRUE(backend.SetCurrentKey("late").ok());
    ASSERT_TRUE(value->Update("v2").ok());
    ASSERT_TRUE(list->Add("e2").ok());
    ASSERT_TRUE(map->Put("u2", "m2").ok());
    ASSERT_TRUE(reducing->Add("r2").ok());
  }
  Open({{"value", StateKind::kValue},
        {"list", StateKind::kList},
        {"map", StateKind::kMap},
        {"reducing", StateKind::kReducing}});
  ASSERT_EQ(Entries("list").size(), 3u);

  // Written at 1000 with a TTL of 100: gone at 1100; written at 1050: there until 1150.
  now_ms_ = 1100;
  auto values = [this](const std::string& family) {
    std::vector<std::string> out;
    for (auto& [key, value] : Entries(family)) out.push_back(std::move(value));
    return out;
  };
  for (const char* family : {"value", "list", "map", "reducing"}) {
    Compact(family);
    Compact(family);
  }
  EXPECT_THAT(values("value"), ElementsAre(WithExpiry(1150, "v2")));
  EXPECT_THAT(values("map"), ElementsAre(WithExpiry(1150, "m2")));
  EXPECT_THAT(values("reducing"), ElementsAre(WithExpiry(1150, "r2")));
  // The late list, and what is left of the mixed one (in key-group order).
  EXPECT_THAT(values("list"), UnorderedElementsAre(Element(1150, "e2"), Element(1150, "m3")));

  now_ms_ = 1150;
  for (const char* family : {"value", "list", "map", "reducing"}) {
    Compact(family);
    EXPECT_THAT(Entries(family), IsEmpty()) << family;
  }
}

}  // namespace
}  // namespace sluice::statestore_internal
