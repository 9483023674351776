// FrameReader fed by hand, the way a socket transport feeds it: receives into prepared targets
// (epoll, directed uring reads) and whole provided-buffer segments (uring's buffer ring). Frames
// come out intact at every split point, small ones as slices of the receive segment, large ones
// read straight into a buffer of their own, and every segment goes back to the pool.
#include "net/internal/frame_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/buffer_pool.h"
#include "net/frame.h"
#include "net/transport.h"

namespace sluice::net::internal {
namespace {

using ::testing::HasSubstr;

constexpr size_t kSegmentSize = 4096;
constexpr size_t kPoolSegments = 64;
constexpr size_t kMaxFrame = 64 * 1024;

// Abseil's string_view is its own type here; gtest prints a std::string readably.
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// A frame as the sink saw it.
struct Got {
  FrameHeader header;
  Buffer payload;
  std::string bytes;
};

// What a test expects to come out.
struct Want {
  uint32_t channel;
  std::string payload;
};

// Payload bytes that tell frames and offsets apart.
std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

std::string Wire(const std::vector<Want>& frames) {
  std::string out;
  uint32_t seq = 0;
  for (const Want& w : frames) {
    FrameHeader h;
    h.type = static_cast<uint8_t>(FrameType::kFirstUserType);
    h.channel = w.channel;
    h.length = static_cast<uint32_t>(w.payload.size());
    h.sequence = seq++;
    char raw[kFrameHeaderSize];
    EncodeFrameHeader(h, raw);
    out.append(raw, kFrameHeaderSize);
    out.append(w.payload);
  }
  return out;
}

class FrameReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BufferPoolOptions options;
    options.segment_size = kSegmentSize;
    options.num_segments = kPoolSegments;
    options.try_hugepages = false;
    absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(pool).value();
    NewReader(0, kPoolSegments);
  }

  void TearDown() override {
    // Whatever the test did, nothing may stay pinned once frames and the reader let go.
    got_.clear();
    if (reader_ != nullptr) reader_->Reset();
    reader_.reset();
    if (local_ != nullptr) {
      EXPECT_EQ(local_->in_use_segments(), 0u);
    }
    local_.reset();
    if (pool_ != nullptr) {
      EXPECT_EQ(pool_->available_segments(), kPoolSegments);
    }
  }

  void NewReader(size_t min_segments, size_t max_segments, size_t max_frame = kMaxFrame) {
    got_.clear();
    reader_.reset();
    local_.reset();
    stats_ = std::make_unique<TransportStats>();
    absl::StatusOr<std::unique_ptr<LocalBufferPool>> local =
        pool_->CreateLocalPool("frame-reader-test", min_segments, max_segments);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = std::move(local).value();
    reader_ = std::make_unique<FrameReader>(local_.get(), max_frame, stats_.get());
  }

  // Sink that keeps the payload Buffer (for pointer checks) as well as a copy of its bytes.
  auto KeepSink() {
    return [this](const FrameHeader& h, Buffer payload) {
      Got g;
      g.header = h;
      if (payload.valid()) g.bytes = std::string(payload.readable());
      g.payload = std::move(payload);
      got_.push_back(std::move(g));
    };
  }
  // Sink that copies the bytes and lets the payload go at once, for long streams.
  auto CopySink() {
    return [this](const FrameHeader& h, Buffer payload) {
      Got g;
      g.header = h;
      if (payload.valid()) {
        EXPECT_EQ(payload.readable_bytes(), h.length);
        g.bytes = std::string(payload.readable());
      }
      got_.push_back(std::move(g));
    };
  }

  // One receive: the kernel writes up to target.len bytes of `bytes` at the prepared target.
  // Returns how many bytes it took.
  size_t ReceiveOnce(std::string_view bytes, bool keep, absl::Status* status) {
    FrameReader::Target t;
    EXPECT_TRUE(reader_->PrepareTarget(&t)) << "pool unexpectedly dry";
    if (t.data == nullptr) {
      *status = absl::InternalError("no target");
      return 0;
    }
    EXPECT_GT(t.len, 0u);
    const size_t k = std::min(t.len, bytes.size());
    std::memcpy(t.data, bytes.data(), k);
    *status = keep ? reader_->OnReceived(k, KeepSink()) : reader_->OnReceived(k, CopySink());
    return k;
  }

  // Receives `bytes` completely, in as many receives as the targets need.
  absl::Status Receive(std::string_view bytes, bool keep = true) {
    while (!bytes.empty()) {
      absl::Status s;
      const size_t k = ReceiveOnce(bytes, keep, &s);
      if (!s.ok()) return s;
      if (k == 0) return absl::InternalError("receive made no progress");
      bytes.remove_prefix(k);
    }
    return absl::OkStatus();
  }

