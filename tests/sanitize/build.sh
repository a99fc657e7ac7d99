#!/usr/bin/env bash
# Configures and builds the sanitizer sub-build of the CTest `sanitize_*` tests: the library,
# the unit + multi-rank test binary, the device tests over the CPU emulation and the soak
# program with AddressSanitizer + UndefinedBehaviorSanitizer (-fno-sanitize-recover,
# -fno-omit-frame-pointer), -O1, CUDA, benchmarks and examples off.
#   build.sh SRC_DIR BUILD_DIR [CMAKE [NINJA [CXX [C]]]]
set -euo pipefail
src=$1 build=$2 cmake=${3:-cmake} ninja=${4:-ninja} cxx=${5:-c++} cc=${6:-cc}
# A build made with another compiler is started afresh.
if [[ -f $build/CMakeCache.txt ]] &&
  [[ $(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt") != "$cxx" ]]; then
  rm -rf "$build"
fi
if [[ ! -f $build/build.ninja ]]; then
  "$cmake" -S "$src" -B "$build" -G Ninja -DCMAKE_MAKE_PROGRAM="$ninja" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCMAKE_C_FLAGS_RELEASE=-O1 \
    -DTHINWIRE_SANITIZE=address,undefined -DTHINWIRE_CUDA=OFF \
    -DTHINWIRE_BUILD_BENCH=OFF -DTHINWIRE_BUILD_EXAMPLES=OFF
fi
"$ninja" -C "$build" thinwire_tests thinwire_soak thinwire_device_tests_emulated
