#include "shuffle/local_shuffle.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "shuffle/internal/received_queue.h"
#include "shuffle/shuffle_service.h"

namespace sluice {
namespace {

class LocalShuffleEnvironment;

// The part of a LocalInputChannel that producers, the floating pool and timers may reach; it
// lives as long as the last of them holds it, and does nothing once released.
class ChannelCore final : public SubpartitionListener,
                          public FloatingCreditWaiter,
                          public std::enable_shared_from_this<ChannelCore> {
 public:
  ChannelCore(ChannelOwner* gate, uint32_t index, std::string description)
      : gate_(gate),
        index_(index),
        description_(std::move(description)),
        credit_(gate->exclusive_credits_per_channel()) {}

  const std::string& description() const { return description_; }

  // The producer is there: start reading.
  void Attach(const std::shared_ptr<ResultPartition>& partition, uint32_t subpartition) {
    absl::StatusOr<std::unique_ptr<SubpartitionView>> view =
        partition->CreateView(subpartition, shared_from_this());
    {
      MutexLock lock(&mu_);
      if (released_) return;  // the view's destructor releases the subpartition
      if (!view.ok()) {
        failure_ = view.status();
      } else {
        view_ = *std::move(view);
      }
      attached_ = true;
    }
    Transfer();
  }
  // The producer did not turn up (or the environment closed first).
  void FailUnattached(absl::Status cause) {
    MutexLock lock(&mu_);
    if (released_ || attached_ || !failure_.ok()) return;
    failure_ = std::move(cause);
    gate_->NotifyChannelNonEmpty(index_, false);
  }

  void OnDataAvailable(bool /*priority*/) override { Transfer(); }

  void OnFloatingCredit() override {
    bool give_back = false;
    {
      MutexLock lock(&mu_);
      give_back = released_ || !credit_.OnFloatingArrived();
    }
    // Returned outside our lock: the pool may hand it straight to another channel.
    if (give_back) {
      gate_->floating_credits().Return(1);
    } else {
      Transfer();
    }
  }

  // Moves what the subpartition offers into `received_`, as far as credit allows.
  void Transfer() {
    MutexLock lock(&mu_);
    if (released_ || view_ == nullptr || !failure_.ok()) return;
    bool notify = false;
    bool priority = false;
    while (true) {
      absl::StatusOr<std::optional<PolledBuffer>> polled = view_->Poll(credit_.available() > 0);
      if (!polled.ok()) {
        failure_ = polled.status();
        notify = true;
        break;
      }
      if (!polled->has_value()) {
        // Out of credit with buffers waiting: the backlog asks for floating credit, as a
        // network producer's backlog announcement does. Granted credit lets the loop go on.
        if (credit_.available() == 0 && RequestFloating(credit_.OnBacklog(view_->backlog())) > 0) {
          continue;
        }
        break;
      }
      PolledBuffer& p = **polled;
      if (received_.empty()) notify = true;
      if (p.type == DataType::kPriorityEvent) priority = true;
      const bool data = p.type == DataType::kData;
      received_.Push(std::move(p.buffer), p.type);
      if (data) {
        ++buffers_received_;
        RequestFloating(credit_.OnBufferReceived(p.backlog));
      }
      if (!p.more_available) break;
    }
    // Under our lock, so that nothing reaches the gate after Release.
    if (priority) gate_->NotifyChannelNonEmpty(index_, true);
    if (notify) gate_->NotifyChannelNonEmpty(index_, false);
  }

  absl::StatusOr<std::optional<ReceivedBuffer>> Poll(bool priority_only) {
    MutexLock lock(&mu_);
    if (!failure_.ok()) {
      received_.TakeAll();
      return failure_;
    }
    return received_.Pop(priority_only);
  }

  void OnBufferConsumed() {
    uint32_t give_back = 0;
    {
      MutexLock lock(&mu_);
      give_back = credit_.OnBufferConsumed();
    }
    if (give_back > 0) gate_->floating_credits().Return(give_back);
    Transfer();
  }

  void Release() {
    std::unique_ptr<SubpartitionView> view;
    internal::ReceivedQueue dropped;
    uint32_t give_back = 0;
    {
      MutexLock lock(&mu_);
      if (released_) return;
      released_ = true;
      dropped = received_.TakeAll();
      view = std::move(view_);
      give_back = credit_.ReleaseAll();
    }
    dropped = {};  // buffers first, then the subpartition
    view.reset();
    gate_->floating_credits().CancelWaits(this);
    if (give_back > 0) gate_->floating_credits().Return(give_back);
  }

  // Asks the gate for `wanted` floating credits; returns how many it gave at once (the rest
  // arrive through OnFloatingCredit).
  uint32_t RequestFloating(uint32_t wanted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return credit_.RequestFloating(wanted, gate_->floating_credits(), shared_from_this());
  }

  ChannelStats stats() const {
    MutexLock lock(&mu_);
    return MakeChannelStats(credit_, buffers_received_);
  }

 private:
  ChannelOwner* const gate_;
  const uint32_t index_;
  const std::string description_;
  mutable Mutex mu_;
  ChannelCredit credit_ ABSL_GUARDED_BY(mu_);
  internal::ReceivedQueue received_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SubpartitionView> view_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t buffers_received_ ABSL_GUARDED_BY(mu_) = 0;
};

class LocalInputChannel final : public InputChannel {
 public:
  LocalInputChannel(LocalShuffleEnvironment* env, ChannelOwner* gate, uint32_t index,
                    InputChannelSpec spec)
      : env_(env),
        spec_(std::move(spec)),
        core_(std::make_shared<ChannelCore>(
            gate, index,
            absl::StrFormat("local partition %s subpartition %d",
                            spec_.partition.partition.ToString(), spec_.subpartition))) {}
  ~LocalInputChannel() override { core_->Release(); }

