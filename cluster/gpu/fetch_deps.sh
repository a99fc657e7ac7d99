#!/usr/bin/env bash
# Runs HERE (a Debian 12 bookworm amd64 machine with apt), before a session's one call to the
# GPU machine: downloads into .gpu-deps/ (ignored by git, carried with `carry: [".gpu-deps"]`)
# every .deb that thinwire's CUDA build and its GPU tests/benchmarks need and that the GPU
# image may lack. Nothing is installed here; cluster/gpu/run_checks.sh unpacks what the image
# lacks into /tmp/deps there (dpkg -x, never into /).
#
# Groups (run_checks.sh extracts a group only where the image has no copy of it):
#   mpi        Open MPI 4.1.4 (wrappers, mpiexec/orted, libmpi, headers) and the shared
#              libraries its binaries and MCA components load that a minimal Ubuntu image
#              lacks (resolved with ldd on the extracted tree; see README.md). Left out, as
#              present in any Ubuntu 24.04 image with a compiler: libc6, libstdc++6,
#              libgcc-s1, zlib1g, libudev1, libuuid1, libatomic1 (run_checks.sh checks them
#              with ldd and reports any that are missing).
#   eigen      libeigen3-dev                         (CMakeLists.txt: Eigen3 REQUIRED)
#   json       nlohmann-json3-dev                    (CMakeLists.txt: nlohmann_json REQUIRED)
#   gtest      libgtest-dev, libgmock-dev            (tests/: GTest REQUIRED)
#   benchmark  libbenchmark-dev + its shared library (bench/: benchmark REQUIRED at configure)
#   boost      program_options 1.74 + boost headers  (bench/, tests/soak, examples/: REQUIRED;
#              libboost1.74-dev is ~9 MiB as a .deb, 135 MiB unpacked: carried as is)
#
# Usage: bash cluster/gpu/fetch_deps.sh        (from anywhere; writes <repo>/.gpu-deps/)
#   GPU_DEPS_DIR  another folder (default <repo>/.gpu-deps)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEST=${GPU_DEPS_DIR:-$ROOT/.gpu-deps}
say() { printf '[fetch_deps] %s\n' "$*"; }

declare -A GROUPS_PKGS=(
  [mpi]="libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common
         libpmix2 libhwloc15 libevent-2.1-7 libevent-core-2.1-7 libevent-pthreads-2.1-7
         libucx0 libfabric1 libibverbs1 ibverbs-providers librdmacm1 libnl-3-200
         libnl-route-3-200 libpsm2-2 libpsm-infinipath1 libnuma1 libmunge2 libltdl7"
  [eigen]="libeigen3-dev"
  [json]="nlohmann-json3-dev"
  [gtest]="libgtest-dev libgmock-dev"
  [benchmark]="libbenchmark-dev libbenchmark1debian"
  [boost]="libboost-program-options-dev libboost-program-options1.74-dev
           libboost-program-options1.74.0 libboost1.74-dev"
)
ORDER=(mpi eigen json gtest benchmark boost)

command -v apt-get >/dev/null || { say "needs apt-get (a Debian/Ubuntu machine)"; exit 1; }
if [[ $(dpkg --print-architecture) != amd64 ]]; then
  say "this machine is $(dpkg --print-architecture); the GPU machine is amd64 (x86-64)"; exit 1
fi

mkdir -p "$DEST"
# A fresh download each time: one version of each package, nothing stale.
rm -f "$DEST"/*.deb "$DEST"/GROUPS "$DEST"/MANIFEST
# apt-get download runs as _apt where it can; a folder under /root may be unreadable for it.
chmod 755 "$DEST" 2>/dev/null || true

for g in "${ORDER[@]}"; do
  # shellcheck disable=SC2086
  pkgs=$(echo ${GROUPS_PKGS[$g]})
  say "group $g: $pkgs"
  # shellcheck disable=SC2086
  (cd "$DEST" && apt-get download -q $pkgs 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  for p in $pkgs; do
    f=$(ls "$DEST"/"${p}"_*.deb 2>/dev/null | head -1 || true)
    [[ -n "$f" ]] || { say "MISSING: $p was not downloaded (apt-get update first?)"; exit 1; }
    # GROUPS: "<group> <file>" lines, read by run_checks.sh.
    printf '%s %s\n' "$g" "$(basename "$f")" >>"$DEST/GROUPS"
  done
done

(cd "$DEST" && for f in *.deb; do
   printf '%s %s %s\n' "$(dpkg-deb -f "$f" Package)" "$(dpkg-deb -f "$f" Version)" "$(stat -c %s "$f")"
 done) >"$DEST/MANIFEST"

total=$(du -cb "$DEST"/*.deb | tail -1 | cut -f1)
say "$(ls "$DEST"/*.deb | wc -l) packages in $DEST"
for g in "${ORDER[@]}"; do
  bytes=0
  while read -r gg f; do [[ $gg == "$g" ]] && bytes=$((bytes + $(stat -c %s "$DEST/$f"))); done <"$DEST/GROUPS"
  say "$(printf '  %-10s %6.2f MiB' "$g" "$(echo "$bytes/1048576" | bc -l)")"
done
say "$(printf 'total: %.2f MiB (%d bytes) to carry; the working tree travels with it (64 MiB limit)' \
  "$(echo "$total/1048576" | bc -l)" "$total")"
