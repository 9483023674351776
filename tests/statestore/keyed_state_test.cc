// Every kind of state through the KeyedStateBackend interface, as one suite run against every
// backend kind.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/key_group.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/snapshot_format.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::SizeIs;

class KeyedStateTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<KeyedStateBackend> Make(KeyGroupRange range = {}) {
    KeyedStateBackendOptions o;
    o.kind = GetParam();
    o.key_groups = range;
    o.clock_ms = [this] { return now_ms_.load(); };
    o.directory = absl::StrCat(testing::TempDir(), "/keyed_state_", getpid(), "_", ++made_);
    directories_.push_back(o.directory);
    o.block_cache_bytes = 8 << 20;
    absl::StatusOr<std::unique_ptr<KeyedStateBackend>> b = KeyedStateBackend::Create(o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }
  void TearDown() override {
    for (const std::string& d : directories_) std::filesystem::remove_all(d);
  }

  std::atomic<int64_t> now_ms_{1'000'000};
  int made_ = 0;
  std::vector<std::string> directories_;
};

TEST_P(KeyedStateTest, ValueStateIsPerKeyAndNamespace) {
  auto b = Make();
  ValueState* v = *b->GetValueState(StateDescriptor::Value("count"));
  ASSERT_TRUE(b->SetCurrentKey("alice").ok());
  EXPECT_EQ(*v->Value(), std::nullopt);
  ASSERT_TRUE(v->Update("1").ok());
  ASSERT_TRUE(b->SetCurrentKey("bob").ok());
  ASSERT_TRUE(v->Update("2").ok());
  b->SetCurrentNamespace("window-7");
  EXPECT_EQ(*v->Value(), std::nullopt);
  ASSERT_TRUE(v->Update("3").ok());
  b->SetCurrentNamespace("");
  EXPECT_THAT(*v->Value(), Optional(std::string("2")));
  ASSERT_TRUE(b->SetCurrentKey("alice").ok());
  EXPECT_THAT(*v->Value(), Optional(std::string("1")));
  ASSERT_TRUE(v->Clear().ok());
  EXPECT_EQ(*v->Value(), std::nullopt);
  ASSERT_TRUE(b->SetCurrentKey("bob").ok());
  b->SetCurrentNamespace("window-7");
  EXPECT_THAT(*v->Value(), Optional(std::string("3")));
}

TEST_P(KeyedStateTest, KeysAndNamespacesDoNotRunIntoEachOther) {
  // ("ab", "c") and ("a", "bc") are different entries, and binary bytes are fine.
  auto b = Make();
  ValueState* v = *b->GetValueState(StateDescriptor::Value("v"));
  ASSERT_TRUE(b->SetCurrentKey("ab").ok());
  b->SetCurrentNamespace("c");
  ASSERT_TRUE(v->Update("first").ok());
  ASSERT_TRUE(b->SetCurrentKey("a").ok());
  b->SetCurrentNamespace("bc");
  EXPECT_EQ(*v->Value(), std::nullopt);
  const std::string binary("\0\xff\0", 3);
  ASSERT_TRUE(b->SetCurrentKey(binary).ok());
  b->SetCurrentNamespace(binary);
  ASSERT_TRUE(v->Update(binary).ok());
  EXPECT_THAT(*v->Value(), Optional(binary));
}

