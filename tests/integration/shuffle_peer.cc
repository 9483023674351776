// A worker process of the `net` shuffle service for the multi-process tests. It talks to the test
// on stdout, one line each:
//   ADDR host:port        the producer's data server is up (printed before anything else)
//   CREATED               the producer created its partitions
//   FINISHED <records>    the producer wrote and finished every partition
//   DIGEST ...            the consumer's digest of one channel (net_peer.h), then DONE
//   ERROR <message>       something failed; the exit code is then non-zero
// Logs go to stderr.
//
//   shuffle_peer --role producer --transport uring|epoll [--partitions N] [--subpartitions S]
//       [--records R] [--partitioner forward|roundrobin|rescale|hash|broadcast|custom]
//       [--record-size MAX] [--flush-ms F] [--delay-ms D] [--hold] [--addr-file PATH]
//       [--set key=value]...
//     Serves partitions 1..N (PartitionId{i + 1, 0}) with R records each, then keeps serving
//     until stdin reaches EOF. --delay-ms waits before creating the partitions; --hold writes
//     one record to each partition every few milliseconds until stdin reaches EOF instead.
//   shuffle_peer --role consumer --transport uring|epoll --addr host:port [--partitions N]
//       [--subpartitions S] [--first-result K] [--wait-ms W] [--set key=value]...
//     Reads every subpartition of partitions K..K+N-1 from the producer at --addr through one
//     gate and prints a digest per channel (channel p * S + s).
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/logging.h"
#include "base/status.h"
#include "shuffle/record_writer.h"
#include "tests/integration/net_peer.h"
#include "tests/shuffle/partitioner_test_util.h"

namespace sluice::integration {
namespace {

// How often a --hold producer writes.
constexpr absl::Duration kHoldPause = absl::Milliseconds(2);

struct Args {
  std::string role;
  std::string transport;
  uint32_t partitions = 1;
  uint32_t subpartitions = 1;
  uint64_t records = 1000;
  PartitionerKind partitioner = PartitionerKind::kRoundRobin;
  size_t record_size = 1000;
  int64_t flush_ms = 5;
  int64_t delay_ms = 0;
  bool hold = false;
  std::string addr_file;
  std::string addr;
  uint64_t first_result = 1;
  int64_t wait_ms = 30000;
  std::vector<std::pair<std::string, std::string>> settings;
};

// One line to the test, at once.
void Say(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int Fail(const absl::Status& status) {
  Say(absl::StrCat("ERROR ", status.ToString()));
  return 1;
}

std::optional<PartitionerKind> ParsePartitioner(absl::string_view name) {
  for (PartitionerKind kind :
       {PartitionerKind::kForward, PartitionerKind::kRoundRobin, PartitionerKind::kRescale,
        PartitionerKind::kHash, PartitionerKind::kBroadcast, PartitionerKind::kCustom}) {
    std::string known(PartitionerName(kind));
    if (name == known) return kind;
    std::erase(known, '-');
    if (name == known) return kind;
  }
  return std::nullopt;
}

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args a;
  auto integer = [](absl::string_view flag, absl::string_view value, auto* out) -> absl::Status {
    if (!absl::SimpleAtoi(value, out)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: expected an integer, got '%s'", flag, value));
    }
    return absl::OkStatus();
  };
  for (int i = 1; i < argc; ++i) {
    const absl::string_view flag = argv[i];
    if (flag == "--hold") {
      a.hold = true;
      continue;
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    const absl::string_view value = argv[++i];
    if (flag == "--role") {
      a.role = std::string(value);
    } else if (flag == "--transport") {
      a.transport = std::string(value);
    } else if (flag == "--partitions") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.partitions));
    } else if (flag == "--subpartitions") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.subpartitions));
    } else if (flag == "--records") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.records));
    } else if (flag == "--record-size") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.record_size));
    } else if (flag == "--flush-ms") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.flush_ms));
    } else if (flag == "--delay-ms") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.delay_ms));
    } else if (flag == "--first-result") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.first_result));
    } else if (flag == "--wait-ms") {
      SLUICE_RETURN_IF_ERROR(integer(flag, value, &a.wait_ms));
    } else if (flag == "--partitioner") {
      std::optional<PartitionerKind> kind = ParsePartitioner(value);
      if (!kind) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--partitioner: unknown '%s' (forward, roundrobin, rescale, hash, broadcast, custom)",
            value));
      }
      a.partitioner = *kind;
    } else if (flag == "--addr-file") {
      a.addr_file = std::string(value);
    } else if (flag == "--addr") {
      a.addr = std::string(value);
    } else if (flag == "--set") {
      const size_t eq = value.find('=');
      if (eq == absl::string_view::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("--set: expected key=value, got '%s'", value));
      }
      a.settings.emplace_back(value.substr(0, eq), value.substr(eq + 1));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag));
    }
  }
  if (a.role != "producer" && a.role != "consumer") {
    return absl::InvalidArgumentError("--role must be producer or consumer");
  }
  if (a.transport.empty()) return absl::InvalidArgumentError("--transport is required");
  if (a.role == "consumer" && a.addr.empty()) {
    return absl::InvalidArgumentError("a consumer needs --addr host:port");
  }
  if (a.partitions == 0 || a.subpartitions == 0) {
    return absl::InvalidArgumentError("--partitions and --subpartitions must be positive");
  }
  return a;
}

