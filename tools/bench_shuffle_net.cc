// The two-process runs of `sluice bench shuffle` (see bench_shuffle.h), the net shuffle and its
// raw-tcp baseline, as the measuring process (the receiver) drives them; and `sluice
// shuffle-peer`, the sender it starts for either.
//
// The sender talks to its parent in lines. It prints "ADDR <host:port>" once it can be read
// from: its net environment's data address, or the socket it listens on for raw-tcp. It writes
// until it reads "STOP"; a "MARK" before that (a boundary of the measured phase) snapshots its
// writers' CPU. After STOP its writers finish (the partitions' ends, or their last partial
// buffers and then the end of the stream) and it prints either
//   SENT <records> <value sum> <writer waits>
//   PHASE <writer cpu s> <process cpu s> <records> <voluntary> <involuntary>
// (the last between the first two marks), or "FAILED <status code> <message>" when a writer
// failed. Then it keeps serving until its stdin ends, which the parent does once its consumer
// has read everything, and exits. An end of input before STOP means the parent gave up: the
// sender fails its partitions (or its socket) so that blocked writers return, and exits.
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "base/sync.h"
#include "shuffle/net_shuffle.h"
#include "shuffle/record_format.h"
#include "tools/bench_net.h"
#include "tools/bench_shuffle.h"
#include "tools/bench_shuffle_internal.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/peer_process.h"
#include "tools/raw_socket.h"

