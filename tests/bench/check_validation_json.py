#!/usr/bin/env python3
"""Checks thinwire-cost-model --validate's JSON against the benchmark runs it read.

usage: check_validation_json.py VALIDATION_JSON BENCH_JSON...

For every result of every benchmark file there is one prediction, with the measured time
copied, error = (predicted - measured) / measured, the run's kernel rates as the per-rate
median over the results of the same size and layers (over all the run's results where its
probes timed single calls), the tbf bucket the launcher recorded, and the rest before a
call (the fresh-gradient copy at the run's copy rate plus ceil(log2 P) message latencies),
what the call before left in the bucket, and the bandwidths: the run's own bandwidth probe
where it has one (ring allreduce; allgather for allgathers and alltoalls; from its fastest
call where it recorded its calls), else the rate x 1448/1514, with the bucket refilled at the
latter.
Prints PASS: on success, exits 1 with the reasons otherwise.
"""
import json
import math
import statistics
import sys

errors = []


def fail(msg):
    errors.append(msg)


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def probed(bench, kind):
    """The probe's bandwidth: bytes sent / (its fastest call - its latency terms) where it
    recorded its calls, else the bytes_per_s it printed."""
    e = bench["bandwidth_probe"][kind]
    if "calls_s" not in e:
        return e["bytes_per_s"]
    per_message = bench["latency_probe"]["per_message_s"]
    return e["sent_bytes"] / (min(e["calls_s"]) - e["messages"] * per_message)


