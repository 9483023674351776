// `sluice bench shuffle --mode latency`: how long one record takes through the shuffle, against
// the same over plain blocking sockets (raw-tcp) and, beside them, ZeroMQ and sockperf.
//
// Ping-pong: process A writes one record into a partition of one subpartition with a flush after
// every record (buffer timeout 0); B reads it through an input gate and writes it, unchanged,
// into a second partition that A reads. A waits for the record to come back before it sends the
// next, so one clock (A's) times the whole round trip. With --transport local, A and B are two
// threads of this process and the local service; with uring, epoll or auto, B is a second
// process (`sluice shuffle-peer --role echo`) and the net service. raw-tcp: the same records
// echoed over one blocking socket between the same two processes, one write and one read per
// record on each side — this machine's limit for a round trip.
//
// One way under load: the sender (`--role paced`, or a thread for local) writes records at a
// constant rate, each carrying the time at which it was due; the receiver, this process, takes
// latency as its clock at arrival minus that due time. A sender that falls behind sends the late
// records at once but keeps their due times, so queueing is counted rather than omitted (no
// coordinated omission). CLOCK_MONOTONIC is one clock for every process of a host. The first
// --warmup seconds of records are not recorded.
//
// A record: [sequence (8 bytes)][send or due time, ns (8 bytes)][filler]. The receiver checks
// that sequences arrive whole and in order.
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/histogram.h"
#include "base/status.h"
#include "net/transport.h"
#include "shuffle/net_shuffle.h"
#include "tools/bench_net.h"
#include "tools/bench_peers.h"
#include "tools/bench_report.h"
#include "tools/bench_shuffle.h"
#include "tools/bench_shuffle_internal.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/peer_process.h"
#include "tools/raw_socket.h"