TEST_P(KeyedStateTest, ListStateAppendsGetsAndReplaces) {
  auto b = Make();
  ListState* l = *b->GetListState(StateDescriptor::List("events"));
  ASSERT_TRUE(b->SetCurrentKey("k").ok());
  EXPECT_THAT(*l->Get(), IsEmpty());
  ASSERT_TRUE(l->Add("a").ok());
  ASSERT_TRUE(l->Add("").ok());
  ASSERT_TRUE(l->Add(std::string(100'000, 'x')).ok());
  std::vector<std::string> got = *l->Get();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "a");
  EXPECT_EQ(got[1], "");
  EXPECT_EQ(got[2].size(), 100'000u);
  ASSERT_TRUE(l->Update({"x", "y"}).ok());
  EXPECT_THAT(*l->Get(), ElementsAre("x", "y"));
  ASSERT_TRUE(l->Update({}).ok());
  EXPECT_THAT(*l->Get(), IsEmpty());
  ASSERT_TRUE(l->Add("z").ok());
  ASSERT_TRUE(l->Clear().ok());
  EXPECT_THAT(*l->Get(), IsEmpty());
}

TEST_P(KeyedStateTest, MapStatePutGetRemoveContainsIterateInOrder) {
  auto b = Make();
  MapState* m = *b->GetMapState(StateDescriptor::Map("seen"));
  ASSERT_TRUE(b->SetCurrentKey("k").ok());
  ASSERT_TRUE(m->Put("b", "2").ok());
  ASSERT_TRUE(m->Put("a", "1").ok());
  ASSERT_TRUE(m->Put("", "empty user key").ok());
  ASSERT_TRUE(m->Put("c", "3").ok());
  ASSERT_TRUE(m->Put("b", "two").ok());
  EXPECT_THAT(*m->Get("b"), Optional(std::string("two")));
  EXPECT_THAT(*m->Get(""), Optional(std::string("empty user key")));
  EXPECT_TRUE(*m->Contains("a"));
  ASSERT_TRUE(m->Remove("a").ok());
  EXPECT_FALSE(*m->Contains("a"));
  std::vector<std::string> seen;
  ASSERT_TRUE(m->ForEach([&](std::string_view k, std::string_view v) {
                 seen.push_back(absl::StrCat(std::string(k), "=", std::string(v)));
                 return true;
               }).ok());
  EXPECT_THAT(seen, ElementsAre("=empty user key", "b=two", "c=3"));
  seen.clear();
  ASSERT_TRUE(m->ForEach([&](std::string_view k, std::string_view) {
                 seen.emplace_back(k);
                 return false;
               }).ok());
  EXPECT_EQ(seen.size(), 1u);
  // Another key has its own map.
  ASSERT_TRUE(b->SetCurrentKey("other").ok());
  EXPECT_FALSE(*m->Contains("b"));
  ASSERT_TRUE(b->SetCurrentKey("k").ok());
  ASSERT_TRUE(m->Clear().ok());
  EXPECT_FALSE(*m->Contains("b"));
  EXPECT_EQ(*m->Get(""), std::nullopt);
}

int64_t AsInt(std::string_view s) {
  int64_t v = 0;
  EXPECT_TRUE(absl::SimpleAtoi(std::string(s), &v)) << s;
  return v;
}

TEST_P(KeyedStateTest, ReducingStateFoldsEveryValue) {
  auto b = Make();
  ReducingState* r = *b->GetReducingState(StateDescriptor::Reducing(
      "sum",
      [](std::string_view a, std::string_view v) { return absl::StrCat(AsInt(a) + AsInt(v)); }));
  ASSERT_TRUE(b->SetCurrentKey("k").ok());
  EXPECT_EQ(*r->Get(), std::nullopt);
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(r->Add(absl::StrCat(i)).ok());
  EXPECT_THAT(*r->Get(), Optional(std::string("55")));
  ASSERT_TRUE(r->Clear().ok());
  EXPECT_EQ(*r->Get(), std::nullopt);
}

TEST_P(KeyedStateTest, AggregatingStateKeepsAnAccumulatorAndReturnsItsResult) {
  // Average: the accumulator is "sum/count", the result the integer mean.
  AggregateFunction average;
  average.create = [] { return std::string("0/0"); };
  average.add = [](std::string_view acc, std::string_view v) {
    const size_t slash = acc.find('/');
    return absl::StrCat(AsInt(acc.substr(0, slash)) + AsInt(v), "/",
                        AsInt(acc.substr(slash + 1)) + 1);
  };
  average.result = [](std::string_view acc) {
    const size_t slash = acc.find('/');
    return absl::StrCat(AsInt(acc.substr(0, slash)) / AsInt(acc.substr(slash + 1)));
  };
  auto b = Make();
  AggregatingState* a = *b->GetAggregatingState(StateDescriptor::Aggregating("avg", average));
  ASSERT_TRUE(b->SetCurrentKey("k").ok());
  EXPECT_EQ(*a->Get(), std::nullopt);
  for (int v : {10, 20, 60}) ASSERT_TRUE(a->Add(absl::StrCat(v)).ok());
  EXPECT_THAT(*a->Get(), Optional(std::string("30")));
}

TEST_P(KeyedStateTest, ExpiredValuesAreNeverReturned) {
  auto b = Make();
  StateDescriptor d = StateDescriptor::Value("session");
  d.ttl = absl::Seconds(10);
  ValueState* v = *b->GetValueState(d);
  StateDescriptor ld = StateDescriptor::List("clicks");
  ld.ttl = absl::Seconds(10);
  ListState* l = *b->GetListState(ld);
  StateDescriptor md = StateDescriptor::Map("pages");
  md.ttl = absl::Seconds(10);
  MapState* m = *b->GetMapState(md);
  ASSERT_TRUE(b->SetCurrentKey("k").ok());
  ASSERT_TRUE(v->Update("v").ok());
  ASSERT_TRUE(l->Add("old").ok());
  ASSERT_TRUE(m->Put("old", "1").ok());
  now_ms_ += 6'000;
  ASSERT_TRUE(l->Add("new").ok());
  ASSERT_TRUE(m->Put("new", "2").ok());
  EXPECT_THAT(*v->Value(), Optional(std::string("v")));
  EXPECT_THAT(*l->Get(), ElementsAre("old", "new"));
  now_ms_ += 5'000;  // 11 s after the first writes, 5 s after the second
  EXPECT_EQ(*v->Value(), std::nullopt);
  EXPECT_THAT(*l->Get(), ElementsAre("new"));
  EXPECT_FALSE(*m->Contains("old"));
  std::vector<std::string> keys;
  ASSERT_TRUE(m->ForEach([&](std::string_view k, std::string_view) {
                 keys.emplace_back(k);
                 return true;
               }).ok());
  EXPECT_THAT(keys, ElementsAre("new"));
  // Dropping the expired element did not extend the live one.
  now_ms_ += 5'000;
  EXPECT_THAT(*l->Get(), IsEmpty());
  // A write starts a new lifetime.
  ASSERT_TRUE(v->Update("again").ok());
  EXPECT_THAT(*v->Value(), Optional(std::string("again")));
}

// Expired entries leave the state without being read: on heap when a snapshot is taken, on
// rocksdb when compaction meets them. A backend restored from the checkpoint with the clock
// turned back does not have them, so they are gone, not just hidden.
TEST_P(KeyedStateTest, ExpiredEntriesAreCleanedWithoutBeingRead) {
  auto b = Make();
  StateDescriptor d = StateDescriptor::Value("session");
  d.ttl = absl::Seconds(10);
  StateDescriptor ld = StateDescriptor::List("clicks");
  ld.ttl = absl::Seconds(10);
  ValueState* v = *b->GetValueState(d);
  ListState* l = *b->GetListState(ld);
  const int64_t start = now_ms_;
  for (int i = 0; i < 200; ++i) {
    if (i == 100) now_ms_ += 6'000;
    ASSERT_TRUE(b->SetCurrentKey(absl::StrCat("k", i)).ok());
    ASSERT_TRUE(v->Update("v").ok());
    ASSERT_TRUE(l->Add(absl::StrCat(i)).ok());
  }
  ASSERT_TRUE(b->SetCurrentKey("k150").ok());
  ASSERT_TRUE(l->Add("late").ok());
  now_ms_ += 5'000;  // the first 100 keys have expired
  if (GetParam() == "heap") {
    // (Not on rocksdb, where a full snapshot deletes too: compaction alone must do it there.)
    absl::StatusOr<std::string> full = b->FullSnapshot();
    ASSERT_TRUE(full.ok());
    int entries = 0;
    ASSERT_TRUE(ParseSnapshot(
                    *full, [](const SnapshotHeader&) { return absl::OkStatus(); },
                    [&](const SnapshotEntry&) {
                      ++entries;
                      return absl::OkStatus();
                    })
                    .ok());
    EXPECT_EQ(entries, 2 * 100);
  }
  ASSERT_TRUE(b->Compact().ok());

  const std::string dir = absl::StrCat(testing::TempDir(), "/keyed_state_", getpid(), "_storage");
  directories_.push_back(dir);
  auto storage = NewFilesystemCheckpointStorage(dir);
  ASSERT_TRUE(storage.ok());
  auto pending = b->Snapshot({1, "op/0", false});
  ASSERT_TRUE(pending.ok());
  absl::StatusOr<BackendSnapshot> snapshot = (*pending)->Write(**storage);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  now_ms_ = start;
  auto restored = Make();
  ASSERT_TRUE(restored->Restore({*snapshot}, **storage).ok());
  v = *restored->GetValueState(d);
  l = *restored->GetListState(ld);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(restored->SetCurrentKey(absl::StrCat("k", i)).ok());
    EXPECT_EQ(v->Value()->has_value(), i >= 100) << i;
    EXPECT_EQ(l->Get()->size(), i < 100 ? 0u : i == 150 ? 2u : 1u) << i;
  }
}

// A pinned view reads the state as it was when pinned, from another thread, while the task
// thread goes on writing.
TEST_P(KeyedStateTest, PinnedViewsReadFromOtherThreadsWhileTheTaskWrites) {
  auto b = Make(KeyGroupRange{0, 64});
  ValueState* v = *b->GetValueState(StateDescriptor::Value("count"));
  ListState* l = *b->GetListState(StateDescriptor::List("events"));
  MapState* m = *b->GetMapState(StateDescriptor::Map("pages"));
  StateDescriptor session = StateDescriptor::Value("session");
  session.ttl = absl::Seconds(10);
  ValueState* s = *b->GetValueState(session);
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 500; ++i) {
    const std::string key = absl::StrCat("k", i);
    if (!b->SetCurrentKey(key).ok()) continue;
    keys.push_back(key);
    ASSERT_TRUE(v->Update("1").ok());
    ASSERT_TRUE(l->Add("a").ok());
    ASSERT_TRUE(m->Put("home", "1").ok());
    ASSERT_TRUE(s->Update("s").ok());
  }
  absl::StatusOr<std::shared_ptr<const StateView>> pinned = b->PinView();
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  std::shared_ptr<const StateView> view = *pinned;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      for (int round = 0; round < 3; ++round) {
        for (const std::string& key : keys) {
          if (*view->GetValue("count", key) != std::optional<std::string>("1") ||
              view->GetList("events", key)->size() != 1 ||
              *view->GetMapEntry("pages", key, "", "home") != std::optional<std::string>("1")) {
            ++mismatches;
          }
        }
      }
    });
  }
  for (const std::string& key : keys) {  // the task thread goes on
    ASSERT_TRUE(b->SetCurrentKey(key).ok());
    ASSERT_TRUE(v->Update("2").ok());
    ASSERT_TRUE(l->Add("b").ok());
    ASSERT_TRUE(m->Remove("home").ok());
  }
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(mismatches.load(), 0);
  // A new view sees the new state; the old one still the old.
  std::shared_ptr<const StateView> now = *b->PinView();
  EXPECT_THAT(*now->GetValue("count", keys[0]), Optional(std::string("2")));
  EXPECT_THAT(*now->GetList("events", keys[0]), ElementsAre("a", "b"));
  EXPECT_EQ(*now->GetMapEntry("pages", keys[0], "", "home"), std::nullopt);
  EXPECT_THAT(*view->GetValue("count", keys[0]), Optional(std::string("1")));
  // Expiry holds in views too, without changing them.
  now_ms_ += 11'000;
  EXPECT_EQ(*view->GetValue("session", keys[0]), std::nullopt);
  std::string absent;
  for (int i = 0; absent.empty(); ++i) {
    if (b->SetCurrentKey(absl::StrCat("absent", i)).ok()) absent = absl::StrCat("absent", i);
  }
  EXPECT_EQ(*view->GetValue("count", absent), std::nullopt);
  // Errors name what is wrong.
  EXPECT_EQ(view->GetValue("nope", keys[0]).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(view->GetList("count", keys[0]).status().message(), HasSubstr("is value state"));
  std::string foreign;
  for (int i = 0; foreign.empty(); ++i) {
    if (!b->SetCurrentKey(absl::StrCat("x", i)).ok()) foreign = absl::StrCat("x", i);
  }
  EXPECT_EQ(view->GetValue("count", foreign).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(view->states(), SizeIs(4));
}

TEST_P(KeyedStateTest, KeysOutsideTheBackendsKeyGroupsAreRefused) {
  auto b = Make(KeyGroupRangeForSubtask(0, kDefaultMaxParallelism, 2));
  int refused = 0;
  for (int i = 0; i < 100; ++i) {
    const std::string key = absl::StrCat("key-", i);
    const uint32_t group = KeyGroupForKey(key, kDefaultMaxParallelism);
    const absl::Status s = b->SetCurrentKey(key);
    if (group < kDefaultMaxParallelism / 2) {
      EXPECT_TRUE(s.ok()) << s;
      EXPECT_EQ(b->current_key_group(), group);
    } else {
      ++refused;
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("key group ", group)));
    }
  }
  EXPECT_GT(refused, 10);
}

