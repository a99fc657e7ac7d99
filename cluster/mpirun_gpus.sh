#!/usr/bin/env bash
# thinwire's allreduce benchmark on several GPU nodes with Open MPI's mpirun: one rank per GPU
# (slots in the hostfile), ranks packed by node, each rank bound to its GPU by gpu_bind.sh.
#   cluster/mpirun_gpus.sh HOSTFILE [benchmark arguments...]
# Every variable named with -x is forwarded to all ranks. Run from the repository root on a
# shared filesystem (every node must see ./build).
set -euo pipefail
hostfile=${1:?usage: mpirun_gpus.sh HOSTFILE [benchmark arguments...]}
shift
ranks=$(awk '!/^#/ && NF { for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { sub("slots=", "", $i); n += $i } } END { print n }' "$hostfile")
((ranks > 0)) || { echo "mpirun_gpus.sh: no slots in $hostfile" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$here/bench/results"

# NCCL settings (used by the ncclAllReduce baseline and device tensors once thinwire's NCCL
# transport is in; harmless before): see cluster/README.md.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export THINWIRE_DEBUG=${THINWIRE_DEBUG:-WARN}
export THINWIRE_TIMEOUT_S=${THINWIRE_TIMEOUT_S:-300}

exec mpirun --hostfile "$hostfile" -np "$ranks" --map-by ppr:"$(awk '!/^#/ && NF { sub("slots=", "", $2); print $2; exit }' "$hostfile")":node \
  --bind-to numa --report-bindings \
  -x NCCL_DEBUG -x NCCL_SOCKET_IFNAME -x NCCL_IB_HCA -x NCCL_IB_DISABLE \
  -x THINWIRE_DEBUG -x THINWIRE_TIMEOUT_S -x THINWIRE_TRANSPORT -x THINWIRE_COMPRESSION \
  "$here/cluster/gpu_bind.sh" "$here/build/bench/thinwire-bench-allreduce" \
  --methods none,onebit,topk:0.01,qsgd:4,powersgd:4,auto --sizes 16M,64M,256M --layers mix \
  --json "$here/bench/results/allreduce_$(date +%Y%m%d_%H%M%S)_np${ranks}.json" "$@"