namespace sluice::tools {

using internal::BenchShuffleConfig;
using internal::kStallTimeout;
using internal::kWaitSlice;
using internal::ShuffleRig;
using internal::StartShuffleService;

namespace {

// A record's header: its sequence and its time.
constexpr size_t kStampSize = 16;
// The partitions of a latency run: A's (pings, or the paced stream) and B's (echoes).
constexpr uint32_t kForwardResult = 1;
constexpr uint32_t kEchoResult = 2;
// How long the parent waits for a peer to start, report or exit.
constexpr absl::Duration kPeerTimeout = absl::Seconds(30);
constexpr absl::Duration kExitTimeout = absl::Seconds(10);

void StampRecord(char* dst, size_t size, uint64_t seq, int64_t nanos) {
  std::memcpy(dst, &seq, 8);
  std::memcpy(dst + 8, &nanos, 8);
  if (size > kStampSize) std::memset(dst + kStampSize, 0x5a, size - kStampSize);
}

struct Stamp {
  uint64_t seq;
  int64_t nanos;
};
Stamp ReadStamp(const char* p) {
  Stamp s;
  std::memcpy(&s.seq, p, 8);
  std::memcpy(&s.nanos, p + 8, 8);
  return s;
}

// The shuffle options of a latency run: one writer, one channel, a flush after every record.
ShuffleBenchOptions LatencyShuffleOptions(const LatencyBenchOptions& o) {
  ShuffleBenchOptions s;
  s.service = o.transport == "local" ? "local" : std::string(kNetShuffleService);
  s.net_transport = o.transport == "local" ? "auto" : o.transport;
  s.record_size = o.record_size;
  s.writers = 1;
  s.channels = 1;
  s.flush_ms = 0;
  s.direct_send_limit = o.direct_send_limit;
  return s;
}

// ---------------------------------------------------------------- through the shuffle

// The next record of `gate`, waiting for it up to kStallTimeout. OutOfRange at the end of input.
absl::Status NextRecord(UnionInputGate* gate, InputItem* item) {
  std::optional<absl::Time> deadline;  // set once it has to wait: no clock read per record
  while (true) {
    SLUICE_RETURN_IF_ERROR(gate->PollNext(item));
    if (item->kind == InputItem::Kind::kNone) {
      if (!deadline.has_value()) deadline = absl::Now() + kStallTimeout;
      if (absl::Now() > *deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("no record arrived within ", absl::FormatDuration(kStallTimeout)));
      }
      SLUICE_RETURN_IF_ERROR(gate->WaitNext(item, kWaitSlice));
    }
    switch (item->kind) {
      case InputItem::Kind::kRecord:
        return absl::OkStatus();
      case InputItem::Kind::kEnd:
        return absl::OutOfRangeError("end of input");
      default:
        break;  // nothing yet, or the end of a channel's partition: the gate says kEnd after it
    }
  }
}

// B's side of a ping-pong: every record of `gate` goes back, unchanged, through `writer`; at
// the end of input, `writer` finishes.
absl::Status EchoRecords(UnionInputGate* gate, RecordWriter* writer) {
  InputItem item;
  while (true) {
    const absl::Status s = NextRecord(gate, &item);
    if (absl::IsOutOfRange(s)) return writer->Finish();
    SLUICE_RETURN_IF_ERROR(s);
    const std::string_view r = item.record;
    SLUICE_RETURN_IF_ERROR(
        writer->EmitWith(r.size(), [r](char* dst) { std::memcpy(dst, r.data(), r.size()); }));
  }
}

// Checks that `record` is the one sent as `want`.
absl::Status CheckRecord(std::string_view record, size_t size, uint64_t want) {
  if (record.size() != size) {
    return absl::DataLossError(
        absl::StrFormat("record %d arrived with %d bytes, sent %d", want, record.size(), size));
  }
  const Stamp got = ReadStamp(record.data());
  if (got.seq != want) {
    return absl::DataLossError(
        absl::StrFormat("record %d arrived where record %d was due", got.seq, want));
  }
  return absl::OkStatus();
}

// Sleeps until `due` (CLOCK_MONOTONIC ns). The caller set its timer slack low.
void SleepUntil(int64_t due) {
  timespec ts{static_cast<time_t>(due / 1'000'000'000), static_cast<long>(due % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

// The schedule of a paced sender: record i is due at start + i x interval.
struct Pace {
  int64_t start;
  double interval_nanos;
  uint64_t count;  // warm-up and measured together
  uint64_t warmup;
  int64_t due(uint64_t i) const {
    return start + static_cast<int64_t>(static_cast<double>(i) * interval_nanos);
  }
};
Pace MakePace(const LatencyBenchOptions& o, double rate_per_ms) {
  Pace p;
  // A little later than now, so that the first records are not late already.
  p.start = MonotonicNanos() + 1'000'000;
  p.interval_nanos = 1e6 / rate_per_ms;
  p.warmup = static_cast<uint64_t>(o.warmup_seconds * 1e3 * rate_per_ms);
  p.count = p.warmup + std::max<uint64_t>(1, static_cast<uint64_t>(o.seconds * 1e3 * rate_per_ms));
  return p;
}

// Writes the records of `pace`, each when due (or at once when late), with its due time.
// `emit(seq, due)` writes one; returns the first error.
template <typename Emit>
absl::Status SendPaced(const Pace& pace, Emit&& emit) {
  // Timer slack (50 us by default) would make every sleep late by that much.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  for (uint64_t i = 0; i < pace.count; ++i) {
    const int64_t due = pace.due(i);
    if (MonotonicNanos() < due) SleepUntil(due);
    SLUICE_RETURN_IF_ERROR(emit(i, due));
  }
  return absl::OkStatus();
}

// One partition of one subpartition, with its writer, and one gate of one channel over another
// partition, in `rig`: the forward half of a ping-pong, or either side of a one-way run.
absl::Status AddWriter(const ShuffleBenchOptions& s, const ShuffleConfig& config,
                       const ShuffleDescriptor& d, ShuffleRig* rig) {
  return internal::AddBenchWriters(s, config, {d}, rig);
}
absl::Status AddGate(const ShuffleBenchOptions& s, const ShuffleConfig& config,
                     const ShuffleDescriptor& d, ShuffleRig* rig) {
  return internal::AddBenchGates(s, config, {d}, rig);
}

// ---------------------------------------------------------------- over raw sockets

absl::Status ReadExactly(int fd, char* p, size_t n) {
  while (n > 0) {
    const ssize_t got = recv(fd, p, n, 0);
    if (got > 0) {
      p += got;
      n -= static_cast<size_t>(got);
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) return absl::OutOfRangeError("the peer closed the connection");
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::DeadlineExceededError(
          absl::StrCat("nothing arrived within ", absl::FormatDuration(kStallTimeout)));
    }
    return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status WriteRecord(RawSocket& socket, const char* p, size_t n) {
  iovec iov{const_cast<char*>(p), n};
  return socket.WriteAll(&iov, 1);
}

// ---------------------------------------------------------------- the measured loops

// One end of a latency run, through a shuffle or over a socket: how this process sends and
// receives records. Used by one thread.
class RecordLink {
 public:
  virtual ~RecordLink() = default;
  // Sends record `seq` stamped with `nanos`.
  virtual absl::Status Send(uint64_t seq, int64_t nanos) = 0;
  // The next record, valid until the next call; OutOfRange at the end of the other side's stream.
  virtual absl::StatusOr<std::string_view> Receive() = 0;
  // This side sends no more.
  virtual absl::Status Finish() = 0;
};

// A writer and a gate of this process's shuffle environment.
class ShuffleLink final : public RecordLink {
 public:
  ShuffleLink(size_t record_size, RecordWriter* writer, UnionInputGate* gate)
      : record_size_(record_size), writer_(writer), gate_(gate) {}
  absl::Status Send(uint64_t seq, int64_t nanos) override {
    return writer_->EmitWith(record_size_,
                             [&](char* dst) { StampRecord(dst, record_size_, seq, nanos); });
  }
  absl::StatusOr<std::string_view> Receive() override {
    SLUICE_RETURN_IF_ERROR(NextRecord(gate_, &item_));
    return item_.record;
  }
  absl::Status Finish() override { return writer_->Finish(); }

 private:
  const size_t record_size_;
  RecordWriter* const writer_;  // null on a receive-only link
  UnionInputGate* const gate_;
  InputItem item_;
};

// A blocking socket: one write per record, records read whole.
class SocketLink final : public RecordLink {
 public:
  SocketLink(size_t record_size, RawSocket* socket)
      : socket_(socket), out_(record_size, '\0'), in_(record_size, '\0') {}
  absl::Status Send(uint64_t seq, int64_t nanos) override {
    StampRecord(out_.data(), out_.size(), seq, nanos);
    return WriteRecord(*socket_, out_.data(), out_.size());
  }
  absl::StatusOr<std::string_view> Receive() override {
    SLUICE_RETURN_IF_ERROR(ReadExactly(socket_->fd(), in_.data(), in_.size()));
    return std::string_view(in_);
  }
  absl::Status Finish() override {
    shutdown(socket_->fd(), SHUT_WR);
    return absl::OkStatus();
  }

 private:
  RawSocket* const socket_;
  std::string out_;
  std::string in_;
};

// The other side's stream must end after its last record.
absl::Status AwaitEnd(RecordLink& link) {
  const absl::StatusOr<std::string_view> r = link.Receive();
  if (absl::IsOutOfRange(r.status())) return absl::OkStatus();
  return r.ok() ? absl::DataLossError("a record arrived after the last one") : r.status();
}

// A's side of a ping-pong: one record at a time, each waited for; the round trips after the
// warm-up are recorded. At the end this side finishes and the echo's end is awaited.
absl::StatusOr<Histogram> PingPong(const LatencyBenchOptions& o, RecordLink& link) {
  Histogram rtt;
  const int64_t start = MonotonicNanos();
  const auto warmup_end = start + static_cast<int64_t>(o.warmup_seconds * 1e9);
  const auto end = warmup_end + static_cast<int64_t>(o.seconds * 1e9);
  for (uint64_t seq = 0;; ++seq) {
    const int64_t sent = MonotonicNanos();
    if (sent >= end) break;
    SLUICE_RETURN_IF_ERROR(link.Send(seq, sent));
    const absl::StatusOr<std::string_view> echo = link.Receive();
    const int64_t back = MonotonicNanos();
    if (absl::IsOutOfRange(echo.status())) return absl::DataLossError("the echo ended early");
    SLUICE_RETURN_IF_ERROR(echo.status());
    SLUICE_RETURN_IF_ERROR(CheckRecord(*echo, o.record_size, seq));
    if (sent >= warmup_end) rtt.Record(static_cast<uint64_t>(back - sent));
  }
  SLUICE_RETURN_IF_ERROR(link.Finish());
  SLUICE_RETURN_IF_ERROR(AwaitEnd(link));
  return rtt;
}

// The receiving side of a one-way run: the latency of every record after the warm-up, from its
// due time; checks that all `pace.count` records arrive in order and then the end.
absl::StatusOr<Histogram> ReceivePaced(const LatencyBenchOptions& o, const Pace& pace,
                                       RecordLink& link) {
  Histogram latency;
  for (uint64_t seq = 0; seq < pace.count; ++seq) {
    const absl::StatusOr<std::string_view> record = link.Receive();
    const int64_t now = MonotonicNanos();
    if (absl::IsOutOfRange(record.status())) {
      return absl::DataLossError(
          absl::StrFormat("the stream ended after %d of %d records", seq, pace.count));
    }
    SLUICE_RETURN_IF_ERROR(record.status());
    SLUICE_RETURN_IF_ERROR(CheckRecord(*record, o.record_size, seq));
    if (seq >= pace.warmup) {
      latency.Record(
          static_cast<uint64_t>(std::max<int64_t>(0, now - ReadStamp(record->data()).nanos)));
    }
  }
  SLUICE_RETURN_IF_ERROR(AwaitEnd(link));
  return latency;
}

// ---------------------------------------------------------------- the peer process

// The peer's arguments, as the parent passes them and the peer parses them.
struct PeerArgs {
  std::string role;       // echo | paced
  std::string transport;  // uring | epoll | auto | raw-tcp
  uint64_t record_size = 16;
  double rate = 0;                 // paced: records/ms
  double warmup = 0;               // paced: seconds
  double seconds = 0;              // paced: measured seconds
  std::string peer;                // echo over net: the parent's data address
  uint64_t direct_send_limit = 0;  // net: shuffle.net.direct-send-limit

  std::vector<std::string> ToArgs() const {
    return {"shuffle-peer",
            absl::StrCat("--role=", role),
            absl::StrCat("--transport=", transport),
            absl::StrCat("--record-size=", record_size),
            absl::StrFormat("--rate=%.17g", rate),
            absl::StrFormat("--warmup=%.17g", warmup),
            absl::StrFormat("--seconds=%.17g", seconds),
            absl::StrCat("--peer=", peer),
            absl::StrCat("--direct-send-limit=", direct_send_limit)};
  }
};

// Waits for `line` on stdin (or its end: the parent gave up).
absl::Status AwaitParentLine(std::string_view want) {
  char line[64];
  while (std::fgets(line, sizeof(line), stdin) != nullptr) {
    std::string_view text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    if (text == want) return absl::OkStatus();
  }
  return absl::CancelledError("the measuring process went away");
}

LatencyBenchOptions PeerLatencyOptions(const PeerArgs& a) {
  LatencyBenchOptions o;
  o.transport = a.transport;
  o.record_size = a.record_size;
  o.warmup_seconds = a.warmup;
  o.seconds = a.seconds;
  o.direct_send_limit = a.direct_send_limit;
  return o;
}

absl::Status ServeNetPeer(const PeerArgs& a) {
  const LatencyBenchOptions o = PeerLatencyOptions(a);
  const ShuffleBenchOptions s = LatencyShuffleOptions(o);
  SLUICE_ASSIGN_OR_RETURN(const ShuffleConfig config, BenchShuffleConfig(s));
  ShuffleRig rig;
  SLUICE_RETURN_IF_ERROR(StartShuffleService(s, config, "b", &rig));
  const std::string address = rig.env->data_address();
  if (a.role == "echo") {
    SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor echo,
                            rig.master->RegisterPartition(PartitionId{kEchoResult, 0}, 1,
                                                          ProducerLocation{"b", address}));
    SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor ping,
                            rig.master->RegisterPartition(PartitionId{kForwardResult, 0}, 1,
                                                          ProducerLocation{"a", a.peer}));
    SLUICE_RETURN_IF_ERROR(AddWriter(s, config, echo, &rig));
    SLUICE_RETURN_IF_ERROR(AddGate(s, config, ping, &rig));
    PrintToParent(absl::StrCat("ADDR ", address));
    SLUICE_RETURN_IF_ERROR(EchoRecords(rig.input.get(), &rig.writers[0]));
    AwaitParentClose();
    return absl::OkStatus();
  }
  SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor d,
                          rig.master->RegisterPartition(PartitionId{kForwardResult, 0}, 1,
                                                        ProducerLocation{"b", address}));
  SLUICE_RETURN_IF_ERROR(AddWriter(s, config, d, &rig));
  PrintToParent(absl::StrCat("ADDR ", address));
  SLUICE_RETURN_IF_ERROR(AwaitParentLine("GO"));
  RecordWriter& writer = rig.writers[0];
  SLUICE_RETURN_IF_ERROR(SendPaced(MakePace(o, a.rate), [&](uint64_t seq, int64_t due) {
    return writer.EmitWith(o.record_size,
                           [&](char* dst) { StampRecord(dst, o.record_size, seq, due); });
  }));
  SLUICE_RETURN_IF_ERROR(writer.Finish());
  AwaitParentClose();
  return absl::OkStatus();
}

absl::Status ServeRawTcpPeer(const PeerArgs& a) {
  SLUICE_ASSIGN_OR_RETURN(RawListener listener, RawListener::Listen());
  PrintToParent(absl::StrCat("ADDR 127.0.0.1:", listener.port()));
  SLUICE_ASSIGN_OR_RETURN(RawSocket socket, listener.Accept(kPeerTimeout));
  std::string record(a.record_size, '\0');
  if (a.role == "echo") {
    while (true) {
      const absl::Status s = ReadExactly(socket.fd(), record.data(), record.size());
      if (absl::IsOutOfRange(s)) break;
      SLUICE_RETURN_IF_ERROR(s);
      SLUICE_RETURN_IF_ERROR(WriteRecord(socket, record.data(), record.size()));
    }
    shutdown(socket.fd(), SHUT_WR);
    AwaitParentClose();
    return absl::OkStatus();
  }
  SLUICE_RETURN_IF_ERROR(AwaitParentLine("GO"));
  const LatencyBenchOptions o = PeerLatencyOptions(a);
  SLUICE_RETURN_IF_ERROR(SendPaced(MakePace(o, a.rate), [&](uint64_t seq, int64_t due) {
    StampRecord(record.data(), record.size(), seq, due);
    return WriteRecord(socket, record.data(), record.size());
  }));
  shutdown(socket.fd(), SHUT_WR);
  AwaitParentClose();
  return absl::OkStatus();
}

// The peer process as the parent drives it.
absl::StatusOr<std::unique_ptr<PeerProcess>> StartPeer(const PeerArgs& a, std::string* address) {
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<PeerProcess> process,
      PeerProcess::Spawn(absl::StrCat("the ", a.role, " process (", a.transport, ")"), a.ToArgs()));
  SLUICE_ASSIGN_OR_RETURN(*address, process->ReadTagged("ADDR", kPeerTimeout));
  return process;
}