namespace sluice::tools {

using internal::AddBenchGates;
using internal::AddBenchWriters;
using internal::BenchShuffleConfig;
using internal::CheckCounts;
using internal::ConsumerOutcome;
using internal::DecodeRecordLength;
using internal::kRawWalkPadding;
using internal::kStallTimeout;
using internal::kWaitSlice;
using internal::MeasurePhases;
using internal::Progress;
using internal::RawBuffer;
using internal::RawProducerLoop;
using internal::RecordTally;
using internal::RegisterBenchPartitions;
using internal::RunningThreads;
using internal::ShuffleConsumerLoop;
using internal::ShuffleRig;
using internal::ShuffleWriterLoop;
using internal::Snapshot;
using internal::StartShuffleService;
using internal::TakeSnapshot;
using internal::TallyRecords;
using internal::WorkloadFlags;
using internal::WriterOutcome;

namespace {

constexpr char kMarkLine[] = "MARK";
constexpr char kStopLine[] = "STOP";
// How long the parent waits for the sender's address, and the sender for the raw-tcp connection.
constexpr absl::Duration kStartTimeout = absl::Seconds(30);
// How long the parent waits for the sender to exit once told to.
constexpr absl::Duration kExitTimeout = absl::Seconds(10);
// raw-tcp's frame header: the channel, then the length of the records that follow, 4 bytes
// each in host order (both ends are on this machine).
constexpr size_t kRawFrameHeaderSize = 8;
// raw-tcp's receive buffer, and the room below which the unread rest moves to its front.
constexpr size_t kRawReceiveBuffer = size_t{1} << 20;
constexpr size_t kRawMinReceive = size_t{64} << 10;

// Bytes of one record in a buffer: its varint length, then its bytes.
uint64_t FramedRecordBytes(size_t record_size) {
  return VarintLength(static_cast<uint32_t>(record_size)) + record_size;
}

// ---------------------------------------------------------------- the sender (child)

// The sender's writer threads, whichever the mode.
struct SenderWriters {
  explicit SenderWriters(uint32_t n) : sent(n), out(n) {}
  std::atomic<bool> stop{false};
  std::vector<Progress> sent;
  std::vector<WriterOutcome> out;
  std::vector<std::thread> threads;
};

// Follows the parent's lines (see the top of the file) while `w` writes, then joins the writers
// and reports. `abandon` makes blocked writers return when the parent has gone; `finished` runs
// once they have all returned; `waits` counts the writers' waits. OK once the parent has the
// report, a writer's failure included (the parent names it).
absl::Status FollowParent(SenderWriters& w, absl::FunctionRef<void(const absl::Status&)> abandon,
                          absl::FunctionRef<void()> finished, absl::FunctionRef<uint64_t()> waits) {
  const RunningThreads run{&w.threads, nullptr, &w.sent, nullptr};
  Snapshot marks[2];
  int marked = 0;
  bool stopped = false;
  char line[64];
  while (std::fgets(line, sizeof(line), stdin) != nullptr) {
    const absl::string_view text = absl::StripTrailingAsciiWhitespace(line);
    if (text == kMarkLine) {
      if (marked < 2) marks[marked++] = TakeSnapshot(run);
    } else if (text == kStopLine) {
      stopped = true;
      break;
    }
  }
  const absl::Status gone = absl::CancelledError("the measuring process went away");
  if (!stopped) abandon(gone);
  w.stop.store(true);
  for (std::thread& t : w.threads) t.join();
  finished();
  if (!stopped) return gone;

  WriterOutcome total;
  for (const WriterOutcome& o : w.out) {
    if (!o.status.ok() && total.status.ok()) total.status = o.status;
    total.sent += o.sent;
    total.sum += o.sum;
  }
  if (!total.status.ok()) {
    PrintToParent(absl::StrFormat("FAILED %d %s", static_cast<int>(total.status.code()),
                                  absl::StrReplaceAll(total.status.message(), {{"\n", " "}})));
  } else {
    PrintToParent(absl::StrFormat("SENT %d %d %d", total.sent, total.sum, waits()));
    Snapshot a;
    Snapshot b;
    if (marked == 2) {
      a = marks[0];
      b = marks[1];
    }
    PrintToParent(absl::StrFormat("PHASE %.9f %.9f %d %d %d", b.writer_cpu - a.writer_cpu,
                                  b.process_cpu - a.process_cpu, b.sent - a.sent,
                                  b.voluntary - a.voluntary, b.involuntary - a.involuntary));
  }
  // Serve until the consumer has read everything: the parent closes our stdin then.
  AwaitParentClose();
  return absl::OkStatus();
}

absl::Status ServeNetSender(const ShuffleBenchOptions& o) {
  SLUICE_ASSIGN_OR_RETURN(const ShuffleConfig config, BenchShuffleConfig(o));
  ShuffleRig rig;
  SLUICE_RETURN_IF_ERROR(StartShuffleService(o, config, "sender", &rig));
  const std::string address = rig.env->data_address();
  if (address.empty()) {
    return absl::FailedPreconditionError("the net environment has no data address");
  }
  SLUICE_ASSIGN_OR_RETURN(
      const std::vector<ShuffleDescriptor> descriptors,
      RegisterBenchPartitions(o, *rig.master, ProducerLocation{"sender", address}));
  SLUICE_RETURN_IF_ERROR(AddBenchWriters(o, config, descriptors, &rig));
  PrintToParent(absl::StrCat("ADDR ", address));

  SenderWriters w(o.writers);
  for (uint32_t i = 0; i < o.writers; ++i) {
    w.threads.emplace_back([&, i] {
      ShuffleWriterLoop(&rig.writers[i], o.record_size, w.stop, &w.sent[i], &w.out[i]);
    });
  }
  return FollowParent(
      w,
      [&](const absl::Status& cause) {
        for (const ShuffleDescriptor& d : descriptors)
          rig.env->ReleasePartition(d.partition, cause);
      },
      [] {},
      [&] {
        uint64_t waits = 0;
        for (const auto& p : rig.partitions) waits += p->stats().waits_for_buffer;
        return waits;
      });
}

// raw-tcp's socket, shared by the sender's writer threads as RawProducerLoop's sink: a full
// buffer goes out whole, behind its header, under a mutex. Thread-safe.
class RawTcpSink {
 public:
  explicit RawTcpSink(RawSocket socket) : socket_(std::move(socket)) {}

