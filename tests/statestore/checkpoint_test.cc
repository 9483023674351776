// Checkpoints of keyed state: the metadata file, incremental RocksDB checkpoints that upload only
// new files, the shared-file registry, restore from storage and from the local copy, rescaling
// through checkpoints, and a process killed in the middle of a checkpoint.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "statestore/checkpoint_metadata.h"
#include "statestore/checkpoint_storage.h"
#include "statestore/completed_checkpoints.h"
#include "statestore/keyed_state_backend.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// Storage that counts what is written to it, and can stop a process part-way (see the SIGKILL
// test).
class CountingStorage final : public ForwardingCheckpointStorage {
 public:
  using ForwardingCheckpointStorage::ForwardingCheckpointStorage;

  absl::StatusOr<StateHandle> Write(const std::string& name, std::string_view bytes) override {
    Count(name, bytes.size());
    return ForwardingCheckpointStorage::Write(name, bytes);
  }
  absl::StatusOr<StateHandle> Upload(const std::string& name, const std::string& path) override {
    absl::StatusOr<StateHandle> h = ForwardingCheckpointStorage::Upload(name, path);
    if (h.ok()) Count(name, h->size);
    if (h.ok() && on_upload) on_upload(name);
    return h;
  }
  absl::StatusOr<std::string> Read(const StateHandle& handle) override {
    ++reads;
    return ForwardingCheckpointStorage::Read(handle);
  }

  void Reset() {
    files.clear();
    bytes_written = 0;
  }

  std::vector<std::string> files;  // written or uploaded since Reset
  uint64_t bytes_written = 0;
  int reads = 0;
  std::function<void(const std::string&)> on_upload;

