// CRC32C (Castagnoli), the checksum Sluice uses for transfers and checkpoint files.
// Uses the SSE4.2 instruction when the CPU has it. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice {

// Extends `crc` (the value of a previous call, or 0 to start) over `data[0, n)`.
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

}  // namespace sluice