  // One scatter receive (recvmsg over PrepareTargets): up to `limit` bytes of `bytes` fill the
  // targets in order. Returns how many bytes it took.
  size_t ScatterOnce(std::string_view bytes, size_t limit, bool keep, absl::Status* status) {
    FrameReader::Target t[2];
    const int n = reader_->PrepareTargets(t);
    EXPECT_GT(n, 0) << "pool unexpectedly dry";
    if (n == 0) {
      *status = absl::InternalError("no target");
      return 0;
    }
    size_t k = 0;
    for (int i = 0; i < n && k < bytes.size() && k < limit; ++i) {
      EXPECT_GT(t[i].len, 0u);
      const size_t m = std::min({t[i].len, bytes.size() - k, limit - k});
      std::memcpy(t[i].data, bytes.data() + k, m);
      k += m;
    }
    *status = keep ? reader_->OnReceived(k, KeepSink()) : reader_->OnReceived(k, CopySink());
    return k;
  }

  // Scatter receives of at most `limit` bytes each until `bytes` is consumed; counts them.
  absl::Status Scatter(std::string_view bytes, size_t limit, bool keep, int* receives = nullptr) {
    while (!bytes.empty()) {
      absl::Status s;
      const size_t k = ScatterOnce(bytes, limit, keep, &s);
      if (!s.ok()) return s;
      if (k == 0) return absl::InternalError("receive made no progress");
      if (receives != nullptr) ++*receives;
      bytes.remove_prefix(k);
    }
    return absl::OkStatus();
  }

  // A provided-buffer segment holding `bytes` (at most one segment's worth) at offset 0.
  absl::Status Segment(std::string_view bytes, bool keep, const MemorySegment** used = nullptr) {
    Buffer seg = local_->TryRequest();
    EXPECT_TRUE(seg.valid()) << "pool unexpectedly dry";
    if (!seg.valid()) return absl::InternalError("no segment");
    EXPECT_LE(bytes.size(), seg.capacity());
    std::memcpy(seg.data(), bytes.data(), bytes.size());
    if (used != nullptr) *used = seg.segment();
    return keep ? reader_->OnSegment(std::move(seg), bytes.size(), KeepSink())
                : reader_->OnSegment(std::move(seg), bytes.size(), CopySink());
  }

  // Moves the frames received so far to `seen`, dropping their payload Buffers.
  void ReleasePayloads(std::vector<Got>* seen) {
    for (Got& g : got_) {
      g.payload.Release();
      seen->push_back(std::move(g));
    }
    got_.clear();
  }

  void ExpectFrames(const std::vector<Want>& want) {
    ASSERT_EQ(got_.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      SCOPED_TRACE(testing::Message() << "frame " << i);
      EXPECT_EQ(got_[i].header.type, static_cast<uint8_t>(FrameType::kFirstUserType));
      EXPECT_EQ(got_[i].header.channel, want[i].channel);
      EXPECT_EQ(got_[i].header.sequence, i);
      EXPECT_EQ(got_[i].header.length, want[i].payload.size());
      ASSERT_EQ(got_[i].bytes.size(), want[i].payload.size());
      EXPECT_TRUE(got_[i].bytes == want[i].payload) << "payload bytes differ";
    }
  }

  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<LocalBufferPool> local_;
  std::unique_ptr<TransportStats> stats_;
  std::unique_ptr<FrameReader> reader_;
  std::vector<Got> got_;
};

TEST_F(FrameReaderTest, DirectThresholdIsAQuarterSegment) {
  EXPECT_EQ(reader_->direct_threshold(), kSegmentSize / 4);
  EXPECT_TRUE(reader_->accepts_any_segment());
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 0u);
}

TEST_F(FrameReaderTest, ManySmallFramesInOneReceiveAreSlicesOfThatSegment) {
  std::vector<Want> want;
  for (uint32_t i = 0; i < 60; ++i) want.push_back({i, Pattern(i % 7 == 0 ? 0 : i, i)});
  const std::string wire = Wire(want);
  ASSERT_LT(wire.size(), kSegmentSize);

  FrameReader::Target t;
  ASSERT_TRUE(reader_->PrepareTarget(&t));
  ASSERT_GE(t.len, wire.size());
  std::memcpy(t.data, wire.data(), wire.size());
  ASSERT_TRUE(reader_->OnReceived(wire.size(), KeepSink()).ok());
  ExpectFrames(want);

  const MemorySegment* segment = nullptr;
  size_t offset = 0;
  for (size_t i = 0; i < got_.size(); ++i) {
    offset += kFrameHeaderSize;
    if (want[i].payload.empty()) {
      EXPECT_FALSE(got_[i].payload.valid()) << "frame " << i;
    } else {
      if (segment == nullptr) segment = got_[i].payload.segment();
      EXPECT_EQ(got_[i].payload.segment(), segment) << "frame " << i;
      // The very bytes the kernel wrote, not a copy of them.
      EXPECT_EQ(got_[i].payload.read_ptr(), t.data + offset) << "frame " << i;
      EXPECT_EQ(got_[i].payload.readable_bytes(), want[i].payload.size());
    }
    offset += want[i].payload.size();
  }
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(stats_->bytes_copied.load(), 0u);
  EXPECT_EQ(stats_->frames_received.load(), want.size());
  EXPECT_EQ(stats_->bytes_received.load(), wire.size());
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_EQ(local_->in_use_segments(), 1u);

  // The segment stays alive while any frame holds it, and goes back once all are released.
  reader_->Reset();
  EXPECT_EQ(local_->in_use_segments(), 1u);
  got_.clear();
  EXPECT_EQ(local_->in_use_segments(), 0u);
}