// Ends a run with a peer: closes its stdin and waits for it. The run's own error, if any, comes
// first; a peer that failed says why on its stderr, and its exit status is added here.
absl::Status FinishPeer(PeerProcess& peer, absl::Status run) {
  peer.CloseStdin();
  const absl::Status exited = peer.Wait(run.ok() ? kExitTimeout : absl::Seconds(1));
  if (!run.ok()) return run;
  if (!exited.ok())
    return absl::Status(exited.code(), absl::StrCat(peer.name(), ": ", exited.message()));
  return absl::OkStatus();
}

BenchEntry LatencyEntry(const Histogram& h, std::string kind, const LatencyBenchOptions& o) {
  BenchEntry e;
  e.latency_kind = std::move(kind);
  e.SetLatency(h);
  e.extra.emplace_back("record_size", absl::StrCat(o.record_size));
  return e;
}

constexpr char kRoundTrip[] = "round trip, one record in flight";
constexpr char kOneWay[] = "one way, from the record's due time";

}  // namespace

// ---------------------------------------------------------------- the runs

std::string LatencyRowName(const LatencyBenchOptions& o) {
  return o.transport == "local" ? std::string("local")
                                : absl::StrCat(std::string(kNetShuffleService), "/", o.transport);
}

absl::StatusOr<BenchEntry> RunShufflePingPong(const LatencyBenchOptions& o) {
  const ShuffleBenchOptions s = LatencyShuffleOptions(o);
  SLUICE_ASSIGN_OR_RETURN(const ShuffleConfig config, BenchShuffleConfig(s));
  ShuffleRig a;
  SLUICE_RETURN_IF_ERROR(StartShuffleService(s, config, "a", &a));
  absl::StatusOr<Histogram> rtt;
  if (o.transport == "local") {
    // A and B: two threads of this process, through the local service.
    SLUICE_ASSIGN_OR_RETURN(
        ShuffleDescriptor ping,
        a.master->RegisterPartition(PartitionId{kForwardResult, 0}, 1, ProducerLocation{"a", ""}));
    SLUICE_ASSIGN_OR_RETURN(
        ShuffleDescriptor echo,
        a.master->RegisterPartition(PartitionId{kEchoResult, 0}, 1, ProducerLocation{"a", ""}));
    SLUICE_RETURN_IF_ERROR(AddWriter(s, config, ping, &a));
    SLUICE_RETURN_IF_ERROR(AddWriter(s, config, echo, &a));
    // Two gates in one rig would be one union: B's gate is built by hand.
    SLUICE_ASSIGN_OR_RETURN(
        std::unique_ptr<InputGate> b_gate,
        a.env->CreateInputGate("bench-echo", {InputChannelSpec{ping, 0}}, config.gate_options()));
    UnionInputGate b_input({b_gate.get()});
    SLUICE_RETURN_IF_ERROR(AddGate(s, config, echo, &a));
    absl::Status echo_status;
    std::thread b([&] {
      echo_status = EchoRecords(&b_input, &a.writers[1]);
      if (!echo_status.ok()) a.partitions[1]->Fail(echo_status);
    });
    ShuffleLink link(o.record_size, &a.writers[0], a.input.get());
    rtt = PingPong(o, link);
    if (!rtt.ok()) a.partitions[0]->Fail(rtt.status());
    b.join();
    if (rtt.ok() && !echo_status.ok()) rtt = echo_status;
  } else {
    const std::string address = a.env->data_address();
    SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor ping,
                            a.master->RegisterPartition(PartitionId{kForwardResult, 0}, 1,
                                                        ProducerLocation{"a", address}));
    SLUICE_RETURN_IF_ERROR(AddWriter(s, config, ping, &a));
    PeerArgs args{"echo", o.transport, o.record_size, 0, 0, 0, address, o.direct_send_limit};
    std::string peer_address;
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<PeerProcess> peer, StartPeer(args, &peer_address));
    absl::StatusOr<ShuffleDescriptor> echo = a.master->RegisterPartition(
        PartitionId{kEchoResult, 0}, 1, ProducerLocation{"b", peer_address});
    absl::Status built = echo.status();
    if (built.ok()) built = AddGate(s, config, *echo, &a);
    if (built.ok()) {
      ShuffleLink link(o.record_size, &a.writers[0], a.input.get());
      rtt = PingPong(o, link);
      if (!rtt.ok()) a.partitions[0]->Fail(rtt.status());
    } else {
      rtt = built;
    }
    SLUICE_RETURN_IF_ERROR(FinishPeer(*peer, rtt.status()));
  }
  SLUICE_RETURN_IF_ERROR(rtt.status());
  return LatencyEntry(*rtt, kRoundTrip, o);
}