  absl::Status Request() override;
  absl::StatusOr<std::optional<ReceivedBuffer>> Poll(bool priority_only) override {
    return core_->Poll(priority_only);
  }
  void OnBufferConsumed() override { core_->OnBufferConsumed(); }
  void Release() override { core_->Release(); }
  ChannelStats stats() const override { return core_->stats(); }
  std::string description() const override { return core_->description(); }

 private:
  LocalShuffleEnvironment* const env_;
  const InputChannelSpec spec_;
  const std::shared_ptr<ChannelCore> core_;

  friend class LocalShuffleEnvironment;
};

class LocalShuffleEnvironment final : public ShuffleEnvironment {
 public:
  LocalShuffleEnvironment(const ShuffleConfig& config, const ShuffleEnvironmentContext& context)
      : config_(config), worker_id_(context.worker_id), pool_(context.pool), timer_(context.timer) {
    if (timer_ == nullptr) {
      own_timer_ = std::make_unique<TimerService>("shuffle-timer");
      timer_ = own_timer_.get();
    }
  }
  ~LocalShuffleEnvironment() override { Close(); }

  std::string_view service() const override { return kLocalShuffleService; }

  absl::StatusOr<std::shared_ptr<ResultPartition>> CreateResultPartition(
      const ShuffleDescriptor& descriptor, const ResultPartitionOptions& options) override {
    SLUICE_RETURN_IF_ERROR(CheckDescriptor(descriptor));
    SLUICE_RETURN_IF_ERROR(CheckPartitionOptions(descriptor, options));
    std::vector<std::weak_ptr<ChannelCore>> waiting_cores;
    std::vector<uint32_t> waiting_subs;
    std::shared_ptr<ResultPartition> partition;
    {
      MutexLock lock(&mu_);
      if (closed_) return absl::FailedPreconditionError("the local shuffle environment is closed");
      if (partitions_.contains(descriptor.partition)) {
        return absl::AlreadyExistsError(absl::StrFormat("partition %s already exists on worker %s",
                                                        descriptor.partition.ToString(),
                                                        worker_id_));
      }
      SLUICE_ASSIGN_OR_RETURN(partition, ResultPartition::Create(descriptor.partition.ToString(),
                                                                 options, pool_, timer_));
      partitions_.emplace(descriptor.partition, partition);
      auto it = waiting_.find(descriptor.partition);
      if (it != waiting_.end()) {
        for (Waiting& w : it->second) {
          waiting_cores.push_back(w.core);
          waiting_subs.push_back(w.subpartition);
          timer_->Cancel(w.deadline);
        }
        waiting_.erase(it);
      }
    }
    for (size_t i = 0; i < waiting_cores.size(); ++i) {
      if (auto core = waiting_cores[i].lock()) core->Attach(partition, waiting_subs[i]);
    }
    return partition;
  }

  absl::StatusOr<std::unique_ptr<InputGate>> CreateInputGate(
      std::string name, absl::Span<const InputChannelSpec> channels,
      const InputGateOptions& options) override {
    for (const InputChannelSpec& spec : channels) {
      SLUICE_RETURN_IF_ERROR(CheckDescriptor(spec.partition));
    }
    SLUICE_RETURN_IF_ERROR(CheckChannelSpecs(name, channels));
    auto gate = std::make_unique<InputGate>(std::move(name), options);
    for (size_t i = 0; i < channels.size(); ++i) {
      gate->AddChannel(std::make_unique<LocalInputChannel>(this, gate.get(),
                                                           static_cast<uint32_t>(i), channels[i]));
    }
    SLUICE_RETURN_IF_ERROR(gate->Start());
    {
      MutexLock lock(&mu_);
      ++gates_created_;
    }
    return gate;
  }