TEST_F(FrameReaderTest, SmallFramesSplitAtEveryPoint) {
  const std::vector<Want> want = {
      {1, Pattern(100, 1)}, {2, ""}, {3, Pattern(200, 3)}, {4, Pattern(1, 4)}};
  const std::string wire = Wire(want);
  for (size_t split = 1; split < wire.size(); ++split) {
    SCOPED_TRACE(testing::Message() << "split at " << split);
    NewReader(0, kPoolSegments);
    ASSERT_TRUE(Receive(std::string_view(wire).substr(0, split)).ok());
    ASSERT_TRUE(Receive(std::string_view(wire).substr(split)).ok());
    ExpectFrames(want);
    EXPECT_TRUE(reader_->at_frame_boundary());
    // Small frames within one segment are never copied, whatever the split.
    EXPECT_EQ(stats_->bytes_copied.load(), 0u);
    EXPECT_EQ(stats_->bytes_received.load(), wire.size());
    got_.clear();
    reader_->Reset();
    EXPECT_EQ(local_->in_use_segments(), 0u);
  }
}

TEST_F(FrameReaderTest, LargeFrameSplitAtEveryPoint) {
  // One large frame (read directly once its header is known) between two small ones.
  const std::vector<Want> want = {
      {1, Pattern(10, 1)}, {2, Pattern(reader_->direct_threshold() + 300, 2)}, {3, Pattern(5, 3)}};
  const std::string wire = Wire(want);
  for (size_t split = 1; split < wire.size(); ++split) {
    SCOPED_TRACE(testing::Message() << "split at " << split);
    NewReader(0, kPoolSegments);
    ASSERT_TRUE(Receive(std::string_view(wire).substr(0, split)).ok());
    ASSERT_TRUE(Receive(std::string_view(wire).substr(split)).ok());
    ExpectFrames(want);
    EXPECT_TRUE(reader_->at_frame_boundary());
    EXPECT_EQ(stats_->bytes_received.load(), wire.size());
    got_.clear();
    reader_->Reset();
    EXPECT_EQ(local_->in_use_segments(), 0u);
  }
}

TEST_F(FrameReaderTest, ByteByByteReceives) {
  std::vector<Want> want;
  for (uint32_t i = 0; i < 12; ++i) {
    const size_t sizes[] = {0, 1, 23, 24, 25, 300, 1023, 1024, 1025, 3000, 4096, 9000};
    want.push_back({i, Pattern(sizes[i], i)});
  }
  const std::string wire = Wire(want);
  for (char c : wire) ASSERT_TRUE(Receive(std::string_view(&c, 1), /*keep=*/false).ok());
  ExpectFrames(want);
  EXPECT_TRUE(reader_->at_frame_boundary());
}

