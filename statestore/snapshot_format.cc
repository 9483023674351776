#include "statestore/snapshot_format.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/checksum.h"
#include "base/status.h"

namespace sluice {
namespace {

constexpr char kMagic[] = "SLCSNAP1";
constexpr size_t kMagicSize = 8;
constexpr uint32_t kVersion = 1;
constexpr uint8_t kEntryTag = 1;
constexpr uint8_t kEndTag = 0;

template <typename T>
void PutFixed(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}
void PutString(std::string* out, std::string_view s) {
  PutFixed<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// Reads the snapshot front to back; every read checks its bounds.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  absl::Status Fixed(T* v, std::string_view what) {
    if (bytes_.size() - pos_ < sizeof(T)) return Short(what);
    std::memcpy(v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }
  absl::Status String(std::string_view* s, std::string_view what) {
    uint32_t length = 0;
    SLUICE_RETURN_IF_ERROR(Fixed(&length, what));
    if (bytes_.size() - pos_ < length) return Short(what);
    *s = bytes_.substr(pos_, length);
    pos_ += length;
    return absl::OkStatus();
  }
  size_t pos() const { return pos_; }
  absl::Status Bad(std::string_view what) const {
    return absl::DataLossError(
        absl::StrFormat("state snapshot: %s at byte %d", std::string(what), pos_));
  }

 private:
  absl::Status Short(std::string_view what) const {
    return absl::DataLossError(absl::StrFormat("state snapshot: cut short in %s at byte %d of %d",
                                               std::string(what), pos_, bytes_.size()));
  }
  std::string_view bytes_;
  size_t pos_ = 0;
};

// One pass over the snapshot: the header, then the entries (each handed to `on_entry`).
absl::Status Walk(std::string_view bytes, SnapshotHeader* header,
                  absl::FunctionRef<absl::Status(const SnapshotEntry&)> on_entry) {
  if (bytes.size() < kMagicSize || bytes.substr(0, kMagicSize) != std::string_view(kMagic)) {
    return absl::DataLossError("state snapshot: no SLCSNAP1 magic at the start");
  }
  Reader r(bytes);
  uint64_t magic = 0;
  SLUICE_RETURN_IF_ERROR(r.Fixed(&magic, "the magic"));
  uint32_t version = 0;
  SLUICE_RETURN_IF_ERROR(r.Fixed(&version, "the version"));
  if (version != kVersion) {
    return absl::DataLossError(
        absl::StrCat("state snapshot: version ", version, " (this build reads version 1)"));
  }
  SLUICE_RETURN_IF_ERROR(r.Fixed(&header->max_parallelism, "the max parallelism"));
  SLUICE_RETURN_IF_ERROR(r.Fixed(&header->key_groups.first, "the key-group range"));
  SLUICE_RETURN_IF_ERROR(r.Fixed(&header->key_groups.count, "the key-group range"));
  if (!ValidateParallelism(1, header->max_parallelism).ok() ||
      uint64_t{header->key_groups.first} + header->key_groups.count > header->max_parallelism) {
    return r.Bad(absl::StrCat("key groups ", header->key_groups.ToString(),
                              " do not fit max parallelism ", header->max_parallelism));
  }
  uint32_t states = 0;
  SLUICE_RETURN_IF_ERROR(r.Fixed(&states, "the state count"));
  if (states > 100'000) return r.Bad(absl::StrCat(states, " states"));
  header->states.clear();
  for (uint32_t i = 0; i < states; ++i) {
    SnapshotState s;
    std::string_view name;
    uint8_t kind = 0;
    SLUICE_RETURN_IF_ERROR(r.String(&name, "a state name"));
    SLUICE_RETURN_IF_ERROR(r.Fixed(&kind, "a state kind"));
    SLUICE_RETURN_IF_ERROR(r.Fixed(&s.ttl_ms, "a state TTL"));
    if (kind > static_cast<uint8_t>(StateKind::kAggregating)) {
      return r.Bad(absl::StrCat("unknown state kind ", kind));
    }
    if (s.ttl_ms < 0) return r.Bad("a negative TTL");
    s.name = std::string(name);
    s.kind = static_cast<StateKind>(kind);
    header->states.push_back(std::move(s));
  }
  while (true) {
    uint8_t tag = 0;
    SLUICE_RETURN_IF_ERROR(r.Fixed(&tag, "an entry tag"));
    if (tag == kEndTag) break;
    if (tag != kEntryTag) return r.Bad(absl::StrCat("entry tag ", tag));
    SnapshotEntry e;
    uint16_t group = 0;
    SLUICE_RETURN_IF_ERROR(r.Fixed(&e.state, "an entry's state"));
    SLUICE_RETURN_IF_ERROR(r.Fixed(&group, "an entry's key group"));
    SLUICE_RETURN_IF_ERROR(r.String(&e.key, "an entry's key"));
    SLUICE_RETURN_IF_ERROR(r.String(&e.ns, "an entry's namespace"));
    SLUICE_RETURN_IF_ERROR(r.String(&e.user_key, "an entry's user key"));
    SLUICE_RETURN_IF_ERROR(r.String(&e.value, "an entry's value"));
    e.key_group = group;
    if (e.state >= header->states.size()) {
      return r.Bad(absl::StrCat("an entry of state ", e.state, " of ", header->states.size()));
    }
    if (!header->key_groups.Contains(e.key_group)) {
      return r.Bad(absl::StrCat("an entry of key group ", e.key_group, " outside ",
                                header->key_groups.ToString()));
    }
    SLUICE_RETURN_IF_ERROR(on_entry(e));
  }
  const size_t body = r.pos();
  uint32_t crc = 0;
  SLUICE_RETURN_IF_ERROR(r.Fixed(&crc, "the checksum"));
  if (r.pos() != bytes.size()) {
    return r.Bad(absl::StrCat(bytes.size() - r.pos(), " bytes after the checksum"));
  }
  const uint32_t want = Crc32c(0, bytes.data(), body);
  if (crc != want) {
    return absl::DataLossError(absl::StrFormat(
        "state snapshot: checksum mismatch (stored 0x%08x, computed 0x%08x)", crc, want));
  }
  return absl::OkStatus();
}

}  // namespace

SnapshotWriter::SnapshotWriter(const SnapshotHeader& header) {
  out_.append(kMagic, kMagicSize);
  PutFixed<uint32_t>(&out_, kVersion);
  PutFixed<uint32_t>(&out_, header.max_parallelism);
  PutFixed<uint32_t>(&out_, header.key_groups.first);
  PutFixed<uint32_t>(&out_, header.key_groups.count);
  PutFixed<uint32_t>(&out_, static_cast<uint32_t>(header.states.size()));
  for (const SnapshotState& s : header.states) {
    PutString(&out_, s.name);
    PutFixed<uint8_t>(&out_, static_cast<uint8_t>(s.kind));
    PutFixed<int64_t>(&out_, s.ttl_ms);
  }
}

void SnapshotWriter::Add(const SnapshotEntry& e) {
  PutFixed<uint8_t>(&out_, kEntryTag);
  PutFixed<uint32_t>(&out_, e.state);
  PutFixed<uint16_t>(&out_, static_cast<uint16_t>(e.key_group));
  PutString(&out_, e.key);
  PutString(&out_, e.ns);
  PutString(&out_, e.user_key);
  PutString(&out_, e.value);
}

std::string SnapshotWriter::Finish() && {
  PutFixed<uint8_t>(&out_, kEndTag);
  PutFixed<uint32_t>(&out_, Crc32c(0, out_.data(), out_.size()));
  return std::move(out_);
}

absl::Status ParseSnapshot(std::string_view bytes,
                           absl::FunctionRef<absl::Status(const SnapshotHeader&)> on_header,
                           absl::FunctionRef<absl::Status(const SnapshotEntry&)> on_entry) {
  // First the whole thing is checked, so that a bad snapshot applies nothing.
  SnapshotHeader header;
  SLUICE_RETURN_IF_ERROR(
      Walk(bytes, &header, [](const SnapshotEntry&) { return absl::OkStatus(); }));
  SLUICE_RETURN_IF_ERROR(on_header(header));
  return Walk(bytes, &header, on_entry);
}

}  // namespace sluice