absl::StatusOr<BenchEntry> RunRawTcpPingPong(const LatencyBenchOptions& o) {
  PeerArgs args{"echo", std::string(kRawTcp), o.record_size, 0, 0, 0, ""};
  std::string address;
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<PeerProcess> peer, StartPeer(args, &address));
  absl::StatusOr<Histogram> rtt = [&]() -> absl::StatusOr<Histogram> {
    SLUICE_ASSIGN_OR_RETURN(const uint16_t port, PortOfAddress(address));
    SLUICE_ASSIGN_OR_RETURN(RawSocket socket, RawSocket::Connect(port, kPeerTimeout));
    SLUICE_RETURN_IF_ERROR(socket.SetReceiveTimeout(kStallTimeout));
    SocketLink link(o.record_size, &socket);
    return PingPong(o, link);
  }();
  SLUICE_RETURN_IF_ERROR(FinishPeer(*peer, rtt.status()));
  return LatencyEntry(*rtt, kRoundTrip, o);
}

absl::StatusOr<BenchEntry> RunShuffleOneWay(const LatencyBenchOptions& o, double rate) {
  const ShuffleBenchOptions s = LatencyShuffleOptions(o);
  SLUICE_ASSIGN_OR_RETURN(const ShuffleConfig config, BenchShuffleConfig(s));
  ShuffleRig rig;
  SLUICE_RETURN_IF_ERROR(StartShuffleService(s, config, "a", &rig));
  // The receiver needs the schedule's counts only: the sender makes its own from the same
  // options when it begins, so that setting up is not counted as lateness.
  const Pace pace = MakePace(o, rate);
  absl::StatusOr<Histogram> latency;
  if (o.transport == "local") {
    SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor d,
                            rig.master->RegisterPartition(PartitionId{kForwardResult, 0}, 1,
                                                          ProducerLocation{"a", ""}));
    SLUICE_RETURN_IF_ERROR(AddWriter(s, config, d, &rig));
    SLUICE_RETURN_IF_ERROR(AddGate(s, config, d, &rig));
    absl::Status sent;
    std::thread sender([&] {
      RecordWriter& writer = rig.writers[0];
      // Its own schedule, starting now; the receiver's `pace` has the same counts.
      sent = SendPaced(MakePace(o, rate), [&](uint64_t seq, int64_t due) {
        return writer.EmitWith(o.record_size,
                               [&](char* dst) { StampRecord(dst, o.record_size, seq, due); });
      });
      if (sent.ok()) sent = writer.Finish();
      if (!sent.ok()) rig.partitions[0]->Fail(sent);
    });
    ShuffleLink link(o.record_size, nullptr, rig.input.get());
    latency = ReceivePaced(o, pace, link);
    sender.join();
    if (latency.ok() && !sent.ok()) latency = sent;
  } else {
    PeerArgs args{"paced",   o.transport, o.record_size,      rate, o.warmup_seconds,
                  o.seconds, "",          o.direct_send_limit};
    std::string address;
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<PeerProcess> peer, StartPeer(args, &address));
    latency = [&]() -> absl::StatusOr<Histogram> {
      SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor d,
                              rig.master->RegisterPartition(PartitionId{kForwardResult, 0}, 1,
                                                            ProducerLocation{"b", address}));
      SLUICE_RETURN_IF_ERROR(AddGate(s, config, d, &rig));
      SLUICE_RETURN_IF_ERROR(peer->WriteLine("GO"));
      ShuffleLink link(o.record_size, nullptr, rig.input.get());
      return ReceivePaced(o, pace, link);
    }();
    SLUICE_RETURN_IF_ERROR(FinishPeer(*peer, latency.status()));
  }
  SLUICE_RETURN_IF_ERROR(latency.status());
  BenchEntry e = LatencyEntry(*latency, kOneWay, o);
  e.extra.emplace_back("rate_per_ms", absl::StrFormat("%g", rate));
  return e;
}

