#!/usr/bin/env bash
# An emulated multi-host cluster on one machine: N network namespaces ("hosts") joined by
# veth pairs to a bridge, each host's egress shaped with tc tbf at RATE, and COMMAND run
# under mpirun with one rank per host over TCP. Everything is torn down on exit, also when
# COMMAND fails or the script is interrupted.
#
#   cluster/emulate/run.sh --ranks N --rate RATE [options] -- COMMAND [ARGS...]
#
#   --ranks N        hosts = MPI ranks (2..64)
#   --rate RATE      egress rate per host in tc units (100mbit, 1gbit, ...), or "none" for
#                    unshaped links (still TCP between namespaces)
#   --burst SIZE     tbf bucket (default: 5 ms at RATE, at least 64kb)
#   --queue TIME     tbf queue limit as a delay (tbf "latency", default 200ms)
#   --name PREFIX    namespace prefix (default tw<pid>); names are PREFIX-h0.., PREFIX-sw
#   --subnet A.B.C   the /24 inside the namespaces (default 10.199.0)
#   --mpirun-arg ARG one more mpirun argument (repeatable): --mpirun-arg -x --mpirun-arg FOO
#
# Needs root (network namespaces, veth, tc) and iproute2 + util-linux (unshare). Nothing is
# added to the machine's own network namespace: the bridge lives in a namespace of its own
# and addresses exist only inside the namespaces. Each host gets its own hostname (a UTS
# namespace), so Open MPI sees N distinct nodes and uses TCP between them, never shared
# memory. Exit status: COMMAND's (mpirun's); 2 for bad usage; 77 when this machine cannot
# host namespaces (not root, no netns/veth/tbf), with the reason on stderr.
set -euo pipefail

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() {
  echo "emulate: $*" >&2
  exit 2
}
unavailable() {
  echo "emulate: cannot emulate a cluster here: $*" >&2
  exit 77
}

ranks="" rate="" burst="" queue="200ms" prefix="tw$$" subnet="10.199.0"
mpirun_args=()
while (($#)); do
  case $1 in
    --ranks) ranks=${2:-}; shift 2 ;;
    --rate) rate=${2:-}; shift 2 ;;
    --burst) burst=${2:-}; shift 2 ;;
    --queue) queue=${2:-}; shift 2 ;;
    --name) prefix=${2:-}; shift 2 ;;
    --subnet) subnet=${2:-}; shift 2 ;;
    --mpirun-arg) mpirun_args+=("${2:-}"); shift 2 ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