 private:
  void Count(const std::string& name, uint64_t size) {
    files.push_back(name);
    bytes_written += size;
  }
};

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(testing::TempDir(), "/checkpoint_test_", getpid(), "_",
                         testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    auto inner = NewFilesystemCheckpointStorage(root_ + "/storage");
    ASSERT_TRUE(inner.ok()) << inner.status();
    storage_ = std::make_unique<CountingStorage>(*std::move(inner));
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::unique_ptr<KeyedStateBackend> Make(const std::string& kind, KeyGroupRange range = {},
                                          const std::string& name = "") {
    KeyedStateBackendOptions o;
    o.kind = kind;
    o.key_groups = range;
    o.block_cache_bytes = 4 << 20;
    o.write_buffer_bytes = write_buffer_bytes_;
    o.directory = absl::StrCat(root_, "/", name.empty() ? absl::StrCat("db", ++made_) : name);
    absl::StatusOr<std::unique_ptr<KeyedStateBackend>> b = KeyedStateBackend::Create(o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }

  // Takes checkpoint `id` of `b` both parts at once.
  BackendSnapshot Checkpoint(KeyedStateBackend& b, uint64_t id, const std::string& owner = "op/0",
                             bool savepoint = false) {
    auto pending = b.Snapshot({id, owner, savepoint});
    EXPECT_TRUE(pending.ok()) << pending.status();
    if (!pending.ok()) return {};
    absl::StatusOr<BackendSnapshot> written = (*pending)->Write(*storage_);
    EXPECT_TRUE(written.ok()) << written.status();
    return written.ok() ? *std::move(written) : BackendSnapshot{};
  }

  std::string root_;
  std::unique_ptr<CountingStorage> storage_;
  size_t write_buffer_bytes_ = 64 << 20;
  int made_ = 0;
};

std::string Key(int i) { return absl::StrCat("key-", i); }

// Sets value "value" of every key in `b`'s key groups among Key(0..keys) to `tag`-i, adds to a
// list and puts into a map.
void Fill(KeyedStateBackend& b, int keys, const std::string& tag, int step = 1) {
  ValueState* v = *b.GetValueState(StateDescriptor::Value("value"));
  ListState* l = *b.GetListState(StateDescriptor::List("list"));
  MapState* m = *b.GetMapState(StateDescriptor::Map("map"));
  for (int i = 0; i < keys; i += step) {
    if (!b.SetCurrentKey(Key(i)).ok()) continue;
    ASSERT_TRUE(v->Update(absl::StrCat(tag, "-", i, std::string(40, 'v'))).ok());
    ASSERT_TRUE(l->Add(tag).ok());
    ASSERT_TRUE(m->Put(tag, absl::StrCat(i)).ok());
  }
}

// Every key of `b`'s key groups has the value `tag`-i (or, with `tags`, the one for i).
void ExpectValues(KeyedStateBackend& b, int keys, const std::function<std::string(int)>& tag) {
  ValueState* v = *b.GetValueState(StateDescriptor::Value("value"));
  int checked = 0;
  for (int i = 0; i < keys; ++i) {
    if (!b.SetCurrentKey(Key(i)).ok()) continue;
    absl::StatusOr<std::optional<std::string>> got = v->Value();
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->has_value()) << Key(i);
    ASSERT_EQ(**got, absl::StrCat(tag(i), "-", i, std::string(40, 'v'))) << Key(i);
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// How many entries of each state `b` holds, through a full snapshot (which also shows that no
// key of another key group is there).
int CountValues(KeyedStateBackend& b) {
  absl::StatusOr<std::string> snapshot = b.FullSnapshot();
  EXPECT_TRUE(snapshot.ok());
  int values = 0;
  EXPECT_TRUE(ParseSnapshot(
                  *snapshot, [](const SnapshotHeader&) { return absl::OkStatus(); },
                  [&](const SnapshotEntry& e) {
                    EXPECT_TRUE(b.options().key_groups.Contains(e.key_group));
                    if (e.state == 2) ++values;  // states by name: list, map, value
                    return absl::OkStatus();
                  })
                  .ok());
  return values;
}

CheckpointMetadata SampleMetadata() {
  CheckpointMetadata m;
  m.checkpoint_id = 7;
  m.timestamp_ms = 1'700'000'000'000;
  BackendSnapshot b;
  b.owner = "window-agg/3";
  b.format = SnapshotFormat::kRocksDbIncremental;
  b.checkpoint_id = 7;
  b.max_parallelism = 128;
  b.key_groups = {32, 32};
  b.states = {{"counts", StateKind::kValue, 0}, {"seen", StateKind::kMap, 60'000}};
  b.files = {{"000012.sst", {"shared/window-agg/3/ab-000012.sst", 4096, 0x1234}, true},
             {"CURRENT", {"chk-7/window-agg/3/CURRENT", 16, 0x99}, false}};
  BackendSnapshot full;
  full.owner = "source/0";
  full.checkpoint_id = 7;
  full.max_parallelism = 128;
  full.key_groups = {0, 128};
  full.files = {{"full.snapshot", {"chk-7/source/0/full.snapshot", 10, 1}, false}};
  m.backends = {b, full};
  return m;
}

TEST(CheckpointMetadataTest, RoundTrips) {
  const CheckpointMetadata m = SampleMetadata();
  absl::StatusOr<CheckpointMetadata> back = DecodeCheckpointMetadata(EncodeCheckpointMetadata(m));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->checkpoint_id, 7u);
  EXPECT_EQ(back->timestamp_ms, m.timestamp_ms);
  ASSERT_THAT(back->backends, SizeIs(2));
  EXPECT_EQ(back->backends[0].owner, "window-agg/3");
  EXPECT_EQ(back->backends[0].format, SnapshotFormat::kRocksDbIncremental);
  EXPECT_EQ(back->backends[0].key_groups, (KeyGroupRange{32, 32}));
  EXPECT_EQ(back->backends[0].files, m.backends[0].files);
  EXPECT_EQ(back->backends[0].states[1].name, "seen");
  EXPECT_EQ(back->backends[0].states[1].ttl_ms, 60'000);
  EXPECT_EQ(back->backends[1].format, SnapshotFormat::kFull);
  EXPECT_EQ(back->backends[1].TotalBytes(), 10u);
}

TEST(CheckpointMetadataTest, DamageIsNamed) {
  std::string bytes = EncodeCheckpointMetadata(SampleMetadata());
  for (size_t at : {size_t{0}, bytes.size() / 2, bytes.size() - 1}) {
    std::string damaged = bytes;
    damaged[at] ^= 0x20;
    absl::StatusOr<CheckpointMetadata> m = DecodeCheckpointMetadata(damaged);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss) << at;
    EXPECT_THAT(m.status().message(), HasSubstr("checkpoint metadata"));
  }
  EXPECT_THAT(DecodeCheckpointMetadata(bytes.substr(0, 20)).status().message(),
              HasSubstr("checksum"));
  EXPECT_THAT(DecodeCheckpointMetadata("").status().message(), HasSubstr("cut short"));
}

TEST(CheckpointMetadataTest, RefusesNamesThatLeaveTheirDirectory) {
  for (const auto& [local, stored] :
       std::vector<std::pair<std::string, std::string>>{{"../CURRENT", "chk-7/a/CURRENT"},
                                                        {"CURRENT", "/etc/passwd"},
                                                        {"CURRENT", "chk-7/../../x"},
                                                        {"", "chk-7/a/CURRENT"}}) {
    CheckpointMetadata m = SampleMetadata();
    m.backends[0].files[1] = {local, {stored, 1, 1}, false};
    absl::StatusOr<CheckpointMetadata> back = DecodeCheckpointMetadata(EncodeCheckpointMetadata(m));
    EXPECT_EQ(back.status().code(), absl::StatusCode::kDataLoss) << local << " " << stored;
    EXPECT_THAT(back.status().message(), HasSubstr("not a usable name"));
  }
  CheckpointMetadata m = SampleMetadata();
  m.backends[1].files.push_back(m.backends[1].files[0]);
  EXPECT_THAT(DecodeCheckpointMetadata(EncodeCheckpointMetadata(m)).status().message(),
              HasSubstr("a full snapshot with 2 files"));
  m = SampleMetadata();
  m.backends[0].key_groups = {100, 29};
  EXPECT_THAT(DecodeCheckpointMetadata(EncodeCheckpointMetadata(m)).status().message(),
              HasSubstr("do not fit max parallelism 128"));
}

TEST_F(CheckpointTest, IncrementalCheckpointUploadsOnlyNewFiles) {
  constexpr int kKeys = 20'000;
  auto b = Make("rocksdb");
  Fill(*b, kKeys, "a");
  const BackendSnapshot first = Checkpoint(*b, 1);
  EXPECT_EQ(first.format, SnapshotFormat::kRocksDbIncremental);
  const uint64_t state_bytes = first.TotalBytes();
  EXPECT_GT(state_bytes, uint64_t{kKeys} * 40);
  std::set<std::string> shared_first;
  for (const SnapshotFile& f : first.files) {
    if (f.shared) shared_first.insert(f.handle.name);
  }
  EXPECT_THAT(shared_first, Not(IsEmpty()));

  // 1% of the keys change.
  storage_->Reset();
  Fill(*b, kKeys, "b", 100);
  const BackendSnapshot second = Checkpoint(*b, 2);
  ASSERT_EQ(second.format, SnapshotFormat::kRocksDbIncremental);
  std::set<std::string> uploaded(storage_->files.begin(), storage_->files.end());
  int reused = 0;
  for (const SnapshotFile& f : second.files) {
    if (!f.shared) {
      EXPECT_TRUE(uploaded.count(f.handle.name)) << f.handle.name;  // private: always uploaded
    } else if (shared_first.count(f.handle.name)) {
      ++reused;
      EXPECT_FALSE(uploaded.count(f.handle.name)) << f.handle.name << " uploaded again";
    } else {
      EXPECT_TRUE(uploaded.count(f.handle.name)) << f.handle.name;
    }
  }
  EXPECT_EQ(reused, static_cast<int>(shared_first.size()));
  EXPECT_LT(storage_->bytes_written, state_bytes / 10)
      << "uploaded " << storage_->bytes_written << " of " << second.TotalBytes();
  // Nothing changed: only the database's small private files go up.
  storage_->Reset();
  const BackendSnapshot third = Checkpoint(*b, 3);
  for (const std::string& name : storage_->files) EXPECT_FALSE(absl::StrContains(name, ".sst"));

  // Restored elsewhere from storage: the state as of each checkpoint.
  for (const auto& [snapshot, tag] :
       std::vector<std::pair<BackendSnapshot, std::string>>{{first, "a"}, {second, "b"}}) {
    auto restored = Make("rocksdb");
    ASSERT_TRUE(restored->Restore({snapshot}, *storage_).ok());
    EXPECT_FALSE(restored->restore_stats().from_local_copy);
    EXPECT_EQ(restored->restore_stats().bytes_downloaded, snapshot.TotalBytes());
    ExpectValues(*restored, kKeys, [&](int i) { return tag == "b" && i % 100 == 0 ? "b" : "a"; });
    ListState* l = *restored->GetListState(StateDescriptor::List("list"));
    ASSERT_TRUE(restored->SetCurrentKey(Key(100)).ok());
    EXPECT_EQ(l->Get()->size(), tag == "b" ? 2u : 1u);
  }
}

TEST_F(CheckpointTest, WritesAfterTheBarrierAreNotInTheCheckpoint) {
  constexpr int kKeys = 5'000;
  auto b = Make("rocksdb");
  Fill(*b, kKeys, "a");
  auto pending = b->Snapshot({1, "op/0", false});
  ASSERT_TRUE(pending.ok()) << pending.status();
  // The task thread goes on writing while the files are written elsewhere.
  std::thread writer([&] {
    for (int round = 0; round < 3; ++round) Fill(*b, kKeys, absl::StrCat("late", round));
  });
  absl::StatusOr<BackendSnapshot> written = (*pending)->Write(*storage_);
  writer.join();
  ASSERT_TRUE(written.ok()) << written.status();
  auto restored = Make("rocksdb");
  ASSERT_TRUE(restored->Restore({*written}, *storage_).ok());
  ExpectValues(*restored, kKeys, [](int) { return "a"; });
}

// With writes after the barrier flushed before the checkpoint's files are captured (a tiny
// memtable here), the checkpoint is declined rather than holding later writes; the next one
// succeeds.
TEST_F(CheckpointTest, CheckpointIsDeclinedWhenLaterWritesReachFilesFirst) {
  write_buffer_bytes_ = 64 << 10;
  auto b = Make("rocksdb");
  Fill(*b, 2'000, "a");
  auto pending = b->Snapshot({1, "op/0", false});
  ASSERT_TRUE(pending.ok()) << pending.status();
  Fill(*b, 2'000, "late");  // fills several memtables after the barrier
  absl::StatusOr<BackendSnapshot> written = (*pending)->Write(*storage_);
  EXPECT_EQ(written.status().code(), absl::StatusCode::kAborted) << written.status();
  EXPECT_THAT(written.status().message(), HasSubstr("checkpoint 1 of 'op/0' declined"));
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(root_, "/db1-local/chk-1")));
  const BackendSnapshot next = Checkpoint(*b, 2);
  auto rocks = Make("rocksdb");
  ASSERT_TRUE(rocks->Restore({next}, *storage_).ok());
  ExpectValues(*rocks, 2'000, [](int) { return "late"; });
}

TEST_F(CheckpointTest, SharedFilesGoWhenNoRetainedCheckpointRefersToThem) {
  absl::StatusOr<CompletedCheckpointStore> store =
      CompletedCheckpointStore::Open(storage_.get(), 2);
  ASSERT_TRUE(store.ok()) << store.status();
  auto b = Make("rocksdb");
  std::vector<std::set<std::string>> shared;
  auto complete = [&](uint64_t id) {
    CheckpointMetadata m;
    m.checkpoint_id = id;
    m.backends = {Checkpoint(*b, id)};
    std::set<std::string> names;
    for (const SnapshotFile& f : m.backends[0].files) {
      if (f.shared) names.insert(f.handle.name);
    }
    shared.push_back(names);
    ASSERT_TRUE(store->Add(m).ok());
    b->NotifyCheckpointComplete(id);
  };
  Fill(*b, 3'000, "a");
  complete(1);  // A
  Fill(*b, 3'000, "b");
  complete(2);  // A, B
  ASSERT_TRUE(b->Compact().ok());
  complete(3);  // C: A and B compacted away
  EXPECT_THAT(store->Ids(), testing::ElementsAre(2, 3));
  EXPECT_FALSE(storage_->Exists(CheckpointMetadataName(1)));
  for (const std::string& name : shared[0]) {
    EXPECT_TRUE(storage_->Exists(name)) << name << " is still in checkpoint 2";
    EXPECT_EQ(store->References(name), 1);
  }
  complete(4);  // C again
  EXPECT_THAT(store->Ids(), testing::ElementsAre(3, 4));
  for (const auto& set : {shared[0], shared[1]}) {
    for (const std::string& name : set) {
      if (shared[2].count(name)) continue;
      EXPECT_FALSE(storage_->Exists(name)) << name << " outlived its checkpoints";
    }
  }
  for (const std::string& name : shared[3]) {
    EXPECT_TRUE(storage_->Exists(name)) << name;
    EXPECT_EQ(store->References(name), shared[2].count(name) ? 2 : 1) << name;
  }
  EXPECT_GT(store->shared_files_deleted(), 0u);
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(root_, "/storage/chk-2")));

  // A store opened again (a new coordinator) counts the same references.
  absl::StatusOr<CompletedCheckpointStore> again =
      CompletedCheckpointStore::Open(storage_.get(), 2);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(again->Ids(), testing::ElementsAre(3, 4));
  for (const std::string& name : shared[3]) {
    EXPECT_EQ(again->References(name), store->References(name)) << name;
  }
  ASSERT_NE(again->Latest(), nullptr);
  EXPECT_EQ(again->Latest()->backends[0].files, store->Latest()->backends[0].files);
}

TEST_F(CheckpointTest, OpeningSkipsIncompleteAndDamagedCheckpoints) {
  absl::StatusOr<CompletedCheckpointStore> store =
      CompletedCheckpointStore::Open(storage_.get(), 3);
  auto b = Make("heap");
  Fill(*b, 100, "a");
  for (uint64_t id : {1, 2}) {
    CheckpointMetadata m;
    m.checkpoint_id = id;
    m.backends = {Checkpoint(*b, id)};
    ASSERT_TRUE(store->Add(m).ok());
  }
  Checkpoint(*b, 3);                                            // its files, but never completed
  EXPECT_FALSE(store->Add(CheckpointMetadata{2, 0, {}}).ok());  // ids only go up
  // Damage checkpoint 2's metadata.
  absl::StatusOr<std::string> bytes = storage_->ReadWhole(CheckpointMetadataName(2));
  ASSERT_TRUE(bytes.ok());
  (*bytes)[bytes->size() / 2] ^= 1;
  ASSERT_TRUE(storage_->Write(CheckpointMetadataName(2), *bytes).ok());
  absl::StatusOr<CompletedCheckpointStore> again =
      CompletedCheckpointStore::Open(storage_.get(), 3);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(again->Ids(), testing::ElementsAre(1));
  EXPECT_THAT(again->skipped(),
              testing::UnorderedElementsAre(HasSubstr("chk-2: checkpoint metadata: checksum"),
                                            HasSubstr("chk-3: no metadata")));
}

TEST_F(CheckpointTest, LocalRecoveryUsesTheLocalCopy) {
  constexpr int kKeys = 3'000;
  auto b = Make("rocksdb", {}, "task");
  Fill(*b, kKeys, "a");
  const BackendSnapshot first = Checkpoint(*b, 1);
  b->NotifyCheckpointComplete(1);
  Fill(*b, kKeys, "b");
  const BackendSnapshot second = Checkpoint(*b, 2);
  b->NotifyCheckpointComplete(2);
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(root_, "/task-local/chk-1")));
  b.reset();  // the task fails; its local copy stays

  // Damage a file in storage: a restore that downloaded it would fail.
  const SnapshotFile& sst = second.files.front();
  ASSERT_TRUE(sst.shared);
  ASSERT_TRUE(storage_->Write(sst.handle.name, "damaged").ok());

  auto local = Make("rocksdb", {}, "task");
  const int reads = storage_->reads;
  ASSERT_TRUE(local->Restore({second}, *storage_).ok());
  EXPECT_TRUE(local->restore_stats().from_local_copy);
  EXPECT_EQ(local->restore_stats().bytes_downloaded, 0u);
  EXPECT_EQ(storage_->reads, reads);
  ExpectValues(*local, kKeys, [](int) { return "b"; });

  // Elsewhere there is no local copy, and the damaged file is named.
  auto remote = Make("rocksdb", {}, "elsewhere");
  const absl::Status s = remote->Restore({second}, *storage_);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr(sst.handle.name));
  // A missing file too.
  ASSERT_TRUE(storage_->Delete(sst.handle.name).ok());
  auto other = Make("rocksdb", {}, "elsewhere2");
  const absl::Status missing = other->Restore({second}, *storage_);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  EXPECT_THAT(missing.message(), HasSubstr(sst.handle.name));
}

// 2 -> 3 -> 1 -> 4 subtasks through incremental checkpoints: every key keeps its value, and each
// backend holds only its own key groups (the foreign ones deleted, the missing ones ingested).
TEST_F(CheckpointTest, RescaleThroughIncrementalCheckpoints) {
  constexpr int kKeys = 4'000;
  constexpr uint32_t kMax = 128;
  std::vector<std::unique_ptr<KeyedStateBackend>> backends;
  for (uint32_t s = 0; s < 2; ++s) {
    backends.push_back(Make("rocksdb", KeyGroupRangeForSubtask(s, kMax, 2)));
    Fill(*backends.back(), kKeys, "a");
  }
  uint64_t id = 0;
  for (uint32_t parallelism : {3u, 1u, 4u}) {
    SCOPED_TRACE(parallelism);
    ++id;
    std::vector<BackendSnapshot> snapshots;
    for (size_t s = 0; s < backends.size(); ++s) {
      snapshots.push_back(Checkpoint(*backends[s], id, absl::StrCat("op/", s)));
      EXPECT_EQ(snapshots.back().format, SnapshotFormat::kRocksDbIncremental);
    }
    backends.clear();
    int total = 0;
    for (uint32_t s = 0; s < parallelism; ++s) {
      backends.push_back(Make("rocksdb", KeyGroupRangeForSubtask(s, kMax, parallelism)));
      ASSERT_TRUE(backends.back()->Restore(snapshots, *storage_).ok());
      ExpectValues(*backends.back(), kKeys, [](int) { return "a"; });
      total += CountValues(*backends.back());
    }
    EXPECT_EQ(total, kKeys);
  }
}

TEST_F(CheckpointTest, SavepointsMoveBetweenBackends) {
  auto rocks = Make("rocksdb");
  Fill(*rocks, 1'000, "a");
  const BackendSnapshot savepoint = Checkpoint(*rocks, 1, "op/0", /*savepoint=*/true);
  EXPECT_EQ(savepoint.format, SnapshotFormat::kFull);
  auto heap = Make("heap");
  ASSERT_TRUE(heap->Restore({savepoint}, *storage_).ok());
  ExpectValues(*heap, 1'000, [](int) { return "a"; });
  Fill(*heap, 1'000, "b", 2);
  const BackendSnapshot heap_checkpoint = Checkpoint(*heap, 2);
  EXPECT_EQ(heap_checkpoint.format, SnapshotFormat::kFull);
  auto back = Make("rocksdb");
  ASSERT_TRUE(back->Restore({heap_checkpoint}, *storage_).ok());
  ExpectValues(*back, 1'000, [](int i) { return i % 2 == 0 ? "b" : "a"; });
  // An incremental rocksdb checkpoint is not portable, and says so.
  const BackendSnapshot incremental = Checkpoint(*rocks, 3);
  auto heap2 = Make("heap");
  const absl::Status s = heap2->Restore({incremental}, *storage_);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("restore from a savepoint instead"));
}

TEST_F(CheckpointTest, RestoreRefusesUsedBackendsAndOtherMaxParallelism) {
  auto b = Make("rocksdb");
  Fill(*b, 100, "a");
  const BackendSnapshot snapshot = Checkpoint(*b, 1);
  EXPECT_EQ(b->Restore({snapshot}, *storage_).code(), absl::StatusCode::kFailedPrecondition);
  KeyedStateBackendOptions o;
  o.kind = "rocksdb";
  o.max_parallelism = 64;
  o.directory = root_ + "/mp64";
  auto other = KeyedStateBackend::Create(o);
  ASSERT_TRUE(other.ok());
  const absl::Status s = (*other)->Restore({snapshot}, *storage_);
  EXPECT_THAT(s.message(), HasSubstr("max parallelism 128, this backend 64"));
  EXPECT_THAT(b->Snapshot({2, "../escape", false}).status().message(),
              HasSubstr("snapshot owner '../escape'"));
}

// The child of the SIGKILL test, in a process of its own (this binary run again with only this
// test selected and SLUICE_CHECKPOINT_CHILD=<root>:<fd>): checkpoint 1 completes, then, part-way
// through checkpoint 2's uploads, it writes a byte to <fd> and waits to be killed.
TEST(CheckpointChildProcess, Run) {
  const char* spec = getenv("SLUICE_CHECKPOINT_CHILD");
  if (spec == nullptr) GTEST_SKIP() << "run by KilledMidCheckpointLeavesThePreviousOneRestorable";
  const std::string root(spec, strchr(spec, ':'));
  const int fd = atoi(strchr(spec, ':') + 1);
  auto inner = NewFilesystemCheckpointStorage(root + "/storage");
  ASSERT_TRUE(inner.ok());
  CountingStorage storage(*std::move(inner));
  auto store = CompletedCheckpointStore::Open(&storage, 3);
  ASSERT_TRUE(store.ok());
  KeyedStateBackendOptions o;
  o.kind = "rocksdb";
  o.directory = root + "/child";
  auto b = KeyedStateBackend::Create(o);
  ASSERT_TRUE(b.ok());
  Fill(**b, 5'000, "a");
  auto first = (*b)->Snapshot({1, "op/0", false});
  ASSERT_TRUE(first.ok());
  absl::StatusOr<BackendSnapshot> written = (*first)->Write(storage);
  ASSERT_TRUE(written.ok());
  ASSERT_TRUE(store->Add(CheckpointMetadata{1, 0, {*written}}).ok());
  Fill(**b, 5'000, "b");
  storage.on_upload = [fd](const std::string& name) {
    if (!absl::StartsWith(name, "chk-2/")) return;  // after the SSTs, amid its own files
    const char c = 'x';
    if (write(fd, &c, 1) == 1) pause();
  };
  auto second = (*b)->Snapshot({2, "op/0", false});
  ASSERT_TRUE(second.ok());
  (void)(*second)->Write(storage);
  ADD_FAILURE() << "not killed in the middle of checkpoint 2";
}

// A process killed with SIGKILL while it writes checkpoint 2 leaves checkpoint 1 complete and
// restorable, and checkpoint 2 skipped.
TEST_F(CheckpointTest, KilledMidCheckpointLeavesThePreviousOneRestorable) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const std::string env = absl::StrCat("SLUICE_CHECKPOINT_CHILD=", root_, ":", ready[1]);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(const_cast<char*>(env.c_str()));
  envp.push_back(nullptr);
  char filter[] = "--gtest_filter=CheckpointChildProcess.Run";
  char self[] = "/proc/self/exe";
  char* argv[] = {self, filter, nullptr};
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    execve(self, argv, envp.data());
    _exit(127);
  }
  close(ready[1]);
  char c = 0;
  const ssize_t got = read(ready[0], &c, 1);
  close(ready[0]);
  if (got != 1) {
    int status = 0;
    waitpid(child, &status, 0);
    FAIL() << "the child ended before checkpoint 2: " << status;
  }
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  absl::StatusOr<CompletedCheckpointStore> store =
      CompletedCheckpointStore::Open(storage_.get(), 3);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_THAT(store->Ids(), testing::ElementsAre(1));
  EXPECT_THAT(store->skipped(), testing::ElementsAre(HasSubstr("chk-2: no metadata")));
  EXPECT_TRUE(std::filesystem::exists(absl::StrCat(root_, "/storage/chk-2")));
  auto restored = Make("rocksdb", {}, "after");
  ASSERT_TRUE(restored->Restore(store->Latest()->backends, *storage_).ok());
  ExpectValues(*restored, 5'000, [](int) { return "a"; });
}

}  // namespace
}  // namespace sluice