TEST_F(FrameReaderTest, LargeFrameIsReadThroughDirectedTargets) {
  const size_t big = reader_->direct_threshold() + 2000;
  ASSERT_LT(big + kFrameHeaderSize, kSegmentSize);
  const std::vector<Want> want = {
      {7, Pattern(big, 7)}, {8, Pattern(big + 1, 8)}, {9, Pattern(40, 9)}};
  const std::string wire = Wire(want);
  std::string_view rest = wire;

  // The header and the first 100 payload bytes arrive in a generic receive.
  ASSERT_TRUE(Receive(rest.substr(0, kFrameHeaderSize + 100)).ok());
  rest.remove_prefix(kFrameHeaderSize + 100);
  EXPECT_TRUE(got_.empty());
  EXPECT_FALSE(reader_->accepts_any_segment());
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), kFrameHeaderSize + 100);

  // The next target is exactly the rest of that payload.
  FrameReader::Target t;
  ASSERT_TRUE(reader_->PrepareTarget(&t));
  ASSERT_EQ(t.len, big - 100);
  std::memcpy(t.data, rest.data(), t.len);
  ASSERT_TRUE(reader_->OnReceived(t.len, KeepSink()).ok());
  rest.remove_prefix(t.len);
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_EQ(stats_->bytes_copied.load(), 100u);  // only the part that arrived with the header
  // The payload is the buffer the directed receive wrote into.
  EXPECT_EQ(got_[0].payload.read_ptr() + 100, t.data);
  EXPECT_EQ(got_[0].payload.readable_bytes(), big);

  // Large frames keep the reader in directed mode: a header target, then exactly the payload.
  EXPECT_TRUE(reader_->at_frame_boundary());
  ASSERT_TRUE(reader_->PrepareTarget(&t));
  ASSERT_EQ(t.len, kFrameHeaderSize);
  std::memcpy(t.data, rest.data(), t.len);
  ASSERT_TRUE(reader_->OnReceived(t.len, KeepSink()).ok());
  rest.remove_prefix(kFrameHeaderSize);
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), kFrameHeaderSize);
  ASSERT_TRUE(reader_->PrepareTarget(&t));
  ASSERT_EQ(t.len, big + 1);
  std::memcpy(t.data, rest.data(), t.len);
  ASSERT_TRUE(reader_->OnReceived(t.len, KeepSink()).ok());
  rest.remove_prefix(big + 1);
  ASSERT_EQ(got_.size(), 2u);
  EXPECT_EQ(got_[1].payload.read_ptr(), t.data);
  EXPECT_EQ(stats_->bytes_copied.load(), 100u);  // the second large frame cost no copy

  // A small frame between large ones keeps directed reads (a receive of its own, no copy of
  // the next large frame)...
  ASSERT_TRUE(Receive(rest).ok());
  ExpectFrames(want);
  EXPECT_FALSE(reader_->accepts_any_segment());
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_EQ(stats_->bytes_received.load(), wire.size());
  EXPECT_EQ(stats_->frames_received.load(), 3u);
  // ...and a run of small frames ends them.
  std::vector<Want> smalls;
  for (uint32_t i = 0; i < 8; ++i) smalls.push_back({10 + i, Pattern(20, static_cast<uint8_t>(i))});
  ASSERT_TRUE(Receive(Wire(smalls)).ok());
  EXPECT_TRUE(reader_->accepts_any_segment());
  EXPECT_EQ(stats_->frames_received.load(), 11u);
}

TEST_F(FrameReaderTest, FramesLargerThanASegment) {
  const std::vector<Want> want = {{1, Pattern(kSegmentSize + 1, 1)},
                                  {2, Pattern(3 * kSegmentSize + 17, 2)},
                                  {3, Pattern(12, 3)},
                                  {4, Pattern(kMaxFrame, 4)}};
  const std::string wire = Wire(want);
  // Receives in odd sizes, each bounded by the target.
  std::mt19937 rng(5);
  std::string_view rest = wire;
  while (!rest.empty()) {
    const size_t chunk = std::min<size_t>(rest.size(), 1 + rng() % 5000);
    ASSERT_TRUE(Receive(rest.substr(0, chunk)).ok());
    rest.remove_prefix(chunk);
  }
  ExpectFrames(want);
  for (size_t i : {0, 1, 3}) {
    EXPECT_GE(got_[i].payload.capacity(), want[i].payload.size());
    EXPECT_EQ(got_[i].payload.readable_bytes(), want[i].payload.size());
  }
  EXPECT_TRUE(reader_->at_frame_boundary());
}

TEST_F(FrameReaderTest, FrameAtTheMaximumSizeIsAcceptedAndOneMoreIsNot) {
  NewReader(0, kPoolSegments, /*max_frame=*/10000);
  ASSERT_TRUE(Receive(Wire({{0, Pattern(10000, 0)}})).ok());
  ASSERT_EQ(got_.size(), 1u);
  absl::Status s = Receive(Wire({{1, Pattern(10001, 1)}}));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(s), HasSubstr("10000"));
  EXPECT_THAT(Msg(s), HasSubstr("10001"));
}

TEST_F(FrameReaderTest, MalformedHeaderIsAnError) {
  std::string wire = Wire({{1, Pattern(10, 1)}, {2, Pattern(10, 2)}});
  wire[kFrameHeaderSize + 10] ^= 0x5A;  // second frame's magic
  absl::Status s = Receive(wire);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(s), HasSubstr("magic"));
  ASSERT_EQ(got_.size(), 1u);  // frames before the bad one are delivered
}

TEST_F(FrameReaderTest, MalformedHeaderAfterALargeFrameIsAnError) {
  // In directed mode the header is read on its own and checked there.
  std::string wire = Wire({{1, Pattern(3000, 1)}, {2, Pattern(10, 2)}});
  wire[kFrameHeaderSize + 3000 + 2] = 9;  // second frame's version
  absl::Status s = Receive(wire);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(s), HasSubstr("version"));
  ASSERT_EQ(got_.size(), 1u);
}

