#!/usr/bin/env bash
# Runs tests/failure/stall.cpp on 4 ranks with a short THINWIRE_TIMEOUT_S and checks that the
# job ends (non-zero) instead of hanging, and, when the dead rank only sleeps, that every
# survivor raised Error(timeout) in time, named the missing rank and then failed at once;
# when it never joins ("late"), that Communicator::from_mpi raised Error(timeout) in time.
#   run_stall.sh STALL_BINARY MPIEXEC MODE SPEC
set -uo pipefail
bin=$1 mpiexec=$2 mode=$3 spec=$4
timeout_s=3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s.%N)
THINWIRE_TIMEOUT_S=$timeout_s "$mpiexec" -n 4 --oversubscribe --bind-to none "$bin" "$mode" "$spec" "$dir" >"$dir/out" 2>&1
status=$?
elapsed=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.2f", a - b }')
cat "$dir/out"
echo "exit status $status after ${elapsed}s"
fail() { echo "FAIL: $*"; exit 1; }
less_than() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
[[ $status -ne 0 ]] || fail "the job ended with status 0"
grep -q FINISHED "$dir/out" && fail "a rank finished the loop without an error"
less_than "$elapsed" $((timeout_s + 20)) || fail "the job took ${elapsed}s (timeout ${timeout_s}s)"
if [[ $mode == sleep ]]; then
  for r in 0 1 2; do
    line=$(grep "^RAISED rank=$r " "$dir/out") || fail "rank $r did not raise"
    [[ $line == *"code=timeout"* ]] || fail "rank $r raised something else: $line"
    [[ $line == *"step=5"* ]] || fail "rank $r raised at another step: $line"
    [[ $line == *"broken=1"* && $line == *"second=transport_error"* ]] || fail "rank $r: the communicator was not broken: $line"
    [[ $line == *"rank(s) 3"* ]] || fail "rank $r did not name the missing rank 3: $line"
    after=$(sed -E 's/.* after=([0-9.]+) .*/\1/' <<<"$line")
    less_than "$after" $((timeout_s + 3)) || fail "rank $r raised after ${after}s"
    second_after=$(sed -E 's/.*second_after=([0-9.]+) .*/\1/' <<<"$line")
    less_than "$second_after" 0.5 || fail "rank $r: the second call took ${second_after}s"
  done
fi
if [[ $mode == late ]]; then
  for r in 0 1 2; do
    line=$(grep "^RAISED rank=$r " "$dir/out") || fail "rank $r did not raise"
    [[ $line == *"code=timeout"* && $line == *"step=-1"* ]] || fail "rank $r: $line"
    [[ $line == *"MPI_Comm_idup"* ]] || fail "rank $r did not name the collective: $line"
    after=$(sed -E 's/.* after=([0-9.]+) .*/\1/' <<<"$line")
    less_than "$after" $((timeout_s + 3)) || fail "rank $r raised after ${after}s"
  done
fi
echo PASS