TEST_P(KeyedStateTest, DescriptorsAreCheckedAndMustStayTheSame) {
  auto b = Make();
  EXPECT_FALSE(b->GetValueState(StateDescriptor::Value("")).ok());
  EXPECT_THAT(b->GetValueState(StateDescriptor::Value("bad name")).status().message(),
              HasSubstr("'bad name'"));
  EXPECT_THAT(b->GetReducingState(StateDescriptor::Reducing("r", nullptr)).status().message(),
              HasSubstr("reduce function"));
  EXPECT_THAT(b->GetAggregatingState(StateDescriptor::Aggregating("a", {})).status().message(),
              HasSubstr("create, add and result"));
  ASSERT_TRUE(b->GetValueState(StateDescriptor::Value("x")).ok());
  EXPECT_THAT(b->GetListState(StateDescriptor::Value("x")).status().message(),
              HasSubstr("described as value state, asked for as list state"));
  EXPECT_THAT(b->GetListState(StateDescriptor::List("x")).status().message(),
              HasSubstr("was declared as value state"));
  StateDescriptor ttl = StateDescriptor::Value("x");
  ttl.ttl = absl::Seconds(1);
  EXPECT_FALSE(b->GetValueState(ttl).ok());
  // The same description again is the same handle.
  EXPECT_EQ(*b->GetValueState(StateDescriptor::Value("x")),
            *b->GetValueState(StateDescriptor::Value("x")));
}