TEST_F(FrameReaderTest, OversizedFrameAfterALargeFrameNamesTheLimit) {
  NewReader(0, kPoolSegments, /*max_frame=*/5000);
  std::string wire = Wire({{1, Pattern(3000, 1)}, {2, Pattern(6000, 2)}});
  absl::Status s = Receive(wire);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(s), HasSubstr("5000"));
  ASSERT_EQ(got_.size(), 1u);
}

TEST_F(FrameReaderTest, AtFrameBoundaryAndPartialBytes) {
  const std::string small = Wire({{1, Pattern(100, 1)}});
  EXPECT_TRUE(reader_->at_frame_boundary());

  // Part of a header.
  ASSERT_TRUE(Receive(std::string_view(small).substr(0, 10)).ok());
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 10u);
  // The header and part of the payload.
  ASSERT_TRUE(Receive(std::string_view(small).substr(10, 50)).ok());
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 60u);
  // The rest.
  ASSERT_TRUE(Receive(std::string_view(small).substr(60)).ok());
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 0u);
  ASSERT_EQ(got_.size(), 1u);

  // A large frame, in directed payload mode.
  const std::string large = Wire({{2, Pattern(2000, 2)}});
  ASSERT_TRUE(Receive(std::string_view(large).substr(0, 30)).ok());
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 30u);
  ASSERT_TRUE(Receive(std::string_view(large).substr(30, 1000)).ok());
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 1030u);
  ASSERT_TRUE(Receive(std::string_view(large).substr(1030)).ok());
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 0u);

  // Directed header mode: part of the next header.
  const std::string next = Wire({{3, Pattern(2000, 3)}});
  ASSERT_TRUE(Receive(std::string_view(next).substr(0, 5)).ok());
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 5u);
  ASSERT_TRUE(Receive(std::string_view(next).substr(5)).ok());
  EXPECT_TRUE(reader_->at_frame_boundary());

  // Zero-length frames are whole with their header.
  ASSERT_TRUE(Receive(Wire({{4, ""}})).ok());
  EXPECT_TRUE(reader_->at_frame_boundary());
  ASSERT_EQ(got_.size(), 4u);
  EXPECT_FALSE(got_[3].payload.valid());
}

TEST_F(FrameReaderTest, SmallFrameAtTheEndOfASegmentMovesToTheNext) {
  // Frames of 1024 bytes on the wire after one of 524: the fifth starts at 3596 and does not
  // fit in the 4096-byte segment, so it restarts at the front of a new one (payloads of 1000
  // bytes are below the direct threshold).
  std::vector<Want> want = {{0, Pattern(500, 0)}};
  for (uint32_t i = 1; i < 12; ++i) want.push_back({i, Pattern(1000, i)});
  const std::string wire = Wire(want);
  std::mt19937 rng(11);
  std::string_view rest = wire;
  while (!rest.empty()) {
    const size_t chunk = std::min<size_t>(rest.size(), 1 + rng() % 700);
    ASSERT_TRUE(Receive(rest.substr(0, chunk)).ok());
    rest.remove_prefix(chunk);
  }
  ExpectFrames(want);
  // Every payload is a slice of a pool segment, none a buffer of its own.
  for (size_t i = 0; i < got_.size(); ++i) {
    EXPECT_EQ(got_[i].payload.segment()->size, kSegmentSize) << "frame " << i;
  }
}

TEST_F(FrameReaderTest, OnSegmentSlicesFramesAndJoinsOneThatStraddles) {
  const std::vector<Want> want = {
      {1, Pattern(100, 1)}, {2, Pattern(200, 2)}, {3, Pattern(300, 3)}, {4, Pattern(100, 4)}};
  const std::string wire = Wire(want);
  const size_t cut = (kFrameHeaderSize + 100) + (kFrameHeaderSize + 200) + 50;  // inside frame 3
  const MemorySegment* seg1 = nullptr;
  const MemorySegment* seg2 = nullptr;
  ASSERT_TRUE(reader_->accepts_any_segment());
  ASSERT_TRUE(Segment(std::string_view(wire).substr(0, cut), true, &seg1).ok());
  ASSERT_EQ(got_.size(), 2u);
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 50u);
  ASSERT_TRUE(reader_->accepts_any_segment());
  ASSERT_TRUE(Segment(std::string_view(wire).substr(cut), true, &seg2).ok());
  ExpectFrames(want);
  EXPECT_EQ(got_[0].payload.segment(), seg1);
  EXPECT_EQ(got_[1].payload.segment(), seg1);
  EXPECT_EQ(got_[3].payload.segment(), seg2);
  // Only the part of frame 3 that arrived in the second segment was copied to join it.
  EXPECT_EQ(stats_->bytes_copied.load(), kFrameHeaderSize + 300 - 50);
  EXPECT_EQ(stats_->bytes_received.load(), wire.size());
  EXPECT_EQ(stats_->frames_received.load(), 4u);
  EXPECT_TRUE(reader_->at_frame_boundary());
}

