// The filesystem checkpoint storage: whole files or none, checked on read, errors that name the
// file.
#include "statestore/checkpoint_storage.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

class CheckpointStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(testing::TempDir(), "/checkpoint_storage_", getpid());
    std::filesystem::remove_all(root_);
    absl::StatusOr<std::unique_ptr<CheckpointStorage>> s = NewFilesystemCheckpointStorage(root_);
    ASSERT_TRUE(s.ok()) << s.status();
    storage_ = *std::move(s);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::string root_;
  std::unique_ptr<CheckpointStorage> storage_;
};

TEST_F(CheckpointStorageTest, WriteThenReadBackWithSizeAndChecksum) {
  const std::string bytes = std::string("state\0bytes", 11) + std::string(100'000, 'z');
  absl::StatusOr<StateHandle> h = storage_->Write("chk-1/subtask-0.snapshot", bytes);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->size, bytes.size());
  EXPECT_TRUE(storage_->Exists("chk-1/subtask-0.snapshot"));
  EXPECT_EQ(*storage_->Read(*h), bytes);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root_)) {
    files += e.is_regular_file() ? 1 : 0;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(CheckpointStorageTest, UploadCopiesALocalFile) {
  const std::string local = absl::StrCat(root_, "-local.sst");
  std::ofstream(local, std::ios::binary) << std::string(3 << 20, 'q') << "end";
  absl::StatusOr<StateHandle> h = storage_->Upload("shared/000123.sst", local);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->size, (3u << 20) + 3);
  absl::StatusOr<std::string> back = storage_->Read(*h);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->ends_with("qend"));
  std::filesystem::remove(local);
  EXPECT_THAT(storage_->Upload("x.sst", local).status().message(), HasSubstr(local));
}

TEST_F(CheckpointStorageTest, DamagedOrMissingFilesAreNamed) {
  absl::StatusOr<StateHandle> h = storage_->Write("chk-2/a", "0123456789");
  ASSERT_TRUE(h.ok());
  const std::string path = absl::StrCat(root_, "/chk-2/a");
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.put('X');
  }
  absl::Status s = storage_->Read(*h).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_THAT(s.message(), HasSubstr("damaged"));
  std::ofstream(path, std::ios::trunc) << "short";
  EXPECT_THAT(storage_->Read(*h).status().message(), HasSubstr("has 5 bytes, expected 10"));
  ASSERT_TRUE(storage_->Delete("chk-2/a").ok());
  ASSERT_TRUE(storage_->Delete("chk-2/a").ok());  // already gone: fine
  s = storage_->Read(*h).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(path));
}

TEST_F(CheckpointStorageTest, NamesMustStayInsideTheRoot) {
  for (const char* bad : {"", "/etc/passwd", "../escape", "a/../../b", "a//b", "./a"}) {
    absl::StatusOr<StateHandle> h = storage_->Write(bad, "x");
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(CheckpointStorageTest, ARewriteReplacesTheWholeFile) {
  ASSERT_TRUE(storage_->Write("meta", std::string(1000, 'a')).ok());
  absl::StatusOr<StateHandle> h = storage_->Write("meta", "b");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*storage_->Read(*h), "b");
}

TEST(CheckpointStorageRootTest, AnUnusableRootIsNamed) {
  const std::string file = absl::StrCat(testing::TempDir(), "/storage_file_", getpid());
  std::ofstream(file) << "x";
  absl::StatusOr<std::unique_ptr<CheckpointStorage>> s = NewFilesystemCheckpointStorage(file);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr(file));
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace sluice
