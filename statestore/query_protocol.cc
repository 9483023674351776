#include "statestore/query_protocol.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "flatbuffers/flatbuffers.h"
#include "statestore/schemas/query_generated.h"

namespace sluice {
namespace {

namespace fb = statestore::query;
using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

// Empty bytes and strings are left out (offset 0): they decode to empty again.
Offset<flatbuffers::Vector<uint8_t>> BytesOf(FlatBufferBuilder& b, std::string_view s) {
  if (s.empty()) return 0;
  return b.CreateVector(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
Offset<flatbuffers::String> StringOf(FlatBufferBuilder& b, const std::string& s) {
  if (s.empty()) return 0;
  return b.CreateString(s);
}

Offset<flatbuffers::Vector<Offset<fb::Bytes>>> BytesList(FlatBufferBuilder& b,
                                                         const std::vector<std::string>& list) {
  std::vector<Offset<fb::Bytes>> out;
  out.reserve(list.size());
  for (const std::string& s : list) out.push_back(fb::CreateBytes(b, BytesOf(b, s)));
  return b.CreateVector(out);
}

Offset<fb::Value> EncodeValue(FlatBufferBuilder& b, const QueryValue& v) {
  Offset<flatbuffers::Vector<uint8_t>> value;
  Offset<flatbuffers::Vector<Offset<fb::Bytes>>> list;
  Offset<flatbuffers::Vector<Offset<fb::MapEntry>>> map;
  switch (v.kind) {
    case StateKind::kList:
      list = BytesList(b, v.list);
      break;
    case StateKind::kMap: {
      std::vector<Offset<fb::MapEntry>> entries;
      entries.reserve(v.map.size());
      for (const auto& [key, entry] : v.map) {
        entries.push_back(fb::CreateMapEntry(b, BytesOf(b, key), BytesOf(b, entry)));
      }
      map = b.CreateVector(entries);
      break;
    }
    default:
      value = BytesOf(b, v.value);
  }
  return fb::CreateValue(b, static_cast<uint8_t>(v.kind), value, list, map);
}

Buffer Finish(FlatBufferBuilder& b,
              absl::FunctionRef<Buffer(size_t)> allocate = Buffer::AllocateUnpooled) {
  Buffer out = allocate(b.GetSize());
  out.Append(std::string_view(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()));
  return out;
}

std::string StringOf(const flatbuffers::Vector<uint8_t>* v) {
  return v == nullptr ? std::string()
                      : std::string(reinterpret_cast<const char*>(v->data()), v->size());
}
std::string StringOf(const flatbuffers::String* s) {
  return s == nullptr ? std::string() : s->str();
}

std::vector<std::string> ListOf(const flatbuffers::Vector<Offset<fb::Bytes>>* v) {
  std::vector<std::string> out;
  if (v == nullptr) return out;
  out.reserve(v->size());
  for (const fb::Bytes* bytes : *v) out.push_back(StringOf(bytes->data()));
  return out;
}

absl::Status CheckEnum(const char* what, uint8_t value, uint8_t max) {
  if (value > max) {
    return absl::InvalidArgumentError(absl::StrCat("unknown ", what, " ", value));
  }
  return absl::OkStatus();
}

absl::StatusOr<QueryValue> DecodeValue(const fb::Value* v) {
  QueryValue out;
  if (v == nullptr) return out;
  SLUICE_RETURN_IF_ERROR(
      CheckEnum("state kind", v->kind(), static_cast<uint8_t>(StateKind::kAggregating)));
  out.kind = static_cast<StateKind>(v->kind());
  // Only the field of the value's kind is read: a message carrying others means the same.
  switch (out.kind) {
    case StateKind::kList:
      out.list = ListOf(v->list());
      break;
    case StateKind::kMap:
      if (const auto* map = v->map(); map != nullptr) {
        out.map.reserve(map->size());
        for (const fb::MapEntry* e : *map) {
          out.map.emplace_back(StringOf(e->key()), StringOf(e->value()));
        }
      }
      break;
    default:
      out.value = StringOf(v->value());
  }
  return out;
}

// Verifies `bytes` as a `T` (copied to an aligned place first when it is not 8-aligned) and
// decodes it with `decode`.
template <typename T, typename Decode>
auto VerifyAndDecode(std::string_view bytes, const char* what, Decode decode)
    -> decltype(decode(static_cast<const T*>(nullptr))) {
  std::unique_ptr<uint64_t[]> copy;
  const uint8_t* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if ((reinterpret_cast<uintptr_t>(data) & 7) != 0) {
    copy.reset(new uint64_t[(bytes.size() + 7) / 8]);
    std::memcpy(copy.get(), bytes.data(), bytes.size());
    data = reinterpret_cast<const uint8_t*>(copy.get());
  }
  flatbuffers::Verifier verifier(data, bytes.size());
  if (bytes.empty() || !verifier.VerifyBuffer<T>(nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed query ", what, " (", bytes.size(), " bytes)"));
  }
  const T* message = flatbuffers::GetRoot<T>(data);
  if (message->version() != kQueryProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat("query protocol version ", message->version(),
                                                      " is not supported (", kQueryProtocolVersion,
                                                      " is)"));
  }
  return decode(message);
}

}  // namespace

Buffer EncodeQueryRequest(const QueryRequest& r) {
  FlatBufferBuilder b(256 + r.keys.size() * 32);
  auto job = StringOf(b, r.job);
  auto state = StringOf(b, r.state);
  auto keys = BytesList(b, r.keys);
  auto ns = BytesOf(b, r.ns);
  auto prefix = BytesOf(b, r.prefix);
  auto continuation = BytesOf(b, r.continuation);
  b.Finish(fb::CreateRequest(b, kQueryProtocolVersion, static_cast<uint8_t>(r.type), job, state,
                             keys, ns, static_cast<uint8_t>(r.consistency), r.checkpoint_id, prefix,
                             r.limit, continuation, r.forward));
  return Finish(b);
}

absl::StatusOr<QueryRequest> DecodeQueryRequest(std::string_view bytes) {
  return VerifyAndDecode<fb::Request>(
      bytes, "request", [](const fb::Request* m) -> absl::StatusOr<QueryRequest> {
        SLUICE_RETURN_IF_ERROR(
            CheckEnum("request type", m->type(), static_cast<uint8_t>(QueryType::kListStates)));
        SLUICE_RETURN_IF_ERROR(CheckEnum("consistency", m->consistency(),
                                         static_cast<uint8_t>(Consistency::kCommitted)));
        QueryRequest r;
        r.type = static_cast<QueryType>(m->type());
        r.job = StringOf(m->job());
        r.state = StringOf(m->state());
        r.keys = ListOf(m->keys());
        r.ns = StringOf(m->namespace_());
        r.consistency = static_cast<Consistency>(m->consistency());
        r.checkpoint_id = m->checkpoint_id();
        r.prefix = StringOf(m->prefix());
        r.limit = m->limit();
        r.continuation = StringOf(m->continuation());
        r.forward = m->forward();
        return r;
      });
}

Buffer EncodeQueryResponse(const QueryResponse& r, absl::FunctionRef<Buffer(size_t)> allocate) {
  FlatBufferBuilder b(256);
  std::vector<Offset<fb::KeyResult>> results;
  results.reserve(r.results.size());
  for (const KeyResult& k : r.results) {
    auto message = StringOf(b, k.message);
    auto value = EncodeValue(b, k.value);
    auto location = StringOf(b, k.location);
    results.push_back(fb::CreateKeyResult(b, static_cast<uint8_t>(k.status), message, k.found,
                                          value, k.checkpoint_id, location));
  }
  std::vector<Offset<fb::ScanEntry>> entries;
  entries.reserve(r.entries.size());
  for (const ScanEntry& e : r.entries) {
    auto key = BytesOf(b, e.key);
    entries.push_back(fb::CreateScanEntry(b, key, EncodeValue(b, e.value)));
  }
  std::vector<Offset<fb::StateInfo>> states;
  for (const StateInfo& s : r.states) {
    std::vector<Offset<fb::Location>> locations;
    for (const StateLocation& l : s.locations) {
      locations.push_back(
          fb::CreateLocation(b, l.key_groups.first, l.key_groups.count, StringOf(b, l.address)));
    }
    auto job = StringOf(b, s.job);
    auto name = StringOf(b, s.name);
    auto key_type = StringOf(b, s.key_type);
    auto value_type = StringOf(b, s.value_type);
    states.push_back(fb::CreateStateInfo(b, job, name, static_cast<uint8_t>(s.kind), key_type,
                                         value_type, s.max_parallelism, b.CreateVector(locations)));
  }
  auto message = StringOf(b, r.message);
  auto results_v = b.CreateVector(results);
  auto entries_v = b.CreateVector(entries);
  auto continuation = BytesOf(b, r.continuation);
  auto states_v = b.CreateVector(states);
  auto location = StringOf(b, r.location);
  b.Finish(fb::CreateResponse(b, kQueryProtocolVersion, static_cast<uint8_t>(r.status), message,
                              results_v, entries_v, continuation, r.checkpoint_id, states_v,
                              location));
  return Finish(b, allocate);
}

absl::StatusOr<QueryResponse> DecodeQueryResponse(std::string_view bytes) {
  return VerifyAndDecode<fb::Response>(
      bytes, "response", [](const fb::Response* m) -> absl::StatusOr<QueryResponse> {
        constexpr auto kMaxStatus = static_cast<uint8_t>(QueryStatus::kInternal);
        SLUICE_RETURN_IF_ERROR(CheckEnum("query status", m->status(), kMaxStatus));
        QueryResponse r;
        r.status = static_cast<QueryStatus>(m->status());
        r.message = StringOf(m->message());
        r.location = StringOf(m->location());
        if (const auto* results = m->results(); results != nullptr) {
          for (const fb::KeyResult* k : *results) {
            SLUICE_RETURN_IF_ERROR(CheckEnum("query status", k->status(), kMaxStatus));
            KeyResult out;
            out.status = static_cast<QueryStatus>(k->status());
            out.message = StringOf(k->message());
            out.found = k->found();
            SLUICE_ASSIGN_OR_RETURN(out.value, DecodeValue(k->value()));
            out.checkpoint_id = k->checkpoint_id();
            out.location = StringOf(k->location());
            r.results.push_back(std::move(out));
          }
        }
        if (const auto* entries = m->entries(); entries != nullptr) {
          for (const fb::ScanEntry* e : *entries) {
            ScanEntry out;
            out.key = StringOf(e->key());
            SLUICE_ASSIGN_OR_RETURN(out.value, DecodeValue(e->value()));
            r.entries.push_back(std::move(out));
          }
        }
        r.continuation = StringOf(m->continuation());
        r.checkpoint_id = m->checkpoint_id();
        if (const auto* states = m->states(); states != nullptr) {
          for (const fb::StateInfo* s : *states) {
            SLUICE_RETURN_IF_ERROR(
                CheckEnum("state kind", s->kind(), static_cast<uint8_t>(StateKind::kAggregating)));
            StateInfo out{StringOf(s->job()),
                          StringOf(s->name()),
                          static_cast<StateKind>(s->kind()),
                          StringOf(s->key_type()),
                          StringOf(s->value_type()),
                          s->max_parallelism(),
                          {}};
            if (const auto* locations = s->locations(); locations != nullptr) {
              for (const fb::Location* l : *locations) {
                out.locations.push_back(
                    StateLocation{KeyGroupRange{l->first_key_group(), l->key_group_count()},
                                  StringOf(l->address())});
              }
            }
            r.states.push_back(std::move(out));
          }
        }
        return r;
      });
}

std::string EncodeScanPosition(const ScanPosition& p) {
  std::string out = "s1";
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(p.key_group >> (8 * i)));
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(p.checkpoint_id >> (8 * i)));
  out += p.after_key;
  return out;
}

absl::StatusOr<ScanPosition> DecodeScanPosition(std::string_view token) {
  if (token.size() < 14 || token.substr(0, 2) != "s1") {
    return absl::InvalidArgumentError(
        absl::StrCat("scan continuation of ", token.size(), " bytes was not made by this server"));
  }
  ScanPosition p;
  for (int i = 0; i < 4; ++i) {
    p.key_group |= uint32_t{static_cast<uint8_t>(token[2 + i])} << (8 * i);
  }
  for (int i = 0; i < 8; ++i) {
    p.checkpoint_id |= uint64_t{static_cast<uint8_t>(token[6 + i])} << (8 * i);
  }
  p.after_key = std::string(token.substr(14));
  return p;
}

}  // namespace sluice
