#!/usr/bin/env bash
# The CTest test `fuzz`: builds the libFuzzer harnesses in their own clang build (ASan +
# UBSan + coverage, THINWIRE_FUZZ=ON) and runs each from the committed corpus for a bounded
# time, with memory limits: a single allocation of 64 MiB or more, or 1 GiB resident, counts
# as a failure, like a crash, a sanitizer report, a leak or an input taking over 10 s.
#
#   run_fuzzers.sh SRC_DIR BUILD_DIR [CMAKE [NINJA [CC [CXX]]]]
#   THINWIRE_FUZZ_SECONDS  seconds per harness (default 7: about a minute for all)
#   THINWIRE_FUZZ_ONLY     run only these harnesses (space-separated names)
#   THINWIRE_FUZZ_ARGS     extra libFuzzer flags (e.g. -runs=N, -jobs=2 -workers=2)
# New inputs and crash reproducers go to BUILD_DIR/work/, never into the committed corpus.
# A reproducer replays with: BUILD_DIR/tests/fuzz/fuzz_<name> FILE
set -euo pipefail

src=$1 build=$2
cmake=${3:-cmake} ninja=${4:-ninja} cc=${5:-clang} cxx=${6:-clang++}
seconds=${THINWIRE_FUZZ_SECONDS:-7}
harnesses=${THINWIRE_FUZZ_ONLY:-"wire_header topk_decode onebit_decode qsgd_decode config_parse agreement state_load reducer_step"}

if [[ ! -f $build/build.ninja ]]; then
  "$cmake" -S "$src" -B "$build" -G Ninja -DCMAKE_MAKE_PROGRAM="$ninja" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS=-gline-tables-only -DCMAKE_CXX_FLAGS=-gline-tables-only \
    -DTHINWIRE_FUZZ=ON -DTHINWIRE_CUDA=OFF -DTHINWIRE_BUILD_TESTS=OFF \
    -DTHINWIRE_BUILD_BENCH=OFF -DTHINWIRE_BUILD_EXAMPLES=OFF
fi
"$ninja" -C "$build" fuzzers

# intercept_tls_get_addr=0: see tests/sanitize/CMakeLists.txt (LeakSanitizer's tracer crashing
# on a bogus dynamic TLS range at exit).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0 total=0
summary=()
for name in $harnesses; do
  work=$build/work/$name
  mkdir -p "$work/corpus" "$work/artifacts"
  log=$work/log.txt
  # shellcheck disable=SC2086
  if "$build/tests/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
    -malloc_limit_mb=64 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    ${THINWIRE_FUZZ_ARGS:-} "$work/corpus" "$src/tests/fuzz/corpus/$name" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED status=1
    tail -n 60 "$log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  total=$((total + ${runs:-0}))
  summary+=("$(printf '%-14s %-6s %10s executions' "$name" "$result" "${runs:-?}")")
done
printf '%s\n' "${summary[@]}"
echo "fuzz: $total executions in all"
exit $status