TEST_F(FrameReaderTest, OnSegmentHeaderSplitAcrossSegments) {
  const std::vector<Want> want = {{1, Pattern(100, 1)}, {2, Pattern(200, 2)}};
  const std::string wire = Wire(want);
  for (size_t cut = kFrameHeaderSize + 100 + 1; cut < kFrameHeaderSize + 100 + kFrameHeaderSize;
       ++cut) {
    SCOPED_TRACE(testing::Message() << "cut at " << cut);
    NewReader(0, kPoolSegments);
    ASSERT_TRUE(Segment(std::string_view(wire).substr(0, cut), false).ok());
    ASSERT_TRUE(reader_->accepts_any_segment());
    ASSERT_TRUE(Segment(std::string_view(wire).substr(cut), false).ok());
    ExpectFrames(want);
    EXPECT_TRUE(reader_->at_frame_boundary());
  }
}

// A large frame's header split across two ring segments, with its whole payload and the frames
// after it in the second one: the reader completes the directed read from the segment's bytes.
TEST_F(FrameReaderTest, OnSegmentLargeFrameAndFollowersInOneSegment) {
  const std::vector<Want> want = {{1, Pattern(100, 1)},
                                  {2, Pattern(1500, 2)},
                                  {3, Pattern(1200, 3)},
                                  {4, Pattern(30, 4)},
                                  {5, Pattern(40, 5)}};
  const std::string wire = Wire(want);
  const size_t cut = kFrameHeaderSize + 100 + 10;  // 10 bytes into frame 2's header
  ASSERT_TRUE(Segment(std::string_view(wire).substr(0, cut), true).ok());
  ASSERT_TRUE(reader_->accepts_any_segment());
  const MemorySegment* seg2 = nullptr;
  ASSERT_TRUE(Segment(std::string_view(wire).substr(cut), true, &seg2).ok());
  ExpectFrames(want);
  // Two small frames after large ones do not end directed reads; the bytes already in the
  // segment were copied out of it.
  EXPECT_FALSE(reader_->accepts_any_segment());
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_NE(got_[4].payload.segment(), seg2);
  EXPECT_EQ(stats_->bytes_received.load(), wire.size());
}

// The uring pattern: ring segments while the reader accepts any, directed receives otherwise,
// over a long stream of mixed sizes, at several seeds.
TEST_F(FrameReaderTest, MixedSegmentsAndDirectedReceivesRandomized) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    NewReader(0, kPoolSegments);
    std::mt19937 rng(seed);
    std::vector<Want> want;
    for (uint32_t i = 0; i < 300; ++i) {
      size_t n;
      switch (rng() % 6) {
        case 0:
          n = 0;
          break;
        case 1:
          n = rng() % 24;
          break;
        case 2:
          n = rng() % 600;
          break;
        case 3:
          n = 600 + rng() % 1000;
          break;  // around the threshold
        case 4:
          n = 1024 + rng() % 3000;
          break;  // large, within a segment
        default:
          n = kSegmentSize + rng() % 9000;
          break;  // larger than a segment
      }
      want.push_back({i, Pattern(n, seed * 1000 + i)});
    }
    const std::string wire = Wire(want);
    std::string_view rest = wire;
    while (!rest.empty()) {
      const size_t chunk = std::min<size_t>(rest.size(), 1 + rng() % kSegmentSize);
      if (reader_->accepts_any_segment()) {
        ASSERT_TRUE(Segment(rest.substr(0, chunk), false).ok());
        rest.remove_prefix(chunk);
      } else {
        absl::Status s;
        const size_t k = ReceiveOnce(rest.substr(0, chunk), false, &s);
        ASSERT_TRUE(s.ok()) << s;
        rest.remove_prefix(k);
      }
    }
    ExpectFrames(want);
    EXPECT_TRUE(reader_->at_frame_boundary());
    EXPECT_EQ(stats_->bytes_received.load(), wire.size());
    EXPECT_EQ(stats_->frames_received.load(), want.size());
    got_.clear();
    reader_->Reset();
    EXPECT_EQ(local_->in_use_segments(), 0u);
  }
}

TEST_F(FrameReaderTest, ReceivesRandomized) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    NewReader(0, kPoolSegments);
    std::mt19937 rng(seed);
    std::vector<Want> want;
    for (uint32_t i = 0; i < 300; ++i) {
      const size_t n = rng() % 3 == 0 ? rng() % 12000 : rng() % 300;
      want.push_back({i, Pattern(n, seed * 1000 + i)});
    }
    const std::string wire = Wire(want);
    std::string_view rest = wire;
    while (!rest.empty()) {
      const size_t chunk = std::min<size_t>(rest.size(), 1 + rng() % 6000);
      ASSERT_TRUE(Receive(rest.substr(0, chunk), false).ok());
      rest.remove_prefix(chunk);
    }
    ExpectFrames(want);
    EXPECT_TRUE(reader_->at_frame_boundary());
    got_.clear();
    reader_->Reset();
    EXPECT_EQ(local_->in_use_segments(), 0u);
  }
}