  // Writes `b` and returns it emptied, to go on with; nullptr once the socket has failed.
  RawBuffer* Full(RawBuffer* b) ABSL_LOCKS_EXCLUDED(mu_) {
    char header[kRawFrameHeaderSize];
    const auto length = static_cast<uint32_t>(b->size);
    std::memcpy(header, &b->channel, 4);
    std::memcpy(header + 4, &length, 4);
    iovec iov[2] = {{header, sizeof(header)}, {b->data, b->size}};
    if (!mu_.TryLock()) {
      waits_.fetch_add(1, std::memory_order_relaxed);
      mu_.Lock();
    }
    if (status_.ok()) status_ = socket_.WriteAll(iov, 2);
    const bool ok = status_.ok();
    mu_.Unlock();
    if (!ok) return nullptr;
    b->size = 0;
    return b;
  }
  // Every writer is done: the receiver reads the end of the stream after the last frame.
  void Close() { shutdown(socket_.fd(), SHUT_WR); }
  // The receiver has gone: writers blocked in a send return (with an error).
  void Abandon() { shutdown(socket_.fd(), SHUT_RDWR); }

  absl::Status status() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return status_;
  }
  // Times a writer found the socket taken by another.
  uint64_t waits() const { return waits_.load(std::memory_order_relaxed); }

 private:
  RawSocket socket_;
  Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> waits_{0};
};

// One raw-tcp writer thread: the baseline's producer over `current` (its own channels), then
// its partial buffers.
void RawTcpWriterLoop(RawTcpSink* sink, std::vector<RawBuffer*> current, size_t buffer_size,
                      size_t record_size, const std::atomic<bool>& stop, Progress* progress,
                      WriterOutcome* out) {
  if (record_size == 8) {
    RawProducerLoop<true>(sink, &current, buffer_size, record_size, stop, progress, out);
  } else {
    RawProducerLoop<false>(sink, &current, buffer_size, record_size, stop, progress, out);
  }
  for (RawBuffer* b : current) {
    if (b->size > 0 && sink->Full(b) == nullptr) break;
  }
  out->status = sink->status();
}

absl::Status ServeRawTcpSender(const ShuffleBenchOptions& o) {
  const size_t channels = size_t{o.writers} * o.channels;
  const size_t bytes = channels * o.segment_size;
  std::unique_ptr<char[]> memory(new char[bytes]);
  std::memset(memory.get(), 0, bytes);  // fault the pages in before the clock starts
  std::vector<RawBuffer> buffers(channels);
  for (size_t i = 0; i < channels; ++i) {
    buffers[i].data = memory.get() + i * o.segment_size;
    buffers[i].channel = static_cast<uint32_t>(i);
  }
  SLUICE_ASSIGN_OR_RETURN(RawListener listener, RawListener::Listen());
  PrintToParent(absl::StrCat("ADDR 127.0.0.1:", listener.port()));
  SLUICE_ASSIGN_OR_RETURN(RawSocket socket, listener.Accept(kStartTimeout));
  RawTcpSink sink(std::move(socket));

  SenderWriters w(o.writers);
  for (uint32_t i = 0; i < o.writers; ++i) {
    std::vector<RawBuffer*> current(o.channels);
    for (uint32_t c = 0; c < o.channels; ++c) current[c] = &buffers[size_t{i} * o.channels + c];
    w.threads.emplace_back([&, i, current = std::move(current)] {
      RawTcpWriterLoop(&sink, current, o.segment_size, o.record_size, w.stop, &w.sent[i],
                       &w.out[i]);
    });
  }
  return FollowParent(
      w, [&](const absl::Status&) { sink.Abandon(); }, [&] { sink.Close(); },
      [&] { return sink.waits(); });
}

// ---------------------------------------------------------------- the receiver (parent)

// What the sender reported after STOP.
struct SenderReport {
  WriterOutcome writers;  // all together: the first error, the records and their value sum
  uint64_t waits = 0;
  CpuBreakdown phase;  // its writer_seconds, process_seconds, records_sent and switches
};

absl::Status ParseReportLine(const std::string& line, SenderReport* report, bool* done) {
  const std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
  auto count = [&f](size_t i, uint64_t* v) { return i < f.size() && absl::SimpleAtoi(f[i], v); };
  auto real = [&f](size_t i, double* v) { return i < f.size() && absl::SimpleAtod(f[i], v); };
  if (f[0] == "FAILED" && f.size() >= 2) {
    int code = 0;
    if (absl::SimpleAtoi(f[1], &code)) {
      const size_t at = std::min(line.size(), f[0].size() + f[1].size() + 2);
      report->writers.status = absl::Status(static_cast<absl::StatusCode>(code), line.substr(at));
      *done = true;
      return absl::OkStatus();
    }
  } else if (f[0] == "SENT" && f.size() == 4 && count(1, &report->writers.sent) &&
             count(2, &report->writers.sum) && count(3, &report->waits)) {
    return absl::OkStatus();
  } else if (f[0] == "PHASE" && f.size() == 6 && real(1, &report->phase.writer_seconds) &&
             real(2, &report->phase.process_seconds) && count(3, &report->phase.records_sent) &&
             count(4, &report->phase.voluntary_switches) &&
             count(5, &report->phase.involuntary_switches)) {
    *done = true;
    return absl::OkStatus();
  }
  return absl::DataLossError(absl::StrCat("it printed '", line.substr(0, 200), "'"));
}

// The sender process as the measuring process drives it. Used by one thread.
class Sender {
 public:
  // Starts `sluice shuffle-peer --transport T` with the workload of `o` and waits for its
  // address.
  static absl::StatusOr<Sender> Start(const ShuffleBenchOptions& o, const std::string& transport) {
    std::vector<std::string> args = {"shuffle-peer", absl::StrCat("--transport=", transport)};
    for (std::string& a : WorkloadFlags::Args(o)) args.push_back(std::move(a));
    SLUICE_ASSIGN_OR_RETURN(
        std::unique_ptr<PeerProcess> process,
        PeerProcess::Spawn(absl::StrCat("the sender process (", transport, ")"), args));
    SLUICE_ASSIGN_OR_RETURN(std::string address, process->ReadTagged("ADDR", kStartTimeout));
    return Sender(std::move(process), std::move(address));
  }

