#!/usr/bin/env bash
# Bad input to the command-line programs: each case must exit with status 2 (the programs'
# usage-error status; 1 for the demo, which ends its ranks through MPI_Abort) and say what it expected, never crash (a signal), hang
# (the timeout) or run on with a made-up value. Every case here crashed, hung or exited 0
# before the programs checked it.
#
#   check_cli_errors.sh [cost-model=PATH] [codec=PATH] [allreduce=PATH mpiexec=PATH]
#                       [allgather=PATH mpiexec=PATH]
#                       [codec-device=PATH] [train=PATH] [c-example=PATH]
#                       [demo=PATH mpiexec=PATH]
# Prints PASS: when every case of the programs given behaves.
set -u
declare -A bin
for arg in "$@"; do bin[${arg%%=*}]=${arg#*=}; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0 cases=0

# expect STATUS TEXT -- COMMAND...: the command exits with STATUS within 60 s and its stderr
# contains TEXT.
expect() {
  local want=$1 text=$2
  shift 3
  cases=$((cases + 1))
  timeout 60 "$@" >out.txt 2>err.txt < /dev/null
  local rc=$?
  if [[ $rc != "$want" ]] || ! grep -qF -- "$text" err.txt; then
    failures=$((failures + 1))
    echo "FAIL: $* -> status $rc (want $want), stderr:"
    tail -3 err.txt | sed 's/^/    /'
    echo "    (want it to contain: $text)"
  fi
}

if [[ -n ${bin[cost-model]:-} ]]; then
  m=${bin[cost-model]}
  echo '[{"name": "a", "shape": [0, 16]}]' > zero_dim.json
  echo '[{"name": "a", "shape": [1.5, 2]}]' > float_dim.json
  echo '[{"name": "a", "shape": [4294967296, 4294967296]}]' > huge.json
  echo '[]' > no_layers.json
  echo '{}' > object.json
  python3 - <<'EOF'
import json
run = {"link": {"emulated": True, "rate": "200mbit"}, "ranks": 0, "cores": 2,
       "latency_probe": {"per_message_s": 1e-4},
       "results": [{"method": "none", "size_bytes": 4096, "layers": "single",
                    "time_median_s": 0.01, "speedup": 1.0}]}
json.dump(run, open("ranks0.json", "w"))
run["ranks"] = 2
run["results"][0]["size_bytes"] = -4
json.dump(run, open("negative_size.json", "w"))
run["results"][0]["size_bytes"] = 4096
run["results"][0]["time_median_s"] = 0
json.dump(run, open("zero_time.json", "w"))
run["results"][0]["time_median_s"] = 0.01
run["link"]["rate"] = "0mbit"
json.dump(run, open("zero_rate.json", "w"))
EOF
  # A device codec benchmark's JSON missing a case, or with a case that has no time.
  echo '{"device": "GPU", "n": 1024, "results": [{"name": "memcpy_d2d", "median_ms": 0.01}]}' \
    > device_missing.json
  echo '{"device": "GPU", "n": 1024, "results": [{"name": "memcpy_d2d", "median_ms": 0}]}' \
    > device_zero.json
  expect 2 "no case 'topk_exact_ef_encode'" -- "$m" --codec-json device_missing.json
  expect 2 "no case 'memcpy_d2d' with a median_ms > 0" -- "$m" --codec-json device_zero.json
  expect 2 "'ranks' 0" -- "$m" --validate ranks0.json
  expect 2 "positive multiple of 4 bytes" -- "$m" --validate negative_size.json
  expect 2 "time > 0" -- "$m" --validate zero_time.json
  expect 2 "is not a rate" -- "$m" --validate zero_rate.json
  expect 2 "object.json" -- "$m" --validate object.json
  expect 2 "not a thinwire-bench-allreduce JSON" -- "$m" --validate zero_rate.json --wire object.json
  expect 2 "not an integer >= 1" -- "$m" --layer-file zero_dim.json
  expect 2 "not an integer >= 1" -- "$m" --layer-file float_dim.json
  expect 2 "too many elements" -- "$m" --layer-file huge.json
  expect 2 "no layers" -- "$m" --layer-file no_layers.json
  expect 2 "'2x' is not an integer" -- "$m" --ranks 2x
  expect 2 "'2.5' is not an integer" -- "$m" --ranks 2.5
  expect 2 "--ranks: no values" -- "$m" --ranks ,
  expect 2 "'1x' is not a finite number" -- "$m" --gbps 1x
  expect 2 "'inf' is not a finite number" -- "$m" --gbps inf
  expect 2 "--latency-us must be" -- "$m" --latency-us -1
  expect 2 "--latency-us must be" -- "$m" --latency-us nan
  expect 2 "--efficiency must be" -- "$m" --efficiency 0
  expect 2 "--cpu-share must be" -- "$m" --cpu-share 0
  expect 2 "positive multiple of 4 bytes" -- "$m" --size 6
  expect 2 "does not model adaptive" -- "$m" --methods adaptive:topk
  expect 2 "no methods" -- "$m" --methods ,
  expect 2 "positional" -- "$m" extra
fi

if [[ -n ${bin[codec]:-} ]]; then
  c=${bin[codec]}
  expect 2 "is not a count" -- "$c" --n=abc
  expect 2 "is not a count" -- "$c" --n=99999999999999999999
  expect 2 "is not a count" -- "$c" --n=-1
  expect 2 "is not a count" -- "$c" --n=1X
  expect 2 "--simd takes" -- "$c" --simd=avx512
  expect 2 "unrecognized" -- "$c" --bogus
  expect 2 "cannot write" -- "$c" --json=/nonexistent/dir/codec.json
fi

if [[ -n ${bin[codec-device]:-} ]]; then
  # Checked before looking for a device: errors on a machine without one too.
  d=${bin[codec-device]}
  expect 2 "--methods: unknown 'bogus'" -- "$d" --methods bogus
  expect 2 "--rows must be >= 1" -- "$d" --rows 0
  expect 2 "--device >= 0" -- "$d" --device -1
  expect 2 "not a count" -- "$d" --n 17179869185G
  expect 2 "not a count" -- "$d" --n -4
fi

if [[ -n ${bin[allreduce]:-} ]]; then
  a=(${bin[mpiexec]} -n 1 "${bin[allreduce]}" --iters 1 --warmup 1 --methods none)
  expect 2 "expected -b a positive multiple" -- "${a[@]}" -b 0 -e 4K
  expect 2 "expected -b a positive multiple" -- "${a[@]}" -b 8K -e 4K
  expect 2 "no sizes" -- "${a[@]}" --sizes ,
  expect 2 "cannot write" -- "${a[@]}" --sizes 4K --json /nonexistent/dir/bench.json
  expect 2 "--min-timed-s must be between 0 and 60" -- "${a[@]}" --sizes 4K --min-timed-s -1
  expect 2 "--min-timed-s must be between 0 and 60" -- "${a[@]}" --sizes 4K --min-timed-s nan
fi

if [[ -n ${bin[allgather]:-} ]]; then
  g=(${bin[mpiexec]} -n 1 "${bin[allgather]}" --trials 1)
  expect 2 "not a block of 1 byte to 1 GiB" -- "${g[@]}" --sizes 0
  expect 2 "no sizes" -- "${g[@]}" --sizes ,
  expect 2 "--calls and --trials must be >= 1" -- "${g[@]}" --calls 0
  expect 2 "--calls and --trials must be >= 1" -- "${bin[mpiexec]}" -n 1 "${bin[allgather]}" --trials -3
  expect 2 "cannot write" -- "${g[@]}" --json /nonexistent/dir/bench.json
  expect 2 "set a deadline" -- env THINWIRE_TIMEOUT_S=0 "${g[@]}"
fi

if [[ -n ${bin[train]:-} ]]; then
  t=${bin[train]}
  # IDX files as Fashion-MNIST's, with one thing wrong in each directory.
  python3 - <<'EOF'
import gzip, os, struct
def write(d, prefix, n, rows, cols, labels=None, images=None):
    os.makedirs(d, exist_ok=True)
    img = struct.pack(">IIII", 0x803, n, rows, cols) + (images if images is not None
                                                         else bytes(n * rows * cols))
    lab = struct.pack(">II", 0x801, n) + bytes(labels if labels is not None else [i % 10 for i in range(n)])
    gzip.open(f"{d}/{prefix}-images-idx3-ubyte.gz", "wb").write(img)
    gzip.open(f"{d}/{prefix}-labels-idx1-ubyte.gz", "wb").write(lab)
for prefix in ("train", "t10k"):
    write("ok", prefix, 64, 28, 28)
    write("bad_label", prefix, 64, 28, 28, labels=[255] * 64)
    write("empty_images", prefix, 64, 0, 0)
    write("no_images", prefix, 0, 28, 28)
    write("small_images", prefix, 64, 2, 2)
    # n * rows * cols wraps to 0 in 64 bits: the header must not pass the size check.
    write("wrapping", prefix, 1 << 22, 1 << 21, 1 << 21, labels=[], images=b"")
EOF
  expect 2 "label 255 at index 0" -- "$t" --data bad_label
  expect 2 "expected at least one image" -- "$t" --data empty_images
  expect 2 "expected at least one image" -- "$t" --data no_images
  expect 2 "the model takes 28x28" -- "$t" --data small_images
  expect 2 "disagree on their sizes" -- "$t" --data wrapping
  expect 2 "--lr must be" -- "$t" --data ok --lr nan
  expect 2 "--momentum must be" -- "$t" --data ok --momentum 1.5
  expect 2 "larger than a rank's shard of 64 images" -- "$t" --data ok --batch 100
  # --limit beyond the file's 64 images trains on the 64 (it crashed, or hung, before).
  expect 2 "cannot write" -- "$t" --data ok --epochs 1 --batch 8 --limit 100 \
    --json /nonexistent/dir/train.json
fi

if [[ -n ${bin[c-example]:-} ]]; then
  expect 2 "usage: c_allreduce" -- "${bin[c-example]}" topk:0.01 abc
  expect 2 "usage: c_allreduce" -- "${bin[c-example]}" topk:0.01 -5
fi

if [[ -n ${bin[demo]:-} ]]; then
  # A local error ends every rank through MPI_Abort: status 1.
  expect 1 "--methods: no methods" -- ${bin[mpiexec]} -n 1 "${bin[demo]}" --methods ,
fi

if ((cases == 0)); then
  echo "no programs given"
  exit 1
fi
if ((failures)); then
  echo "$failures of $cases bad-input cases misbehaved"
  exit 1
fi
echo "PASS: $cases bad-input cases exit with their error status and say what they expected"