TEST_P(KeyedStateTest, UsingStateBeforeAKeyIsSetIsAnError) {
  auto b = Make();
  ValueState* v = *b->GetValueState(StateDescriptor::Value("v"));
  EXPECT_THAT(v->Value().status().message(), HasSubstr("no current key"));
  EXPECT_EQ(v->Update("x").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(KeyedStateTest, ManyKeysKeepTheirOwnValues) {
  auto b = Make();
  ValueState* v = *b->GetValueState(StateDescriptor::Value("v"));
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(b->SetCurrentKey(absl::StrCat("key-", i)).ok());
    ASSERT_TRUE(v->Update(absl::StrCat("value-", i)).ok());
  }
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(b->SetCurrentKey(absl::StrCat("key-", i)).ok());
    ASSERT_THAT(*v->Value(), Optional(absl::StrCat("value-", i)));
  }
}

// A read and a write of one key with the insertion of another key in between (which may grow
// the table and move its entries), and now and then a removal, all in one key group, in a value
// state and a map state: every counter and map ends where its writes took it.
TEST_P(KeyedStateTest, ReadsAndWritesAroundInsertionsAndRemovalsOfOtherKeys) {
  const uint32_t group = KeyGroupForKey("key-0", kDefaultMaxParallelism);
  std::vector<std::string> keys;
  for (int j = 0; keys.size() < 3'000; ++j) {
    std::string key = absl::StrCat("key-", j);
    if (KeyGroupForKey(key, kDefaultMaxParallelism) == group) keys.push_back(std::move(key));
  }
  auto b = Make();
  ValueState* v = *b->GetValueState(StateDescriptor::Value("counter"));
  MapState* m = *b->GetMapState(StateDescriptor::Map("seen"));
  constexpr int kHot = 7;
  std::map<std::string, int> counts;
  std::map<std::string, int> entries;
  for (size_t i = kHot; i < keys.size(); ++i) {
    const std::string& hot = keys[i % kHot];
    ASSERT_TRUE(b->SetCurrentKey(hot).ok());
    const std::optional<std::string> before = *v->Value();
    int count = 0;
    if (before.has_value()) {
      ASSERT_TRUE(absl::SimpleAtoi(*before, &count)) << *before;
    }
    ASSERT_TRUE(b->SetCurrentKey(keys[i]).ok());
    ASSERT_TRUE(v->Update("1").ok());
    ASSERT_TRUE(m->Put("first", "x").ok());
    ASSERT_TRUE(b->SetCurrentKey(hot).ok());
    ASSERT_TRUE(v->Update(absl::StrCat(count + 1)).ok());
    ++counts[hot];
    ASSERT_TRUE(m->Put(absl::StrCat(i), "x").ok());
    ++entries[hot];
    if (i % 3 == 0 && i > kHot) {
      ASSERT_TRUE(m->Remove(absl::StrCat(i)).ok());
      --entries[hot];
      ASSERT_TRUE(b->SetCurrentKey(keys[i - 1]).ok());
      ASSERT_TRUE(v->Clear().ok());
      ASSERT_TRUE(m->Clear().ok());
    }
  }
  for (int h = 0; h < kHot; ++h) {
    const std::string& hot = keys[h];
    ASSERT_TRUE(b->SetCurrentKey(hot).ok());
    EXPECT_THAT(*v->Value(), Optional(absl::StrCat(counts[hot]))) << hot;
    int seen = 0;
    ASSERT_TRUE(m->ForEach([&](std::string_view, std::string_view) {
                   ++seen;
                   return true;
                 }).ok());
    EXPECT_EQ(seen, entries[hot]) << hot;
  }
  ASSERT_TRUE(b->SetCurrentKey(keys.back()).ok());
  EXPECT_THAT(*v->Value(), Optional(std::string("1")));
  ASSERT_TRUE(b->SetCurrentKey(keys[8]).ok());  // cleared when i was 9
  EXPECT_EQ(*v->Value(), std::nullopt);
  EXPECT_FALSE(*m->Contains("first"));
}

