// Logging goes through spdlog. The level comes from --log-level or SLUICE_LOG_LEVEL
// (trace, debug, info, warn, error, off); the default is info. All functions are thread-safe.
#pragma once

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

// Abseil's string_view is its own type in Debian's build; let fmt print it and Status directly.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(s.data(), s.size()), ctx);
  }
};
template <>
struct fmt::formatter<absl::Status> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(const absl::Status& s, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(s.ToString(), ctx);
  }
};

namespace sluice {

// Applies SLUICE_LOG_LEVEL from the environment. Call once at process start.
void InitLogging();

// Sets the level by name; an unknown name is an InvalidArgument error naming it.
absl::Status SetLogLevel(std::string_view level);

// Logs `message` with the failed condition and aborts. Only for bugs, never for bad input.
[[noreturn]] void FatalCheckFailed(const char* file, int line, const char* condition,
                                   std::string_view message);

}  // namespace sluice

#define SLUICE_LOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define SLUICE_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define SLUICE_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define SLUICE_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define SLUICE_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)

// A broken invariant: a bug in Sluice, not a runtime condition.
#define SLUICE_CHECK(cond)                                                    \
  do {                                                                        \
    if (!(cond)) [[unlikely]]                                                 \
      ::sluice::FatalCheckFailed(__FILE__, __LINE__, #cond, std::string_view()); \
  } while (0)
#define SLUICE_CHECK_MSG(cond, msg)                                   \
  do {                                                                \
    if (!(cond)) [[unlikely]]                                         \
      ::sluice::FatalCheckFailed(__FILE__, __LINE__, #cond, (msg));   \
  } while (0)