TEST_F(FrameReaderTest, MalformedHeaderInASegmentIsAnError) {
  std::string wire = Wire({{1, Pattern(10, 1)}});
  wire.append("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  absl::Status s = Segment(wire, false);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr("magic"));
  EXPECT_EQ(got_.size(), 1u);
}

TEST_F(FrameReaderTest, MalformedHeaderStraddlingSegmentsIsAnError) {
  std::string wire = Wire({{1, Pattern(10, 1)}, {2, Pattern(10, 2)}});
  wire[kFrameHeaderSize + 10 + 1] = 0;  // second frame's magic
  const size_t cut = kFrameHeaderSize + 10 + 5;
  ASSERT_TRUE(Segment(std::string_view(wire).substr(0, cut), false).ok());
  absl::Status s = Segment(std::string_view(wire).substr(cut), false);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr("magic"));
}

// With the pool dry, PrepareTarget says so instead of overwriting anything, and the stream
// resumes intact once segments come back.
TEST_F(FrameReaderTest, DryPoolPausesAndResumes) {
  NewReader(0, 2);
  std::vector<Want> want;
  for (uint32_t i = 0; i < 12; ++i) want.push_back({i, Pattern(1000, i)});
  const std::string wire = Wire(want);
  std::string_view rest = wire;
  std::vector<Got> seen;
  int pauses = 0;
  while (!rest.empty()) {
    FrameReader::Target t;
    if (!reader_->PrepareTarget(&t)) {
      ++pauses;
      ASSERT_FALSE(got_.empty()) << "dry with nothing held";
      ReleasePayloads(&seen);  // the application lets go of what it got
      continue;
    }
    const size_t k = std::min({t.len, rest.size(), size_t{700}});
    std::memcpy(t.data, rest.data(), k);
    ASSERT_TRUE(reader_->OnReceived(k, KeepSink()).ok());
    rest.remove_prefix(k);
    ASSERT_LE(local_->in_use_segments(), 2u);
  }
  EXPECT_GT(pauses, 0);
  ReleasePayloads(&seen);
  got_ = std::move(seen);
  ExpectFrames(want);
  EXPECT_TRUE(reader_->at_frame_boundary());
}

// A connection whose pool has a single segment left must still make progress once it has
// consumed everything in that segment and the application released the frames: the reader's
// own empty segment is the one it needs.
TEST_F(FrameReaderTest, ReaderReusesItsOwnEmptySegmentWhenThePoolIsAtItsCap) {
  NewReader(0, 1);
  std::vector<Want> want;
  for (uint32_t i = 0; i < 8; ++i) want.push_back({i, Pattern(1000, i)});  // 4 fill a segment
  const std::string wire = Wire(want);
  std::string_view rest = wire;
  std::vector<Got> seen;
  while (!rest.empty()) {
    FrameReader::Target t;
    ReleasePayloads(&seen);  // frames are released as soon as they are seen
    ASSERT_TRUE(reader_->PrepareTarget(&t))
        << "stuck with " << (wire.size() - rest.size()) << " of " << wire.size()
        << " bytes received, segments in use " << local_->in_use_segments();
    const size_t k = std::min(t.len, rest.size());
    std::memcpy(t.data, rest.data(), k);
    ASSERT_TRUE(reader_->OnReceived(k, KeepSink()).ok());
    rest.remove_prefix(k);
  }
  ReleasePayloads(&seen);
  got_ = std::move(seen);
  ExpectFrames(want);
}

// PrepareTargets while a large payload is read directly: the rest of the payload, then the next
// header, so a stream of large frames costs about one receive per frame and no copy.
TEST_F(FrameReaderTest, ScatterReadsLargeFramesOneReceiveEach) {
  std::vector<Want> want;
  for (uint32_t i = 0; i < 40; ++i) want.push_back({i, Pattern(2000 + i * 37, i)});
  const std::string wire = Wire(want);
  int receives = 0;
  ASSERT_TRUE(Scatter(wire, wire.size(), /*keep=*/false, &receives).ok());
  ExpectFrames(want);
  EXPECT_LE(receives, static_cast<int>(want.size()) + 2);
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_EQ(stats_->bytes_received.load(), wire.size());
  // Only what arrived with the first header in the generic receive was copied.
  EXPECT_LT(stats_->bytes_copied.load(), kSegmentSize);
}

