#include "statestore/state.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice {

std::string_view StateKindName(StateKind kind) {
  switch (kind) {
    case StateKind::kValue:
      return "value";
    case StateKind::kList:
      return "list";
    case StateKind::kMap:
      return "map";
    case StateKind::kReducing:
      return "reducing";
    case StateKind::kAggregating:
      return "aggregating";
  }
  return "unknown";
}

StateDescriptor StateDescriptor::Value(std::string name) {
  return StateDescriptor{std::move(name), StateKind::kValue, absl::ZeroDuration(), {}, {}};
}
StateDescriptor StateDescriptor::List(std::string name) {
  return StateDescriptor{std::move(name), StateKind::kList, absl::ZeroDuration(), {}, {}};
}
StateDescriptor StateDescriptor::Map(std::string name) {
  return StateDescriptor{std::move(name), StateKind::kMap, absl::ZeroDuration(), {}, {}};
}
StateDescriptor StateDescriptor::Reducing(std::string name, ReduceFunction reduce) {
  return StateDescriptor{
      std::move(name), StateKind::kReducing, absl::ZeroDuration(), std::move(reduce), {}};
}
StateDescriptor StateDescriptor::Aggregating(std::string name, AggregateFunction aggregate) {
  return StateDescriptor{
      std::move(name), StateKind::kAggregating, absl::ZeroDuration(), {}, std::move(aggregate)};
}

absl::Status ValidateStateDescriptor(const StateDescriptor& d) {
  auto bad = [&d](std::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("state '", d.name, "': ", std::string(what)));
  };
  if (d.name.empty() || d.name.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("a state name must have 1 to 200 characters, got '", d.name, "'"));
  }
  for (char c : d.name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return bad("names may hold letters, digits, '-', '_' and '.' only");
  }
  if (d.ttl < absl::ZeroDuration()) return bad("the TTL must not be negative");
  if (d.ttl > absl::ZeroDuration() && d.ttl < absl::Milliseconds(1)) {
    return bad("the TTL must be at least 1ms (it is counted in milliseconds)");
  }
  if (d.kind == StateKind::kReducing && !d.reduce)
    return bad("reducing state needs a reduce function");
  if (d.kind == StateKind::kAggregating &&
      (!d.aggregate.create || !d.aggregate.add || !d.aggregate.result)) {
    return bad("aggregating state needs create, add and result functions");
  }
  return absl::OkStatus();
}

}  // namespace sluice
