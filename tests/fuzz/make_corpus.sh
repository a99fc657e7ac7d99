#!/usr/bin/env bash
# Regenerates the committed seed corpus tests/fuzz/corpus/<harness>/ from valid payloads,
# checkpoints and specs (make_seeds.cpp), e.g. after a change of the wire or state format:
#   tests/fuzz/make_corpus.sh [BUILD_DIR]     (default ./build; builds thinwire_fuzz_seeds)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
ninja -C "$build" thinwire_fuzz_seeds
# Inputs that once failed (regress_*, copied from fuzzer artifacts) stay.
find "$root/tests/fuzz/corpus" -type f ! -name 'regress_*' -delete 2>/dev/null || true
"$build/tests/fuzz/thinwire_fuzz_seeds" "$root/tests/fuzz/corpus"
find "$root/tests/fuzz/corpus" -type f | wc -l | xargs echo "seeds written:"
du -sh "$root/tests/fuzz/corpus"
