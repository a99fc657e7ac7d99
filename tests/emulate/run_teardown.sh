#!/usr/bin/env bash
# cluster/emulate/run.sh must leave nothing behind: no network namespace, no process, no
# temporary directory, whether the command succeeds, fails or the launcher is interrupted.
# Needs root and network namespaces: otherwise it says why and exits 77 (CTest: Skipped).
#   run_teardown.sh REPO_ROOT
set -uo pipefail
root=$1
launcher=$root/cluster/emulate/run.sh
skip() {
  echo "SKIPPED: $*"
  exit 77
}
fail() {
  echo "FAIL: $*"
  exit 1
}

[[ $(id -u) -eq 0 ]] || skip "the emulated cluster needs root (network namespaces, veth, tc); running as uid $(id -u)"
probe=twp$$
if ! ip netns add "$probe" 2>/tmp/thinwire-netns-probe.$$; then
  why=$(cat /tmp/thinwire-netns-probe.$$)
  rm -f /tmp/thinwire-netns-probe.$$
  skip "network namespaces are not available here: $why"
fi
rm -f /tmp/thinwire-netns-probe.$$
ip netns delete "$probe"

name=twt$$
leftovers() {
  local found=""
  ip netns list | grep -q "^$name-" && found+=" namespaces: $(ip netns list | grep "^$name-" | tr '\n' ' ')"
  compgen -G "/tmp/thinwire-emulate-$name.*" >/dev/null && found+=" temp dirs: $(echo /tmp/thinwire-emulate-$name.*)"
  pgrep -f "thinwire-emulate-$name" >/dev/null && found+=" processes: $(pgrep -f "thinwire-emulate-$name" | tr '\n' ' ')"
  echo "$found"
}

# 1. A command that succeeds, on shaped links: every rank on its own host, tbf in place.
# shellcheck disable=SC2016  # expanded by the ranks' shells
out=$("$launcher" --name "$name" --ranks 2 --rate 100mbit -- \
  sh -c 'echo "host=$(hostname) qdisc=$(tc qdisc show dev eth0 | cut -d" " -f2)"' 2>&1)
status=$?
echo "$out"
[[ $status -eq 0 ]] || fail "a succeeding command ended with status $status"
grep -q "host=$name-h0 qdisc=tbf" <<<"$out" || fail "rank on host 0 missing or unshaped"
grep -q "host=$name-h1 qdisc=tbf" <<<"$out" || fail "rank on host 1 missing or unshaped"
[[ -z $(leftovers) ]] || fail "left behind after success:$(leftovers)"

# 2. A command that fails: its status comes back, everything is gone.
"$launcher" --name "$name" --ranks 2 --rate none -- sh -c 'exit 3'
status=$?
[[ $status -ne 0 ]] || fail "a failing command ended with status 0"
[[ -z $(leftovers) ]] || fail "left behind after failure:$(leftovers)"
echo "failing command: status $status, nothing left"

# 3. The launcher interrupted while the ranks run.
marker=$name-marker
"$launcher" --name "$name" --ranks 3 --rate 200mbit -- sh -c "sleep 300; echo $marker" &
pid=$!
for _ in $(seq 100); do
  [[ $(ip netns pids "$name-h2" 2>/dev/null | wc -l) -gt 0 ]] && break
  sleep 0.2
done
[[ $(ip netns pids "$name-h2" 2>/dev/null | wc -l) -gt 0 ]] || fail "the ranks never started"
kill -TERM "$pid"
start=$SECONDS
wait "$pid"
status=$?
((SECONDS - start < 20)) || fail "the launcher took $((SECONDS - start)) s to stop after SIGTERM"
[[ $status -ne 0 ]] || fail "an interrupted run ended with status 0"
[[ -z $(leftovers) ]] || fail "left behind after SIGTERM:$(leftovers)"
pgrep -f "$marker" >/dev/null && fail "the ranks' processes survived: $(pgrep -a -f "$marker")"
echo "interrupted: status $status, nothing left"

# 4. Bad usage touches nothing.
"$launcher" --name "$name" --ranks 1 --rate 100mbit -- true 2>/dev/null
[[ $? -eq 2 ]] || fail "--ranks 1 should be refused with status 2"
[[ -z $(leftovers) ]] || fail "left behind after bad usage:$(leftovers)"
echo PASS
