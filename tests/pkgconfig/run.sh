#!/usr/bin/env bash
# install_pkgconfig: can a project that uses pkg-config (no CMake) build against the INSTALLED
# thinwire?
#   1. cmake --install BUILD_DIR --prefix WORK/prefix
#   2. build consumer.c (C API) and ../consumer/project/main.cpp (C++ API) with
#      $(pkg-config --cflags --libs thinwire) only, PKG_CONFIG_PATH pointing into the prefix
#   3. check they load the installed libthinwire, run both on 2 ranks
#
# usage: run.sh BUILD_DIR WORK_DIR [CMAKE [C_COMPILER [CXX_COMPILER [MPIEXEC]]]]
set -euo pipefail

build=$1 work=$2
cmake=${3:-cmake} cc=${4:-cc} cxx=${5:-c++} mpiexec=${6:-mpiexec}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=$work/prefix

run() { printf '+ %s\n' "$*"; "$@"; }
fail() { printf 'install_pkgconfig: FAILED: %s\n' "$*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
run "$cmake" --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name thinwire.pc -print -quit)
[[ -n $pc ]] || fail "thinwire.pc was not installed"
[[ -f $prefix/include/thinwire/thinwire.h ]] || fail "thinwire.h was not installed"

export PKG_CONFIG_PATH=$(dirname "$pc")
run pkg-config --exists --print-errors thinwire
cflags=$(pkg-config --cflags thinwire)
libs=$(pkg-config --libs thinwire)
libdir=$(pkg-config --variable=libdir thinwire)
printf 'pkg-config: version %s\n  cflags: %s\n  libs: %s\n' "$(pkg-config --modversion thinwire)" "$cflags" "$libs"
[[ $(cd "$libdir" && pwd) == "$(cd "$prefix" && pwd)"/* ]] || fail "libdir '$libdir' is not inside $prefix"

# shellcheck disable=SC2086  # pkg-config output is a list of flags
run "$cc" -std=c99 -pedantic -Wall -o "$work/consumer_c" "$here/consumer.c" $cflags $libs -Wl,-rpath,"$libdir"
# shellcheck disable=SC2086
run "$cxx" -std=c++17 -O1 -o "$work/consumer_cxx" "$here/../consumer/project/main.cpp" $cflags $libs \
  -Wl,-rpath,"$libdir"

for exe in "$work/consumer_c" "$work/consumer_cxx"; do
  lib=$(ldd "$exe" | awk '/libthinwire/ {print $3}')
  printf '%s links %s\n' "$(basename "$exe")" "$lib"
  [[ $lib == "$prefix"/* ]] || fail "$(basename "$exe") loads '$lib', not the installed libthinwire"
done

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
unset THINWIRE_COMPRESSION  # the consumers check their own specs' results
run "$mpiexec" -n 2 --oversubscribe --bind-to none "$work/consumer_c"
run "$mpiexec" -n 2 --oversubscribe --bind-to none "$work/consumer_cxx"
echo "install_pkgconfig: OK"