  const std::string& address() const { return address_; }

  // A boundary of the measured phase. A sender that cannot be told fails Stop.
  void Mark() {
    if (mark_status_.ok()) mark_status_ = process_->WriteLine(kMarkLine);
  }

  // Stops the writers and returns their report. Gives up when `abandon` turns true: the
  // consumer failed, so the writers might never finish.
  absl::StatusOr<SenderReport> Stop(const std::atomic<bool>& abandon) {
    SLUICE_RETURN_IF_ERROR(mark_status_);
    SLUICE_RETURN_IF_ERROR(process_->WriteLine(kStopLine));
    const absl::Time deadline = absl::Now() + kStallTimeout;
    SenderReport report;
    while (true) {
      if (abandon.load()) return absl::CancelledError("the consumer failed first");
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(process_->name(), " did not report within ",
                                                        absl::FormatDuration(kStallTimeout),
                                                        " of STOP"));
      }
      absl::StatusOr<std::string> line = process_->ReadLine(kWaitSlice);
      if (absl::IsDeadlineExceeded(line.status())) continue;
      if (!line.ok()) return line.status();
      bool done = false;
      if (absl::Status s = ParseReportLine(*line, &report, &done); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat(process_->name(), ": ", s.message()));
      }
      if (done) return report;
    }
  }

  // Closes the sender's input (it has served everything, or must give up) and waits for it.
  absl::Status Finish() {
    process_->CloseStdin();
    return process_->Wait(kExitTimeout);
  }

 private:
  Sender(std::unique_ptr<PeerProcess> process, std::string address)
      : process_(std::move(process)), address_(std::move(address)) {}

  std::unique_ptr<PeerProcess> process_;
  std::string address_;
  absl::Status mark_status_;
};

// The measuring process's consumer thread, and what it reports.
struct ConsumerSide {
  std::thread thread;
  Progress received;
  // The consumer failed, or must stop (it then returns Cancelled).
  std::atomic<bool> failed{false};
  ConsumerOutcome out;
};

