#!/usr/bin/env python3
"""Checks the JSON of a small thinwire-bench-allreduce run (the schema of README "Scaling") and of
a small thinwire-cost-model sweep.

    check_bench_json.py BENCH_JSON RANKS METHODS SIZES COST_MODEL_JSON
"""
import json
import math
import sys


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def number(r, key, where, positive=False):
    v = r.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        fail(f"{where}: '{key}' should be a finite number, got {v!r}")
    if positive and v <= 0:
        fail(f"{where}: '{key}' should be > 0, got {v}")
    return v


def main():
    bench_path, ranks, methods, sizes, model_path = sys.argv[1:6]
    ranks, methods, sizes = int(ranks), methods.split(";"), [int(s) for s in sizes.split(";")]
    d = json.load(open(bench_path))
    for key in ("results", "commit", "host", "command", "baselines", "baseline_rule", "link"):
        if key not in d:
            fail(f"top level has no '{key}'")
    for key in ("commit", "host", "command"):
        if not isinstance(d[key], str) or not d[key]:
            fail(f"'{key}' should be a non-empty string")
    if "--json" not in d["command"]:
        fail("'command' should be the command line that wrote the file")
    seen = set()
    for r in d["results"]:
        where = f"result {r.get('method')}@{r.get('size_bytes')}"
        for key, kind in (("method", str), ("size_bytes", int), ("ranks", int), ("baseline", str),
                          ("identical", bool)):
            if not isinstance(r.get(key), kind):
                fail(f"{where}: '{key}' should be {kind.__name__}, got {r.get(key)!r}")
        if r["ranks"] != ranks:
            fail(f"{where}: ranks {r['ranks']}, expected {ranks}")
        t = number(r, "time_median_s", where, positive=True)
        b = number(r, "baseline_time_median_s", where, positive=True)
        s = number(r, "speedup", where, positive=True)
        if abs(s - b / t) > 1e-9 * s:
            fail(f"{where}: speedup {s} is not baseline/time = {b / t}")
        number(r, "bytes_sent", where, positive=True)
        ratio = number(r, "compression_ratio", where, positive=True)
        err = number(r, "rel_err", where)
        number(r, "algbw_GBps", where, positive=True)
        number(r, "busbw_GBps", where, positive=True)
        if not r["identical"]:
            fail(f"{where}: ranks ended with different bits")
        if r["method"] == "none" and (err > 1e-6 or abs(ratio - 1) > 0.1):
            fail(f"{where}: dense should be exact with ratio ~1, got rel_err {err} ratio {ratio}")
        if r["method"] == "onebit" and ratio < 5:
            fail(f"{where}: onebit should compress, ratio {ratio}")
        if r["method"].startswith("auto") and "layer_specs" not in r:
            fail(f"{where}: auto results should say what auto chose")
        number(r, "setup_s", where)
        seen.add((r["method"], r["size_bytes"]))
    want = {(m, s) for m in methods for s in sizes}
    if seen != want:
        fail(f"results cover {sorted(seen)}, expected {sorted(want)}")
    names = {b["name"] for b in d["baselines"]}
    if "MPI_Allreduce(default)" not in names:
        fail(f"baselines {names} should include MPI_Allreduce(default)")
    for s in sizes:
        chosen = [b for b in d["baselines"] if b["size_bytes"] == s and b["chosen"]]
        if len(chosen) != 1:
            fail(f"size {s}: exactly one baseline should be chosen, got {chosen}")
        for r in d["results"]:
            if r["size_bytes"] == s and (r["baseline"] != chosen[0]["name"] or
                                         r["baseline_time_median_s"] != chosen[0]["time_median_s"]):
                fail(f"size {s}: result names baseline {r['baseline']}, chosen {chosen[0]['name']}")
        fastest = min(b["time_median_s"] for b in d["baselines"] if b["size_bytes"] == s)
        if chosen[0]["time_median_s"] != fastest:
            fail(f"size {s}: the chosen baseline is not the fastest dense candidate")

    m = json.load(open(model_path))
    preds = m.get("predictions", [])
    if not preds:
        fail("cost model JSON has no predictions")
    for p in preds:
        where = f"prediction {p.get('method')} P={p.get('ranks')} {p.get('gbps')} Gbit/s"
        number(p, "time_s", where, positive=True)
        number(p, "speedup", where, positive=True)
        if p["method"] == "none" and abs(p["speedup"] - 1) > 1e-12:
            fail(f"{where}: dense speedup over itself should be 1")
    print(f"PASS: {len(d['results'])} results, {len(d['baselines'])} baselines, "
          f"{len(preds)} predictions")


main()
