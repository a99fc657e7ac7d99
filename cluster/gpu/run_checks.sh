#!/usr/bin/env bash
# The whole GPU check of thinwire as ONE command on the GPU machine (device tool):
#
#   run  command: bash cluster/gpu/run_checks.sh   carry: [".gpu-deps"]   timeout_s: 560
#
# (.gpu-deps/ comes from cluster/gpu/fetch_deps.sh, run beforehand on the Debian machine.)
# Steps, each under `timeout`, each one's failure reported and the next one run anyway:
#   1. probe: nvidia-smi, nvcc, cmake, python3/torch/pybind11, NCCL
#   2. deps:  unpack into /tmp/deps (dpkg -x, never into /) only the groups of .deb the image
#             lacks (MPI, Eigen3, nlohmann_json, GTest, benchmark, Boost.Program_options);
#             PATH, LD_LIBRARY_PATH, OPAL_PREFIX/PMIX_PREFIX (Open MPI relocation) for them
#   3. configure (CUDA required, sm_90 only, examples off) and build only the targets the
#      checks run, with ninja -k 0
#   4. ctest -L gpu                           -> $OUT/gpu_tests.log
#   5. thinwire-bench-codec-device            -> $OUT/codec_device_<dev>.json
#   6. bench/torch_topk.py                    -> $OUT/topk_vs_torch_<dev>.json
#   7. mpiexec -n 1 thinwire-bench-allreduce --device 0 (NCCL)
#                                             -> $OUT/allreduce_device_nccl_<dev>.json
#      mpiexec -n 2 ... --device 0, THINWIRE_TRANSPORT=mpi (both ranks on the one GPU, payloads
#      staged through host memory)            -> $OUT/allreduce_device_mpi2_<dev>.json
#   8. ctest -R python_torch_np2 (torch's CUDA tensors through thinwire) -> $OUT/gpu_tests.log
#   9. compute-sanitizer memcheck over the one-process device tests      -> $OUT/gpu_tests.log
# plus $OUT/summary.txt, $OUT/build.log (nvidia-smi too), $OUT/bench.log: 8 files, the
# device tool's limit. <dev> is the GPU's name from nvidia-smi (h200, h100, ...; "nogpu").
#
# Time: the whole script ends within GPU_BUDGET_S (default 530 s, under the tool's 560 s
# timeout and its 600 s cap). Planned on 16 cores: probe + deps ~15 s, configure ~30 s, build
# ~1-3 min (85 ninja steps; measured 182-194 s with -j2 on the 2-core Debian machine), gpu tests
# <= ~3 min (at most 300 s), benchmarks ~1-2 min (at most 120 + 90 + 150 s).
# Each step gets at most its own cap and never more than what is left minus what the later
# steps are promised, so a slow build or a hung test cannot eat the benchmarks' time.
#
# Environment overrides (for trying it elsewhere, e.g. on the 2-core Debian machine):
#   OUT            output folder (the device tool sets it; default /tmp/gpu_out)
#   GPU_JOBS       ninja -j (default: nproc, i.e. 16 there)
#   GPU_BUILD_CAP_S  seconds the build may take at most (default 330)
#   GPU_BUDGET_S   overall seconds (default 530)
#   GPU_BUILD_DIR  build folder (default /tmp/build)     GPU_DEPS_PREFIX  (default /tmp/deps)
#   GPU_PYTHON     the python3 to build the module for and run torch_topk.py with
#   GPU_DEPS_FORCE "all" or a list like "mpi,gtest": unpack these groups even if the image
#                  has them
#   GPU_SKIP       steps not to run, e.g. "gpu_tests,bench_codec" (a rerun of some steps only)
set -uo pipefail

T0=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-/tmp/gpu_out}
DEPS_DIR=$ROOT/.gpu-deps
PREFIX=${GPU_DEPS_PREFIX:-/tmp/deps}
BUILD=${GPU_BUILD_DIR:-/tmp/build}
JOBS=${GPU_JOBS:-$(nproc)}
BUDGET=${GPU_BUDGET_S:-530}
PY=${GPU_PYTHON:-$(command -v python3 || echo python3)}
FORCE=${GPU_DEPS_FORCE:-}
SKIP=${GPU_SKIP:-}
DEADLINE=$((T0 + BUDGET))
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
BUILDLOG=$OUT/build.log
BENCHLOG=$OUT/bench.log
: >"$SUMMARY"; : >"$BUILDLOG"; : >"$BENCHLOG"

now() { date +%s; }
elapsed() { echo $(($(now) - T0)); }
say() { printf '[run_checks %4ss] %s\n' "$(elapsed)" "$*" | tee -a "$BUILDLOG"; }
note() { printf '%s\n' "$*" >>"$SUMMARY"; printf '[summary] %s\n' "$*"; }
# seconds for a step: at most CAP, never more than what is left minus RESERVE (promised to
# the later steps); 0 when less than 10 s would remain.
slot() {
  local cap=$1 reserve=$2 left
  left=$((DEADLINE - $(now) - reserve))
  ((left > cap)) && left=$cap
  ((left < 10)) && left=0
  echo "$left"
}
# step NAME CAP RESERVE LOG CMD...: runs CMD under timeout (the whole process group is
# signalled: GNU timeout's default), appends its output to LOG and stdout, records the result.
declare -A RESULT
step() {
  local name=$1 cap=$2 reserve=$3 log=$4; shift 4
  local t rc start
  if [[ ",$SKIP," == *",$name,"* ]]; then
    RESULT[$name]="SKIPPED (GPU_SKIP)"; say "$name: skipped (GPU_SKIP)"; return 98
  fi
  t=$(slot "$cap" "$reserve")
  if ((t == 0)); then
    RESULT[$name]="NOT RUN (time budget spent)"; say "$name: not run, time budget spent"; return 99
  fi
  say "$name: start (limit ${t}s): $*"
  start=$(now)
  printf '\n===== %s: %s\n' "$name" "$*" >>"$log"
  timeout -k 10 "$t" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  local dt=$(($(now) - start))
  if ((rc == 124 || rc == 137)); then RESULT[$name]="TIMEOUT after ${dt}s (limit ${t}s)"
  elif ((rc == 0)); then RESULT[$name]="ok (${dt}s)"
  else RESULT[$name]="FAILED rc=$rc (${dt}s)"; fi
  say "$name: ${RESULT[$name]}"
  return "$rc"
}

# ---- 1. probe -------------------------------------------------------------------------------
say "repo $ROOT, out $OUT, build $BUILD, jobs $JOBS, budget ${BUDGET}s"
{
  echo "# $(date -u +%FT%TZ) $(uname -n)"
  timeout 30 nvidia-smi 2>&1 || echo "nvidia-smi: not available (rc $?)"
  echo
  timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv 2>&1 || true
} >>"$BUILDLOG"
GPU_NAME=$(timeout 30 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
# "NVIDIA H200" -> h200, "NVIDIA H100 80GB HBM3" -> h100; no GPU -> nogpu
DEV=$(printf '%s' "$GPU_NAME" | tr 'A-Z' 'a-z' | sed -E 's/^nvidia[ -]*//; s/^(tesla|geforce|rtx) +//' |
      awk '{print $1}' | tr -c 'a-z0-9\n' '_')
[[ -n "$DEV" ]] || DEV=nogpu
note "thinwire GPU checks, $(date -u +%FT%TZ), host $(uname -n), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
# The device tool's copy may carry a .git older than its files (the H200 runs of 2026-11-30
# named the session's first commit, 'dirty'): the tree's hash names the files themselves;
# `git rev-parse COMMIT^{tree}` here finds the commit.
note "tree $(rm -f /tmp/thinwire_index; GIT_INDEX_FILE=/tmp/thinwire_index git -C "$ROOT" add -A . 2>/dev/null &&
             GIT_INDEX_FILE=/tmp/thinwire_index git -C "$ROOT" write-tree 2>/dev/null || echo unknown) (git rev-parse COMMIT^{tree} matches it)"
note "gpu: ${GPU_NAME:-none found by nvidia-smi} (file tag: $DEV); cores $(nproc); jobs $JOBS; budget ${BUDGET}s"
NVCC=/usr/local/cuda/bin/nvcc; [[ -x $NVCC ]] || NVCC=$(command -v nvcc || echo)
{
  echo "uname: $(uname -a)"; grep PRETTY_NAME /etc/os-release 2>/dev/null
  echo "nvcc ($NVCC): $([[ -n $NVCC ]] && $NVCC --version | tail -2 | tr '\n' ' ')"
  echo "cmake: $(cmake --version 2>&1 | head -1); ninja: $(ninja --version 2>&1)"
  echo "g++: $(g++ --version 2>&1 | head -1)"
  echo "python: $PY $("$PY" --version 2>&1)"
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1
} | tee -a "$BUILDLOG" >>"$SUMMARY"

# ---- 2. dependencies: unpack what the image lacks -------------------------------------------
findcfg() {  # findcfg NAME...: a CMake package file under the usual system roots
  local d
  for d in /usr/lib/x86_64-linux-gnu/cmake /usr/lib/cmake /usr/lib64/cmake /usr/share /usr/share/cmake \
           /usr/local/lib/cmake /usr/local/share /usr/local/lib64/cmake /usr/local/share/cmake; do
    [[ -d $d ]] || continue
    find "$d" -maxdepth 3 \( -name "$1" -o -name "${2:-$1}" \) -print -quit 2>/dev/null | grep -q . && return 0
  done
  return 1
}
have_group() {
  case $1 in
    mpi) mpicxx --showme >/dev/null 2>&1 && mpiexec --version >/dev/null 2>&1 ;;  # present and working
    eigen) findcfg Eigen3Config.cmake eigen3-config.cmake ;;
    json) findcfg nlohmann_jsonConfig.cmake ;;
    gtest) findcfg GTestConfig.cmake gtest-config.cmake ;;
    benchmark) findcfg benchmarkConfig.cmake ;;
    boost) findcfg boost_program_options-config.cmake ;;
  esac
}
forced() { [[ $FORCE == all || ",$FORCE," == *",$1,"* ]]; }
unpack() {  # unpack FILE.deb into $PREFIX, with dpkg-deb or, without it, ar + tar
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$1" "$PREFIX"; return; fi
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && ar x "$1" && tar -xf data.tar.* -C "$PREFIX") ; rm -rf "$tmp"
}
USED_MPI=system
CARRIED=()
mkdir -p "$PREFIX"
if [[ ! -f $DEPS_DIR/GROUPS ]]; then
  note "deps: no $DEPS_DIR/GROUPS (run cluster/gpu/fetch_deps.sh here and carry .gpu-deps): relying on the image"
fi
for g in mpi eigen json gtest benchmark boost; do
  if have_group "$g" && ! forced "$g"; then
    note "deps: $g from the image"
    continue
  fi
  if [[ ! -f $DEPS_DIR/GROUPS ]] || ! grep -q "^$g " "$DEPS_DIR/GROUPS"; then
    note "deps: $g MISSING in the image and not carried: configure will fail"
    continue
  fi
  while read -r gg f; do [[ $gg == "$g" ]] && unpack "$DEPS_DIR/$f"; done <"$DEPS_DIR/GROUPS"
  CARRIED+=("$g")
  [[ $g == mpi ]] && USED_MPI=carried
done
((${#CARRIED[@]})) && note "deps: unpacked into $PREFIX: ${CARRIED[*]}"

LIBA=$PREFIX/usr/lib/x86_64-linux-gnu
if ((${#CARRIED[@]})); then
  export CMAKE_PREFIX_PATH=$PREFIX/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  export LD_LIBRARY_PATH=$LIBA:$LIBA/openmpi/lib:$PREFIX/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
MPI_ARGS=()
if [[ $USED_MPI == carried ]]; then
  # Debian's alternatives would make these links at install time; dpkg -x makes none.
  [[ -e $LIBA/libpsm_infinipath.so.1 ]] || ln -sf ../libpsm1/libpsm_infinipath.so.1.16 "$LIBA/libpsm_infinipath.so.1"
  # Open MPI relocation: every installdir that Debian configured under /usr follows
  # OPAL_PREFIX (wrapper data in share/openmpi, components in lib/.../openmpi3, headers);
  # sysconfdir (/etc/openmpi: Debian's MCA defaults) is set on its own. PMIx (external,
  # prefix /usr/lib/x86_64-linux-gnu/pmix2) was configured with absolute dirs: PMIX_PREFIX
  # alone moves none of them, so each is set; its component path is set too, since a
  # pmix-mca-params.conf of the image's own PMIx (same path on Ubuntu) would name its plugins.
  export OPAL_PREFIX=$PREFIX/usr OPAL_SYSCONFDIR=$PREFIX/etc/openmpi
  P=$LIBA/pmix2
  export PMIX_PREFIX=$P PMIX_EXEC_PREFIX=$P PMIX_BINDIR=$P/bin PMIX_LIBDIR=$P/lib \
         PMIX_INCLUDEDIR=$P/include PMIX_DATAROOTDIR=$P/share PMIX_DATADIR=$P/share \
         PMIX_PKGDATADIR=$P/share/pmix PMIX_PKGLIBDIR=$P/lib/pmix \
         PMIX_MCA_mca_base_component_path=$P/lib/pmix
  export PATH=$PREFIX/usr/bin:$PATH
  MPICXX=$PREFIX/usr/bin/mpicxx.openmpi; MPICC=$PREFIX/usr/bin/mpicc.openmpi
  MPIEXEC=$PREFIX/usr/bin/mpiexec.openmpi
  MPI_ARGS=(-DMPI_CXX_COMPILER="$MPICXX" -DMPI_C_COMPILER="$MPICC" -DMPIEXEC_EXECUTABLE="$MPIEXEC")
  unresolved=$(for f in "$PREFIX"/usr/bin/orted "$PREFIX"/usr/bin/orterun "$LIBA"/libmpi.so.40 \
                       "$LIBA"/libmpi_cxx.so.40 "$LIBA"/openmpi/lib/openmpi3/mca_*.so; do
                  ldd "$f" 2>/dev/null | grep 'not found' | sed "s|^\s*|$(basename "$f"): |"
                done | sort -u)
  say "mpicxx --showme: $("$MPICXX" --showme 2>&1)"
  say "libraries the carried Open MPI cannot resolve on this image: ${unresolved:-none}"
  [[ -n $unresolved ]] && note "deps: carried MPI, unresolved libraries: $(echo $unresolved | tr '\n' ' ')"
else
  MPIEXEC=$(command -v mpiexec || echo mpiexec)
fi
note "mpi: $USED_MPI ($MPIEXEC)"

# Open MPI as root in a container, one node, no ssh: local launch, shared memory only.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_plm=isolated OMPI_MCA_mca_base_component_show_load_errors=0
export THINWIRE_TIMEOUT_S=${THINWIRE_TIMEOUT_S:-120} PYTHONUNBUFFERED=1

# NCCL: CMake looks beside the toolkit and in /usr/lib/x86_64-linux-gnu; the image may have it
# only in the pip wheel nvidia-nccl-cu13 (torch's), whose library is libnccl.so.2.
NCCL_ARGS=()
if ! compgen -G '/usr/local/cuda/lib*/libnccl.so*' >/dev/null &&
   ! compgen -G '/usr/local/cuda/targets/x86_64-linux/lib/libnccl.so*' >/dev/null &&
   ! compgen -G '/usr/lib/x86_64-linux-gnu/libnccl.so*' >/dev/null; then
  nccl_dir=$("$PY" -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  if [[ -n $nccl_dir && -f $nccl_dir/include/nccl.h ]]; then
    lib=$(ls "$nccl_dir"/lib/libnccl.so* 2>/dev/null | head -1)
    NCCL_ARGS=(-DTHINWIRE_NCCL_LIBRARY="$lib" -DTHINWIRE_NCCL_INCLUDE_DIR="$nccl_dir/include")
    export LD_LIBRARY_PATH=$nccl_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    note "nccl: from the python wheel: $lib"
  else
    note "nccl: not found (device tensors will use the staged MPI transport)"
  fi
fi

# ---- 3. configure + build -------------------------------------------------------------------
# The C++ compiler: one that links libstdc++ as a shared library into shared libraries. The H200
# image's default (/opt/gcc/bin/g++, GNU 13.3) linked it statically: libthinwire.so then carried
# its own copy of the C++ runtime and test_torch.py crashed in the Reducer's constructor next to
# torch's (tests/linkage checks the built libraries for this).
cxx_links_runtime_shared() {
  local probe=/tmp/thinwire_cxx_probe
  printf '#include <sstream>\n#include <string>\nstd::string f(unsigned long x) { std::ostringstream o; o << x; return o.str(); }\n' >$probe.cpp
  "$1" -shared -fPIC "$probe.cpp" -o "$probe.so" 2>/dev/null && readelf -d "$probe.so" | grep -q 'NEEDED.*libstdc++'
}
CXX_CHOSEN=
for cand in "${CXX:-}" "$(command -v c++ || true)" "$(command -v g++ || true)" /usr/bin/g++; do
  [[ -n $cand && -x $cand ]] || continue
  if cxx_links_runtime_shared "$cand"; then CXX_CHOSEN=$cand; break; fi
  note "compiler $cand links libstdc++ statically into shared libraries: not used ($(file -b "$cand" | cut -c1-60))"
  file "$cand" | grep -q text && { echo "--- $cand:"; head -20 "$cand"; } >>"$BUILDLOG"
done
COMPILER_ARGS=()
if [[ -n $CXX_CHOSEN ]]; then
  CC_CHOSEN=${CXX_CHOSEN%++}; CC_CHOSEN=${CC_CHOSEN/%g/gcc}; CC_CHOSEN=${CC_CHOSEN/%c/cc}
  [[ -x $CC_CHOSEN ]] || CC_CHOSEN=$(command -v gcc || echo cc)
  COMPILER_ARGS=(-DCMAKE_CXX_COMPILER="$CXX_CHOSEN" -DCMAKE_C_COMPILER="$CC_CHOSEN"
                 -DCMAKE_CUDA_HOST_COMPILER="$CXX_CHOSEN")
  note "compilers: CXX $CXX_CHOSEN, CC $CC_CHOSEN (CXX in the environment: ${CXX:-unset})"
else
  note "compilers: none found that links libstdc++ shared; CMake's default (shared_cxx_runtime will fail)"
fi
PYBIND=$("$PY" -m pybind11 --cmakedir 2>/dev/null || true)
CONF=(cmake -G Ninja -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTHINWIRE_CUDA=ON
      -DCMAKE_CUDA_ARCHITECTURES=90 -DTHINWIRE_BUILD_EXAMPLES=OFF -DPython_EXECUTABLE="$PY"
      -DCMAKE_POLICY_VERSION_MINIMUM=3.5 "${COMPILER_ARGS[@]}" "${MPI_ARGS[@]}" "${NCCL_ARGS[@]}")
[[ -n $PYBIND ]] && CONF+=(-Dpybind11_DIR="$PYBIND")
[[ -x /usr/local/cuda/bin/nvcc ]] || { [[ -n $NVCC ]] && CONF+=(-DCMAKE_CUDA_COMPILER="$NVCC"); }
# Reserves: after configure, 150 s for the build and what follows (GPU_BUDGET_S >= ~300).
step configure 120 150 "$BUILDLOG" "${CONF[@]}"
grep -E '^-- (Found (MPI|GTest|Boost|nlohmann|benchmark|CUDAToolkit)|thinwire: (CUDA|NCCL|Python|not linking))' \
  "$BUILDLOG" | sort -u >>"$SUMMARY"
grep -E '^((Eigen3|nlohmann_json|GTest|benchmark|Boost|pybind11)_DIR|MPI_CXX_COMPILER|MPIEXEC_EXECUTABLE|THINWIRE_NCCL_LIBRARY)[:=]' "$BUILD/CMakeCache.txt" 2>/dev/null >>"$SUMMARY"
if [[ -f $BUILD/build.ninja ]]; then
  WANT=(thinwire_device_tests_cuda thinwire_gpu_tests thinwire-bench-codec-device thinwire-bench-allreduce _thinwire_bench
        _thinwire)
  ALL=$(ninja -C "$BUILD" -t targets all 2>/dev/null | cut -d: -f1)
  TARGETS=()
  for t in "${WANT[@]}"; do
    if grep -qx "$t" <<<"$ALL"; then TARGETS+=("$t"); else note "build: target $t not defined by this configuration"; fi
  done
  step build "${GPU_BUILD_CAP_S:-330}" 200 "$BUILDLOG" ninja -C "$BUILD" -k 0 -j "$JOBS" "${TARGETS[@]}"
  grep -E '^FAILED|error:' "$BUILDLOG" | head -20 >>"$SUMMARY"
else
  RESULT[build]="NOT RUN (configure failed)"
fi
[[ $USED_MPI == carried && -f $BUILD/tests/device/thinwire_device_tests_cuda ]] &&
  ldd "$BUILD/tests/device/thinwire_device_tests_cuda" | grep -E 'libmpi|nccl|cudart' | sed 's/^\s*/ldd: /' | tee -a "$BUILDLOG" >>"$SUMMARY"

# ---- 4. GPU tests ---------------------------------------------------------------------------
: >"$OUT/gpu_tests.log"
if [[ -f $BUILD/CTestTestfile.cmake ]]; then
  # Reserve 150 s for the three benchmarks.
  # -j: the four tests (one process, 2 and 4 ranks, convert) share the GPU at once, so that
  # one slow test does not keep the others from running inside the slot.
  step gpu_tests 300 150 "$OUT/gpu_tests.log" ctest --test-dir "$BUILD" -L gpu --output-on-failure -j "${GPU_CTEST_JOBS:-4}"
  grep -E 'tests passed|Test +#|\*\*\*|SKIPPED|Skipped|NO USABLE CUDA DEVICE' "$OUT/gpu_tests.log" |
    grep -vE '^\s*$' | sort -u | head -40 >>"$SUMMARY"
else
  RESULT[gpu_tests]="NOT RUN (no build)"
fi

# ---- 5-7. benchmarks ------------------------------------------------------------------------
bench_result() {  # after a benchmark: note a "skipped" JSON
  local json=$1
  if [[ -s $json ]] && grep -q '"skipped": *true' "$json"; then
    note "  $(basename "$json"): skipped: $(grep -o '"reason": *"[^"]*"' "$json" | head -1)"
  elif [[ -s $json ]]; then note "  $(basename "$json"): written ($(stat -c %s "$json") bytes)"
  else note "  $(basename "$json"): not written"; fi
}
J1=$OUT/codec_device_$DEV.json J2=$OUT/topk_vs_torch_$DEV.json J3=$OUT/allreduce_device_nccl_$DEV.json
J4=$OUT/allreduce_device_mpi2_$DEV.json
if [[ -x $BUILD/bench/thinwire-bench-codec-device ]]; then
  step bench_codec 120 100 "$BENCHLOG" "$BUILD/bench/thinwire-bench-codec-device" --json "$J1" --timeout 60
else RESULT[bench_codec]="NOT RUN (not built)"; fi
if ls "$BUILD"/python/thinwire/_thinwire_bench*.so >/dev/null 2>&1; then
  step bench_topk 90 70 "$BENCHLOG" "$PY" "$ROOT/bench/torch_topk.py" --build-dir "$BUILD" --json "$J2" --timeout 60
else RESULT[bench_topk]="NOT RUN (_thinwire_bench not built: python dev files or pybind11 missing?)"; fi
if [[ -x $BUILD/bench/thinwire-bench-allreduce ]]; then
  # One rank: compression + NCCL allreduce on the device, every method against the dense one.
  step bench_allreduce 150 40 "$BENCHLOG" "$MPIEXEC" --oversubscribe --bind-to none -n 1 \
    "$BUILD/bench/thinwire-bench-allreduce" --device 0 --sizes 1M,16M,64M \
    --methods none,onebit,topk:0.01,qsgd:4,powersgd:4 --iters 10 --warmup 2 --json "$J3"
  [[ ${RESULT[bench_allreduce]} == *rc=2* && $DEV == nogpu ]] && RESULT[bench_allreduce]+=" (no device: refused, as designed)"
  # Two ranks on the one GPU (NCCL refuses that): the device kernels with real payloads, the
  # bytes staged through host memory by the MPI transport, against its dense allreduce.
  THINWIRE_TRANSPORT=mpi step bench_allreduce_mpi2 120 40 "$BENCHLOG" "$MPIEXEC" --oversubscribe \
    --bind-to none -n 2 -x THINWIRE_TRANSPORT "$BUILD/bench/thinwire-bench-allreduce" --device 0 \
    --sizes 1M,16M,64M --methods none,onebit,topk:0.01,qsgd:4,powersgd:4 --iters 10 --warmup 2 \
    --json "$J4"
else RESULT[bench_allreduce]="NOT RUN (not built)"; fi

# ---- 8. the PyTorch path on CUDA tensors ----------------------------------------------------
# tests/python/test_torch.py on 2 ranks: its cuda_tensors_match_cpu_tensors runs the device
# pipeline under torch (staged over MPI: one GPU) against the CPU tensors' bits. Needs the
# image's torch and mpi4py to load next to this MPI; -V shows whether the CUDA case ran.
if [[ -f $BUILD/CTestTestfile.cmake ]] && ctest --test-dir "$BUILD" -N -R '^python_torch_np2$' | grep -q 'Total Tests: 1'; then
  step torch_cuda 120 30 "$OUT/gpu_tests.log" ctest --test-dir "$BUILD" -R '^(shared_cxx_runtime|python_torch_np2)$' -V
  grep -E 'cuda_tensors_match_cpu_tensors|^[0-9: ]*(PASS|FAIL)|shared C\+\+ runtime' "$OUT/gpu_tests.log" | sort -u | head -10 >>"$SUMMARY"
else RESULT[torch_cuda]="NOT RUN (python_torch_np2 not defined: the Python module is not built)"; fi

# ---- 8b. how the libraries link the C++ runtime, and where a Python process crashes --------
# The first H200 run's test_torch.py crashed (SIGSEGV at address 0) inside the Reducer's
# constructor, in frames that libthinwire.so.0 attributed to libstdc++'s own functions
# (std::codecvt<char16_t>::do_in, std::ostream::_M_insert<unsigned long>): a static copy of the
# C++ runtime in the shared library next to torch's shared one is the suspect. This records the
# linkage and, per import order, whether a one-process Reducer survives (with cuda-gdb's
# backtrace where it does not).
linkage() {
  local f
  for f in "$BUILD"/src/libthinwire.so.0 "$BUILD"/python/thinwire/_thinwire.cpython*.so; do
    [[ -e $f ]] || continue
    echo "== $f"; readelf -d "$f" | grep -E 'NEEDED|RUNPATH|RPATH'
    echo "   exported std:: definitions: $(nm -D --defined-only "$f" | grep -cE ' [TWV] _ZN(K)?S[tiosd]')"
    nm -D --defined-only "$f" | grep -E ' [TWV] _ZN(K)?S[tiosd]' | head -5
  done
  echo "g++ -print-file-name=libstdc++.so: $(g++ -print-file-name=libstdc++.so)"
  ls -la "$(g++ -print-file-name=libstdc++.so)" /usr/lib/gcc/x86_64-linux-gnu/*/libstdc++* 2>&1 | head
  # Which input of libthinwire's link defines libstdc++'s functions: the same command again,
  # into /tmp, with the linker tracing its inputs (-t) and the definitions of two of libstdc++'s
  # own functions (-y). With /usr/bin/c++ (which links libstdc++ shared, checked above) the
  # second H200 run's libthinwire.so still had no NEEDED libstdc++.so.6 and 3104 std::
  # definitions; the _thinwire module, linked without CUDA's -L directories, was fine.
  local link
  link=$(ninja -C "$BUILD" -t commands thinwire 2>/dev/null | grep -- '-o src/libthinwire.so' | tail -1)
  echo "link of libthinwire: $link"
  echo "environment: CXX=${CXX:-} CC=${CC:-} LDFLAGS=${LDFLAGS:-} CXXFLAGS=${CXXFLAGS:-} LIBRARY_PATH=${LIBRARY_PATH:-} NVCC_PREPEND_FLAGS=${NVCC_PREPEND_FLAGS:-} NVCC_APPEND_FLAGS=${NVCC_APPEND_FLAGS:-} NVCC_CCBIN=${NVCC_CCBIN:-}"
  grep -hE 'IMPLICIT_LINK_(LIBRARIES|DIRECTORIES)' "$BUILD"/CMakeFiles/*/CMakeCUDACompiler.cmake "$BUILD"/CMakeFiles/*/CMakeCXXCompiler.cmake 2>/dev/null
  local d
  for d in $(grep -oE -- '-L[^ ]+' <<<"$link" | cut -c3-) $(grep -oE -- '-Wl,-rpath,[^ ]+' <<<"$link" | cut -d, -f3 | tr ':' ' '); do
    ls -la "$d"/libstdc++* 2>/dev/null | sed "s|^|  in $d: |"
  done
  if [[ -n $link ]]; then
    (cd "$BUILD" && eval "${link/-o src\/libthinwire.so.0.1.0/-o /tmp/relink.so -Wl,-t -Wl,-y,_ZNKSo6sentrycvbEv}") 2>&1 |
      grep -E 'stdc\+\+|sentry|\.a(\(|$)' | sort | uniq -c | head -30
  fi
  cat >/tmp/repro.py <<'PYEOF'
import sys
for m in sys.argv[1].split("+"):
    if m != "plain":
        __import__(m)
import thinwire
c = thinwire.Communicator.from_mpi()
r = thinwire.Reducer(c, [("w", (40, 30))], "topk:0.1")
print("constructed a Reducer after importing", sys.argv[1], flush=True)
PYEOF
  local mode rc
  for mode in plain torch mpi4py torch+torch.distributed+mpi4py; do
    PYTHONPATH=$BUILD/python timeout 60 "$PY" /tmp/repro.py "$mode" 2>&1 | tail -3; rc=${PIPESTATUS[0]}
    echo "repro $mode: rc $rc"
    if ((rc != 0)) && command -v cuda-gdb >/dev/null && [[ -z ${GDB_DONE:-} ]]; then
      GDB_DONE=1
      PYTHONPATH=$BUILD/python timeout 90 cuda-gdb -batch -ex run -ex bt -ex 'info sharedlibrary' \
        --args "$PY" /tmp/repro.py "$mode" 2>&1 | grep -vE '^\[(New|Thread|Detaching)' | tail -80
    fi
  done
}
if [[ ${RESULT[torch_cuda]:-} != ok* && -e $BUILD/src/libthinwire.so.0 ]]; then
  export -f linkage; export BUILD PY
  step linkage 150 20 "$OUT/gpu_tests.log" bash -c linkage
  grep -E '^(== |   exported|g\+\+ -print|repro )|NEEDED.*stdc' "$OUT/gpu_tests.log" | head -20 >>"$SUMMARY"
fi

# ---- 9. compute-sanitizer memcheck over the one-process device tests ------------------------
# Out-of-bounds and misaligned accesses in the kernels, which results alone can miss. It slows
# the kernels many times, so it gets what is left of the budget; a timeout still reports the
# errors it printed so far.
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [[ -n $SAN && -x $BUILD/tests/device/thinwire_device_tests_cuda && $DEV != nogpu ]]; then
  # --report-api-errors no: the first run's 160 errors were all NCCL's own probing
  # (cudaFuncGetAttributes -> cudaErrorNoKernelImageForDevice inside libnccl), none a bad access.
  step sanitizer 120 0 "$OUT/gpu_tests.log" "$SAN" --tool memcheck --report-api-errors no \
    --error-exitcode 3 --print-limit 30 \
    "$BUILD/tests/device/thinwire_device_tests_cuda" '--gtest_filter=-Mpi*:Nccl*'
  grep -E 'ERROR SUMMARY|Invalid|out of bounds|\[  PASSED|\[  FAILED' "$OUT/gpu_tests.log" | sort | uniq -c | head -20 >>"$SUMMARY"
else RESULT[sanitizer]="NOT RUN (no compute-sanitizer, no device test binary or no GPU)"; fi

# ---- summary --------------------------------------------------------------------------------
note ""
note "steps:"
for s in configure build gpu_tests bench_codec bench_topk bench_allreduce bench_allreduce_mpi2 \
         torch_cuda linkage sanitizer; do
  note "  $(printf '%-16s' "$s") ${RESULT[$s]:-NOT RUN}"
done
note "benchmark JSON:"
for j in "$J1" "$J2" "$J3" "$J4"; do bench_result "$j"; done
note "total $(elapsed)s of ${BUDGET}s; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
exit 0