TEST_F(FrameReaderTest, ScatterTargetsAreThePayloadRestThenAHeader) {
  const std::vector<Want> want = {{1, Pattern(3000, 1)}, {2, Pattern(2500, 2)}, {3, ""}};
  const std::string wire = Wire(want);
  std::string_view rest = wire;
  // Header and 100 bytes in a generic receive: the reader switches to directed reads.
  ASSERT_TRUE(Scatter(rest.substr(0, kFrameHeaderSize + 100), 1 << 20, true).ok());
  rest.remove_prefix(kFrameHeaderSize + 100);
  FrameReader::Target t[2];
  ASSERT_EQ(reader_->PrepareTargets(t), 2);
  EXPECT_EQ(t[0].len, 3000u - 100);
  EXPECT_EQ(t[1].len, kFrameHeaderSize);
  // Fill the payload and 10 bytes of the next header.
  std::memcpy(t[0].data, rest.data(), t[0].len);
  std::memcpy(t[1].data, rest.data() + t[0].len, 10);
  ASSERT_TRUE(reader_->OnReceived(t[0].len + 10, KeepSink()).ok());
  rest.remove_prefix(t[0].len + 10);
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_EQ(reader_->partial_bytes(), 10u);
  // The rest of that header, then its payload and the whole of the next (empty) frame's header.
  ASSERT_TRUE(Scatter(rest, 1 << 20, true).ok());
  ExpectFrames(want);
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_FALSE(reader_->accepts_any_segment());  // one empty frame keeps directed mode
}

TEST_F(FrameReaderTest, ScatterSplitAtEveryPoint) {
  const std::vector<Want> want = {
      {1, Pattern(1500, 1)}, {2, Pattern(1100, 2)}, {3, Pattern(7, 3)}, {4, Pattern(1200, 4)}};
  const std::string wire = Wire(want);
  for (size_t split = 1; split < wire.size(); split += 7) {
    SCOPED_TRACE(testing::Message() << "split at " << split);
    NewReader(0, kPoolSegments);
    ASSERT_TRUE(Scatter(std::string_view(wire).substr(0, split), 1 << 20, false).ok());
    ASSERT_TRUE(Scatter(std::string_view(wire).substr(split), 1 << 20, false).ok());
    ExpectFrames(want);
    EXPECT_TRUE(reader_->at_frame_boundary());
    got_.clear();
    reader_->Reset();
    EXPECT_EQ(local_->in_use_segments(), 0u);
  }
}

TEST_F(FrameReaderTest, ScatterRandomized) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    NewReader(0, kPoolSegments);
    std::mt19937 rng(seed);
    std::vector<Want> want;
    for (uint32_t i = 0; i < 200; ++i) {
      const size_t n = rng() % 2 == 0 ? 1024 + rng() % 12000 : rng() % 300;
      want.push_back({i, Pattern(n, seed * 1000 + i)});
    }
    const std::string wire = Wire(want);
    std::string_view rest = wire;
    while (!rest.empty()) {
      absl::Status s;
      const size_t k = ScatterOnce(rest, 1 + rng() % 9000, false, &s);
      ASSERT_TRUE(s.ok()) << s;
      rest.remove_prefix(k);
    }
    ExpectFrames(want);
    EXPECT_TRUE(reader_->at_frame_boundary());
    EXPECT_EQ(stats_->bytes_received.load(), wire.size());
    got_.clear();
    reader_->Reset();
    EXPECT_EQ(local_->in_use_segments(), 0u);
  }
}

TEST_F(FrameReaderTest, MalformedHeaderSpilledAfterAPayloadIsAnError) {
  std::string wire = Wire({{1, Pattern(3000, 1)}, {2, Pattern(10, 2)}});
  wire[kFrameHeaderSize + 3000] = 'X';  // second frame's magic
  absl::Status s = Scatter(wire, 1 << 20, false);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr("magic"));
  EXPECT_EQ(got_.size(), 1u);
}

TEST_F(FrameReaderTest, ResetDropsAPartialFrame) {
  const std::string wire = Wire({{1, Pattern(3000, 1)}});
  ASSERT_TRUE(Receive(std::string_view(wire).substr(0, 2000)).ok());
  EXPECT_FALSE(reader_->at_frame_boundary());
  EXPECT_GT(local_->in_use_segments(), 0u);
  reader_->Reset();
  EXPECT_TRUE(reader_->at_frame_boundary());
  EXPECT_TRUE(reader_->accepts_any_segment());
  EXPECT_EQ(local_->in_use_segments(), 0u);
  // The reader starts over cleanly.
  ASSERT_TRUE(Receive(Wire({{5, Pattern(10, 5)}})).ok());
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_EQ(got_[0].header.channel, 5u);
}

}  // namespace
}  // namespace sluice::net::internal