absl::StatusOr<BenchEntry> RunRawTcpOneWay(const LatencyBenchOptions& o, double rate) {
  PeerArgs args{"paced", std::string(kRawTcp), o.record_size, rate, o.warmup_seconds, o.seconds,
                ""};
  std::string address;
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<PeerProcess> peer, StartPeer(args, &address));
  const Pace pace = MakePace(o, rate);
  absl::StatusOr<Histogram> latency = [&]() -> absl::StatusOr<Histogram> {
    SLUICE_ASSIGN_OR_RETURN(const uint16_t port, PortOfAddress(address));
    SLUICE_ASSIGN_OR_RETURN(RawSocket socket, RawSocket::Connect(port, kPeerTimeout));
    SLUICE_RETURN_IF_ERROR(socket.SetReceiveTimeout(kStallTimeout));
    SLUICE_RETURN_IF_ERROR(peer->WriteLine("GO"));
    SocketLink link(o.record_size, &socket);
    return ReceivePaced(o, pace, link);
  }();
  SLUICE_RETURN_IF_ERROR(FinishPeer(*peer, latency.status()));
  BenchEntry e = LatencyEntry(*latency, kOneWay, o);
  e.extra.emplace_back("rate_per_ms", absl::StrFormat("%g", rate));
  return e;
}

