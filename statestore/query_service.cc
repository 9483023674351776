#include "statestore/query_service.h"

namespace sluice {

std::string_view QueryStatusName(QueryStatus status) {
  switch (status) {
    case QueryStatus::kOk:
      return "ok";
    case QueryStatus::kUnknownJob:
      return "unknown job";
    case QueryStatus::kUnknownState:
      return "unknown state";
    case QueryStatus::kMoved:
      return "moved";
    case QueryStatus::kUnavailable:
      return "unavailable";
    case QueryStatus::kBadRequest:
      return "bad request";
    case QueryStatus::kUnauthorized:
      return "unauthorized";
    case QueryStatus::kTooLarge:
      return "too large";
    case QueryStatus::kInternal:
      return "internal";
  }
  return "unknown status";
}

std::string_view ConsistencyName(Consistency consistency) {
  switch (consistency) {
    case Consistency::kLatest:
      return "latest";
    case Consistency::kCommitted:
      return "committed";
  }
  return "unknown consistency";
}

}  // namespace sluice
