#include "tests/fuzz/fuzz_targets.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/checksum.h"
#include "net/frame.h"
#include "net/internal/frame_reader.h"
#include "net/internal/socket.h"
#include "net/schemas/handshake_generated.h"
#include "net/transport.h"
#include "shuffle/event.h"
#include "shuffle/net_messages.h"
#include "shuffle/record_format.h"
#include "shuffle/result_partition.h"
#include "shuffle/shuffle_service.h"
#include "statestore/checkpoint_metadata.h"
#include "statestore/query_protocol.h"
#include "statestore/resp.h"
#include "statestore/snapshot_format.h"
#include "tools/tool_output.h"

namespace sluice::fuzz {
namespace {

using net::DecodeFrameHeader;
using net::EncodeFrameHeader;
using net::FrameHeader;
using net::FrameType;
using net::kFrameHeaderSize;

// The input being run, for the failure report.
struct Current {
  const char* target = "";
  const uint8_t* data = nullptr;
  size_t size = 0;
};
Current current;

class InputScope {
 public:
  InputScope(const char* target, const uint8_t* data, size_t size) {
    current = {target, data, size};
  }
  ~InputScope() { current = {}; }
};

[[noreturn]] void Fail(const char* file, int line, const char* condition,
                       const std::string& detail) {
  std::fprintf(stderr,
               "\nFUZZ INVARIANT BROKEN (target %s): %s\n  check: %s\n  at %s:%d\n"
               "  input (%zu bytes, hex): %s\n",
               current.target, detail.c_str(), condition, file, line, current.size,
               Hex(current.data, current.size).c_str());
  std::fflush(stderr);
  std::abort();
}

// `detail` is only evaluated when the check fails.
#define FUZZ_CHECK(cond, detail)                                 \
  do {                                                           \
    if (!(cond)) [[unlikely]]                                    \
      ::sluice::fuzz::Fail(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

// splitmix64: chunking and consumer decisions that depend only on the input.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }

 private:
  uint64_t state_;
};

std::string Describe(const FrameHeader& h) {
  return absl::StrFormat("{type %d flags %d channel %d length %d backlog %d sequence %d}", h.type,
                         h.flags, h.channel, h.length, h.backlog, h.sequence);
}

bool SameHeader(const FrameHeader& a, const FrameHeader& b) {
  return a.type == b.type && a.flags == b.flags && a.channel == b.channel && a.length == b.length &&
         a.backlog == b.backlog && a.sequence == b.sequence;
}

std::string Header(FrameHeader h) {
  char raw[kFrameHeaderSize];
  EncodeFrameHeader(h, raw);
  return std::string(raw, kFrameHeaderSize);
}

std::string Frame(uint8_t type, uint32_t channel, size_t length, uint32_t sequence) {
  FrameHeader h;
  h.type = type;
  h.channel = channel;
  h.length = static_cast<uint32_t>(length);
  h.sequence = sequence;
  std::string out = Header(h);
  for (size_t i = 0; i < length; ++i) out.push_back(static_cast<char>((i * 31 + sequence) & 0xFF));
  return out;
}

// ---- frame header ------------------------------------------------------------------------

constexpr size_t kHeaderLimits[] = {0, 1, 24, 4096, net::kDefaultMaxFrameSize, 0xFFFFFFFFu};

std::vector<std::string> FrameHeaderSeeds() {
  std::vector<std::string> seeds;
  const uint8_t types[] = {1, 2, 3, 4, 5, 16, 200};
  const uint32_t lengths[] = {0, 1, 24, 4096, 4 * 1024 * 1024};
  for (size_t i = 0; i < std::size(types); ++i) {
    FrameHeader h;
    h.type = types[i];
    h.flags = static_cast<uint16_t>(i * 3);
    h.channel = static_cast<uint32_t>(i * 1000);
    h.length = lengths[i % std::size(lengths)];
    h.backlog = static_cast<uint32_t>(i);
    h.sequence = static_cast<uint32_t>(i * 7);
    std::string s = Header(h);
    if (i % 2 == 1) s.push_back(static_cast<char>(i));  // picks a max_frame_size
    seeds.push_back(std::move(s));
  }
  return seeds;
}

// ---- frame reader ------------------------------------------------------------------------

constexpr size_t kSegmentSize = 4096;  // the smallest the pool allows: many segment boundaries
constexpr size_t kReaderConfigBytes = 8;
constexpr size_t kReaderMaxFrames[] = {64, 1000, 4096, 5000, 65536, net::kDefaultMaxFrameSize};
constexpr size_t kReaderPoolCaps[] = {2, 3, 4, 16};

// One pool for every run, leaked on purpose: each run must give back all it took.
BufferPool& Pool() {
  static BufferPool* pool = [] {
    BufferPoolOptions options;
    options.segment_size = kSegmentSize;
    options.num_segments = 256;
    options.try_hugepages = false;
    absl::StatusOr<std::unique_ptr<BufferPool>> p = BufferPool::Create(options);
    if (!p.ok()) {
      std::fprintf(stderr, "fuzz: cannot create the buffer pool: %s\n",
                   p.status().ToString().c_str());
      std::abort();
    }
    return p->release();
  }();
  return *pool;
}

// The stream as a plain sequential parse sees it.
struct RefFrame {
  FrameHeader header;
  size_t payload_at;
  size_t end;
};
struct RefParse {
  std::vector<RefFrame> frames;
  bool has_error = false;
  size_t error_at = 0;  // where the header that fails to decode starts
  absl::Status error;
};

RefParse Parse(const uint8_t* s, size_t n, size_t max_frame) {
  RefParse r;
  size_t off = 0;
  while (n - off >= kFrameHeaderSize) {
    absl::StatusOr<FrameHeader> h =
        DecodeFrameHeader(reinterpret_cast<const char*>(s + off), max_frame);
    if (!h.ok()) {
      r.has_error = true;
      r.error_at = off;
      r.error = h.status();
      break;
    }
    if (n - off - kFrameHeaderSize < h->length) break;
    r.frames.push_back({*h, off + kFrameHeaderSize, off + kFrameHeaderSize + h->length});
    off += kFrameHeaderSize + h->length;
  }
  return r;
}

size_t ChunkSize(Rng& rng) {
  switch (rng.Below(4)) {
    case 0:
      return 1 + rng.Below(8);
    case 1:
      return 1 + rng.Below(64);
    case 2:
      return 1 + rng.Below(1024);
    default:
      return 1 + rng.Below(2 * kSegmentSize);
  }
}

std::string ReaderConfig(uint32_t seed, uint8_t max_frame, uint8_t pool_cap, uint8_t segments,
                         uint8_t releases) {
  std::string c(reinterpret_cast<const char*>(&seed), sizeof(seed));
  c.push_back(static_cast<char>(max_frame));
  c.push_back(static_cast<char>(pool_cap));
  c.push_back(static_cast<char>(segments));
  c.push_back(static_cast<char>(releases));
  return c;
}

std::vector<std::string> FrameReaderSeeds() {
  const uint8_t user = static_cast<uint8_t>(FrameType::kFirstUserType);
  const uint8_t ping = static_cast<uint8_t>(FrameType::kPing);
  std::vector<std::string> streams;
  // Small frames, an empty one among them.
  streams.push_back(Frame(user, 1, 0, 0) + Frame(user, 2, 1, 1) + Frame(ping, 0, 10, 2) +
                    Frame(user, 3, 100, 3) + Frame(user, 4, 200, 4));
  // A large frame (read directly) between small ones.
  streams.push_back(Frame(user, 1, 10, 0) + Frame(user, 1, 3000, 1) + Frame(user, 2, 3, 2));
  // Larger than a segment, then an empty frame in large mode, then large again.
  streams.push_back(Frame(user, 5, 5000, 0) + Frame(user, 5, 0, 1) + Frame(user, 5, 2000, 2) +
                    Frame(user, 6, 40, 3));
  // Many small frames straddling segment boundaries.
  std::string many;
  for (uint32_t i = 0; i < 60; ++i) many += Frame(user, i % 4, 100 + i, i);
  streams.push_back(std::move(many));
  // A stream that goes wrong: a bad magic after two good frames.
  std::string bad = Frame(user, 1, 5, 0) + Frame(user, 1, 7, 1) + Frame(user, 1, 9, 2);
  bad[2 * kFrameHeaderSize + 12] = 'X';
  streams.push_back(std::move(bad));

  const std::string configs[] = {
      ReaderConfig(1, 4, 3, 0, 255),    // receives only, payloads released at once
      ReaderConfig(2, 4, 0, 255, 40),   // provided segments whenever allowed, tight pool
      ReaderConfig(3, 5, 1, 128, 128),  // a mix
  };
  std::vector<std::string> seeds;
  for (const std::string& c : configs) {
    for (const std::string& s : streams) seeds.push_back(c + s);
  }
  return seeds;
}

void RunFrameReader(const uint8_t* data, size_t size) {
  uint8_t config[kReaderConfigBytes] = {};
  std::memcpy(config, data, std::min(size, kReaderConfigBytes));
  const uint8_t* stream = data + std::min(size, kReaderConfigBytes);
  const size_t stream_size = size - std::min(size, kReaderConfigBytes);
  uint32_t seed;
  std::memcpy(&seed, config, sizeof(seed));
  Rng rng(seed);
  const size_t max_frame = kReaderMaxFrames[config[4] % std::size(kReaderMaxFrames)];
  const size_t pool_cap = kReaderPoolCaps[config[5] % std::size(kReaderPoolCaps)];
  const uint8_t segment_bias = config[6];
  const uint8_t release_bias = config[7];

  const RefParse ref = Parse(stream, stream_size, max_frame);

  absl::StatusOr<std::unique_ptr<LocalBufferPool>> local =
      Pool().CreateLocalPool("fuzz-frame-reader", 1, pool_cap);
  FUZZ_CHECK(local.ok(), local.status().ToString());
  net::TransportStats stats;
  // Payloads the consumer has not let go of yet, with where their bytes lie in the stream: they
  // must stay intact until released, whatever the reader does with its segments meanwhile.
  struct Held {
    Buffer payload;
    size_t at;
  };
  std::vector<Held> held;
  auto release = [&] {
    for (const Held& h : held) {
      FUZZ_CHECK(std::memcmp(h.payload.read_ptr(), stream + h.at, h.payload.readable_bytes()) == 0,
                 absl::StrFormat("the payload from stream byte %d changed while the consumer "
                                 "held it",
                                 h.at));
    }
    held.clear();
  };
  {
    net::internal::FrameReader reader(local->get(), max_frame, &stats);
    size_t fed = 0;
    size_t got = 0;
    auto sink = [&](const FrameHeader& h, Buffer payload) {
      FUZZ_CHECK(got < ref.frames.size(), "a frame the stream does not hold: " + Describe(h));
      const RefFrame& want = ref.frames[got++];
      FUZZ_CHECK(want.end <= fed,
                 absl::StrFormat("frame %d handed out at byte %d, before its end at byte %d",
                                 got - 1, fed, want.end));
      FUZZ_CHECK(SameHeader(h, want.header),
                 absl::StrCat("frame ", got - 1, ": header ", Describe(h), ", the stream has ",
                              Describe(want.header)));
      const size_t n = payload.valid() ? payload.readable_bytes() : 0;
      FUZZ_CHECK(n == h.length, absl::StrFormat("frame %d: a payload of %d bytes under a header "
                                                "announcing %d",
                                                got - 1, n, h.length));
      FUZZ_CHECK(n == 0 || std::memcmp(payload.read_ptr(), stream + want.payload_at, n) == 0,
                 absl::StrFormat("frame %d: payload bytes differ from the stream", got - 1));
      if (payload.valid()) held.push_back({std::move(payload), want.payload_at});
    };

    size_t complete = 0;  // reference frames whose bytes have all been fed
    while (fed < stream_size) {
      if (!held.empty() && rng.Below(256) < release_bias) release();
      const size_t chunk = std::min(ChunkSize(rng), stream_size - fed);
      absl::Status st;
      bool via_segment = reader.accepts_any_segment() && rng.Below(256) < segment_bias;
      if (via_segment) {
        // uring's provided-buffer ring: a whole pool segment holding what arrived, at offset 0.
        Buffer segment = (*local)->TryRequest();
        if (segment.valid()) {
          const size_t n = std::min(chunk, segment.capacity());
          std::memcpy(segment.data(), stream + fed, n);
          fed += n;
          st = reader.OnSegment(std::move(segment), n, sink);
        } else if (!held.empty()) {
          release();
          continue;
        } else {
          via_segment = false;
        }
      }
      if (!via_segment) {
        // A receive into the prepared target, or a scatter receive into two (the rest of a
        // large payload, then the next header) that fills the first before the second.
        net::internal::FrameReader::Target targets[2];
        const int count = rng.Below(2) == 0 ? reader.PrepareTargets(targets)
                                            : (reader.PrepareTarget(&targets[0]) ? 1 : 0);
        if (count == 0) {
          FUZZ_CHECK(!held.empty(),
                     absl::StrFormat("the reader stalls: no receive target with a pool cap of %d "
                                     "segments and no payload held by the consumer (byte %d)",
                                     pool_cap, fed));
          release();  // what a transport waits for with NotifyWhenAvailable
          continue;
        }
        FUZZ_CHECK(count <= 2, absl::StrFormat("%d receive targets", count));
        size_t n = 0;
        for (int i = 0; i < count && n < chunk; ++i) {
          FUZZ_CHECK(targets[i].data != nullptr && targets[i].len > 0, "an empty receive target");
          const size_t k = std::min(chunk - n, targets[i].len);
          std::memcpy(targets[i].data, stream + fed + n, k);
          n += k;
        }
        fed += n;
        st = reader.OnReceived(n, sink);
      }

      while (complete < ref.frames.size() && ref.frames[complete].end <= fed) ++complete;
      const bool error_due = ref.has_error && ref.error_at + kFrameHeaderSize <= fed;
      if (!st.ok()) {
        FUZZ_CHECK(error_due, absl::StrFormat("error at byte %d on a well-formed stream: %s", fed,
                                              st.ToString()));
        FUZZ_CHECK(got == ref.frames.size(),
                   absl::StrFormat("error after %d of the %d frames before the bad header", got,
                                   ref.frames.size()));
        FUZZ_CHECK(st == ref.error, absl::StrCat("error ", st.ToString(), ", the header says ",
                                                 ref.error.ToString()));
        break;  // a transport closes the connection here
      }
      FUZZ_CHECK(!error_due, absl::StrFormat("the bad header at byte %d went unreported: %s",
                                             ref.error_at, ref.error.ToString()));
      FUZZ_CHECK(got == complete, absl::StrFormat("%d frames complete after byte %d, %d handed out",
                                                  complete, fed, got));
      const size_t boundary = complete > 0 ? ref.frames[complete - 1].end : 0;
      FUZZ_CHECK(reader.at_frame_boundary() == (boundary == fed),
                 absl::StrFormat("at_frame_boundary() is %s at byte %d, the last frame ends at %d",
                                 reader.at_frame_boundary() ? "true" : "false", fed, boundary));
      FUZZ_CHECK(reader.partial_bytes() == fed - boundary,
                 absl::StrFormat("partial_bytes() is %d at byte %d, the last frame ends at %d",
                                 reader.partial_bytes(), fed, boundary));
      FUZZ_CHECK(
          stats.bytes_received.load() == fed,
          absl::StrFormat("bytes_received %d after %d bytes", stats.bytes_received.load(), fed));
      FUZZ_CHECK(
          stats.frames_received.load() == got,
          absl::StrFormat("frames_received %d, %d handed out", stats.frames_received.load(), got));
    }
    release();
    reader.Reset();
    FUZZ_CHECK((*local)->in_use_segments() == 0,
               absl::StrFormat("%d receive segments still in use after Reset()",
                               (*local)->in_use_segments()));
  }
}

// ---- handshake ---------------------------------------------------------------------------

enum HandshakeKind : uint8_t { kHello = 0, kError = 1, kHelloAck = 2, kAll = 3 };

constexpr const char* kPeer = "10.1.2.3:7000";

bool HelloCode(absl::StatusCode c) {
  return c == absl::StatusCode::kDataLoss || c == absl::StatusCode::kFailedPrecondition ||
         c == absl::StatusCode::kUnauthenticated;
}

void CheckHelloMessage(const Buffer& payload) {
  net::TransportOptions open_server;  // no token configured
  net::TransportOptions secret_server;
  secret_server.token = "secret";
  std::string open_name = "?", secret_name = "?";
  const absl::Status open = net::internal::CheckHello(payload, open_server, &open_name);
  const absl::Status secret = net::internal::CheckHello(payload, secret_server, &secret_name);
  FUZZ_CHECK(open.ok() || HelloCode(open.code()), open.ToString());
  FUZZ_CHECK(secret.ok() || HelloCode(secret.code()), secret.ToString());
  FUZZ_CHECK(open.code() != absl::StatusCode::kUnauthenticated,
             "a server without a token refused on the token: " + open.ToString());
  if (!open.ok()) {
    FUZZ_CHECK(secret.code() == open.code(),
               absl::StrCat("malformed for one server (", open.ToString(), "), ", secret.ToString(),
                            " for the other"));
    return;
  }
  // Accepted: a verified Hello, read back the way CheckHello read it.
  // FlatBuffers reads scalars in place: read from an aligned copy, as CheckHello does.
  const Buffer aligned = Buffer::CopyOf(payload.readable());
  const auto* hello = flatbuffers::GetRoot<net::fb::Hello>(aligned.read_ptr());
  const std::string name = hello->client_name() ? hello->client_name()->str() : "";
  const bool right_token = hello->token() != nullptr && hello->token()->str() == "secret";
  FUZZ_CHECK(open_name == name, "client name " + open_name + ", the hello says " + name);
  FUZZ_CHECK(secret.ok() == right_token,
             absl::StrCat("token check: ", secret.ToString(), " for token '",
                          hello->token() ? hello->token()->str() : "<none>", "'"));
  if (!secret.ok()) {
    FUZZ_CHECK(secret.code() == absl::StatusCode::kUnauthenticated &&
                   absl::StrContains(secret.message(), "token"),
               "a wrong token refused with " + secret.ToString());
  } else {
    FUZZ_CHECK(secret_name == name, "client name " + secret_name + ", the hello says " + name);
  }
}

void CheckErrorMessage(const Buffer& payload) {
  const absl::Status s = net::internal::StatusFromErrorFrame(payload, kPeer);
  FUZZ_CHECK(!s.ok(), "an error frame that reads as success");
  FUZZ_CHECK(absl::StrContains(s.message(), kPeer),
             "the error does not name the peer: " + s.ToString());
  // What the decoder returns keeps its code through BuildError and back.
  const absl::Status again =
      net::internal::StatusFromErrorFrame(net::internal::BuildError(s), kPeer);
  FUZZ_CHECK(again.code() == s.code(),
             absl::StrCat(s.ToString(), " came back as ", again.ToString()));
}

// The client's check of the server's reply (ConnectAndHandshake calls the same function).
void CheckHelloAckMessage(const Buffer& payload) {
  const absl::StatusOr<std::string> name = net::internal::ParseHelloAck(payload, kPeer);
  if (!name.ok()) return;
  FUZZ_CHECK(name->size() <= payload.readable_bytes(), "a server name longer than its message");
}

std::vector<std::string> HandshakeSeeds() {
  auto with = [](uint8_t kind, size_t offset, const Buffer& b) {
    std::string input(1, static_cast<char>(kind | (offset << 2)));
    input.append(b.readable());
    return input;
  };
  net::TransportOptions secret;
  secret.token = "secret";
  secret.name = "worker-1";
  net::TransportOptions wrong;
  wrong.token = "guess";
  net::TransportOptions none;
  none.name = "sluice-cli";
  using net::internal::BuildError;
  return {
      with(kHello, 0, net::internal::BuildHello(secret)),
      with(kHello, 0, net::internal::BuildHello(wrong)),
      with(kHello, 0, net::internal::BuildHello(none)),
      with(kError, 0, BuildError(absl::UnauthenticatedError("wrong token"))),
      with(kError, 0, BuildError(absl::ResourceExhaustedError("frame too large"))),
      with(kError, 0, BuildError(absl::InternalError("boom"))),
      with(kHelloAck, 0, net::internal::BuildHelloAck(secret)),
      with(kAll, 0, net::internal::BuildHello(secret)),
  };
}

// ---- event -------------------------------------------------------------------------------

// [type:1][version:1][reserved:2], read independently of shuffle/event.cc.
constexpr size_t kEventHeaderBytes = 4;
constexpr uint8_t kEventVersion = 1;

// What DecodeEvent must make of `data`: nullptr when it is a well-formed event, otherwise a
// phrase the error must contain (the error names what is wrong).
const char* EventDefect(const uint8_t* data, size_t size) {
  if (size < kEventHeaderBytes) return "shorter than";
  if (data[1] != kEventVersion) return "version";
  size_t need;  // the size of a well-formed event of this type
  switch (static_cast<EventType>(data[0])) {
    case EventType::kCheckpointBarrier:
      need = kEventHeaderBytes + 8 + 8 + 4;
      break;
    case EventType::kWatermark:
      need = kEventHeaderBytes + 8;
      break;
    case EventType::kEndOfPartition:
      need = kEventHeaderBytes;
      break;
    case EventType::kUser: {
      if (size < kEventHeaderBytes + 8) return "truncated";
      uint32_t payload;
      std::memcpy(&payload, data + kEventHeaderBytes + 4, sizeof(payload));
      if (payload > kMaxUserEventPayload || payload > size - kEventHeaderBytes - 8) {
        return "payload";
      }
      need = kEventHeaderBytes + 8 + payload;
      break;
    }
    default:
      return "unknown event type";
  }
  if (size < need) return "truncated";
  if (size > need) return "unexpected bytes";
  return nullptr;
}

std::vector<std::string> EventSeeds() {
  const Event events[] = {
      Event::Barrier({1, 1700000000000, 0}),
      Event::Barrier({UINT64_MAX, -1, kBarrierUnaligned | kBarrierSavepoint}),
      Event::Watermark(0),
      Event::Watermark(INT64_MIN),
      Event::Watermark(1700000000123),
      Event::EndOfPartition(),
      Event::User(0, ""),
      Event::User(7, "hello"),
      Event::User(UINT32_MAX, std::string(300, '\x80')),
  };
  std::vector<std::string> seeds;
  for (const Event& e : events) seeds.emplace_back(EncodeEvent(e).readable());
  return seeds;
}

// ---- shuffle descriptor ------------------------------------------------------------------

std::string Describe(const ShuffleDescriptor& d) {
  return absl::StrFormat(
      "{service \"%s\" partition %s subpartitions %d worker \"%s\" address \"%s\" connection %d}",
      absl::CHexEscape(d.service), d.partition.ToString(), d.num_subpartitions,
      absl::CHexEscape(d.producer_worker), absl::CHexEscape(d.producer_address),
      d.connection_index);
}

std::vector<std::string> ShuffleDescriptorSeeds() {
  ShuffleDescriptor local;
  local.service = "local";
  local.partition = {1, 0};
  local.num_subpartitions = 1;
  local.producer_worker = "local";
  ShuffleDescriptor net;
  net.service = "net";
  net.partition = {0xFEDCBA9876543210ull, 7};
  net.num_subpartitions = 128;
  net.producer_worker = "worker-7";
  net.producer_address = "10.0.0.7:7001";
  net.connection_index = 3;
  ShuffleDescriptor wide;
  wide.service = std::string(200, 's');
  wide.partition = {UINT64_MAX, UINT32_MAX};
  wide.num_subpartitions = UINT32_MAX;
  wide.producer_worker = std::string("w\0rker", 6);
  wide.producer_address = "[::1]:65535";
  wide.connection_index = UINT32_MAX;
  return {local.Serialize(), net.Serialize(), wide.Serialize()};
}

// ---- net shuffle messages -----------------------------------------------------------------

// Byte 0: bit 0 picks the decoder (0: a control message, 1: a BufferResponse header), bits 1-3
// where the payload starts in its buffer (control messages arrive at any offset).
std::vector<std::string> NetShuffleSeeds() {
  using namespace netshuffle;  // NOLINT: the message names read better bare
  const ControlMessage messages[] = {
      PartitionRequest{PartitionId{0xFEDCBA9876543210ull, 3}, 7, 1000, 2},
      AddCredit{17, 4},
      BacklogAnnouncement{17, 99},
      CancelPartitionRequest{5},
      CloseRequest{},
      ResumeConsumption{6},
      ErrorResponse{8, true, ErrorCode::kPartitionNotFound, "partition x is not produced",
                    absl::StatusCode::kNotFound},
  };
  std::vector<std::string> seeds;
  for (const ControlMessage& m : messages) {
    seeds.push_back(std::string(1, '\x00') + std::string(EncodeControl(m).readable()));
    seeds.push_back(std::string(1, '\x06') + std::string(EncodeControl(m).readable()));
  }
  net::FrameHeader h = BufferResponseHeader(BufferResponse{3, 12, 40, DataType::kData});
  h.length = 32768;
  char header[net::kFrameHeaderSize];
  net::EncodeFrameHeader(h, header);
  seeds.push_back(std::string(1, '\x01') + std::string(header, sizeof(header)));
  return seeds;
}

// ---- record deserializer -----------------------------------------------------------------

// Byte 0: bit 0 the mode, bits 1-4 the max record size, bits 5-7 how the stream is split into
// buffers; bytes 1-3 seed the splitting.
constexpr size_t kRecordConfigBytes = 4;
constexpr size_t kRecordMaxSizes[] = {0,   1,     10,    127,   128,
                                      300, 16383, 16384, 65536, kDefaultMaxRecordSize};
enum RecordMode : uint8_t {
  kRawStream = 0,        // the rest of the input is the stream, as received
  kRecordsToEncode = 1,  // the rest describes records; the stream is their encoding
};
// Records mode: no record is added once the encoded stream is this long (keeps each run fast).
constexpr size_t kMaxEncodedStream = 48 * 1024;
constexpr size_t kRecordLengths[] = {126,   127,   128,   129,   255,  256,
                                     16383, 16384, 16385, 32768, 65535};

// Each buffer is a heap allocation of its own (so that ASan sees a read past it): a bounded
// number keeps a long stream cut into single bytes fast enough for the randomized test.
constexpr size_t kMaxBuffers = 512;

// Where each buffer ends in the stream. A long stream is cut as `style` says in a window that
// the seed places; the bytes before and after it are a buffer each.
std::vector<size_t> SplitStream(Rng& rng, size_t total, uint8_t style) {
  std::vector<size_t> ends;
  size_t at = 0;
  if (style != 3 && total > kMaxBuffers && rng.Below(2) == 0) {
    at = rng.Below(total);
    ends.push_back(at);
  }
  while (at < total || ends.empty()) {
    size_t n;
    switch (style) {
      case 0:
        n = 1;
        break;
      case 1:
        n = 1 + rng.Below(8);
        break;
      case 2:
        n = 1 + rng.Below(200);
        break;
      case 3:
        n = total;  // one buffer
        break;
      case 4:  // now and then an empty buffer
        n = rng.Below(4) == 0 ? 0 : 1 + rng.Below(16);
        break;
      default:
        n = ChunkSize(rng);
        break;
    }
    if (ends.size() + 1 >= kMaxBuffers) n = total - at;
    at += std::min(n, total - at);
    ends.push_back(at);
  }
  return ends;
}

struct RefRecord {
  size_t at;  // the body: [at, at + length)
  size_t length;
  size_t end() const { return at + length; }
};
struct RecordParse {
  std::vector<RefRecord> records;
  bool has_error = false;
  size_t error_due = 0;    // the stream bytes after which the error is known
  bool too_large = false;  // otherwise a malformed length
};

// The stream as a plain sequential parse of `[LEB128 length, at most 5 bytes, < 2^32][body]`
// sees it.
RecordParse ParseRecordStream(const uint8_t* s, size_t n, size_t max_record) {
  RecordParse r;
  size_t off = 0;
  while (off < n) {
    uint64_t length = 0;
    size_t used = 0;
    bool complete = false;
    while (used < kMaxVarintLength && off + used < n) {
      const uint8_t b = s[off + used++];
      length |= uint64_t{b & 0x7fu} << (7 * (used - 1));
      if ((b & 0x80) == 0) {
        complete = true;
        break;
      }
    }
    if (!complete && used < kMaxVarintLength) break;  // the stream ends inside the length
    if (!complete || length > UINT32_MAX) {
      r.has_error = true;
      r.error_due = off + used;
      return r;
    }
    if (length > max_record) {
      r.has_error = true;
      r.too_large = true;
      r.error_due = off + used;
      return r;
    }
    if (n - off - used < length) break;  // the stream ends inside the body
    r.records.push_back({off + used, static_cast<size_t>(length)});
    off += used + length;
  }
  return r;
}

// Feeds `stream` to a RecordDeserializer in buffers ending at `ends`, draining each with Next();
// every record must come out as `ref` has it, as soon as its last byte is in, and an error must
// come exactly when the bytes that make it are in.
void CheckRecordStream(const uint8_t* stream, size_t n, size_t max_record,
                       const std::vector<size_t>& ends, const RecordParse& ref) {
  FUZZ_CHECK(!ends.empty() && ends.back() == n, "the buffers do not cover the stream");
  RecordDeserializer reader(max_record);
  size_t fed = 0;
  size_t got = 0;
  size_t complete = 0;  // reference records whose bytes have all been fed
  for (size_t b = 0; b < ends.size(); ++b) {
    FUZZ_CHECK(!reader.has_buffer(), absl::StrFormat("buffer %d: the last one not taken", b));
    // A copy of its own, so that ASan sees a read past the buffer.
    Buffer buffer = Buffer::CopyOf(
        std::string_view(reinterpret_cast<const char*>(stream + fed), ends[b] - fed));
    const char* const bytes = buffer.read_ptr();
    const size_t start = fed;
    reader.SetBuffer(std::move(buffer));
    FUZZ_CHECK(reader.has_buffer(), absl::StrFormat("buffer %d: has_buffer() after SetBuffer", b));
    fed = ends[b];

    absl::Status error;
    for (;;) {
      std::string_view record;
      const absl::StatusOr<bool> next = reader.Next(&record);
      if (!next.ok()) {
        error = next.status();
        break;
      }
      if (!*next) break;
      FUZZ_CHECK(got < ref.records.size(),
                 absl::StrFormat("a record of %d bytes the stream does not hold (buffer %d, "
                                 "stream bytes [%d, %d))",
                                 record.size(), b, start, fed));
      const RefRecord& want = ref.records[got++];
      FUZZ_CHECK(want.end() <= fed,
                 absl::StrFormat("record %d handed out at byte %d, before its end at byte %d",
                                 got - 1, fed, want.end()));
      FUZZ_CHECK(record.size() == want.length,
                 absl::StrFormat("record %d: %d bytes, the stream has %d", got - 1, record.size(),
                                 want.length));
      FUZZ_CHECK(std::memcmp(record.data(), stream + want.at, want.length) == 0,
                 absl::StrFormat("record %d: bytes differ from the stream", got - 1));
    }

    while (complete < ref.records.size() && ref.records[complete].end() <= fed) ++complete;
    const bool error_due = ref.has_error && ref.error_due <= fed;
    if (!error.ok()) {
      FUZZ_CHECK(error_due, absl::StrFormat("error at byte %d on a well-formed stream: %s", fed,
                                            error.ToString()));
      FUZZ_CHECK(got == ref.records.size(),
                 absl::StrFormat("error after %d of the %d records before the bad length", got,
                                 ref.records.size()));
      const char* const want = ref.too_large ? "exceeds the maximum record size" : "malformed";
      FUZZ_CHECK(
          error.code() == absl::StatusCode::kDataLoss && absl::StrContains(error.message(), want),
          absl::StrCat("error ", error.ToString(), ", expected DATA_LOSS saying \"", want, "\""));
      return;  // a consumer fails the channel here
    }
    FUZZ_CHECK(!error_due,
               absl::StrFormat("the bad length that ends at byte %d went unreported (%s)",
                               ref.error_due, ref.too_large ? "too large" : "malformed"));
    FUZZ_CHECK(got == complete, absl::StrFormat("%d records complete after byte %d, %d handed out",
                                                complete, fed, got));
    const size_t boundary = complete > 0 ? ref.records[complete - 1].end() : 0;
    FUZZ_CHECK(reader.has_partial_record() == (boundary != fed),
               absl::StrFormat("has_partial_record() is %s at byte %d, the last record ends at %d",
                               reader.has_partial_record() ? "true" : "false", fed, boundary));
    const Buffer back = reader.TakeBuffer();
    FUZZ_CHECK(back.valid() && back.read_ptr() == bytes,
               absl::StrFormat("buffer %d: TakeBuffer() gave back another buffer", b));
  }
  reader.Reset();
  FUZZ_CHECK(!reader.has_buffer() && !reader.has_partial_record(), "state left after Reset()");
}

// Records mode: the records that the bytes describe, with their encoding. Each record takes one
// to three bytes of the description: byte b & 3 picks a short length (b >> 2), a length at a
// varint boundary, or a length of the next two bytes (little-endian) or of the next byte times
// 256. Bodies are pseudo-random, and bytes >= 0x80 in them look like continued lengths.
std::string EncodeRecords(const uint8_t* desc, size_t n, Rng& rng, std::vector<RefRecord>* out) {
  std::string stream;
  size_t i = 0;
  while (i < n && stream.size() < kMaxEncodedStream) {
    const uint8_t b = desc[i++];
    size_t length = 0;
    switch (b & 3) {
      case 0:
        length = b >> 2;
        break;
      case 1:
        length = kRecordLengths[(b >> 2) % std::size(kRecordLengths)];
        break;
      case 2:
        for (int k = 0; k < 2 && i < n; ++k) length |= size_t{desc[i++]} << (8 * k);
        break;
      default:
        if (i < n) length = size_t{desc[i++]} << 8 | (b >> 2);
        break;
    }
    char varint[kMaxVarintLength];
    const char* const varint_end = EncodeVarint(varint, static_cast<uint32_t>(length));
    stream.append(varint, static_cast<size_t>(varint_end - varint));
    out->push_back({stream.size(), length});
    const size_t at = stream.size();
    stream.resize(at + length);
    for (size_t k = 0; k < length; k += 8) {
      const uint64_t bytes = rng.Next();
      std::memcpy(stream.data() + at + k, &bytes, std::min<size_t>(8, length - k));
    }
  }
  return stream;
}

void RunRecordDeserializer(const uint8_t* data, size_t size) {
  uint8_t config[kRecordConfigBytes] = {};
  std::memcpy(config, data, std::min(size, kRecordConfigBytes));
  const uint8_t* rest = data + std::min(size, kRecordConfigBytes);
  const size_t rest_size = size - std::min(size, kRecordConfigBytes);
  const auto mode = static_cast<RecordMode>(config[0] & 1);
  size_t max_record = kRecordMaxSizes[((config[0] >> 1) & 15) % std::size(kRecordMaxSizes)];
  const uint8_t style = config[0] >> 5;
  Rng rng(uint64_t{config[1]} | uint64_t{config[2]} << 8 | uint64_t{config[3]} << 16);

  if (mode == kRawStream) {
    const std::vector<size_t> ends = SplitStream(rng, rest_size, style);
    CheckRecordStream(rest, rest_size, max_record, ends,
                      ParseRecordStream(rest, rest_size, max_record));
    return;
  }
  // The property: records encoded back to back come out whole and in order, however the
  // stream is split, and nothing else does.
  RecordParse want;
  const std::string encoded = EncodeRecords(rest, rest_size, rng, &want.records);
  for (const RefRecord& r : want.records) max_record = std::max(max_record, r.length);
  const auto* stream = reinterpret_cast<const uint8_t*>(encoded.data());
  const std::vector<size_t> ends = SplitStream(rng, encoded.size(), style);
  // The reference parse agrees (it is what the raw mode trusts).
  const RecordParse ref = ParseRecordStream(stream, encoded.size(), max_record);
  FUZZ_CHECK(!ref.has_error && ref.records.size() == want.records.size(),
             absl::StrFormat("the reference parse found %d of %d records%s", ref.records.size(),
                             want.records.size(), ref.has_error ? " and an error" : ""));
  CheckRecordStream(stream, encoded.size(), max_record, ends, want);
}

std::string RecordConfig(RecordMode mode, uint8_t max_index, uint8_t style, uint32_t seed) {
  std::string c(kRecordConfigBytes, '\0');
  c[0] = static_cast<char>(mode | (max_index << 1) | (style << 5));
  for (size_t i = 1; i < kRecordConfigBytes; ++i) c[i] = static_cast<char>(seed >> (8 * (i - 1)));
  return c;
}

std::string EncodedRecords(const std::vector<size_t>& lengths) {
  std::string s;
  for (size_t length : lengths) {
    char varint[kMaxVarintLength];
    const char* const varint_end = EncodeVarint(varint, static_cast<uint32_t>(length));
    s.append(varint, static_cast<size_t>(varint_end - varint));
    for (size_t k = 0; k < length; ++k) s.push_back(static_cast<char>((k * 37 + length) & 0xFF));
  }
  return s;
}

std::vector<std::string> RecordDeserializerSeeds() {
  const uint8_t kDefaultMax = std::size(kRecordMaxSizes) - 1;
  std::vector<std::string> seeds;
  // Raw streams of well-formed records, split every way.
  const std::string streams[] = {
      EncodedRecords({0, 1, 5, 127, 128, 0, 300}),
      EncodedRecords({16384, 3, 16383}),
      EncodedRecords({40, 40, 40, 40, 40, 40, 40, 40, 40, 40}),
  };
  for (uint8_t style = 0; style < 8; ++style) {
    for (const std::string& s : streams) {
      seeds.push_back(RecordConfig(kRawStream, kDefaultMax, style, 1000u + style) + s);
    }
  }
  // A length above the maximum, and malformed lengths (six bytes; five above 2^32 - 1).
  seeds.push_back(RecordConfig(kRawStream, 5, 2, 7) + EncodedRecords({10, 301}));
  seeds.push_back(RecordConfig(kRawStream, 5, 2, 7) + EncodedRecords({10, 20}) +
                  std::string(5, '\xff') + '\x01');
  seeds.push_back(RecordConfig(kRawStream, 5, 1, 8) + EncodedRecords({10}) +
                  "\xff\xff\xff\xff\x10" + "tail");
  // Record lists to encode (the property check).
  const std::string lists[] = {
      std::string("\x04\x08\x00\x05\x09\x0d", 6),  // short ones and boundaries
      std::string("\x02\x00\x40\x0c\x29\x05", 6),  // 16 KiB, 3 bytes, 65535, 127
      std::string(64, '\x10'),                     // many of 4 bytes
  };
  for (uint8_t style = 0; style < 8; ++style) {
    for (const std::string& l : lists) {
      seeds.push_back(RecordConfig(kRecordsToEncode, style, style, 2000u + style) + l);
    }
  }
  return seeds;
}

// ---- other tools' output -------------------------------------------------------------------

// Byte 0 of a tool_output input: 'R', redis-benchmark's CSV; otherwise even, sockperf's text;
// odd, iperf3's JSON.
constexpr char kSockperfInput = 'S';  // 0x53
constexpr char kIperf3Input = 'I';    // 0x49
constexpr char kRedisBenchmarkInput = 'R';

std::vector<std::string> ToolOutputSeeds() {
  // Trimmed from real runs (sockperf 3.7 with --full-rtt, iperf3 3.12 -J); more in
  // tests/tools/tool_output_test.cc.
  const std::string sockperf =
      "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n"
      "sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=7525; ReceivedMessages=7525\n"
      "sockperf: Summary: Round trip is 73.076 usec\n"
      "sockperf: \x1b[2;35mTotal 7525 observations\x1b[0m; each percentile contains 75.25 "
      "observations\n"
      "sockperf: ---> <MAX> observation = 2666.204\n"
      "sockperf: ---> percentile 99.999 = 2666.204\n"
      "sockperf: ---> percentile 99.900 =  215.159\n"
      "sockperf: ---> percentile 99.000 =  115.691\n"
      "sockperf: ---> percentile 90.000 =   85.346\n"
      "sockperf: ---> percentile 50.000 =   72.557\n"
      "sockperf: ---> <MIN> observation =   14.401\n";
  const std::string sockperf_error =
      "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n"
      "sockperf: ERROR: Can`t connect socket (errno=111 Connection refused)\n";
  const std::string iperf3 =
      "{\n\t\"start\":\t{\n\t\t\"version\":\t\"iperf 3.12\",\n"
      "\t\t\"test_start\":\t{\n\t\t\t\"protocol\":\t\"TCP\",\n\t\t\t\"blksize\":\t131072\n\t\t}\n"
      "\t},\n\t\"intervals\":\t[{\n\t\t\t\"sum\":\t{\n\t\t\t\t\"seconds\":\t1.0001120567321777,\n"
      "\t\t\t\t\"bits_per_second\":\t19197275376.054642\n\t\t\t}\n\t\t}],\n"
      "\t\"end\":\t{\n\t\t\"sum_sent\":\t{\n\t\t\t\"seconds\":\t1.000112,\n"
      "\t\t\t\"bits_per_second\":\t19197276465.035919\n\t\t},\n"
      "\t\t\"sum_received\":\t{\n\t\t\t\"start\":\t0,\n\t\t\t\"seconds\":\t1.000899,\n"
      "\t\t\t\"bits_per_second\":\t19182181778.581055,\n\t\t\t\"sender\":\ttrue\n\t\t}\n\t}\n}\n";
  const std::string iperf3_error =
      "{\n\t\"start\":\t{\n\t\t\"connected\":\t[],\n\t\t\"version\":\t\"iperf 3.12\"\n\t},\n"
      "\t\"intervals\":\t[],\n\t\"end\":\t{\n\t},\n"
      "\t\"error\":\t\"unable to connect to server: Connection refused\"\n}\n";
  const std::string redis_benchmark =
      "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\","
      "\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n"
      "\"GET\",\"42553.19\",\"0.032\",\"0.016\",\"0.039\",\"0.039\",\"0.071\",\"2.727\"\n";
  const std::string redis_benchmark_error = "Error from server: ERR unknown command\n";
  return {kSockperfInput + sockperf,
          kSockperfInput + sockperf_error,
          kIperf3Input + iperf3,
          kIperf3Input + iperf3_error,
          kRedisBenchmarkInput + redis_benchmark,
          kRedisBenchmarkInput + redis_benchmark_error};
}

}  // namespace

std::string Hex(const uint8_t* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * size);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

void FuzzFrameHeader(const uint8_t* data, size_t size) {
  InputScope scope("frame_header", data, size);
  // Exactly the header's bytes in an allocation of their own, so that ASan sees a read past them.
  auto in = std::make_unique<char[]>(kFrameHeaderSize);
  std::memset(in.get(), 0, kFrameHeaderSize);
  std::memcpy(in.get(), data, std::min(size, kFrameHeaderSize));
  const size_t max_frame = size > kFrameHeaderSize
                               ? kHeaderLimits[data[kFrameHeaderSize] % std::size(kHeaderLimits)]
                               : net::kDefaultMaxFrameSize;
  const absl::StatusOr<FrameHeader> h = DecodeFrameHeader(in.get(), max_frame);

  uint16_t magic;
  uint32_t length;
  std::memcpy(&magic, in.get(), sizeof(magic));
  std::memcpy(&length, in.get() + 12, sizeof(length));
  const uint8_t version = static_cast<uint8_t>(in[2]);
  if (!h.ok()) {
    FUZZ_CHECK(!h.status().message().empty(), "an error without a message");
    // The first wrong field in wire order decides.
    const absl::StatusCode want = magic != net::kFrameMagic ? absl::StatusCode::kDataLoss
                                  : version != net::kFrameVersion
                                      ? absl::StatusCode::kFailedPrecondition
                                      : absl::StatusCode::kResourceExhausted;
    FUZZ_CHECK(h.status().code() == want, h.status().ToString());
    FUZZ_CHECK(want != absl::StatusCode::kResourceExhausted || length > max_frame,
               "refused a valid header: " + h.status().ToString());
    return;
  }
  FUZZ_CHECK(magic == net::kFrameMagic && version == net::kFrameVersion && length <= max_frame,
             "accepted " + Describe(*h) +
                 absl::StrFormat(" (magic 0x%04x, version %d, max %d)", magic, version, max_frame));
  // Encoding what was decoded gives the bytes back; the reserved field goes out as zero.
  char out[kFrameHeaderSize];
  EncodeFrameHeader(*h, out);
  in[6] = in[7] = 0;
  FUZZ_CHECK(std::memcmp(in.get(), out, kFrameHeaderSize) == 0,
             "re-encoding changed the header: " +
                 Hex(reinterpret_cast<const uint8_t*>(out), kFrameHeaderSize));
  FUZZ_CHECK(!net::FrameTypeName(h->type).empty(), "a frame type without a name");
}

void FuzzFrameReader(const uint8_t* data, size_t size) {
  InputScope scope("frame_reader", data, size);
  RunFrameReader(data, size);
}

void FuzzHandshake(const uint8_t* data, size_t size) {
  InputScope scope("handshake", data, size);
  if (size == 0) return;
  const auto kind = static_cast<HandshakeKind>(data[0] & 3);
  // Frames follow one another in a segment, so a payload may start at any offset.
  const size_t offset = (data[0] >> 2) & 7;
  // Exactly the payload's bytes behind the offset, so that ASan sees a read past them.
  Buffer payload = Buffer::AllocateUnpooled(offset + size - 1);
  payload.SetIndexes(offset, offset);
  payload.Append(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  if (kind == kHello || kind == kAll) CheckHelloMessage(payload);
  if (kind == kError || kind == kAll) CheckErrorMessage(payload);
  if (kind == kHelloAck || kind == kAll) CheckHelloAckMessage(payload);
}

void FuzzEvent(const uint8_t* data, size_t size) {
  InputScope scope("event", data, size);
  // Exactly the event's bytes in an allocation of their own, so that ASan sees a read past them.
  auto in = std::make_unique<char[]>(size);
  if (size > 0) std::memcpy(in.get(), data, size);
  const absl::StatusOr<Event> e = DecodeEvent(std::string_view(in.get(), size));
  const char* const defect = EventDefect(data, size);
  if (!e.ok()) {
    FUZZ_CHECK(defect != nullptr, "refused a well-formed event: " + e.status().ToString());
    FUZZ_CHECK(e.status().code() == absl::StatusCode::kDataLoss &&
                   absl::StrContains(e.status().message(), defect),
               absl::StrCat("error ", e.status().ToString(), ", expected DATA_LOSS saying \"",
                            defect, "\""));
    return;
  }
  FUZZ_CHECK(defect == nullptr, absl::StrCat("accepted ", e->ToString(), " (", defect, ")"));
  FUZZ_CHECK(static_cast<uint8_t>(e->type) == data[0],
             absl::StrCat("type byte ", data[0], " decoded as ", e->ToString()));
  FUZZ_CHECK(EventTypeName(e->type) != "unknown", "a decoded event type without a name");
  // Encoding what was decoded gives the bytes back; the reserved bytes go out as zero.
  const Buffer out = EncodeEvent(*e);
  std::string want(data, data + size);
  want[2] = want[3] = '\0';
  FUZZ_CHECK(out.readable() == want,
             "re-encoding " + e->ToString() + " changed the bytes: " +
                 Hex(reinterpret_cast<const uint8_t*>(out.read_ptr()), out.readable_bytes()));
  const absl::StatusOr<Event> again = DecodeEvent(out.readable());
  FUZZ_CHECK(again.ok() && *again == *e,
             absl::StrCat(e->ToString(), " decoded again as ",
                          again.ok() ? again->ToString() : again.status().ToString()));
}

void FuzzShuffleDescriptor(const uint8_t* data, size_t size) {
  InputScope scope("shuffle_descriptor", data, size);
  auto in = std::make_unique<char[]>(size);
  if (size > 0) std::memcpy(in.get(), data, size);
  const absl::StatusOr<ShuffleDescriptor> d =
      ShuffleDescriptor::Parse(std::string_view(in.get(), size));
  if (!d.ok()) {
    FUZZ_CHECK(d.status().code() == absl::StatusCode::kInvalidArgument &&
                   absl::StrContains(d.status().message(), "shuffle descriptor"),
               "an error that does not say what was refused: " + d.status().ToString());
    return;
  }
  FUZZ_CHECK(!d->service.empty() && d->num_subpartitions > 0, "accepted " + Describe(*d));
  // What was parsed survives Serialize and Parse, and serializing is deterministic.
  const std::string bytes = d->Serialize();
  const absl::StatusOr<ShuffleDescriptor> again = ShuffleDescriptor::Parse(bytes);
  FUZZ_CHECK(again.ok(),
             absl::StrCat(Describe(*d), " serialized does not parse: ", again.status().ToString()));
  FUZZ_CHECK(*again == *d, absl::StrCat(Describe(*d), " came back as ", Describe(*again)));
  FUZZ_CHECK(again->Serialize() == bytes, "serializing " + Describe(*d) + " twice differs");
}

void FuzzNetShuffle(const uint8_t* data, size_t size) {
  InputScope scope("net_shuffle", data, size);
  if (size == 0) return;
  const uint8_t mode = data[0];
  ++data;
  --size;
  if ((mode & 1) == 0) {
    const size_t offset = (mode >> 1) & 7;
    auto in = std::make_unique<char[]>(size + offset);
    if (size > 0) std::memcpy(in.get() + offset, data, size);
    const absl::StatusOr<netshuffle::ControlMessage> m =
        netshuffle::DecodeControl(std::string_view(in.get() + offset, size));
    if (!m.ok()) {
      FUZZ_CHECK(m.status().code() == absl::StatusCode::kInvalidArgument ||
                     m.status().code() == absl::StatusCode::kFailedPrecondition,
                 "an unexpected kind of error: " + m.status().ToString());
      FUZZ_CHECK(!m.status().message().empty(), "an error without a message");
      return;
    }
    // What was accepted encodes to a message that decodes to the same thing.
    const Buffer again = netshuffle::EncodeControl(*m);
    const absl::StatusOr<netshuffle::ControlMessage> back =
        netshuffle::DecodeControl(again.readable());
    FUZZ_CHECK(
        back.ok() && *back == *m,
        std::string(netshuffle::MessageName(*m)) + " did not survive encoding: " +
            (back.ok() ? std::string(netshuffle::MessageName(*back)) : back.status().ToString()));
    return;
  }
  if (size < net::kFrameHeaderSize) return;
  const absl::StatusOr<net::FrameHeader> h =
      net::DecodeFrameHeader(reinterpret_cast<const char*>(data), net::kDefaultMaxFrameSize);
  if (!h.ok()) return;
  const absl::StatusOr<netshuffle::BufferResponse> r = netshuffle::DecodeBufferResponse(*h);
  if (!r.ok()) {
    FUZZ_CHECK(h->flags > 2 || h->length == 0,
               "refused a valid BufferResponse: " + r.status().ToString());
    return;
  }
  FUZZ_CHECK(h->flags <= 2 && h->length > 0, "accepted a BufferResponse with flags " +
                                                 absl::StrCat(h->flags) + " and length " +
                                                 absl::StrCat(h->length));
  FUZZ_CHECK(r->channel == h->channel && r->sequence == h->sequence && r->backlog == h->backlog,
             "BufferResponse fields differ from the header");
}

void FuzzRecordDeserializer(const uint8_t* data, size_t size) {
  InputScope scope("record_deserializer", data, size);
  RunRecordDeserializer(data, size);
}

void FuzzToolOutput(const uint8_t* data, size_t size) {
  InputScope scope("tool_output", data, size);
  if (size == 0) return;
  const bool redis_benchmark = data[0] == kRedisBenchmarkInput;
  const bool iperf3 = (data[0] & 1) != 0;
  ++data;
  --size;
  // A buffer of exactly the input's size, so that a read past its end is caught.
  auto in = std::make_unique<char[]>(size);
  if (size > 0) std::memcpy(in.get(), data, size);
  const absl::string_view text(in.get(), size);

  const std::string gist = tools::OutputGist(text);
  FUZZ_CHECK(!gist.empty() && gist.size() <= 603,
             absl::StrCat("a gist of ", gist.size(), " bytes"));
  if (redis_benchmark) {
    const absl::StatusOr<tools::RedisBenchmarkReport> r =
        tools::ParseRedisBenchmarkCsv(text, "GET");
    if (!r.ok()) {
      FUZZ_CHECK((r.status().code() == absl::StatusCode::kUnavailable &&
                  absl::StartsWith(r.status().message(), "redis-benchmark reported an error")) ||
                     (r.status().code() == absl::StatusCode::kInvalidArgument &&
                      absl::StartsWith(r.status().message(), "redis-benchmark")),
                 "an error that does not say what was refused: " + r.status().ToString());
      return;
    }
    FUZZ_CHECK(std::isfinite(r->requests_per_second) && r->requests_per_second > 0,
               absl::StrCat("accepted rps ", r->requests_per_second));
    for (const double v : {r->avg_ms, r->min_ms, r->p50_ms, r->p95_ms, r->p99_ms, r->max_ms}) {
      FUZZ_CHECK(std::isfinite(v) && v >= 0, absl::StrCat("accepted a latency of ", v, " ms"));
    }
    return;
  }
  if (iperf3) {
    const absl::StatusOr<tools::Iperf3Report> r = tools::ParseIperf3Json(text);
    if (!r.ok()) {
      FUZZ_CHECK((r.status().code() == absl::StatusCode::kUnavailable &&
                  absl::StartsWith(r.status().message(), "iperf3 reported an error")) ||
                     (r.status().code() == absl::StatusCode::kInvalidArgument &&
                      absl::StrContains(r.status().message(), "iperf3")),
                 "an error that does not say what was refused: " + r.status().ToString());
      return;
    }
    FUZZ_CHECK(std::isfinite(r->bits_per_second) && r->bits_per_second > 0,
               absl::StrCat("accepted bits_per_second ", r->bits_per_second));
    FUZZ_CHECK(std::isfinite(r->measured_seconds) && r->measured_seconds >= 0,
               absl::StrCat("accepted seconds ", r->measured_seconds));
    FUZZ_CHECK(r->version.size() < size, "a version longer than the input");
    return;
  }

  // No ESC is left, so stripping again changes nothing.
  const std::string stripped = tools::StripEscapes(text);
  FUZZ_CHECK(stripped.size() <= size && !absl::StrContains(stripped, "\x1b"),
             "an escape sequence left in " + absl::CHexEscape(stripped));
  FUZZ_CHECK(tools::StripEscapes(stripped) == stripped, "stripping twice differs");
  const absl::StatusOr<tools::SockperfReport> r = tools::ParseSockperfOutput(text);
  if (!r.ok()) {
    FUZZ_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument &&
                   absl::StartsWith(r.status().message(), "sockperf reported no "),
               "an error that does not say what was missing: " + r.status().ToString());
    return;
  }
  for (const double v : {r->p50_us, r->p90_us, r->p99_us, r->p999_us, r->max_us}) {
    FUZZ_CHECK(std::isfinite(v) && v >= 0, absl::StrCat("accepted a latency of ", v, " us"));
  }
  FUZZ_CHECK(r->observations > 0, "accepted a report of no observations");
  FUZZ_CHECK(std::isfinite(r->measured_seconds) && r->measured_seconds >= 0,
             absl::StrCat("accepted RunTime=", r->measured_seconds));
}

std::vector<std::string> StateSnapshotSeeds() {
  SnapshotHeader h;
  h.max_parallelism = 128;
  h.key_groups = {0, 128};
  h.states = {{"value", StateKind::kValue, 0},
              {"map", StateKind::kMap, 60'000},
              {"list", StateKind::kList, 0}};
  SnapshotWriter w(h);
  w.Add({0, 3, "alice", "", "", "42"});
  w.Add({1, 77, "bob", "window-1", "page", std::string(12, 'x')});
  w.Add({2, 127, "carol", "", "", std::string("\x01\0\0\0a", 5)});
  SnapshotHeader empty;
  empty.max_parallelism = 4;
  empty.key_groups = {1, 2};
  return {std::move(w).Finish(), SnapshotWriter(empty).Finish()};
}

void FuzzStateSnapshot(const uint8_t* data, size_t size) {
  InputScope scope("state_snapshot", data, size);
  auto in = std::make_unique<char[]>(size);
  if (size > 0) std::memcpy(in.get(), data, size);
  const std::string_view bytes(in.get(), size);
  std::optional<SnapshotWriter> again;
  int calls = 0;
  const absl::Status s = ParseSnapshot(
      bytes,
      [&](const SnapshotHeader& h) {
        ++calls;
        again.emplace(h);
        return absl::OkStatus();
      },
      [&](const SnapshotEntry& e) {
        ++calls;
        FUZZ_CHECK(again.has_value(), "an entry before the header");
        again->Add(e);
        return absl::OkStatus();
      });
  if (!s.ok()) {
    FUZZ_CHECK(
        s.code() == absl::StatusCode::kDataLoss && absl::StartsWith(s.message(), "state snapshot"),
        "an error that does not say it is about the snapshot: " + s.ToString());
    FUZZ_CHECK(calls == 0, "callbacks ran for a snapshot that was refused");
    return;
  }
  FUZZ_CHECK(again.has_value(), "an accepted snapshot without a header");
  FUZZ_CHECK(std::move(*again).Finish() == bytes,
             "an accepted snapshot that writes back differently");
}

std::vector<std::string> QueryProtocolSeeds() {
  QueryRequest get;
  get.job = "demo";
  get.state = "key";
  get.keys = {"000000000042"};
  QueryRequest mget = get;
  mget.type = QueryType::kMultiGet;
  mget.keys.push_back(std::string("k\0y", 3));
  mget.consistency = Consistency::kCommitted;
  mget.checkpoint_id = 9;
  QueryRequest scan = get;
  scan.type = QueryType::kPrefixScan;
  scan.prefix = "0000";
  scan.limit = 10;
  scan.continuation = "s1abcdefghijkl";
  QueryResponse response;
  response.results.resize(2);
  response.results[0].found = true;
  response.results[0].value.kind = StateKind::kMap;
  response.results[0].value.map = {{"a", "1"}};
  response.results[1].status = QueryStatus::kMoved;
  response.results[1].location = "127.0.0.1:7";
  response.entries.push_back(ScanEntry{"k", QueryValue{StateKind::kList, "", {"x"}, {}}});
  response.states.push_back(
      StateInfo{"demo", "key", StateKind::kValue, "", "", 128, {StateLocation{{0, 64}, "h:1"}}});
  auto with = [](char selector, const Buffer& b) {
    return std::string(1, selector) + std::string(b.readable());
  };
  return {with(0, EncodeQueryRequest(get)), with(0, EncodeQueryRequest(mget)),
          with(0, EncodeQueryRequest(scan)), with(1, EncodeQueryResponse(response))};
}

void FuzzQueryProtocol(const uint8_t* data, size_t size) {
  InputScope scope("query_protocol", data, size);
  if (size == 0) return;
  // Placed one byte in, so that it is misaligned as often as not.
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    absl::StatusOr<QueryRequest> r = DecodeQueryRequest(bytes);
    if (!r.ok()) return;
    Buffer again = EncodeQueryRequest(*r);
    absl::StatusOr<QueryRequest> back = DecodeQueryRequest(again.readable());
    FUZZ_CHECK(back.ok(), "an accepted request that does not decode once encoded again: " +
                              back.status().ToString());
    FUZZ_CHECK(back->keys == r->keys && back->job == r->job && back->state == r->state &&
                   back->continuation == r->continuation && back->type == r->type &&
                   back->consistency == r->consistency,
               "an accepted request that changes when encoded again");
    // The scan position of a continuation: decoded, or refused with a message.
    absl::StatusOr<ScanPosition> p = DecodeScanPosition(r->continuation);
    if (p.ok()) FUZZ_CHECK(EncodeScanPosition(*p) == r->continuation, "scan position changed");
    return;
  }
  absl::StatusOr<QueryResponse> r = DecodeQueryResponse(bytes);
  if (!r.ok()) return;
  Buffer again = EncodeQueryResponse(*r);
  absl::StatusOr<QueryResponse> back = DecodeQueryResponse(again.readable());
  FUZZ_CHECK(back.ok(), "an accepted response that does not decode once encoded again: " +
                            back.status().ToString());
  FUZZ_CHECK(back->results.size() == r->results.size() &&
                 back->entries.size() == r->entries.size() &&
                 back->states.size() == r->states.size(),
             "an accepted response that changes when encoded again");
  for (size_t i = 0; i < r->results.size(); ++i) {
    FUZZ_CHECK(back->results[i].value == r->results[i].value, "a value changed");
  }
}

std::vector<std::string> CheckpointMetadataSeeds() {
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
  full.max_parallelism = 4;
  full.key_groups = {0, 4};
  full.files = {{"full.snapshot", {"chk-7/source/0/full.snapshot", 10, 1}, false}};
  m.backends = {b, full};
  return {EncodeCheckpointMetadata(m), EncodeCheckpointMetadata(CheckpointMetadata{})};
}

// Decodes `bytes` as checkpoint metadata: refused with a DataLoss error about the metadata, or
// accepted and then encoded again to metadata that decodes to the same.
void CheckCheckpointMetadata(std::string_view bytes) {
  absl::StatusOr<CheckpointMetadata> m = DecodeCheckpointMetadata(bytes);
  if (!m.ok()) {
    FUZZ_CHECK(m.status().code() == absl::StatusCode::kDataLoss &&
                   absl::StartsWith(m.status().message(), "checkpoint metadata"),
               "an error that does not say it is about the metadata: " + m.status().ToString());
    return;
  }
  const std::string again = EncodeCheckpointMetadata(*m);
  absl::StatusOr<CheckpointMetadata> back = DecodeCheckpointMetadata(again);
  FUZZ_CHECK(back.ok(), "accepted metadata that does not decode once written again: " +
                            back.status().ToString());
  FUZZ_CHECK(EncodeCheckpointMetadata(*back) == again,
             "accepted metadata that changes when copied");
}

void FuzzCheckpointMetadata(const uint8_t* data, size_t size) {
  InputScope scope("checkpoint_metadata", data, size);
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  CheckCheckpointMetadata(bytes);
  // Again with the checksum made right, so that mutations reach the FlatBuffer and its checks.
  if (size >= 4) {
    std::string fixed = bytes;
    const uint32_t crc = Crc32c(0, fixed.data(), fixed.size() - 4);
    std::memcpy(fixed.data() + fixed.size() - 4, &crc, 4);
    CheckCheckpointMetadata(fixed);
  }
}

// What a RespParser made of a stream: its commands, then its error if it stopped at one.
struct RespRun {
  std::vector<std::vector<std::string>> commands;
  bool failed = false;
  std::string error;
  uint64_t error_offset = 0;
};

RespLimits FuzzRespLimits() {
  RespLimits limits;
  limits.max_arguments = 8;
  limits.max_bulk_bytes = 64;
  limits.max_inline_bytes = 64;
  limits.max_command_bytes = 1024;  // above any request of 8 arguments of 64 bytes
  return limits;
}

// Parses `stream` fed in chunks of 1 to 16 bytes that `rng` picks, or at once without one.
RespRun ParseResp(std::string_view stream, Rng* rng) {
  RespParser parser(FuzzRespLimits());
  RespRun run;
  std::vector<std::string_view> args;
  size_t at = 0;
  do {
    const size_t n =
        rng == nullptr ? stream.size() : std::min(stream.size() - at, 1 + rng->Below(16));
    parser.Feed(stream.substr(at, n));
    at += n;
    while (true) {
      absl::StatusOr<bool> next = parser.Next(&args);
      if (!next.ok()) {
        FUZZ_CHECK(absl::IsInvalidArgument(next.status()),
                   "a protocol error of the wrong kind: " + next.status().ToString());
        run.failed = true;
        run.error = std::string(next.status().message());
        run.error_offset = parser.error_offset();
        return run;
      }
      if (!*next) break;
      run.commands.emplace_back(args.begin(), args.end());
    }
  } while (at < stream.size());
  return run;
}

std::string DescribeCommand(const std::vector<std::string>& command) {
  std::string out;
  for (const std::string& a : command) absl::StrAppend(&out, "'", absl::CHexEscape(a), "' ");
  return out;
}

std::vector<std::string> RespSeeds() {
  const std::string streams[] = {
      EncodeCommand({"GET", "state:key"}) + EncodeCommand({"PING"}),
      "PING\r\nGET \"a b\" 'c\\'d' \"\\x41\\n\"\r\n\r\n*0\r\n",
      "*3\r\n$4\r\nMGET\r\n$3\r\na:1\r\n$0\r\n\r\nQUIT\n",
      "*1\r\n$3\r\nabcd\r\n",
      "*9\r\n",
      "*1\r\n$65\r\n",
      std::string(70, 'x') + "\n",
  };
  std::vector<std::string> seeds;
  for (const std::string& s : streams) {
    for (const char chunking : {'\x00', '\x07'}) seeds.push_back(chunking + s);
  }
  return seeds;
}

void FuzzResp(const uint8_t* data, size_t size) {
  InputScope scope("resp", data, size);
  if (size == 0) return;
  const std::string stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const RespRun whole = ParseResp(stream, nullptr);
  Rng rng(0x5E5Full * (data[0] + 1) + size);
  const RespRun cut = ParseResp(stream, &rng);
  FUZZ_CHECK(cut.commands == whole.commands,
             absl::StrFormat("%d commands in chunks, %d at once", cut.commands.size(),
                             whole.commands.size()));
  FUZZ_CHECK(cut.failed == whole.failed && cut.error == whole.error &&
                 cut.error_offset == whole.error_offset,
             absl::StrFormat("in chunks: '%s' at %d; at once: '%s' at %d", cut.error,
                             cut.error_offset, whole.error, whole.error_offset));
  FUZZ_CHECK(
      !whole.failed || whole.error_offset < stream.size(),
      absl::StrFormat("an error at %d, past the %d bytes", whole.error_offset, stream.size()));
  for (const std::vector<std::string>& command : whole.commands) {
    FUZZ_CHECK(!command.empty(), "an empty command");
    const std::vector<std::string_view> views(command.begin(), command.end());
    const RespRun again = ParseResp(EncodeCommand(views), nullptr);
    FUZZ_CHECK(!again.failed && again.commands.size() == 1 && again.commands[0] == command,
               "a command that does not parse back once encoded: " + DescribeCommand(command));
  }
}

const std::vector<Target>& Targets() {
  static const std::vector<Target> targets = {
      {"frame_header", FuzzFrameHeader, FrameHeaderSeeds},
      {"frame_reader", FuzzFrameReader, FrameReaderSeeds},
      {"handshake", FuzzHandshake, HandshakeSeeds},
      {"event", FuzzEvent, EventSeeds},
      {"shuffle_descriptor", FuzzShuffleDescriptor, ShuffleDescriptorSeeds},
      {"record_deserializer", FuzzRecordDeserializer, RecordDeserializerSeeds},
      {"net_shuffle", FuzzNetShuffle, NetShuffleSeeds},
      {"tool_output", FuzzToolOutput, ToolOutputSeeds},
      {"state_snapshot", FuzzStateSnapshot, StateSnapshotSeeds},
      {"checkpoint_metadata", FuzzCheckpointMetadata, CheckpointMetadataSeeds},
      {"query_protocol", FuzzQueryProtocol, QueryProtocolSeeds},
      {"resp", FuzzResp, RespSeeds},
  };
  return targets;
}

}  // namespace sluice::fuzz
