#!/usr/bin/env bash
# The thinwire demo: set everything up (./setup.sh), then reduce a small transformer/MLP
# model's synthetic gradients with every compression method on 4 MPI ranks on this machine.
# Extra arguments go to the demo program, e.g.  ./demo.sh --steps 50 --methods none,onebit
#
#   THINWIRE_BUILD_DIR   build directory (default: ./build)
#   THINWIRE_DEMO_NP     number of ranks (default: 4)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
./setup.sh
BUILD_DIR=${THINWIRE_BUILD_DIR:-build}
NP=${THINWIRE_DEMO_NP:-4}

# Open MPI refuses to run as root without these; vader keeps a single-host run on shared
# memory, --oversubscribe lets 4 ranks share fewer cores, --bind-to none avoids pinning.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader

cmd=(mpirun -np "$NP" --oversubscribe --bind-to none "$BUILD_DIR/examples/compressed_allreduce" "$@")
printf '[demo] %s\n' "${cmd[*]}"
exec "${cmd[@]}"