int RunLatencyPeer(Args args) {
  PeerArgs a;
  OptionParser parser("sluice shuffle-peer",
                      "The other side of 'sluice bench shuffle --mode latency', started by it: "
                      "echoes records\n(--role echo) or sends them at --rate (--role paced).");
  parser.AddChoice("--role", {"echo", "paced"}, "What to do", &a.role);
  parser.AddChoice("--transport", {"auto", "uring", "epoll", std::string(kRawTcp)},
                   "shuffle.net.transport, or raw-tcp", &a.transport);
  parser.AddBytes("--record-size", "Bytes per record", kStampSize, kMaxBenchRecordSize,
                  &a.record_size);
  parser.AddOption("--rate", "N", "Records per millisecond (paced)", "0", [&a](std::string_view v) {
    if (!absl::SimpleAtod(std::string(v), &a.rate) || !(a.rate >= 0)) {
      return absl::InvalidArgumentError("expected a number of records per millisecond");
    }
    return absl::OkStatus();
  });
  parser.AddSeconds("--warmup", "Warm-up seconds (paced)", 0, 3600, &a.warmup);
  parser.AddSeconds("--seconds", "Measured seconds (paced)", 0, 3600, &a.seconds);
  parser.AddString("--peer", "HOST:PORT", "The parent's data address (echo over net)", &a.peer);
  internal::AddDirectSendLimitOption(parser, &a.direct_send_limit);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;
  if (a.role == "paced" && a.rate <= 0) {
    return ReportUsageError(parser.command(),
                            absl::InvalidArgumentError("--role paced needs a --rate above 0"));
  }
  const absl::Status s = a.transport == kRawTcp ? ServeRawTcpPeer(a) : ServeNetPeer(a);
  if (!s.ok() && !absl::IsCancelled(s)) {
    absl::FPrintF(stderr, "sluice shuffle-peer (%s %s): %s\n", a.role, a.transport, s.message());
  }
  return s.ok() ? kExitOk : kExitFailure;
}

}  // namespace sluice::tools

