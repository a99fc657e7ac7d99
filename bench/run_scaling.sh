#!/usr/bin/env bash
# The scaling measurements of README "Scaling": the allreduce benchmark on the emulated cluster
# (cluster/emulate/run.sh: needs root) at several link rates and rank counts, the cost model's
# predictions and its validation against those runs, and the plots.
#   bench/run_scaling.sh [STEP...]   steps: goal shm sizes rates validate model plots (default all),
#                                    repredict (not in the default: the kept runs, this build's model)
# Results go to $OUT (default bench/results/scaling). Run on a quiet machine: every emulated
# host shares this machine's cores, so other load shows up in the times. Before each run the
# script waits (up to QUIET_WAIT_S, default 1200 s) for the 1-minute load average to fall
# below QUIET_LOAD (default 1.0); the load at the start of a run is in its JSON. NICE (e.g.
# -10, as root) runs the emulated cluster at a higher priority than the machine's other work.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-bench/results/scaling}
BUILD=${THINWIRE_BUILD_DIR:-build}
bench=$BUILD/bench/thinwire-bench-allreduce
model=$BUILD/bench/thinwire-cost-model
emulate=cluster/emulate/run.sh
methods=none,onebit,topk:0.01,qsgd:4,powersgd:4
# The plots need Debian's python3-matplotlib: prefer the system interpreter over a pyenv shim.
python=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
mkdir -p "$OUT"
steps=("$@")
((${#steps[@]})) || steps=(goal shm sizes rates validate model plots)
say() { printf '\n[scaling] %s\n' "$*" >&2; }
wait_quiet() {
  local waited=0
  while awk -v max="${QUIET_LOAD:-1.0}" '{ exit !($1 >= max) }' /proc/loadavg &&
    ((waited < ${QUIET_WAIT_S:-1200})); do
    ((waited % 60 == 0)) && say "waiting for a quiet machine ($(cut -d' ' -f1-3 /proc/loadavg))"
    sleep 10
    waited=$((waited + 10))
  done
}
run() { # RANKS RATE NAME BENCH-ARGS...
  local ranks=$1 rate=$2 name=$3
  shift 3
  wait_quiet
  say "$ranks hosts at $rate: $name ($(uptime | sed 's/.*load/load/'))"
  nice -n "${NICE:-0}" "$emulate" --ranks "$ranks" --rate "$rate" -- "$bench" \
    --json "$OUT/$name.json" "$@"
}

for step in "${steps[@]}"; do
  case $step in
    goal) # The issue's goals: 4 hosts, 200 Mbit/s, 64 MiB, every dense baseline measured.
      run 4 200mbit goal_4x200mbit_64M --sizes 64M --iters 5 --warmup 1 \
        --methods $methods,auto,auto:topk,auto:powersgd
      run 4 none goal_4xunshaped_64M --sizes 64M --iters 9 --warmup 2 \
        --methods none,auto,auto:topk,auto:powersgd,onebit,topk:0.01,powersgd:4 ;;
    shm) # auto where links are fastest: 4 ranks on this machine over shared memory.
      wait_quiet
      say "4 ranks over shared memory: auto_4xshm ($(uptime | sed 's/.*load/load/'))"
      # Whole messages: THINWIRE_MPI_SEGMENT_BYTES is a TCP setting (README "Environment
      # variables"); over shared memory it costs the ring about a third of its speed.
      THINWIRE_MPI_SEGMENT_BYTES=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        nice -n "${NICE:-0}" \
        mpirun --oversubscribe --bind-to none -np 4 --mca btl self,vader "$bench" \
        --sizes 1M,16M,64M --iters 9 --warmup 2 \
        --methods none,auto,auto:topk,auto:powersgd,onebit,topk:0.01,powersgd:4 \
        --json "$OUT/auto_4xshm.json" ;;
    sizes) # Time vs size at 200 Mbit/s.
      run 4 200mbit sizes_4x200mbit -b 256K -e 64M -f 4 --iters 3 --warmup 1 \
        --baselines ring,thinwire --methods $methods,auto ;;
    rates) # Speedup vs link rate (4 hosts, 16 MiB; 200 Mbit/s comes from "validate").
      for rate in 100mbit 500mbit 1gbit none; do
        run 4 "$rate" rate_4x${rate}_16M --sizes 16M --iters 5 --warmup 1 \
          --baselines ring,thinwire --methods $methods,auto
      done ;;
    validate) # The cost model against 2 and 4 hosts at 100-500 Mbit/s.
      # The links' own speed (what tbf's bucket lets through at once): dense on unshaped links.
      run 4 none valid_wire_4xnone --sizes 64M --iters 5 --warmup 1 --baselines thinwire \
        --methods none
      for ranks in 2 4; do
        for rate in 100mbit 200mbit 500mbit; do
          run "$ranks" "$rate" valid_${ranks}x${rate} --sizes 4M,16M,64M --iters 9 --warmup 1 \
            --baselines ring,thinwire --methods $methods
        done
      done
      run 4 200mbit valid_4x200mbit_mix --sizes 64M --layers mix --iters 9 --warmup 1 \
        --baselines ring,thinwire --methods $methods
      "$model" --validate "$OUT"/valid_[24]x*.json --wire "$OUT/valid_wire_4xnone.json" \
        --json "$OUT/model_validation.json" |
        tee "$OUT/model_validation.txt" ;;
    repredict) # Every kept validation run predicted again by this build's model, and the
      # median error per configuration pooled per machine: the Xeon VM's runs (valid_run_a/ to
      # valid_run_g/ and the top-level files) and the EPYC VM's runs made with the current
      # probes (valid_run_l_epyc/ and its repeat onwards; runs h-k predate the burst timing and
      # the 64-byte latency probe). Runs missing from $OUT are skipped.
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      pool() { # NAME DIR...
        local name=$1 d tag files=()
        shift
        for d in "$@"; do
          compgen -G "$d/valid_[24]x*.json" >/dev/null || continue
          local wire=()
          [[ -f $d/valid_wire_4xnone.json ]] && wire=(--wire "$d/valid_wire_4xnone.json")
          tag=${d#"$OUT"}
          tag=${tag#/}
          tag=${tag//\//_}
          files+=("$tmp/${tag:-top}.json")
          "$model" --validate "$d"/valid_[24]x*.json "${wire[@]}" --json "${files[-1]}" >/dev/null
        done
        ((${#files[@]})) || return 0
        say "$name (${#files[@]} runs): median error per configuration, this build's model"
        "$python" bench/scaling_tables.py --validation-pooled "${files[@]}"
      }
      pool "Xeon VM" "$OUT"/valid_run_{a,b,c,d,e,f,g} "$OUT"
      pool "EPYC VM" "$OUT"/valid_run_l_epyc{,/repeat} "$OUT"/valid_run_{m,o,p,q,r,s}_epyc ;;
    model) # Predictions for a 64M-parameter transformer mix, 2..4096 ranks, 0.1..400 Gbit/s:
      # with one CPU core's kernel rates (the codec benchmark), and with one H200's (the device
      # codec benchmark's committed run).
      "$model" --layers mix --size 256M --json "$OUT/model_mix_256M.json" \
        >"$OUT/model_mix_256M.txt"
      "$model" --layers mix --size 256M --codec-json bench/results/gpu_h200/codec_device_h200.json \
        --json "$OUT/model_mix_256M_h200.json" >"$OUT/model_mix_256M_h200.txt"
      tail -n +1 "$OUT/model_mix_256M.txt" | head -40 ;;
    plots)
      "$python" bench/plot_scaling.py --sizes "$OUT/sizes_4x200mbit.json" \
        --rates "$OUT"/rate_4x*_16M.json "$OUT/valid_4x200mbit.json" --rate-size 16777216 \
        --model "$OUT/model_mix_256M.json" --validation "$OUT/model_validation.json" \
        --out-dir "$OUT" ;;
    *) echo "unknown step '$step' (goal shm sizes rates validate model plots repredict)" >&2; exit 2 ;;
  esac
done
