#!/usr/bin/env bash
# install_consumer: does the INSTALLED package work for a user's project?
#   1. cmake --install BUILD_DIR --prefix WORK/prefix
#   2. configure + build project/ (find_package(thinwire REQUIRED)) with CMAKE_PREFIX_PATH=prefix
#   3. check it picked the installed package and library, then run it on 4 ranks
# Any failure fails the test.
#
# usage: run.sh BUILD_DIR PROJECT_SRC WORK_DIR [CMAKE [GENERATOR [CXX_COMPILER [MPIEXEC]]]]
set -euo pipefail

build=$1 src=$2 work=$3
cmake=${4:-cmake} generator=${5:-} cxx=${6:-} mpiexec=${7:-mpiexec}
prefix=$work/prefix consumer=$work/build

run() { printf '+ %s\n' "$*"; "$@"; }
fail() { printf 'install_consumer: FAILED: %s\n' "$*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"

# ---- 1. install ---------------------------------------------------------------------------
run "$cmake" --install "$build" --prefix "$prefix"
[[ -f $prefix/include/thinwire/thinwire.hpp ]] || fail "thinwire.hpp was not installed"
[[ -f $prefix/include/thinwire/version.hpp ]] || fail "the generated version.hpp was not installed"
config=$(find "$prefix" -name thinwireConfig.cmake -print -quit)
[[ -n $config ]] || fail "thinwireConfig.cmake was not installed"
targets=$(dirname "$config")/thinwireTargets.cmake
[[ -f $targets ]] || fail "thinwireTargets.cmake was not installed"
# The installed package must not point back into the source or build tree.
src_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build_abs=$(cd "$build" && pwd)
if grep -rqsF -e "$src_root/" -e "$build_abs/" "$(dirname "$config")"; then
  grep -rnF -e "$src_root/" -e "$build_abs/" "$(dirname "$config")" >&2
  fail "the installed CMake package refers to the source or build tree"
fi

# ---- 2. configure + build the consumer ------------------------------------------------------
args=(-S "$src" -B "$consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
[[ -n $generator ]] && args+=(-G "$generator")
[[ -n $cxx ]] && args+=(-DCMAKE_CXX_COMPILER="$cxx")
run "$cmake" "${args[@]}"
found=$(sed -n 's/^thinwire_DIR:PATH=//p' "$consumer/CMakeCache.txt")
[[ $found == "$prefix"/* ]] || fail "find_package(thinwire) found '$found', not the package in $prefix"
run "$cmake" --build "$consumer"

exe=$consumer/consumer
lib=$(ldd "$exe" | awk '/libthinwire/ {print $3}')
printf 'consumer links %s\n' "$lib"
[[ $lib == "$prefix"/* ]] || fail "the consumer loads '$lib', not the installed libthinwire"

# ---- 3. run on 4 ranks -------------------------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
unset THINWIRE_COMPRESSION  # the consumer checks top-k results: keep its own spec
run "$mpiexec" -n 4 --oversubscribe --bind-to none "$exe"
echo "install_consumer: OK"