// The rest of a two-process run once the sender writes and the consumer thread reads: the
// phases, the stop, the root cause of a failure, the exactly-once check. `abort_consumer`
// makes the consumer thread return when the sender failed.
absl::StatusOr<ThroughputResult> FinishTwoProcessRun(const ShuffleBenchOptions& o,
                                                     const std::string& name, Sender& sender,
                                                     ConsumerSide& side,
                                                     absl::FunctionRef<void()> abort_consumer) {
  ThroughputResult result;
  result.name = name;
  result.record_size = o.record_size;
  const RunningThreads run{nullptr, &side.thread, nullptr, &side.received};
  const bool measured = MeasurePhases(
      o, side.failed,
      [&] {
        const Snapshot s = TakeSnapshot(run);
        sender.Mark();
        return s;
      },
      &result);
  absl::StatusOr<SenderReport> report = absl::CancelledError("the consumer failed first");
  if (!side.failed.load()) report = sender.Stop(side.failed);
  if (!report.ok() || !report->writers.status.ok()) abort_consumer();
  side.thread.join();
  const absl::Status exited = sender.Finish();

  // The root cause, as in the one-process run: the consumer's own error, else the sender's,
  // else the consumer's cancellation; then how the sender exited.
  auto named = [&name](absl::string_view what, const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(name, ": ", what, ": ", s.message()));
  };
  if (!side.out.status.ok() && !absl::IsCancelled(side.out.status)) {
    return named("the consumer failed", side.out.status);
  }
  if (!report.ok()) {
    // A sender that went away says best how it ended.
    return named("the sender",
                 absl::IsUnavailable(report.status()) && !exited.ok() ? exited : report.status());
  }
  if (!report->writers.status.ok()) return named("a writer failed", report->writers.status);
  if (!side.out.status.ok()) return named("the consumer failed", side.out.status);
  if (!exited.ok()) return named("the sender", exited);
  SLUICE_RETURN_IF_ERROR(CheckCounts(name, {report->writers}, side.out, o.record_size));
  result.total_records = side.out.received;
  result.consumer_waits = side.out.waits;
  result.writer_waits = report->waits;
  if (measured) {
    result.cpu.writer_seconds = report->phase.writer_seconds;
    result.cpu.records_sent = report->phase.records_sent;
    result.cpu.process_seconds += report->phase.process_seconds;
    result.cpu.voluntary_switches += report->phase.voluntary_switches;
    result.cpu.involuntary_switches += report->phase.involuntary_switches;
  }
  return result;
}

// What raw-tcp's consumer counted besides the records.
struct RawTcpReceived {
  uint64_t bytes = 0;   // from the socket
  uint64_t copied = 0;  // moved to the front of the buffer
  uint64_t frames = 0;
};

