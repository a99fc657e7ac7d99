#!/usr/bin/env bash
# Set up thinwire on a fresh Debian machine: install the apt packages that are missing,
# configure the CMake build (once) and build it with ninja. Safe to run again: a second run
# touches apt only if a package went missing and rebuilds only what changed.
#
#   THINWIRE_BUILD_DIR   build directory (default: ./build, relative to the repository)
#   THINWIRE_JOBS        parallel build jobs (default: ninja's own choice)
#   THINWIRE_CMAKE_ARGS  extra arguments for the first configure, e.g. "-DTHINWIRE_CUDA=OFF"
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
BUILD_DIR=${THINWIRE_BUILD_DIR:-build}
say() { printf '[setup] %s\n' "$*"; }

# ---- apt packages -------------------------------------------------------------------------
PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libopenmpi-dev openmpi-bin
  libboost-program-options-dev libeigen3-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev
  clang-format
  # issue work beyond the core: training data, Python/PyTorch bindings, plots, fuzzing and
  # sanitizers (clang + its runtimes), emulated clusters (iproute2), leak checks
  dataset-fashion-mnist python3 python3-numpy python3-torch pybind11-dev python3-dev python3-matplotlib
  python3-mpi4py  # the Python tests check results across ranks with it
  clang libclang-rt-14-dev libfuzzer-14-dev iproute2 valgrind
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { say "need root or sudo to install: ${missing[*]}"; exit 1; }
    SUDO=(sudo)
  fi
  say "installing missing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  say "apt packages: all ${#PACKAGES[@]} present"
fi

# ---- configure (only once) ----------------------------------------------------------------
if [[ -f "$BUILD_DIR/CMakeCache.txt" && -f "$BUILD_DIR/build.ninja" ]]; then
  say "configure: $BUILD_DIR is already configured (delete it to start over)"
else
  args=(-G Ninja -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release)
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then
    args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
    say "configure: CUDA toolkit found at /usr/local/cuda, building the CUDA kernels"
  else
    say "configure: no /usr/local/cuda/bin/nvcc, building without CUDA kernels"
  fi
  # shellcheck disable=SC2206  # word splitting of the extra arguments is intended
  args+=(${THINWIRE_CMAKE_ARGS:-})
  say "cmake ${args[*]}"
  cmake "${args[@]}"
fi

# ---- build --------------------------------------------------------------------------------
jobs=()
[[ -n "${THINWIRE_JOBS:-}" ]] && jobs=(-j "$THINWIRE_JOBS")
say "ninja -C $BUILD_DIR ${jobs[*]}"
ninja -C "$BUILD_DIR" "${jobs[@]}"
say "done: build in $BUILD_DIR"