(($#)) || die "no COMMAND after --"
if ! [[ $ranks =~ ^[0-9]+$ ]] || ((ranks < 2 || ranks > 64)); then die "--ranks must be in 2..64"; fi
[[ -n $rate ]] || die "--rate is required (e.g. 200mbit, or none)"
[[ $rate == none || $rate =~ ^[0-9.]+([kmg]?bit|[kmg]?bps)$ ]] ||
  die "--rate '$rate' is not a tc rate like 200mbit or 1gbit"
[[ $prefix =~ ^[a-z0-9]{1,9}$ ]] || die "--name must be 1..9 characters of [a-z0-9]"
[[ $subnet =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--subnet must look like 10.199.0"

[[ $(id -u) -eq 0 ]] || unavailable "needs root (network namespaces, veth pairs and tc need CAP_NET_ADMIN)"
for tool in ip tc unshare mpirun; do
  command -v "$tool" >/dev/null || unavailable "'$tool' is not installed (apt: iproute2, util-linux, openmpi-bin)"
done

switch="$prefix-sw"
hosts=()
for ((i = 0; i < ranks; i++)); do hosts+=("$prefix-h$i"); done
work=$(mktemp -d "/tmp/thinwire-emulate-$prefix.XXXXXX")

# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Kill what runs in the hosts (ranks, orteds, mpirun) until nothing is left: a process
  # that forks while the first kills go out would keep its namespace alive.
  local ns pids busy attempt
  for ((attempt = 0; attempt < 100; attempt++)); do
    busy=0
    for ns in "${hosts[@]}" "$switch"; do
      pids=$(ip netns pids "$ns" 2>/dev/null) || continue
      [[ -n $pids ]] || continue
      busy=1
      # shellcheck disable=SC2086  # one pid per word
      kill -KILL $pids 2>/dev/null || true
    done
    ((busy)) || break
    sleep 0.1
  done
  for ns in "${hosts[@]}" "$switch"; do
    ip netns list 2>/dev/null | grep -q "^$ns\b" || continue
    ip netns delete "$ns" 2>/dev/null || echo "emulate: could not delete namespace $ns" >&2
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ns in "${hosts[@]}" "$switch"; do
  ip netns list | grep -q "^$ns\b" && die "namespace $ns already exists (another run with --name $prefix?)"
done

ip netns add "$switch" 2>"$work/err" || unavailable "ip netns add failed: $(cat "$work/err")"
ip -n "$switch" link add br0 type bridge 2>"$work/err" || unavailable "no bridge: $(cat "$work/err")"
ip -n "$switch" link set br0 up

# tbf's bucket must hold what arrives within one timer tick, and at least a few full-size
# segments, or the rate it delivers falls short of RATE.
if [[ $rate != none && -z $burst ]]; then
  burst=$(awk -v r="$rate" 'BEGIN {
    n = r + 0; u = substr(r, length(n "") + 1)
    m = (u ~ /^g/) ? 1e9 : (u ~ /^m/) ? 1e6 : (u ~ /^k/) ? 1e3 : 1
    bits = (u ~ /bps$/) ? 8 : 1
    b = n * m * bits / 8 * 0.005; if (b < 65536) b = 65536
    printf "%d", b }')
fi

for ((i = 0; i < ranks; i++)); do
  h=${hosts[$i]}
  ip netns add "$h"
  ip -n "$h" link add eth0 type veth peer name "p$i" netns "$switch" 2>"$work/err" ||
    unavailable "no veth pairs: $(cat "$work/err")"
  ip -n "$switch" link set "p$i" master br0 up
  ip -n "$h" link set lo up
  ip -n "$h" addr add "$subnet.$((i + 1))/24" dev eth0
  ip -n "$h" link set eth0 up
  if [[ $rate != none ]]; then
    tc -n "$h" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency "$queue" 2>"$work/err" ||
      unavailable "tc tbf failed on $h: $(cat "$work/err")"
  fi
  echo "$h slots=1" >>"$work/hostfile"
done

# Open MPI's rsh launcher runs `AGENT HOST COMMAND...`: start it inside HOST's namespace,
# with HOST as its hostname.
cat >"$work/agent" <<'EOF'
#!/bin/sh
host=$1
shift
exec ip netns exec "$host" unshare --uts /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "$host" "$*"
EOF
chmod +x "$work/agent"

echo "emulate: $ranks hosts (${hosts[0]}..${hosts[$((ranks - 1))]}) on $subnet.0/24, egress" \
  "$([[ $rate == none ]] && echo unshaped || echo "tbf rate $rate burst $burst")" >&2

# mpirun itself runs in host 0 (its own traffic is small); every rank, host 0's included,
# is started through the agent. It runs in the background so that a signal to this script
# is handled at once (bash runs traps only between foreground commands).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's TCP transport with kernel-autotuned socket buffers moves ~60% of the link rate in
# each direction when two ranks send to each other at once (alltoall, allgather, a ring of
# two); fixed 4 MiB buffers move ~95%. Set these variables to override.
export OMPI_MCA_btl_tcp_sndbuf=${OMPI_MCA_btl_tcp_sndbuf:-4194304}
export OMPI_MCA_btl_tcp_rcvbuf=${OMPI_MCA_btl_tcp_rcvbuf:-4194304}
# Programs can record what link they ran on (thinwire-bench-allreduce puts it in its JSON;
# the cost model's validation needs the bucket too: tbf lets a full bucket leave at once).
export THINWIRE_EMULATE_RATE=$rate THINWIRE_EMULATE_RANKS=$ranks THINWIRE_EMULATE_BURST=${burst:-0}
# thinwire's segmentation of large messages, its choice of sum route and from how many ranks
# small allgathers go in rounds (README "Environment variables"), when set.
forward=(-x THINWIRE_EMULATE_RATE -x THINWIRE_EMULATE_RANKS -x THINWIRE_EMULATE_BURST)
[[ -n ${THINWIRE_MPI_SEGMENT_BYTES:-} ]] && forward+=(-x THINWIRE_MPI_SEGMENT_BYTES)
[[ -n ${THINWIRE_MPI_ALLREDUCE:-} ]] && forward+=(-x THINWIRE_MPI_ALLREDUCE)
[[ -n ${THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS:-} ]] && forward+=(-x THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS)
set +e
ip netns exec "${hosts[0]}" unshare --uts /bin/sh -c 'hostname launcher && exec "$@"' sh \
  mpirun --allow-run-as-root --hostfile "$work/hostfile" -np "$ranks" --map-by node \
  --bind-to none --mca plm_rsh_agent "$work/agent" --mca pml ob1 --mca btl tcp,self \
  --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
  "${forward[@]}" "${mpirun_args[@]}" "$@" &
launcher=$!
wait "$launcher"
status=$?
set -e
exit "$status"