TEST(KeyedStateBackendTest, UnknownKindAndBadRangesAreRefusedByName) {
  KeyedStateBackendOptions o;
  o.kind = "cassandra";
  absl::StatusOr<std::unique_ptr<KeyedStateBackend>> b = KeyedStateBackend::Create(o);
  EXPECT_THAT(b.status().message(),
              HasSubstr("unknown state backend 'cassandra' (known: heap, rocksdb)"));
  o.kind = "heap";
  o.key_groups = {100, 50};
  EXPECT_THAT(KeyedStateBackend::Create(o).status().message(), HasSubstr("max parallelism 128"));
}

TEST(KeyedStateBackendTest, RocksDbNeedsAUsableDirectoryAndNamesIt) {
  KeyedStateBackendOptions o;
  o.kind = "rocksdb";
  EXPECT_THAT(KeyedStateBackend::Create(o).status().message(), HasSubstr("needs a directory"));
  const std::string file = absl::StrCat(testing::TempDir(), "/not_a_dir_", getpid());
  std::ofstream(file) << "x";
  o.directory = file + "/state";
  const absl::Status s = KeyedStateBackend::Create(o).status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(o.directory));
  std::filesystem::remove(file);
}

INSTANTIATE_TEST_SUITE_P(Backends, KeyedStateTest, ::testing::ValuesIn(KeyedStateBackend::Kinds()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace sluice
