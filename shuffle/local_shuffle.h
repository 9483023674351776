// The `local` shuffle service: producers and consumers in one process. A LocalInputChannel reads
// the producer's subpartition queue directly and takes its Buffers by reference (no copy), within
// the same credit accounting as a network channel.
#pragma once

#include <string_view>

namespace sluice {

inline constexpr std::string_view kLocalShuffleService = "local";

}  // namespace sluice