  // A channel asks for its subpartition: attach now, or when the partition is created.
  absl::Status RequestSubpartition(const InputChannelSpec& spec,
                                   const std::shared_ptr<ChannelCore>& core) {
    std::shared_ptr<ResultPartition> partition;
    {
      MutexLock lock(&mu_);
      if (closed_) return absl::FailedPreconditionError("the local shuffle environment is closed");
      auto it = partitions_.find(spec.partition.partition);
      if (it != partitions_.end()) {
        partition = it->second;
      } else {
        // Not produced yet (the scheduler deploys in any order): wait up to the deadline.
        const PartitionId id = spec.partition.partition;
        const absl::Duration timeout = config_.partition_request_timeout;
        std::weak_ptr<ChannelCore> weak = core;
        const TimerService::TimerId deadline = timer_->Schedule(timeout, [weak, id, timeout] {
          if (auto c = weak.lock()) {
            c->FailUnattached(
                absl::NotFoundError(absl::StrFormat("partition %s was not produced within %s "
                                                    "(shuffle.partition-request-timeout)",
                                                    id.ToString(), absl::FormatDuration(timeout))));
          }
        });
        waiting_[id].push_back(Waiting{core, spec.subpartition, deadline});
        return absl::OkStatus();
      }
    }
    core->Attach(partition, spec.subpartition);
    return absl::OkStatus();
  }

  void ReleasePartition(const PartitionId& id, absl::Status cause) override {
    std::shared_ptr<ResultPartition> partition;
    {
      MutexLock lock(&mu_);
      auto it = partitions_.find(id);
      if (it == partitions_.end()) return;
      partition = std::move(it->second);
      partitions_.erase(it);
    }
    partition->Release(cause.ok() ? absl::CancelledError("released by the shuffle environment")
                                  : std::move(cause));
  }

  ShuffleEnvironmentStats stats() const override {
    MutexLock lock(&mu_);
    return ShuffleEnvironmentStats{partitions_.size(), gates_created_};
  }

  void Close() override {
    absl::flat_hash_map<PartitionId, std::shared_ptr<ResultPartition>> partitions;
    absl::flat_hash_map<PartitionId, std::vector<Waiting>> waiting;
    {
      MutexLock lock(&mu_);
      if (closed_) return;
      closed_ = true;
      partitions.swap(partitions_);
      waiting.swap(waiting_);
    }
    for (auto& [id, waits] : waiting) {
      for (Waiting& w : waits) {
        timer_->Cancel(w.deadline);
        if (auto core = w.core.lock()) {
          core->FailUnattached(absl::CancelledError(absl::StrFormat(
              "the shuffle environment of worker %s closed before partition %s was produced",
              worker_id_, id.ToString())));
        }
      }
    }
    for (auto& [id, p] : partitions) {
      p->Release(absl::CancelledError(
          absl::StrFormat("the shuffle environment of worker %s closed", worker_id_)));
    }
  }

 private:
  struct Waiting {
    std::weak_ptr<ChannelCore> core;
    uint32_t subpartition;
    TimerService::TimerId deadline;
  };

  absl::Status CheckDescriptor(const ShuffleDescriptor& d) const {
    if (d.service != kLocalShuffleService) {
      return absl::InvalidArgumentError(
          absl::StrFormat("partition %s belongs to the \"%s\" shuffle service, not \"local\"",
                          d.partition.ToString(), d.service));
    }
    if (d.producer_worker != worker_id_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "partition %s is produced on worker %s; the local shuffle service of worker %s reads "
          "only its own process's partitions (use shuffle.service = net)",
          d.partition.ToString(), d.producer_worker, worker_id_));
    }
    return absl::OkStatus();
  }

  const ShuffleConfig config_;
  const std::string worker_id_;
  BufferPool* const pool_;
  std::unique_ptr<TimerService> own_timer_;
  TimerService* timer_;

  mutable Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<PartitionId, std::shared_ptr<ResultPartition>> partitions_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<PartitionId, std::vector<Waiting>> waiting_ ABSL_GUARDED_BY(mu_);
  size_t gates_created_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::Status LocalInputChannel::Request() { return env_->RequestSubpartition(spec_, core_); }

class LocalShuffleMaster final : public ShuffleMaster {
 public:
  absl::StatusOr<ShuffleDescriptor> RegisterPartition(const PartitionId& partition,
                                                      uint32_t num_subpartitions,
                                                      const ProducerLocation& producer) override {
    if (num_subpartitions == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("partition %s needs at least one subpartition", partition.ToString()));
    }
    ShuffleDescriptor d;
    d.service = std::string(kLocalShuffleService);
    d.partition = partition;
    d.num_subpartitions = num_subpartitions;
    d.producer_worker = producer.worker_id;
    return d;
  }
  // Local partitions live in their worker's environment only; nothing to release here.
  void ReleasePartition(const ShuffleDescriptor&) override {}
};

class LocalShuffleFactory final : public ShuffleServiceFactory {
 public:
  std::string_view name() const override { return kLocalShuffleService; }
  absl::StatusOr<std::unique_ptr<ShuffleMaster>> CreateMaster(const ShuffleConfig&) override {
    return std::make_unique<LocalShuffleMaster>();
  }
  absl::StatusOr<std::unique_ptr<ShuffleEnvironment>> CreateEnvironment(
      const ShuffleConfig& config, const ShuffleEnvironmentContext& context) override {
    return std::make_unique<LocalShuffleEnvironment>(config, context);
  }
};

}  // namespace

SLUICE_REGISTER_SHUFFLE_SERVICE(LocalShuffleFactory);

}  // namespace sluice