// raw-tcp's consumer: receives into one buffer and walks the frames and their records in place.
// A frame's records go through one tight walk when all of it has arrived, one at a time when
// only part of it has; what is left of a record cut by the end of a receive moves to the front
// of the buffer when the room behind it runs low.
void RawTcpConsumerLoop(int fd, size_t channels, size_t max_frame, size_t record_size,
                        const std::atomic<bool>& abort, Progress* progress, ConsumerOutcome* out,
                        RawTcpReceived* received) {
  std::vector<char> buffer(kRawReceiveBuffer + kRawWalkPadding);
  char* const data = buffer.data();
  size_t begin = 0;
  size_t end = 0;
  size_t frame_left = 0;  // bytes of the current frame not walked yet
  RecordTally tally;
  uint64_t waits = 0;
  absl::Status status;
  auto corrupt = [&](std::string_view what) {
    return absl::DataLossError(
        absl::StrFormat("%s after %d records and %d frames", what, tally.count, received->frames));
  };
  while (true) {
    while (true) {
      if (frame_left == 0) {
        if (end - begin < kRawFrameHeaderSize) break;
        uint32_t channel = 0;
        uint32_t length = 0;
        std::memcpy(&channel, data + begin, 4);
        std::memcpy(&length, data + begin + 4, 4);
        begin += kRawFrameHeaderSize;
        ++received->frames;
        if (channel >= channels || length == 0 || length > max_frame) {
          status =
              corrupt(absl::StrFormat("a frame header says channel %d, %d bytes", channel, length));
          break;
        }
        frame_left = length;
      }
      const size_t arrived = end - begin;
      if (arrived >= frame_left) {
        if (TallyRecords(data + begin, frame_left, record_size, &tally) != frame_left) {
          status = corrupt("a record runs past the end of its frame");
          break;
        }
        begin += frame_left;
        frame_left = 0;
        continue;
      }
      uint32_t length = 0;
      const size_t header = DecodeRecordLength(data + begin, data + end, &length);
      if (header == 0) break;
      const uint64_t framed = uint64_t{header} + length;
      if (framed > frame_left) {
        status = corrupt("a record runs past the end of its frame");
        break;
      }
      if (framed > arrived) break;
      TallyRecords(data + begin, framed, record_size, &tally);
      begin += framed;
      frame_left -= framed;
    }
    if (!status.ok()) break;
    progress->value.store(tally.count, std::memory_order_relaxed);

    if (begin == end) {
      begin = end = 0;
    } else if (kRawReceiveBuffer - end < kRawMinReceive) {
      std::memmove(data, data + begin, end - begin);
      received->copied += end - begin;
      end -= begin;
      begin = 0;
    }
    ssize_t n = recv(fd, data + end, kRawReceiveBuffer - end, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++waits;
      n = recv(fd, data + end, kRawReceiveBuffer - end, 0);
    }
    if (n > 0) {
      end += static_cast<size_t>(n);
      received->bytes += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = errno;
    if (abort.load()) {
      status = absl::CancelledError("the run was aborted");
    } else if (n == 0) {
      if (begin == end && frame_left == 0) {
        out->ended = true;
      } else {
        status = corrupt("the sender closed the stream inside a frame");
      }
    } else if (err == EAGAIN || err == EWOULDBLOCK) {
      status = absl::DeadlineExceededError(
          absl::StrFormat("the consumer received nothing for %s after %d records",
                          absl::FormatDuration(kStallTimeout), tally.count));
    } else {
      status = absl::InternalError(absl::StrCat("recv: ", std::strerror(err)));
    }
    break;
  }
  progress->value.store(tally.count, std::memory_order_relaxed);
  out->status = std::move(status);
  out->received = tally.count;
  out->sum = tally.sum;
  out->wrong_size = tally.wrong_size;
  out->waits = waits;
}

}  // namespace

std::string NetShuffleName(const ShuffleBenchOptions& o) {
  return absl::StrCat(std::string(kNetShuffleService), "/", o.net_transport);
}

absl::StatusOr<ThroughputResult> RunNetShuffleThroughput(const ShuffleBenchOptions& o) {
  SLUICE_RETURN_IF_ERROR(ValidateShuffleBenchOptions(o));
  const std::string name = NetShuffleName(o);
  auto named = [&name](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(name, ": ", s.message()));
  };
  if (o.service != kNetShuffleService) {
    return absl::InvalidArgumentError(
        absl::StrCat("a two-process run needs the net service, not '", o.service, "'"));
  }
  // Before the sender starts: a build without the service fails here, with the registered names.
  absl::StatusOr<ShuffleConfig> config = BenchShuffleConfig(o);
  if (!config.ok()) return named(config.status());
  absl::StatusOr<Sender> sender = Sender::Start(o, o.net_transport);
  if (!sender.ok()) return named(sender.status());

  ShuffleRig rig;
  absl::Status built = StartShuffleService(o, *config, "receiver", &rig);
  absl::StatusOr<std::vector<ShuffleDescriptor>> descriptors;
  if (built.ok()) {
    descriptors =
        RegisterBenchPartitions(o, *rig.master, ProducerLocation{"sender", sender->address()});
    built = descriptors.status();
  }
  if (built.ok()) built = AddBenchGates(o, *config, *descriptors, &rig);
  if (!built.ok()) return named(built);

  ConsumerSide side;
  side.thread = std::thread([&] {
    ShuffleConsumerLoop(rig.input.get(), o.record_size, o.batch_consumer, side.failed,
                        &side.received, &side.out);
    if (!side.out.status.ok()) side.failed.store(true);
  });
  SLUICE_ASSIGN_OR_RETURN(
      ThroughputResult result,
      FinishTwoProcessRun(o, name, *sender, side, [&side] { side.failed.store(true); }));
  for (const auto& g : rig.gates) result.buffers += g->buffers_taken();
  const ShuffleEnvironmentStats stats = rig.env->stats();
  result.payload_bytes = result.total_records * FramedRecordBytes(o.record_size);
  result.wire_bytes = stats.bytes_received;
  result.copied_bytes = stats.bytes_copied;
  return result;
}

