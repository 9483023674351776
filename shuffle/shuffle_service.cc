#include "shuffle/shuffle_service.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/logging.h"
#include "base/status.h"
#include "flatbuffers/flatbuffers.h"
#include "shuffle/schemas/shuffle_descriptor_generated.h"

namespace sluice {
namespace {

constexpr uint16_t kDescriptorVersion = 1;
constexpr size_t kMaxDescriptorBytes = 64 * 1024;

struct Registry {
  Mutex mu;
  std::map<std::string, std::unique_ptr<ShuffleServiceFactory>, std::less<>> factories
      ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

}  // namespace

std::string PartitionId::ToString() const { return absl::StrFormat("%016x.%d", result, producer); }

absl::Status CheckPartitionOptions(const ShuffleDescriptor& descriptor,
                                   const ResultPartitionOptions& options) {
  if (options.num_subpartitions != descriptor.num_subpartitions) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "partition %s was registered with %d subpartitions but is created with %d",
        descriptor.partition.ToString(), descriptor.num_subpartitions, options.num_subpartitions));
  }
  return absl::OkStatus();
}

absl::Status CheckChannelSpecs(std::string_view gate, absl::Span<const InputChannelSpec> channels) {
  for (const InputChannelSpec& spec : channels) {
    if (spec.subpartition >= spec.partition.num_subpartitions) {
      return absl::OutOfRangeError(
          absl::StrFormat("gate %s: partition %s has %d subpartitions; there is no subpartition %d",
                          std::string(gate), spec.partition.partition.ToString(),
                          spec.partition.num_subpartitions, spec.subpartition));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- config

absl::StatusOr<ShuffleConfig> ShuffleConfig::FromConfig(const Config& config) {
  std::vector<std::string_view> known = {
      "shuffle.service",
      "shuffle.exclusive-buffers-per-channel",
      "shuffle.floating-buffers-per-gate",
      "shuffle.buffer-timeout-ms",
      "shuffle.max-record-size",
      "shuffle.partition-request-timeout",
  };
  std::vector<std::string> service_keys;
  for (const std::string& name : ShuffleServiceRegistry::Names()) {
    auto factory = ShuffleServiceRegistry::Find(name);
    if (!factory.ok()) continue;
    for (std::string_view k : (*factory)->option_keys()) service_keys.push_back(std::string(k));
  }
  for (const std::string& k : service_keys) known.push_back(k);
  SLUICE_RETURN_IF_ERROR(config.CheckKnown("shuffle.", known));

  ShuffleConfig c;
  c.raw = config;
  c.service = config.GetString("shuffle.service", c.service);
  SLUICE_RETURN_IF_ERROR(ShuffleServiceRegistry::Find(c.service).status());
  SLUICE_ASSIGN_OR_RETURN(int64_t exclusive,
                          config.GetInt("shuffle.exclusive-buffers-per-channel",
                                        c.exclusive_buffers_per_channel, 1, 1024));
  SLUICE_ASSIGN_OR_RETURN(int64_t floating, config.GetInt("shuffle.floating-buffers-per-gate",
                                                          c.floating_buffers_per_gate, 0, 1 << 20));
  SLUICE_ASSIGN_OR_RETURN(c.buffer_timeout_ms,
                          config.GetInt("shuffle.buffer-timeout-ms", c.buffer_timeout_ms, -1,
                                        int64_t{24} * 3600 * 1000));
  SLUICE_ASSIGN_OR_RETURN(c.max_record_size,
                          config.GetBytes("shuffle.max-record-size", c.max_record_size));
  if (c.max_record_size == 0 || c.max_record_size > UINT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("shuffle.max-record-size: %d is outside [1, 4 GiB)", c.max_record_size));
  }
  SLUICE_ASSIGN_OR_RETURN(
      c.partition_request_timeout,
      config.GetDuration("shuffle.partition-request-timeout", c.partition_request_timeout));
  c.exclusive_buffers_per_channel = static_cast<uint32_t>(exclusive);
  c.floating_buffers_per_gate = static_cast<uint32_t>(floating);
  return c;
}

InputGateOptions ShuffleConfig::gate_options() const {
  InputGateOptions o;
  o.exclusive_buffers_per_channel = exclusive_buffers_per_channel;
  o.floating_buffers_per_gate = floating_buffers_per_gate;
  o.max_record_size = max_record_size;
  return o;
}

ResultPartitionOptions ShuffleConfig::partition_options(uint32_t num_subpartitions) const {
  ResultPartitionOptions o;
  o.num_subpartitions = num_subpartitions;
  o.buffer_timeout_ms = buffer_timeout_ms;
  o.max_record_size = max_record_size;
  o.exclusive_buffers_per_channel = exclusive_buffers_per_channel;
  o.floating_buffers_per_gate = floating_buffers_per_gate;
  return o;
}

// ---------------------------------------------------------------- descriptor

std::string ShuffleDescriptor::Serialize() const {
  flatbuffers::FlatBufferBuilder b(256);
  auto svc = b.CreateString(service);
  auto worker = b.CreateString(producer_worker);
  auto address = b.CreateString(producer_address);
  shuffle::fb::ShuffleDescriptorBuilder d(b);
  d.add_version(kDescriptorVersion);
  d.add_service(svc);
  d.add_result_id(partition.result);
  d.add_producer_subtask(partition.producer);
  d.add_num_subpartitions(num_subpartitions);
  d.add_producer_worker(worker);
  d.add_producer_address(address);
  d.add_connection_index(connection_index);
  b.Finish(d.Finish());
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

absl::StatusOr<ShuffleDescriptor> ShuffleDescriptor::Parse(std::string_view bytes) {
  if (bytes.size() > kMaxDescriptorBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("shuffle descriptor of %d bytes exceeds the limit of %d", bytes.size(),
                        kMaxDescriptorBytes));
  }
  // FlatBuffers reads scalars in place: give it an 8-byte aligned copy.
  std::vector<uint64_t> aligned((bytes.size() + 7) / 8);
  if (!bytes.empty()) std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const auto* data = reinterpret_cast<const uint8_t*>(aligned.data());
  flatbuffers::Verifier verifier(data, bytes.size());
  if (!shuffle::fb::VerifyShuffleDescriptorBuffer(verifier)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("shuffle descriptor of %d bytes fails verification", bytes.size()));
  }
  const auto* fb = shuffle::fb::GetShuffleDescriptor(data);
  if (fb->version() != kDescriptorVersion) {
    return absl::InvalidArgumentError(
        absl::StrFormat("shuffle descriptor version %d is not supported (this build reads %d)",
                        fb->version(), kDescriptorVersion));
  }
  if (fb->service() == nullptr || fb->service()->size() == 0) {
    return absl::InvalidArgumentError("shuffle descriptor names no service");
  }
  ShuffleDescriptor d;
  d.service = fb->service()->str();
  d.partition.result = fb->result_id();
  d.partition.producer = fb->producer_subtask();
  d.num_subpartitions = fb->num_subpartitions();
  if (fb->producer_worker() != nullptr) d.producer_worker = fb->producer_worker()->str();
  if (fb->producer_address() != nullptr) d.producer_address = fb->producer_address()->str();
  d.connection_index = fb->connection_index();
  if (d.num_subpartitions == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shuffle descriptor of partition %s has no subpartitions", d.partition.ToString()));
  }
  return d;
}

// ---------------------------------------------------------------- registry

absl::Status ShuffleServiceRegistry::Register(std::unique_ptr<ShuffleServiceFactory> factory) {
  Registry& r = GetRegistry();
  MutexLock lock(&r.mu);
  std::string name(factory->name());
  if (name.empty()) return absl::InvalidArgumentError("a shuffle service needs a name");
  if (r.factories.count(name) > 0) {
    return absl::AlreadyExistsError(
        absl::StrFormat("a shuffle service named \"%s\" is already registered", name));
  }
  r.factories.emplace(std::move(name), std::move(factory));
  return absl::OkStatus();
}

absl::StatusOr<ShuffleServiceFactory*> ShuffleServiceRegistry::Find(std::string_view name) {
  Registry& r = GetRegistry();
  MutexLock lock(&r.mu);
  auto it = r.factories.find(name);
  if (it != r.factories.end()) return it->second.get();
  std::vector<std::string> names;
  for (const auto& [n, f] : r.factories) names.push_back(n);
  return absl::NotFoundError(absl::StrFormat(
      "unknown shuffle service \"%s\" (shuffle.service); registered: %s", std::string(name),
      names.empty() ? std::string("none") : absl::StrJoin(names, ", ")));
}

std::vector<std::string> ShuffleServiceRegistry::Names() {
  Registry& r = GetRegistry();
  MutexLock lock(&r.mu);
  std::vector<std::string> names;
  for (const auto& [n, f] : r.factories) names.push_back(n);
  return names;
}

absl::StatusOr<std::unique_ptr<ShuffleMaster>> CreateShuffleMaster(const ShuffleConfig& config) {
  SLUICE_ASSIGN_OR_RETURN(ShuffleServiceFactory * factory,
                          ShuffleServiceRegistry::Find(config.service));
  return factory->CreateMaster(config);
}

absl::StatusOr<std::unique_ptr<ShuffleEnvironment>> CreateShuffleEnvironment(
    const ShuffleConfig& config, const ShuffleEnvironmentContext& context) {
  if (context.pool == nullptr) {
    return absl::InvalidArgumentError("a shuffle environment needs a buffer pool");
  }
  SLUICE_ASSIGN_OR_RETURN(ShuffleServiceFactory * factory,
                          ShuffleServiceRegistry::Find(config.service));
  SLUICE_LOG_DEBUG("shuffle service: {} (worker {})", config.service, context.worker_id);
  return factory->CreateEnvironment(config, context);
}

namespace internal {
ShuffleServiceRegistrar::ShuffleServiceRegistrar(
    std::function<std::unique_ptr<ShuffleServiceFactory>()> make) {
  absl::Status s = ShuffleServiceRegistry::Register(make());
  SLUICE_CHECK_MSG(s.ok(), std::string(s.message()));
}
}  // namespace internal

}  // namespace sluice
