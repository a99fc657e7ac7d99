#!/usr/bin/env python3
"""Checks `bench/run_scaling.sh repredict`: every kept validation run predicted again by this
build's cost model, pooled per VM (README "The cost model", "All kept runs").

usage: run_scaling.sh repredict | check_repredict.py NAME=RUNS:MIN_ALL:MIN_CORE_PER_HOST ...

For each NAME (the pool's name as the script prints it, e.g. "EPYC VM") the pool must have
read RUNS runs, and at least MIN_ALL of its 95 configurations (MIN_CORE_PER_HOST of the 45 with
a core per emulated host) must be within ±20 % in the median over the runs. So a change to the
model that predicts the kept runs worse fails here, as does a kept run that can no longer be
read. Prints PASS: on success, exits 1 with the reasons otherwise.
"""
import re
import sys

text = sys.stdin.read()
errors = []
pools = {}
for m in re.finditer(r"\[scaling\] (.+?) \((\d+) runs\): .*?\n(.*?)median error over (\d+) runs.*?; "
                     r"(\d+) of (\d+) configurations within ±20% in the median "
                     r"\(a core per host: (\d+) of (\d+)", text, re.S):
    name, runs, _, pooled, within, total, core, core_total = m.groups()
    pools[name] = dict(runs=int(runs), pooled=int(pooled), within=int(within), total=int(total),
                       core=int(core), core_total=int(core_total))

for arg in sys.argv[1:]:
    name, spec = arg.split("=")
    runs, min_all, min_core = (int(x) for x in spec.split(":"))
    p = pools.get(name)
    if p is None:
        errors.append(f"no pooled table for '{name}' (found: {sorted(pools)})")
        continue
    if p["runs"] != runs or p["pooled"] != runs:
        errors.append(f"{name}: {p['runs']} runs read, {p['pooled']} pooled; expected {runs}")
    if p["total"] != 95 or p["core_total"] != 45:
        errors.append(f"{name}: {p['total']} configurations ({p['core_total']} with a core per "
                      "host); expected 95 (45)")
    if p["within"] < min_all or p["core"] < min_core:
        errors.append(f"{name}: {p['within']} of 95 within ±20 % in the median ({p['core']} of "
                      f"45 with a core per host); expected at least {min_all} ({min_core})")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print("PASS: " + "; ".join(f"{n}: {p['within']} of 95 ({p['core']} of 45) over {p['runs']} runs"
                          for n, p in pools.items()))
