#!/usr/bin/env python3
"""Checks thinwire-bench-allgather's JSON: provenance, one result per size with the three
candidates' median times, the ratios made of them, and which sizes went in rounds (blocks under
8 KiB, rounds from 2 ranks on in the benchmark's rounds communicator).

usage: check_allgather_json.py FILE RANKS SIZES   (SIZES: 'a;b;...' in bytes)"""
import json
import sys


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def main():
    path, ranks, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(";")]
    with open(path) as f:
        d = json.load(f)
    for key in ("commit", "host", "command", "date_utc", "baseline", "how"):
        if not isinstance(d.get(key), str) or not d[key]:
            fail(f"top level has no '{key}'")
    if not d.get("timeout_s", 0) > 0:
        fail(f"timeout_s {d.get('timeout_s')!r}: the transport compared its modes without a deadline?")
    results = d.get("results")
    if not isinstance(results, list) or [r.get("size_bytes") for r in results] != sizes:
        fail(f"results' sizes {[r.get('size_bytes') for r in results or []]} != {sizes}")
    for r in results:
        where = f"result of {r['size_bytes']} bytes"
        if r.get("ranks") != ranks:
            fail(f"{where}: ranks {r.get('ranks')} != {ranks}")
        if r.get("in_rounds") != (ranks >= 2 and r["size_bytes"] < 8192):
            fail(f"{where}: in_rounds {r.get('in_rounds')} for {ranks} ranks")
        times = {}
        for k in ("rounds", "direct", "mpi_allgather"):
            t = r.get(f"{k}_time_median_s")
            if not isinstance(t, (int, float)) or not t > 0:
                fail(f"{where}: {k}_time_median_s {t!r} is not a time > 0")
            times[k] = t
        for k, base in (("rounds_over_direct", "direct"), ("rounds_over_mpi_allgather", "mpi_allgather")):
            want = times["rounds"] / times[base]
            if abs(r.get(k, -1) - want) > 1e-9 * want:
                fail(f"{where}: {k} {r.get(k)} != {want}")
    print(f"PASS: {len(results)} sizes on {ranks} ranks")


if __name__ == "__main__":
    main()
