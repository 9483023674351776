// Writes every fuzz target's seed inputs as libFuzzer corpus files:
//   fuzz_seed_corpus <dir>   ->   <dir>/<target>/seed-<n>
// run_ci.sh starts each libFuzzer run from these, so the seeds live in one place (fuzz_targets.cc).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/fuzz/fuzz_targets.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  for (const sluice::fuzz::Target& target : sluice::fuzz::Targets()) {
    const std::filesystem::path dir = std::filesystem::path(argv[1]) / target.name;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::fprintf(stderr, "cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
      return 1;
    }
    int n = 0;
    for (const std::string& seed : target.seeds()) {
      const std::filesystem::path file = dir / ("seed-" + std::to_string(n++));
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out.write(seed.data(), static_cast<std::streamsize>(seed.size()));
      if (!out) {
        std::fprintf(stderr, "cannot write %s: %s\n", file.c_str(), std::strerror(errno));
        return 1;
      }
    }
    std::printf("%s: %d seed inputs in %s\n", target.name, n, dir.c_str());
  }
  return 0;
}
