#!/usr/bin/env bash
# One rank per GPU: gives each rank on a node its own GPU, from the launcher's local rank
# (Slurm: SLURM_LOCALID; Open MPI: OMPI_COMM_WORLD_LOCAL_RANK), then runs the program.
#   srun ... cluster/gpu_bind.sh PROGRAM ARGS...     mpirun ... cluster/gpu_bind.sh PROGRAM ARGS...
# Not needed when the scheduler binds GPUs itself (srun --gpus-per-task=1 --gpu-bind=single:1).
set -euo pipefail
local_rank=${SLURM_LOCALID:-${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-}}}
if [[ -z $local_rank ]]; then
  echo "gpu_bind.sh: no local rank (SLURM_LOCALID / OMPI_COMM_WORLD_LOCAL_RANK): run under srun or mpirun" >&2
  exit 2
fi
if [[ -z ${CUDA_VISIBLE_DEVICES:-} ]]; then
  export CUDA_VISIBLE_DEVICES=$local_rank
else
  # Pick this rank's entry of a list the scheduler already set.
  IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
  ((local_rank < ${#visible[@]})) || {
    echo "gpu_bind.sh: local rank $local_rank but CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES" >&2
    exit 2
  }
  export CUDA_VISIBLE_DEVICES=${visible[$local_rank]}
fi
exec "$@"