absl::StatusOr<ThroughputResult> RunRawTcpShuffle(const ShuffleBenchOptions& o) {
  SLUICE_RETURN_IF_ERROR(ValidateShuffleBenchOptions(o));
  const std::string name(kRawTcp);
  auto named = [&name](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(name, ": ", s.message()));
  };
  absl::StatusOr<Sender> sender = Sender::Start(o, name);
  if (!sender.ok()) return named(sender.status());
  absl::StatusOr<uint16_t> port = PortOfAddress(sender->address());
  if (!port.ok()) return named(port.status());
  absl::StatusOr<RawSocket> socket = RawSocket::Connect(*port, kStartTimeout);
  if (!socket.ok()) return named(socket.status());
  if (absl::Status s = socket->SetReceiveTimeout(kStallTimeout); !s.ok()) return named(s);

  ConsumerSide side;
  RawTcpReceived received;
  const int fd = socket->fd();
  side.thread = std::thread([&] {
    RawTcpConsumerLoop(fd, size_t{o.writers} * o.channels, o.segment_size, o.record_size,
                       side.failed, &side.received, &side.out, &received);
    if (!side.out.status.ok()) side.failed.store(true);
  });
  SLUICE_ASSIGN_OR_RETURN(ThroughputResult result,
                          FinishTwoProcessRun(o, name, *sender, side, [&side, fd] {
                            side.failed.store(true);
                            shutdown(fd, SHUT_RDWR);
                          }));
  result.buffers = received.frames;
  result.payload_bytes = result.total_records * FramedRecordBytes(o.record_size);
  result.wire_bytes = received.bytes;
  result.copied_bytes = received.copied;
  return result;
}

int RunShufflePeer(Args args) {
  const std::optional<std::string> role = FindOptionValue(args, "--role");
  if (role.has_value() && role != "throughput") return RunLatencyPeer(args);
  ShuffleBenchOptions o;
  o.service = std::string(kNetShuffleService);
  std::string transport = "auto";
  WorkloadFlags workload(o);
  OptionParser parser(
      "sluice shuffle-peer",
      "The sender of a two-process 'sluice bench shuffle', started by it: --writers threads\n"
      "write records round-robin over --channels each, through the net shuffle service or, for\n"
      "raw-tcp, framed by hand onto one blocking socket. Prints 'ADDR <host:port>' on stdout,\n"
      "writes until it reads STOP on stdin (MARK: a phase boundary), prints what it sent, serves\n"
      "until stdin ends and exits.");
  parser.AddChoice("--transport", {"auto", "uring", "epoll", std::string(kRawTcp)},
                   "shuffle.net.transport, or raw-tcp for the baseline", &transport);
  std::string role_name = "throughput";
  parser.AddChoice("--role", {"throughput", "echo", "paced"},
                   "throughput (this), or a latency run's echo or paced sender", &role_name);
  workload.AddTo(parser);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;
  workload.ApplyTo(&o);
  if (absl::Status s = ValidateShuffleBenchOptions(o); !s.ok()) {
    return ReportUsageError(parser.command(), s);
  }
  const bool raw = transport == kRawTcp;
  if (!raw) o.net_transport = transport;
  const absl::Status s = raw ? ServeRawTcpSender(o) : ServeNetSender(o);
  // Cancelled: the parent gave up, and says why itself.
  if (!s.ok() && !absl::IsCancelled(s)) {
    absl::FPrintF(stderr, "sluice shuffle-peer (%s): %s\n", transport, s.message());
  }
  return s.ok() ? kExitOk : kExitFailure;
}

}  // namespace sluice::tools