def rate_bytes_per_s(rate):
    """A tc rate ("200mbit", "12500kbps") in bytes per second (bench/tc_units.cpp's units)."""
    for unit, bits in (("kbit", 1e3), ("mbit", 1e6), ("gbit", 1e9), ("bit", 1),
                       ("kbps", 8e3), ("mbps", 8e6), ("gbps", 8e9), ("bps", 8)):
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * bits / 8
    raise ValueError(f"{rate!r} is not a tc rate")


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    validation = json.load(open(sys.argv[1]))
    rows = validation.get("validation", [])
    by_key = {}
    for r in rows:
        by_key[(r["file"], r["size_bytes"], r["method"])] = r
    expected = 0
    for path in sys.argv[2:]:
        bench = json.load(open(path))
        # thinwire::bench::kProbeSamplesAreMeans (bench/bench_common.hpp)
        per_size = "mean of cold calls" in bench.get("compute_rates_probe", {}).get("when", "")

        def run_medians(result):
            samples = {}
            for res in bench["results"]:
                if per_size and (res["size_bytes"], res.get("layers")) != (
                    result["size_bytes"],
                    result.get("layers"),
                ):
                    continue
                for name, v in res.get("compute_rates", {}).items():
                    if v > 0:
                        samples.setdefault(name, []).append(v)
            return {name: statistics.median(v) for name, v in samples.items()}

        P = bench["ranks"]
        latency = bench["latency_probe"]["per_message_s"]
        nominal = rate_bytes_per_s(bench["link"]["rate"]) * 1448 / 1514
        probe = bench.get("bandwidth_probe") if P > 1 else None
        carried = 0  # own-call predictions that start with something in the bucket
        for res in bench["results"]:
            medians = run_medians(res)
            expected += 1
            key = (path, res["size_bytes"], res["method"])
            r = by_key.get(key)
            if r is None:
                fail(f"no prediction for {key}")
                continue
            if not close(r["measured_s"], res["time_median_s"]):
                fail(f"{key}: measured_s {r['measured_s']} != the run's {res['time_median_s']}")
            if not (r["predicted_s"] > 0 and math.isfinite(r["predicted_s"])):
                fail(f"{key}: predicted_s {r['predicted_s']}")
            err = (r["predicted_s"] - r["measured_s"]) / r["measured_s"]
            if not close(r["error"], err):
                fail(f"{key}: error {r['error']} != (predicted - measured) / measured = {err}")
            if set(r["run_rates"]) != set(medians):
                fail(f"{key}: run_rates has {sorted(r['run_rates'])}, expected {sorted(medians)}")
            for name, m in medians.items():
                if name in r["run_rates"] and not close(r["run_rates"][name], m):
                    fail(f"{key}: run rate {name} = {r['run_rates'][name]}, median {m}")
            burst = bench["link"].get("burst")
            if burst is not None and not r["burst_bytes"] > 0:
                fail(f"{key}: the launcher's bucket {burst} became {r['burst_bytes']} bytes")
            # A compressed method's timed call after an untimed call of its own starts with
            # what that call left in the bucket; any other with an empty one.
            after = res.get("timed_after", "other candidate")
            if r.get("timed_after") != after:
                fail(f"{key}: timed_after {r.get('timed_after')!r}, the run's {after!r}")
            left = r.get("bucket_before_bytes")
            if left is None or not (
                0 <= left <= r["burst_bytes"] if after == "own call" else left == 0
            ):
                fail(f"{key}: bucket_before_bytes {left} (bucket {r['burst_bytes']}, after {after})")
            if after == "own call" and left is not None and left > 0:
                carried += 1
            # The links: the run's probe, else the rate; the bucket refills at the rate.
            want = (
                ("probe", probed(bench, "allreduce"), probed(bench, "allgather"))
                if probe
                else ("rate", nominal, nominal)
            )
            got = (r.get("bandwidth"), r.get("allreduce_bytes_per_s"), r.get("allgather_bytes_per_s"))
            if got[0] != want[0] or not all(close(a, b, 1e-9) for a, b in zip(got[1:], want[1:])):
                fail(f"{key}: bandwidth {got}, expected {want}")
            if not close(r.get("refill_bytes_per_s", 0), nominal, 1e-9):
                fail(f"{key}: refill_bytes_per_s {r.get('refill_bytes_per_s')}, the rate's {nominal}")
            # Calls timed in bursts ("calls_per_timing", default 1) are predicted as bursts:
            # with ranks sharing the cores the calls after the first overlap one rank's compute
            # with another's comm, so the prediction is at most the phases added up, or what the
            # shaper lets a call send (its bytes at the slower of the refill and the allgather's
            # beta, model::burst_call), and equal to the phases for single calls or a core per
            # rank.
            calls = res.get("calls_per_timing", 1)
            if r.get("calls_per_timing") != calls:
                fail(f"{key}: calls_per_timing {r.get('calls_per_timing')!r}, the run's {calls}")
            added = r.get("predicted_phases_added_s")
            if not isinstance(added, (int, float)) or not added > 0:
                fail(f"{key}: predicted_phases_added_s {added!r}")
            elif calls == 1 or r["cpu_share"] >= 1:
                if not close(r["predicted_s"], added, 1e-9):
                    fail(f"{key}: predicted_s {r['predicted_s']} != phases added {added}")
            else:
                shaper = res.get("bytes_sent", 0) / min(r["refill_bytes_per_s"],
                                                        r["allgather_bytes_per_s"])
                top = max(added, shaper)
                if not (r["predicted_s"] <= top * (1 + 1e-9) and
                        r["predicted_s"] >= r["predicted_compute_s"] * (1 - 1e-9)):
                    fail(f"{key}: burst predicted_s {r['predicted_s']} outside [compute "
                         f"{r['predicted_compute_s']}, max(phases added {added}, shaper {shaper})]")
            # The rest before a timing: copies of its calls' gradients at the run's copy rate
            # (divided by its cpu share) and ceil(log2 P) latencies.
            share = r["run_rates_cpu_share"]
            rest = calls * (res["size_bytes"] / 4) * medians["copy"] / share + math.ceil(
                math.log2(P)
            ) * latency
            if validation["rates_used"].startswith("run") and not close(
                r["idle_before_s"], rest, 1e-6
            ):
                fail(f"{key}: idle_before_s {r['idle_before_s']}, expected {rest}")
        # A compressed call's decode refills the bucket: some call after one of its own starts
        # with tokens (a model that dropped the carry-over would start them all empty).
        own_calls = sum(res.get("timed_after") == "own call" for res in bench["results"])
        if own_calls and not carried and bench["link"].get("burst") not in (None, "0"):
            fail(f"{path}: none of {own_calls} calls after their own starts with tokens")
    if len(rows) != expected:
        fail(f"{len(rows)} predictions for {expected} results")
    worst = max((abs(r["error"]) for r in rows), default=0)
    if not close(validation["largest_abs_error"], worst):
        fail(f"largest_abs_error {validation['largest_abs_error']} != {worst}")
    if errors:
        for e in errors:
            print("FAIL:", e)
        return 1
    print(f"PASS: {len(rows)} predictions checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
