#!/usr/bin/env bash
# Bounded libFuzzer run of every fuzz target (tests/fuzz/meson.build), for CI after ./sluice test.
# Needs clang++ with libFuzzer (Debian: clang and libclang-rt-<version>-dev). Without it this says
# so and succeeds: the same targets already ran under the randomized gtest of the main suite.
#
#   FUZZ_SECONDS=60            time per target (-max_total_time)
#   FUZZ_BUILD_DIR=build/fuzz  where to build (another one for a second checkout's run at once)
#
# Build directory build/fuzz (clang, debug); corpus in build/fuzz/corpus/<target> (seed inputs
# rewritten each run, what libFuzzer finds kept); crash reproducers in build/fuzz/artifacts/.
# Exits non-zero when a target crashed, leaked, hung or broke an invariant.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."

DIR=${FUZZ_BUILD_DIR:-build/fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
TARGETS=(frame_header frame_reader handshake event shuffle_descriptor record_deserializer net_shuffle
  tool_output state_snapshot resp)

say() { echo "fuzz: $*"; }

libfuzzer_available() {
  command -v clang++ >/dev/null 2>&1 || return 1
  local tmp ok=1
  tmp=$(mktemp -d)
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$tmp/probe.cc"
  if clang++ -fsanitize=fuzzer "$tmp/probe.cc" -o "$tmp/probe" >/dev/null 2>&1; then ok=0; fi
  rm -rf "$tmp"
  return "$ok"
}

if ! libfuzzer_available; then
  say "libFuzzer is unavailable (no clang++ that links -fsanitize=fuzzer); skipped." \
    "The fuzz targets already ran under the randomized gtest (fuzz_randomized) of the main suite."
  exit 0
fi

mkdir -p build
if [[ ! -f $DIR/build.ninja ]]; then
  rm -rf "$DIR" # a setup that failed half-way leaves a directory meson refuses
  say "configuring $DIR (clang++)"
  # No b_sanitize: the fuzz targets compile base/, net/ and shuffle/ again with their own
  # -fsanitize flags.
  if ! CXX=clang++ meson setup "$DIR" --buildtype=debug -Db_lundef=false -Dtests=true \
    -Dbenchmarks=false -Dfuzzers=enabled >build/setup-fuzz.log 2>&1; then
    cat build/setup-fuzz.log
    rm -rf "$DIR"
    say "meson setup $DIR failed (log above, also in build/setup-fuzz.log)"
    exit 1
  fi
fi
say "building the fuzz targets in $DIR"
ninja -C "$DIR" fuzzers

"$DIR/tests/fuzz/fuzz_seed_corpus" "$DIR/corpus" >/dev/null
mkdir -p "$DIR/artifacts" "$DIR/logs"

failed=0
for t in "${TARGETS[@]}"; do
  corpus=$DIR/corpus/$t
  log=$DIR/logs/$t.log
  extra=()
  [[ $t == frame_reader ]] && extra+=(-max_len=16384) # room for frames larger than a segment
  [[ $t == record_deserializer ]] && extra+=(-max_len=20000) # raw records with 3-byte lengths
  rc=0
  "$DIR/tests/fuzz/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$DIR/artifacts/$t-" "${extra[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  files=$(find "$corpus" -type f | wc -l)
  if ((rc == 0)); then
    echo "fuzz_$t: ok, ${runs:-?} inputs in ${FUZZ_SECONDS}s, corpus $files files"
  else
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "fuzz_$t: FAILED (exit $rc) after ${runs:-?} inputs; reproducer: ${artifact:-none written}; log: $log"
    grep -E 'FUZZ INVARIANT|ERROR: |runtime error|SUMMARY|check:|input \(' "$log" | head -n 20 || true
    failed=1
  fi
done
exit "$failed"
