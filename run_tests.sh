#!/usr/bin/env bash
# The whole thinwire test suite: set everything up (./setup.sh), then run every CTest test
# (unit, multi-rank MPI, install consumer, failure, fuzz, sanitizer and soak tests, and GPU
# tests, which skip without a device).
# Extra arguments go to ctest, e.g.  ./run_tests.sh -L unit   or   ./run_tests.sh -R mpi_np2
#
#   THINWIRE_BUILD_DIR   build directory (default: ./build)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
./setup.sh
BUILD_DIR=${THINWIRE_BUILD_DIR:-build}

cmd=(ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 "$@")
printf '[tests] %s\n' "${cmd[*]}"
set +e
"${cmd[@]}"
rc=$?
set -e
printf '[tests] ctest exit status %d\n' "$rc"
exit "$rc"
