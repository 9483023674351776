#include "base/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <string>

namespace sluice {

void InitLogging() {
  static bool once = [] {
    // Log to stderr so that command output on stdout stays machine-readable.
    auto logger = spdlog::stderr_color_mt("sluice");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%P:%t] %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::info);
    if (const char* env = std::getenv("SLUICE_LOG_LEVEL"); env != nullptr && *env != '\0') {
      if (absl::Status s = SetLogLevel(env); !s.ok()) {
        spdlog::warn("ignoring SLUICE_LOG_LEVEL: {}", s.message());
      }
    }
    return true;
  }();
  (void)once;
}

absl::Status SetLogLevel(std::string_view level) {
  static constexpr std::string_view kNames[] = {"trace", "debug", "info", "warn",
                                                "error", "critical", "off"};
  for (std::string_view name : kNames) {
    if (name == level) {
      spdlog::set_level(spdlog::level::from_str(std::string(level)));
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      std::string("unknown log level '") + std::string(level) +
      "' (expected trace, debug, info, warn, error, critical or off)");
}

void FatalCheckFailed(const char* file, int line, const char* condition,
                      std::string_view message) {
  spdlog::critical("check failed at {}:{}: {} {}", file, line, condition, message);
  spdlog::shutdown();
  std::abort();
}

}  // namespace sluice
