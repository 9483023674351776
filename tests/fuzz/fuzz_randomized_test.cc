// The fuzz targets under a plain random mutator, in every build (gcc included, where libFuzzer
// is not available): each target runs on its seed inputs, then on mutations of them (bit flips,
// interesting values, frame lengths, truncation, insertion, splicing). SLUICE_FUZZ_ITERATIONS sets
// the mutations per target (default 20000); SLUICE_FUZZ_SEED the seed, which is fixed, printed,
// and printed again with the input when a target crashes. To rerun one input:
//   SLUICE_FUZZ_TARGET=<name> SLUICE_FUZZ_INPUT_HEX=<hex> test_fuzz_randomized
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "tests/fuzz/fuzz_targets.h"

// Sanitizer runtimes call this before they exit on a report; absent without sanitizers.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace sluice::fuzz {

void PrintTo(const Target& target, std::ostream* os) { *os << target.name; }

namespace {

constexpr uint64_t kDefaultSeed = 20240601;
constexpr uint64_t kDefaultIterations = 20000;
constexpr size_t kMaxInput = 64 * 1024;
constexpr size_t kMaxCorpus = 512;

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 0);
  if (end == nullptr || *end != '\0') {
    std::fprintf(stderr, "fuzz_randomized: ignoring %s=%s (not a number)\n", name, v);
    return fallback;
  }
  return n;
}

// What runs now, for the crash report.
struct Running {
  const char* target = nullptr;
  uint64_t seed = 0;
  uint64_t iteration = 0;
  const std::string* input = nullptr;
};
Running running;

void ReportRunning() {
  static bool reported = false;
  if (running.target == nullptr || std::exchange(reported, true)) return;
  std::fprintf(
      stderr,
      "\nfuzz_randomized: target %s crashed on mutation %llu of SLUICE_FUZZ_SEED=%llu\n"
      "  input (%zu bytes, hex): %s\n",
      running.target, static_cast<unsigned long long>(running.iteration),
      static_cast<unsigned long long>(running.seed),
      running.input != nullptr ? running.input->size() : 0,
      running.input != nullptr
          ? Hex(reinterpret_cast<const uint8_t*>(running.input->data()), running.input->size())
                .c_str()
          : "");
  std::fflush(stderr);
}

void OnFatalSignal(int sig) {
  ReportRunning();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void InstallCrashReport() {
  static const bool installed = [] {
    if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(ReportRunning);
    // gcc links UBSan's runtime apart from ASan's, each with its own death callback.
    if (void* ubsan = dlopen("libubsan.so.1", RTLD_LAZY | RTLD_NOLOAD)) {
      using Setter = void (*)(void (*)());
      if (auto set = reinterpret_cast<Setter>(dlsym(ubsan, "__sanitizer_set_death_callback"))) {
        set(ReportRunning);
      }
    }
    std::signal(SIGABRT, OnFatalSignal);  // failed invariants; sanitizers handle SIGSEGV
    return true;
  }();
  (void)installed;
}

// FNV-1a, so a target's mutation stream does not depend on the standard library.
uint64_t Mix(uint64_t seed, const char* name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (const char* p = name; *p != '\0'; ++p) h = (h ^ static_cast<uint8_t>(*p)) * 1099511628211ull;
  return h;
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : state_(seed) {}

  // Half the time from an original seed: most mutants no longer parse, and a valid stream is
  // what reaches deep states (a large frame split at an unlucky byte, a dry pool).
  std::string Mutate(const std::vector<std::string>& corpus, size_t seeds) {
    std::string s = corpus[Below(2) == 0 ? Below(seeds) : Below(corpus.size())];
    MutateOnce(s, corpus);
    while (Below(2) == 0) MutateOnce(s, corpus);
    if (s.size() > kMaxInput) s.resize(kMaxInput);
    return s;
  }

  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }

 private:
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  uint32_t Interesting32() {
    static constexpr uint32_t kValues[] = {
        0,     1,     7,       23,      24,         25,         255,       256,
        1023,  1024,  4072,    4095,    4096,       4097,       5000,      8192,
        65535, 65536, 4194304, 4194305, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF};
    return Below(4) == 0 ? static_cast<uint32_t>(Next()) : kValues[Below(std::size(kValues))];
  }

  void Put32(std::string& s, size_t at, uint32_t v) {
    if (at + 4 > s.size()) return;
    std::memcpy(s.data() + at, &v, 4);
  }

  // Offsets where a frame header seems to start ("SL", little-endian magic).
  std::vector<size_t> Headers(const std::string& s) {
    std::vector<size_t> at;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      if (s[i] == 'S' && s[i + 1] == 'L') at.push_back(i);
    }
    return at;
  }

  void MutateOnce(std::string& s, const std::vector<std::string>& corpus) {
    switch (Below(12)) {
      case 11:  // the leading bytes only: for frame_reader, the same stream fed differently
        if (!s.empty()) s[Below(std::min<size_t>(s.size(), 8))] = static_cast<char>(Next());
        break;
      case 0:  // flip a bit
        if (!s.empty()) s[Below(s.size())] ^= static_cast<char>(1 << Below(8));
        break;
      case 1:  // a random byte
        if (!s.empty()) s[Below(s.size())] = static_cast<char>(Next());
        break;
      case 2: {  // an interesting byte
        static constexpr uint8_t kBytes[] = {0, 1, 2, 3, 4, 5, 16, 0x4C, 0x53, 0x7F, 0x80, 0xFF};
        if (!s.empty()) s[Below(s.size())] = static_cast<char>(kBytes[Below(std::size(kBytes))]);
        break;
      }
      case 3:  // an interesting 32-bit value anywhere
        if (s.size() >= 4) Put32(s, Below(s.size() - 3), Interesting32());
        break;
      case 4: {  // a frame's length, type, version or magic
        const std::vector<size_t> headers = Headers(s);
        if (headers.empty()) break;
        const size_t h = headers[Below(headers.size())];
        switch (Below(4)) {
          case 0:
          case 1:
            Put32(s, h + 12, Interesting32());
            break;
          case 2:
            if (h + 3 < s.size()) s[h + 3] = static_cast<char>(Below(3) == 0 ? Next() : Below(6));
            break;
          default:
            if (const size_t at = h + Below(3); at < s.size()) {
              s[at] ^= static_cast<char>(1 << Below(8));
            }
            break;
        }
        break;
      }
      case 5:  // truncate
        s.resize(Below(s.size() + 1));
        break;
      case 6: {  // insert random bytes
        std::string bytes(1 + Below(Below(4) == 0 ? 512 : 16), '\0');
        for (char& c : bytes) c = static_cast<char>(Next());
        s.insert(Below(s.size() + 1), bytes);
        break;
      }
      case 7: {  // erase a range
        if (s.empty()) break;
        const size_t at = Below(s.size());
        s.erase(at, 1 + Below(s.size() - at));
        break;
      }
      case 8: {  // splice with another input
        const std::string& other = corpus[Below(corpus.size())];
        s = s.substr(0, Below(s.size() + 1)) + other.substr(Below(other.size() + 1));
        break;
      }
      case 9: {  // repeat a range (frames again, or a header twice)
        if (s.empty()) break;
        const size_t at = Below(s.size());
        const std::string range = s.substr(at, 1 + Below(std::min<size_t>(s.size() - at, 4096)));
        s.insert(Below(s.size() + 1), range);
        break;
      }
      default: {  // append a run of one byte
        s.append(1 + Below(Below(8) == 0 ? 8192 : 64), static_cast<char>(Next()));
        break;
      }
    }
  }

  uint64_t state_;
};

