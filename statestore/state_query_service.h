// StateQueryService: the QueryService of one worker. Subtasks register their keyed state with it
// (a QueryablePartition each) and publish views of it; queries read those views on the caller's
// thread, never on a task thread. Keys of key groups held elsewhere are forwarded to the worker
// the location table names, or answered Moved.
//
// Consistency. `latest` reads the view the subtask published last (on rocksdb a live view, so
// every read sees the newest writes). `committed` reads the view pinned at the barrier of the
// newest checkpoint whose completion was published: the scheduler calls PinAtBarrier on each
// subtask's task thread as the barrier passes, and PublishCompleted once the checkpoint has
// completed everywhere; the views of the two newest completed checkpoints are kept, so that a
// multi-key read can ask every worker for the same checkpoint id.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "statestore/keyed_state_backend.h"
#include "statestore/location_table.h"
#include "statestore/query_protocol.h"
#include "statestore/query_service.h"

namespace sluice {

// Sends a request to another worker's query server; `done` runs once with its answer (or a
// response whose status says why there is none). Thread-safe; never blocks.
class QueryForwarder {
 public:
  virtual ~QueryForwarder() = default;
  virtual void Forward(const std::string& address, QueryRequest request, QueryCallback done) = 0;
};

struct StateQueryServiceOptions {
  // This worker's query address: the location of its own key groups in answers (SetAddress
  // when it is known only once the server listens).
  std::string address;
  uint32_t default_scan_limit = 100;
  uint32_t max_scan_limit = 10000;
  uint32_t max_keys = 10000;  // per MultiGet
  // How many completed checkpoints stay readable (at least 1).
  uint32_t retained_checkpoints = 2;
};

class StateQueryService;

// One subtask's keyed state, registered with the service; unregistered when destroyed. The
// methods that take views run on the subtask's task thread.
class QueryablePartition {
 public:
  ~QueryablePartition();
  QueryablePartition(const QueryablePartition&) = delete;
  QueryablePartition& operator=(const QueryablePartition&) = delete;

  // The view `latest` reads use from now on; the partition is available from then on.
  void PublishLatest(std::shared_ptr<const StateView> view);
  // Hook for the barrier of `checkpoint_id`: pins the state as it is now (backend.PinView()) for
  // committed reads once the checkpoint completes. Views pinned for checkpoints that never
  // complete are dropped when a newer one does.
  absl::Status PinAtBarrier(uint64_t checkpoint_id, KeyedStateBackend& backend);
  // The state is being restored: reads answer Unavailable until the next PublishLatest, and
  // every view is dropped (the restore replaces what they read). Committed reads come back with
  // the next completed checkpoint.
  void SetRestoring();

  const std::string& job() const { return job_; }
  KeyGroupRange key_groups() const { return key_groups_; }

 private:
  friend class StateQueryService;
  QueryablePartition(StateQueryService* service, std::string job, KeyGroupRange key_groups,
                     uint32_t max_parallelism);

  StateQueryService* const service_;
  const std::string job_;
  const KeyGroupRange key_groups_;
  const uint32_t max_parallelism_;
  // Guarded by service_->mu_.
  bool restoring_ = true;
  std::shared_ptr<const StateView> latest_;
  std::map<uint64_t, std::shared_ptr<const StateView>> pinned_;     // at barriers
  std::map<uint64_t, std::shared_ptr<const StateView>> committed_;  // completed, newest last
};

class StateQueryService final : public QueryService {
 public:
  // `forwarder` may be null: keys held elsewhere are then answered Moved.
  StateQueryService(StateQueryServiceOptions options, std::shared_ptr<QueryForwarder> forwarder);
  ~StateQueryService() override;

  // Registers a subtask's state: `key_groups` of `job`'s `max_parallelism`. Unavailable until
  // its first PublishLatest. Another partition of the job with overlapping key groups, or another
  // maximum parallelism, is an InvalidArgument error naming both.
  absl::StatusOr<std::unique_ptr<QueryablePartition>> Register(const std::string& job,
                                                               KeyGroupRange key_groups,
                                                               uint32_t max_parallelism);
  // Hook for the completion of `checkpoint_id` of `job` (on every subtask): committed reads use
  // the views pinned at its barrier from now on.
  void PublishCompleted(const std::string& job, uint64_t checkpoint_id);
  // Replaces the table of where other workers' key groups are.
  void SetLocations(LocationTable table);
  void SetAddress(std::string address);

  void Execute(QueryRequest request, QueryCallback done) override;

  const StateQueryServiceOptions& options() const { return options_; }

 private:
  friend class QueryablePartition;
  struct Route;
  struct ReadContext;

  // Where `key_group` of `job`'s `state` is read: a local partition's view, another worker, or
  // an error.
  Route RouteKeyGroup(const QueryRequest& request, uint32_t key_group) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint32_t MaxParallelismOf(const std::string& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Fills request.job when it is empty and this worker knows exactly one job.
  QueryStatus ResolveJob(QueryRequest& request, std::string* message) const;
  // Recomputes jobs_ after partitions_ or locations_ changed.
  void UpdateJobs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void ExecuteGet(QueryRequest request, QueryCallback done);
  void ExecuteScan(QueryRequest request, QueryCallback done);
  void ExecuteListStates(QueryRequest request, QueryCallback done);
  void Forward(const std::string& address, QueryRequest request, QueryCallback done);

  const StateQueryServiceOptions options_;
  const std::shared_ptr<QueryForwarder> forwarder_;
  mutable absl::Mutex mu_;
  std::vector<QueryablePartition*> partitions_ ABSL_GUARDED_BY(mu_);
  LocationTable locations_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> jobs_ ABSL_GUARDED_BY(mu_);  // of both, sorted, once each
  std::string address_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice
