#!/usr/bin/env bash
# python_install: cmake --install into a scratch prefix, then run install_smoke.py on 2 ranks
# with only <prefix>/<python dir> on PYTHONPATH, checking that the installed extension module
# loads the installed libthinwire.
#
# usage: run_installed.sh BUILD_DIR WORK_DIR PYTHON_DIR PYTHON [CMAKE [MPIEXEC]]
set -euo pipefail
build=$1 work=$2 pydir=$3 python=$4 cmake=${5:-cmake} mpiexec=${6:-mpiexec}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=$work/prefix
fail() { printf 'python_install: FAILED: %s\n' "$*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
"$cmake" --install "$build" --prefix "$prefix" >/dev/null
pkg=$prefix/$pydir/thinwire
for f in __init__.py torch.py _errors.py _tensors.py _process_group.py; do
  [[ -f $pkg/$f ]] || fail "$pkg/$f was not installed"
done
module=$(ls "$pkg"/_thinwire*.so 2>/dev/null | head -1)
[[ -n $module ]] || fail "the _thinwire extension module was not installed in $pkg"
lib=$(ldd "$module" | awk '/libthinwire/ {print $3}')
printf '%s links %s\n' "$(basename "$module")" "$lib"
[[ $lib == "$prefix"/* ]] || fail "the installed module loads '$lib', not the installed libthinwire"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
export PYTHONPATH=$prefix/$pydir
unset THINWIRE_COMPRESSION
cd "$work"  # nothing from the source or build tree on sys.path
"$mpiexec" -n 2 --oversubscribe --bind-to none "$python" "$here/install_smoke.py" "$prefix"