void RunInput(const Target& target, const std::string& input) {
  target.run(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

class FuzzRandomized : public testing::TestWithParam<Target> {};

TEST_P(FuzzRandomized, SeedsAndMutations) {
  InstallCrashReport();
  const Target& target = GetParam();
  const uint64_t seed = EnvNumber("SLUICE_FUZZ_SEED", kDefaultSeed);
  const uint64_t iterations = EnvNumber("SLUICE_FUZZ_ITERATIONS", kDefaultIterations);
  std::printf("[fuzz] %s: SLUICE_FUZZ_SEED=%llu SLUICE_FUZZ_ITERATIONS=%llu\n", target.name,
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(iterations));
  const auto start = std::chrono::steady_clock::now();

  std::vector<std::string> corpus = target.seeds();
  ASSERT_FALSE(corpus.empty());
  running = {target.name, seed, 0, nullptr};
  for (const std::string& input : corpus) {
    running.input = &input;
    RunInput(target, input);
  }
  const size_t seeds = corpus.size();
  Mutator mutator(Mix(seed, target.name));
  for (uint64_t i = 1; i <= iterations; ++i) {
    std::string input = mutator.Mutate(corpus, seeds);
    running.iteration = i;
    running.input = &input;
    RunInput(target, input);
    // Without coverage feedback, keeping some mutants lets mutations pile up.
    if (corpus.size() < kMaxCorpus && mutator.Below(8) == 0) corpus.push_back(std::move(input));
  }
  running = {};

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[fuzz] %s: %llu mutations of %zu seed inputs in %.1f s, no failure\n", target.name,
              static_cast<unsigned long long>(iterations), target.seeds().size(), seconds);
}

std::string TargetName(const testing::TestParamInfo<Target>& param) { return param.param.name; }

INSTANTIATE_TEST_SUITE_P(Targets, FuzzRandomized, testing::ValuesIn(Targets()), TargetName);

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reruns the one input that SLUICE_FUZZ_INPUT_HEX names (from either driver's report).
TEST(FuzzReproduce, InputFromEnvironment) {
  const char* name = std::getenv("SLUICE_FUZZ_TARGET");
  const char* hex = std::getenv("SLUICE_FUZZ_INPUT_HEX");
  if (name == nullptr || hex == nullptr)
    GTEST_SKIP() << "set SLUICE_FUZZ_TARGET and SLUICE_FUZZ_INPUT_HEX";
  std::string input;
  const size_t n = std::strlen(hex);
  ASSERT_EQ(n % 2, 0u) << "odd number of hex digits";
  for (size_t i = 0; i < n; i += 2) {
    const int hi = HexDigit(hex[i]), lo = HexDigit(hex[i + 1]);
    ASSERT_TRUE(hi >= 0 && lo >= 0) << "not hex at digit " << i;
    input.push_back(static_cast<char>(hi * 16 + lo));
  }
  for (const Target& target : Targets()) {
    if (std::string(target.name) != name) continue;
    InstallCrashReport();
    running = {target.name, 0, 0, &input};
    RunInput(target, input);
    running = {};
    return;
  }
  FAIL() << "no fuzz target named " << name;
}

}  // namespace
}  // namespace sluice::fuzz
