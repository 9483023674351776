// Micro-benchmarks for the base layer: the cost of taking and returning pool segments, of slicing
// a buffer, and of recording into a histogram. Results and goals live in docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/checksum.h"
#include "base/histogram.h"
#include "base/mailbox.h"

namespace sluice {
namespace {

std::unique_ptr<BufferPool> MakePool(benchmark::State& state) {
  BufferPoolOptions options;
  options.segment_size = 4096;
  options.num_segments = 64;
  options.try_hugepages = false;
  absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(options);
  if (!pool.ok()) {
    state.SkipWithError(std::string(pool.status().message()).c_str());
    return nullptr;
  }
  return std::move(pool).value();
}

void BM_GlobalPoolRequestRelease(benchmark::State& state) {
  auto pool = MakePool(state);
  if (pool == nullptr) return;
  for (auto _ : state) {
    Buffer b = pool->TryRequest();
    benchmark::DoNotOptimize(b.data());
    b.Release();
  }
}
BENCHMARK(BM_GlobalPoolRequestRelease);

// Within the local pool's minimum: the segment stays in the local free list.
void BM_LocalPoolRequestRelease(benchmark::State& state) {
  auto pool = MakePool(state);
  if (pool == nullptr) return;
  absl::StatusOr<std::unique_ptr<LocalBufferPool>> local = pool->CreateLocalPool("bench", 8, 16);
  if (!local.ok()) {
    state.SkipWithError(std::string(local.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    Buffer b = (*local)->TryRequest();
    benchmark::DoNotOptimize(b.data());
    b.Release();
  }
}
BENCHMARK(BM_LocalPoolRequestRelease);

// Above the minimum: every request grows from the global pool and every release gives back.
void BM_LocalPoolGrowAndShrink(benchmark::State& state) {
  auto pool = MakePool(state);
  if (pool == nullptr) return;
  absl::StatusOr<std::unique_ptr<LocalBufferPool>> local = pool->CreateLocalPool("bench", 0, 16);
  if (!local.ok()) {
    state.SkipWithError(std::string(local.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    Buffer b = (*local)->TryRequest();
    benchmark::DoNotOptimize(b.data());
    b.Release();
  }
}
BENCHMARK(BM_LocalPoolGrowAndShrink);

void BM_SliceRelease(benchmark::State& state) {
  Buffer b = Buffer::AllocateUnpooled(4096);
  b.Commit(4096);
  for (auto _ : state) {
    Buffer s = b.Slice(128, 256);
    benchmark::DoNotOptimize(s.data());
  }
}
BENCHMARK(BM_SliceRelease);

// Several threads slicing one segment contend on its reference count.
void BM_SliceReleaseShared(benchmark::State& state) {
  static const Buffer shared = [] {
    Buffer b = Buffer::AllocateUnpooled(4096);
    b.Commit(4096);
    return b;
  }();
  for (auto _ : state) {
    Buffer s = shared.Slice(128, 256);
    benchmark::DoNotOptimize(s.data());
  }
}
BENCHMARK(BM_SliceReleaseShared)->Threads(1)->Threads(2)->Threads(4);

void BM_HistogramRecord(benchmark::State& state) {
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> latency(8.0, 1.5);
  std::vector<uint64_t> values(4096);
  for (uint64_t& v : values) v = static_cast<uint64_t>(latency(rng));
  Histogram h;
  size_t i = 0;
  for (auto _ : state) {
    h.Record(values[i++ & (values.size() - 1)]);
  }
  benchmark::DoNotOptimize(h.count());
}
BENCHMARK(BM_HistogramRecord);

void BM_HistogramPercentile(benchmark::State& state) {
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> latency(8.0, 1.5);
  Histogram h;
  for (int i = 0; i < 100'000; ++i) h.Record(static_cast<uint64_t>(latency(rng)));
  for (auto _ : state) benchmark::DoNotOptimize(h.p99());
}
BENCHMARK(BM_HistogramPercentile);

void BM_Crc32c(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::string data(n, 'x');
  for (auto _ : state) benchmark::DoNotOptimize(Crc32c(0, data.data(), data.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(BM_Crc32c)->Range(64, 64 << 10);

void BM_MailboxPutRun(benchmark::State& state) {
  Mailbox mailbox;
  uint64_t ran = 0;
  for (auto _ : state) {
    mailbox.Put([&ran] { ++ran; });
    mailbox.RunAvailable();
  }
  benchmark::DoNotOptimize(ran);
}
BENCHMARK(BM_MailboxPutRun);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
