// Full snapshots of keyed state: round trips on every backend, savepoints moving between
// backends, rescaling by key groups, and snapshots that are damaged.
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/snapshot_format.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr int kKeys = 2'000;

class Backends {
 public:
  ~Backends() {
    for (const std::string& d : directories_) std::filesystem::remove_all(d);
  }
  std::unique_ptr<KeyedStateBackend> Make(const std::string& kind, KeyGroupRange range = {}) {
    KeyedStateBackendOptions o;
    o.kind = kind;
    o.key_groups = range;
    o.block_cache_bytes = 8 << 20;
    o.directory = absl::StrCat(testing::TempDir(), "/snapshot_test_", getpid(), "_", ++made_);
    directories_.push_back(o.directory);
    absl::StatusOr<std::unique_ptr<KeyedStateBackend>> b = KeyedStateBackend::Create(o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }

 private:
  int made_ = 0;
  std::vector<std::string> directories_;
};

StateDescriptor Sum() {
  return StateDescriptor::Reducing("sum", [](std::string_view a, std::string_view b) {
    return absl::StrCat(std::string(a), "+", std::string(b));
  });
}

// Writes every kind of state for the keys of `b`'s key groups among key-0 .. key-(kKeys-1).
void Fill(KeyedStateBackend& b) {
  ValueState* v = *b.GetValueState(StateDescriptor::Value("value"));
  ListState* l = *b.GetListState(StateDescriptor::List("list"));
  MapState* m = *b.GetMapState(StateDescriptor::Map("map"));
  ReducingState* r = *b.GetReducingState(Sum());
  for (int i = 0; i < kKeys; ++i) {
    if (!b.SetCurrentKey(absl::StrCat("key-", i)).ok()) continue;
    b.SetCurrentNamespace(i % 3 == 0 ? "window-1" : "");
    ASSERT_TRUE(v->Update(absl::StrCat("v", i)).ok());
    ASSERT_TRUE(l->Add(absl::StrCat("a", i)).ok());
    ASSERT_TRUE(l->Add(absl::StrCat("b", i)).ok());
    ASSERT_TRUE(m->Put(absl::StrCat("u", i % 7), absl::StrCat("m", i)).ok());
    ASSERT_TRUE(r->Add("1").ok());
    ASSERT_TRUE(r->Add(absl::StrCat(i)).ok());
  }
}

// Checks what Fill wrote, for the keys of `b`'s key groups; returns how many keys it checked.
int Check(KeyedStateBackend& b) {
  ValueState* v = *b.GetValueState(StateDescriptor::Value("value"));
  ListState* l = *b.GetListState(StateDescriptor::List("list"));
  MapState* m = *b.GetMapState(StateDescriptor::Map("map"));
  ReducingState* r = *b.GetReducingState(Sum());
  int checked = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (!b.SetCurrentKey(absl::StrCat("key-", i)).ok()) continue;
    b.SetCurrentNamespace(i % 3 == 0 ? "window-1" : "");
    EXPECT_THAT(*v->Value(), Optional(absl::StrCat("v", i))) << i;
    EXPECT_THAT(*l->Get(), ElementsAre(absl::StrCat("a", i), absl::StrCat("b", i))) << i;
    EXPECT_THAT(*m->Get(absl::StrCat("u", i % 7)), Optional(absl::StrCat("m", i))) << i;
    EXPECT_THAT(*r->Get(), Optional(absl::StrCat("1+", i))) << i;
    // The other namespace holds nothing.
    b.SetCurrentNamespace(i % 3 == 0 ? "" : "window-1");
    EXPECT_EQ(*v->Value(), std::nullopt) << i;
    ++checked;
  }
  return checked;
}

class SnapshotTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  Backends backends_;
};

// From one backend kind to another (and to itself): a savepoint is backend-independent.
TEST_P(SnapshotTest, RoundTripKeepsEveryKindOfState) {
  const auto& [from_kind, to_kind] = GetParam();
  auto from = backends_.Make(from_kind);
  Fill(*from);
  absl::StatusOr<std::string> snapshot = from->FullSnapshot();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  auto to = backends_.Make(to_kind);
  ASSERT_TRUE(to->RestoreFullSnapshot(*snapshot).ok());
  EXPECT_EQ(Check(*to), kKeys);
  // And the restored backend snapshots to the same entries again.
  absl::StatusOr<std::string> again = to->FullSnapshot();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), snapshot->size());
}

// Rescale 2 -> 3 -> 1 -> 4: each new subtask restores every old snapshot and keeps its own key
// groups; every key and value survives.
TEST_P(SnapshotTest, RescalingKeepsEveryKey) {
  const auto& [from_kind, to_kind] = GetParam();
  std::vector<std::string> snapshots;
  for (uint32_t s = 0; s < 2; ++s) {
    auto b = backends_.Make(from_kind, KeyGroupRangeForSubtask(s, kDefaultMaxParallelism, 2));
    Fill(*b);
    snapshots.push_back(*b->FullSnapshot());
  }
  int step = 0;
  for (uint32_t parallelism : {3u, 1u, 4u}) {
    const std::string& kind = step++ % 2 == 0 ? to_kind : from_kind;
    std::vector<std::string> next;
    int checked = 0;
    for (uint32_t s = 0; s < parallelism; ++s) {
      auto b =
          backends_.Make(kind, KeyGroupRangeForSubtask(s, kDefaultMaxParallelism, parallelism));
      for (const std::string& old : snapshots) ASSERT_TRUE(b->RestoreFullSnapshot(old).ok());
      checked += Check(*b);
      next.push_back(*b->FullSnapshot());
    }
    EXPECT_EQ(checked, kKeys) << "at parallelism " << parallelism;
    snapshots = std::move(next);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, SnapshotTest,
    ::testing::Combine(::testing::Values("heap", "rocksdb"), ::testing::Values("heap", "rocksdb")),
    [](const ::testing::TestParamInfo<std::tuple<std::string, std::string>>& param) {
      return absl::StrCat(std::get<0>(param.param), "_to_", std::get<1>(param.param));
    });

TEST(SnapshotFormatTest, DamageIsNamedAndNothingIsApplied) {
  Backends backends;
  auto from = backends.Make("heap");
  Fill(*from);
  const std::string good = *from->FullSnapshot();
  auto to = backends.Make("heap");
  std::string flipped = good;
  flipped.back() ^= 0x01;  // the checksum itself
  EXPECT_THAT(to->RestoreFullSnapshot(flipped).message(), HasSubstr("checksum mismatch"));
  // A flipped bit anywhere is caught, by the structure checks or by the checksum.
  for (size_t at : {size_t{9}, size_t{30}, good.size() / 3, good.size() / 2, good.size() - 6}) {
    std::string damaged = good;
    damaged[at] ^= 0x10;
    EXPECT_EQ(to->RestoreFullSnapshot(damaged).code(), absl::StatusCode::kDataLoss) << at;
  }
  EXPECT_THAT(to->RestoreFullSnapshot(good.substr(0, good.size() - 9)).message(),
              HasSubstr("cut short"));
  EXPECT_THAT(to->RestoreFullSnapshot("not a snapshot").message(), HasSubstr("magic"));
  EXPECT_THAT(to->RestoreFullSnapshot(good + "x").message(), HasSubstr("after the checksum"));
  // Nothing was applied: the first key has no value.
  ValueState* v = *to->GetValueState(StateDescriptor::Value("value"));
  ASSERT_TRUE(to->SetCurrentKey("key-1").ok());
  EXPECT_EQ(*v->Value(), std::nullopt);
}

TEST(SnapshotFormatTest, AnotherMaxParallelismOrADifferentStateIsRefused) {
  Backends backends;
  auto from = backends.Make("heap");
  Fill(*from);
  const std::string snapshot = *from->FullSnapshot();
  KeyedStateBackendOptions o;
  o.max_parallelism = 256;
  auto other = *KeyedStateBackend::Create(o);
  EXPECT_THAT(other->RestoreFullSnapshot(snapshot).message(), HasSubstr("max parallelism 128"));
  auto clash = backends.Make("heap");
  ASSERT_TRUE(clash->GetListState(StateDescriptor::List("value")).ok());
  EXPECT_THAT(clash->RestoreFullSnapshot(snapshot).message(),
              HasSubstr("'value' was declared as list state"));
}

TEST(SnapshotFormatTest, WriterAndParserAgree) {
  SnapshotHeader h;
  h.max_parallelism = 128;
  h.key_groups = {10, 20};
  h.states = {{"a", StateKind::kMap, 5000}, {"b", StateKind::kValue, 0}};
  SnapshotWriter w(h);
  w.Add({0, 12, "k", "n", "u", std::string_view("v\0v", 3)});
  w.Add({1, 29, "", "", "", ""});
  const std::string bytes = std::move(w).Finish();
  std::vector<std::string> seen;
  const absl::Status s = ParseSnapshot(
      bytes,
      [&](const SnapshotHeader& got) {
        EXPECT_EQ(got.key_groups, h.key_groups);
        EXPECT_EQ(got.states.size(), 2u);
        EXPECT_EQ(got.states[0].ttl_ms, 5000);
        return absl::OkStatus();
      },
      [&](const SnapshotEntry& e) {
        seen.push_back(absl::StrCat(e.state, "/", e.key_group, "/", std::string(e.key), "/",
                                    std::string(e.ns), "/", std::string(e.user_key), "/",
                                    e.value.size()));
        return absl::OkStatus();
      });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_THAT(seen, ElementsAre("0/12/k/n/u/3", "1/29////0"));
  // An entry outside the header's key groups is damage.
  SnapshotWriter bad(h);
  bad.Add({0, 5, "k", "", "", "v"});
  EXPECT_THAT(ParseSnapshot(
                  std::move(bad).Finish(), [](const SnapshotHeader&) { return absl::OkStatus(); },
                  [](const SnapshotEntry&) { return absl::OkStatus(); })
                  .message(),
              HasSubstr("key group 5 outside"));
}

}  // namespace
}  // namespace sluice