Config PeerConfig(const Args& a) {
  Config config = NetPeerConfig(a.transport);
  for (const auto& [key, value] : a.settings) config.Set(key, value);
  return config;
}

// Blocks until the test closes our stdin (or goes away).
void WaitForStdinEof() {
  char byte;
  while (true) {
    const ssize_t n = read(STDIN_FILENO, &byte, 1);
    if (n == 0 || (n < 0 && errno != EINTR)) return;
  }
}

absl::Status WriteAddressFile(const std::string& path, const std::string& address) {
  // Renamed into place, so that a reader never sees half an address.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << address << '\n';
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

// Record i of every partition in turn, so that all partitions advance together.
absl::Status WriteRecords(std::vector<RecordWriter>& writers, const Args& a, uint64_t first,
                          uint64_t count) {
  for (uint64_t i = first; i < first + count; ++i) {
    for (uint32_t p = 0; p < writers.size(); ++p) {
      SLUICE_RETURN_IF_ERROR(writers[p].Emit(PeerRecord(p, i, a.record_size), PeerKey(p, i)));
    }
  }
  return absl::OkStatus();
}

int RunProducer(const Args& a) {
  absl::StatusOr<std::unique_ptr<PeerWorker>> worker =
      PeerWorker::Create(std::string(kProducerWorker), PeerConfig(a));
  if (!worker.ok()) return Fail(worker.status());
  const std::string address = (*worker)->env().data_address();
  Say(absl::StrCat("ADDR ", address));
  if (!a.addr_file.empty()) {
    if (absl::Status s = WriteAddressFile(a.addr_file, address); !s.ok()) return Fail(s);
  }
  if (a.delay_ms > 0) absl::SleepFor(absl::Milliseconds(a.delay_ms));

  absl::StatusOr<std::vector<ShuffleDescriptor>> descriptors =
      (*worker)->Register(1, a.partitions, a.subpartitions, address);
  if (!descriptors.ok()) return Fail(descriptors.status());
  std::vector<std::shared_ptr<ResultPartition>> partitions;
  std::vector<RecordWriter> writers;
  for (const ShuffleDescriptor& d : *descriptors) {
    ResultPartitionOptions options = (*worker)->config().partition_options(a.subpartitions);
    options.buffer_timeout_ms = a.flush_ms;
    absl::StatusOr<std::shared_ptr<ResultPartition>> p =
        (*worker)->env().CreateResultPartition(d, options);
    if (!p.ok()) return Fail(p.status());
    absl::StatusOr<RecordWriter> w = RecordWriter::Create(*p, testing::SpecFor(a.partitioner));
    if (!w.ok()) return Fail(w.status());
    partitions.push_back(*std::move(p));
    writers.push_back(*std::move(w));
  }
  Say("CREATED");

  if (a.hold) {
    // Writes until told to stop; releasing the partitions wakes a writer waiting for credit.
    std::atomic<bool> stop{false};
    absl::Status write_error;
    std::thread writer([&] {
      for (uint64_t i = 0; !stop.load(); ++i) {
        write_error = WriteRecords(writers, a, i, 1);
        if (!write_error.ok()) return;
        absl::SleepFor(kHoldPause);
      }
    });
    WaitForStdinEof();
    stop = true;
    for (const ShuffleDescriptor& d : *descriptors) {
      (*worker)->env().ReleasePartition(d.partition, absl::CancelledError("the producer stops"));
    }
    writer.join();
  } else {
    if (absl::Status s = WriteRecords(writers, a, 0, a.records); !s.ok()) return Fail(s);
    for (RecordWriter& w : writers) {
      if (absl::Status s = w.Finish(); !s.ok()) return Fail(s);
    }
    Say(absl::StrFormat("FINISHED %d", a.records));
    // The consumers may still be reading what was finished.
    WaitForStdinEof();
  }
  writers.clear();
  partitions.clear();
  worker->reset();
  return 0;
}

int RunConsumer(const Args& a) {
  absl::StatusOr<std::unique_ptr<PeerWorker>> worker =
      PeerWorker::Create("consumer", PeerConfig(a));
  if (!worker.ok()) return Fail(worker.status());
  absl::StatusOr<std::vector<ShuffleDescriptor>> descriptors =
      (*worker)->Register(a.first_result, a.partitions, a.subpartitions, a.addr);
  if (!descriptors.ok()) return Fail(descriptors.status());
  absl::StatusOr<std::unique_ptr<InputGate>> gate = (*worker)->GateOver(*descriptors);
  if (!gate.ok()) return Fail(gate.status());
  Digests digests;
  const absl::Status drained = DrainGate(**gate, absl::Milliseconds(a.wait_ms), &digests);
  gate->reset();
  worker->reset();
  if (!drained.ok()) return Fail(drained);
  for (const auto& [channel, digest] : digests) Say(FormatDigestLine(channel, digest));
  Say("DONE");
  return 0;
}

}  // namespace
}  // namespace sluice::integration

int main(int argc, char** argv) {
  sluice::InitLogging();
  absl::StatusOr<sluice::integration::Args> args = sluice::integration::ParseArgs(argc, argv);
  if (!args.ok()) {
    std::fprintf(stderr, "shuffle_peer: %s\n", std::string(args.status().message()).c_str());
    sluice::integration::Fail(args.status());
    return 2;
  }
  return args->role == "producer" ? sluice::integration::RunProducer(*args)
                                  : sluice::integration::RunConsumer(*args);
}
