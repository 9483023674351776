#include "statestore/checkpoint_metadata.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/checksum.h"
#include "base/status.h"
#include "flatbuffers/flatbuffers.h"
#include "statestore/schemas/checkpoint_metadata_generated.h"

namespace sluice {
namespace {

namespace fb = statestore::fb;

constexpr size_t kChecksumSize = 4;

absl::Status Bad(std::string_view what) {
  return absl::DataLossError(absl::StrCat("checkpoint metadata: ", std::string(what)));
}

std::string_view View(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : std::string_view(s->data(), s->size());
}

// A file name in a backend's directory: one component.
bool IsLocalName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

absl::StatusOr<BackendSnapshot> DecodeBackend(const fb::BackendSnapshot& b, size_t index) {
  BackendSnapshot out;
  out.owner = std::string(View(b.owner()));
  const std::string where = absl::StrCat("backend ", index, " ('", out.owner, "')");
  if (b.format() != fb::SnapshotFormat::Full &&
      b.format() != fb::SnapshotFormat::RocksDbIncremental) {
    return Bad(absl::StrCat(where, ": unknown snapshot format ", static_cast<int>(b.format())));
  }
  out.format = b.format() == fb::SnapshotFormat::Full ? SnapshotFormat::kFull
                                                      : SnapshotFormat::kRocksDbIncremental;
  out.checkpoint_id = b.checkpoint_id();
  out.max_parallelism = b.max_parallelism();
  out.key_groups = {b.first_key_group(), b.key_group_count()};
  if (!ValidateParallelism(1, out.max_parallelism).ok() || out.key_groups.count == 0 ||
      uint64_t{out.key_groups.first} + out.key_groups.count > out.max_parallelism) {
    return Bad(absl::StrCat(where, ": key groups ", out.key_groups.ToString(),
                            " do not fit max parallelism ", out.max_parallelism));
  }
  if (const auto* states = b.states(); states != nullptr) {
    for (const fb::StateInfo* s : *states) {
      if (s->kind() > static_cast<uint8_t>(StateKind::kAggregating) || s->ttl_ms() < 0 ||
          View(s->name()).empty()) {
        return Bad(absl::StrCat(where, ": state '", std::string(View(s->name())), "' has kind ",
                                s->kind(), " and TTL ", s->ttl_ms()));
      }
      out.states.push_back(SnapshotState{std::string(View(s->name())),
                                         static_cast<StateKind>(s->kind()), s->ttl_ms()});
    }
  }
  if (const auto* files = b.files(); files != nullptr) {
    for (const fb::FileHandle* f : *files) {
      SnapshotFile file;
      file.local_name = std::string(View(f->local_name()));
      file.handle = StateHandle{std::string(View(f->name())), f->size(), f->crc32c()};
      file.shared = f->shared();
      if (!IsLocalName(file.local_name) || !IsStorageName(file.handle.name)) {
        return Bad(absl::StrCat(where, ": file '", file.local_name, "' stored as '",
                                file.handle.name, "': not a usable name"));
      }
      out.files.push_back(std::move(file));
    }
  }
  if (out.format == SnapshotFormat::kFull && out.files.size() != 1) {
    return Bad(
        absl::StrCat(where, ": a full snapshot with ", out.files.size(), " files (it has one)"));
  }
  return out;
}

}  // namespace

std::string_view SnapshotFormatName(SnapshotFormat format) {
  return format == SnapshotFormat::kFull ? "full" : "rocksdb-incremental";
}

uint64_t BackendSnapshot::TotalBytes() const {
  uint64_t total = 0;
  for (const SnapshotFile& f : files) total += f.handle.size;
  return total;
}

std::string CheckpointDirectory(uint64_t checkpoint_id) {
  return absl::StrCat("chk-", checkpoint_id);
}
std::string CheckpointMetadataName(uint64_t checkpoint_id) {
  return absl::StrCat(CheckpointDirectory(checkpoint_id), "/_metadata");
}

std::string EncodeCheckpointMetadata(const CheckpointMetadata& metadata) {
  flatbuffers::FlatBufferBuilder b(1024);
  std::vector<flatbuffers::Offset<fb::BackendSnapshot>> backends;
  for (const BackendSnapshot& s : metadata.backends) {
    std::vector<flatbuffers::Offset<fb::StateInfo>> states;
    for (const SnapshotState& st : s.states) {
      states.push_back(fb::CreateStateInfo(b, b.CreateString(st.name),
                                           static_cast<uint8_t>(st.kind), st.ttl_ms));
    }
    std::vector<flatbuffers::Offset<fb::FileHandle>> files;
    for (const SnapshotFile& f : s.files) {
      files.push_back(fb::CreateFileHandle(b, b.CreateString(f.local_name),
                                           b.CreateString(f.handle.name), f.handle.size,
                                           f.handle.crc32c, f.shared));
    }
    backends.push_back(fb::CreateBackendSnapshot(
        b, b.CreateString(s.owner),
        s.format == SnapshotFormat::kFull ? fb::SnapshotFormat::Full
                                          : fb::SnapshotFormat::RocksDbIncremental,
        s.checkpoint_id, s.max_parallelism, s.key_groups.first, s.key_groups.count,
        b.CreateVector(states), b.CreateVector(files)));
  }
  b.Finish(fb::CreateCheckpointMetadata(b, metadata.checkpoint_id, metadata.timestamp_ms,
                                        b.CreateVector(backends)),
           fb::CheckpointMetadataIdentifier());
  std::string out(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
  const uint32_t crc = Crc32c(0, out.data(), out.size());
  out.append(reinterpret_cast<const char*>(&crc), kChecksumSize);
  return out;
}

absl::StatusOr<CheckpointMetadata> DecodeCheckpointMetadata(std::string_view bytes) {
  if (bytes.size() < kChecksumSize + 8) {
    return Bad(absl::StrCat("cut short (", bytes.size(), " bytes)"));
  }
  const std::string_view body = bytes.substr(0, bytes.size() - kChecksumSize);
  uint32_t crc = 0;
  std::memcpy(&crc, bytes.data() + body.size(), kChecksumSize);
  if (crc != Crc32c(0, body.data(), body.size())) return Bad("checksum mismatch");
  // A copy: FlatBuffers reads aligned, and the caller's bytes may be anywhere.
  std::string aligned(body);
  const auto* data = reinterpret_cast<const uint8_t*>(aligned.data());
  flatbuffers::Verifier verifier(data, aligned.size(), /*max_depth=*/8,
                                 /*max_tables=*/1'000'000);
  if (!fb::CheckpointMetadataBufferHasIdentifier(data) ||
      !fb::VerifyCheckpointMetadataBuffer(verifier)) {
    return Bad("not a well-formed SLCM FlatBuffer");
  }
  const fb::CheckpointMetadata* m = fb::GetCheckpointMetadata(data);
  CheckpointMetadata out;
  out.checkpoint_id = m->checkpoint_id();
  out.timestamp_ms = m->timestamp_ms();
  if (const auto* backends = m->backends(); backends != nullptr) {
    size_t i = 0;
    for (const fb::BackendSnapshot* b : *backends) {
      SLUICE_ASSIGN_OR_RETURN(BackendSnapshot backend, DecodeBackend(*b, i++));
      out.backends.push_back(std::move(backend));
    }
  }
  return out;
}

}  // namespace sluice