namespace sluice::tools {
namespace {

absl::StatusOr<std::vector<double>> ParseRates(std::string_view text) {
  std::vector<double> rates;
  for (absl::string_view piece : absl::StrSplit(std::string(text), ',', absl::SkipEmpty())) {
    double r = 0;
    if (!absl::SimpleAtod(piece, &r) || !(r > 0) || r > 10'000) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", std::string(piece),
                       "' is not a rate: expected records per millisecond in (0, 10000]"));
    }
    rates.push_back(r);
  }
  return rates;
}

std::string OneWayGroup(double rate) { return absl::StrFormat("one-way at %g records/ms", rate); }

}  // namespace

int RunBenchShuffleLatency(Args args) {
  LatencyBenchOptions o;
  std::string mode = "latency";
  std::string rates_text = "10,100";
  bool no_peers = false;
  BenchHarness harness("shuffle-latency");
  OptionParser parser(
      "sluice bench shuffle --mode latency",
      "Shuffle latency against the same done over plain blocking sockets (raw-tcp), with ZeroMQ\n"
      "and sockperf beside them when available, all measured in this run.\n"
      "\n"
      "ping-pong: one record at a time from A through a shuffle to B and back through a second\n"
      "shuffle, a flush after every record (buffer timeout 0); A's clock times the round trip.\n"
      "--transport local: A and B are threads of this process (local service); uring, epoll or\n"
      "auto: B is a second process and both shuffles go through the net service over loopback.\n"
      "raw-tcp echoes the same records over one blocking TCP socket between two processes: the\n"
      "machine's limit. zeromq: REQ/REP between two processes; sockperf: its TCP ping-pong.\n"
      "\n"
      "one-way at R records/ms (--rates): a sender writes records at a constant rate, each with\n"
      "the time it was due; latency is the receiver's clock at arrival minus that due time, so\n"
      "a stalled sender's backlog counts (no coordinated omission). Net runs: the sender is a\n"
      "second process; raw-tcp: one write per record over a blocking socket.\n"
      "\n"
      "Targets: p50 at most 1.15x and p99 at most 1.3x the raw-tcp ping-pong's.");
  parser.AddChoice("--mode", {"latency"}, "latency (this), or throughput", &mode);
  parser.AddChoice("--transport", {"local", "uring", "epoll", "auto"},
                   "local: one process, local service; uring, epoll, auto: two processes, net "
                   "service",
                   &o.transport);
  parser.AddBytes("--record-size", "Bytes per record (a sequence and a time: at least 16)",
                  kStampSize, kMaxBenchRecordSize, &o.record_size);
  parser.AddSeconds("--warmup", "Warm-up of each row, not recorded", 0, 3600, &o.warmup_seconds);
  parser.AddSeconds("--seconds", "Measured time of each row", 0.1, 3600, &o.seconds);
  parser.AddString("--rates", "LIST",
                   "Comma-separated records/ms of the one-way rows; empty for none", &rates_text);
  parser.AddFlag("--no-peers", "Skip the ZeroMQ and sockperf rows", &no_peers);
  internal::AddDirectSendLimitOption(parser, &o.direct_send_limit);
  harness.AddOptions(parser);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;
  absl::StatusOr<std::vector<double>> rates = ParseRates(rates_text);
  if (!rates.ok()) {
    return ReportUsageError(parser.command(), absl::InvalidArgumentError(absl::StrCat(
                                                  "bad value '", rates_text,
                                                  "' for --rates: ", rates.status().message())));
  }
  if (o.transport == "uring") {
    if (absl::Status s = net::ProbeIoUring(); !s.ok()) {
      absl::FPrintF(stderr, "sluice bench shuffle: uring: %s\n", s.message());
      return kExitFailure;
    }
  }

  const std::string name = LatencyRowName(o);
  const double row_seconds = o.warmup_seconds + o.seconds;
  const std::string ping = "ping-pong";
  harness.Add(
      {std::string(kRawTcp), ping, true, row_seconds, [&o] { return RunRawTcpPingPong(o); }});
  PeerBenchOptions peer;
  peer.message_size = o.record_size;
  peer.warmup_seconds = o.warmup_seconds;
  peer.seconds = o.seconds;
  std::vector<std::string> skipped;
  if (!no_peers) {
    if (ZeroMqAvailable()) {
      harness.Add(
          {"zeromq req/rep", ping, true, row_seconds, [peer] { return RunZeroMqPingPong(peer); }});
    } else {
      skipped.push_back("zeromq (not in this build)");
    }
    if (ToolInstalled("sockperf")) {
      harness.Add(
          {"sockperf", ping, true, row_seconds, [peer] { return RunSockperfPingPong(peer); }});
    } else {
      skipped.push_back("sockperf (not installed)");
    }
  }
  harness.Add({name, ping, false, row_seconds, [&o] { return RunShufflePingPong(o); }});
  for (double rate : *rates) {
    const std::string group = OneWayGroup(rate);
    harness.Add({std::string(kRawTcp), group, true, row_seconds,
                 [&o, rate] { return RunRawTcpOneWay(o, rate); }});
    harness.Add(
        {name, group, false, row_seconds, [&o, rate] { return RunShuffleOneWay(o, rate); }});
  }

  absl::PrintF(
      "sluice bench shuffle --mode latency: %s, %s records, a flush after every record\n"
      "each row: %gs warm-up, then %gs measured%s\n%s\n",
      o.transport == "local" ? "one process (local service)"
                             : absl::StrCat("two processes (net service over ", o.transport, ")"),
      FormatBytes(o.record_size), o.warmup_seconds, o.seconds,
      harness.runs() > 1 ? absl::StrCat(", ", harness.runs(), " runs each") : "",
      skipped.empty() ? "" : absl::StrCat("skipped: ", absl::StrJoin(skipped, ", "), "\n"));
  std::fflush(stdout);

  BenchReport report = harness.Run();
  std::vector<std::string> rate_values;
  for (double r : *rates) rate_values.push_back(absl::StrFormat("%g", r));
  report.config = {
      {"mode", JsonString("latency")},
      {"transport", JsonString(o.transport)},
      {"record_size", absl::StrCat(o.record_size)},
      {"flush", JsonString("after every record (buffer timeout 0)")},
      {"warmup_seconds", absl::StrFormat("%g", o.warmup_seconds)},
      {"seconds", absl::StrFormat("%g", o.seconds)},
      {"runs", absl::StrCat(harness.runs())},
      {"one_way_rates_per_ms", absl::StrCat("[", absl::StrJoin(rate_values, ", "), "]")}};
  const BenchEntry* raw = report.FindBaseline(ping, std::string(kRawTcp));
  const BenchEntry* ours = report.FindResult(ping, name);
  if (raw != nullptr && ours != nullptr && raw->latency && ours->latency &&
      raw->latency->p50_us > 0 && raw->latency->p99_us > 0) {
    report.targets.push_back({absl::StrCat(name, " ping-pong p50 / raw-tcp p50"),
                              ours->latency->p50_us / raw->latency->p50_us, 1.15, true});
    report.targets.push_back({absl::StrCat(name, " ping-pong p99 / raw-tcp p99"),
                              ours->latency->p99_us / raw->latency->p99_us, 1.3, true});
  }
  return harness.Finish(report);
}

}  // namespace sluice::tools
