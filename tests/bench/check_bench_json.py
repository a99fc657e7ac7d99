#!/usr/bin/env python3
"""Checks the JSON of a small thinwire-bench-allreduce run (the schema of README "Scaling") and of
a small thinwire-cost-model sweep.

    check_bench_json.py BENCH_JSON RANKS METHODS SIZES COST_MODEL_JSON
                        [--tensors host|device] [--device-baseline NAME] [--old-schema]

COST_MODEL_JSON "-" skips the cost model. --tensors device (a --device run): the JSON names the
device and its transport, the dense candidates are the device transport's allreduce (named
NAME when given: "nccl allreduce" or "staged mpi allreduce") and thinwire none, and no
MPI_Allreduce on host memory. --old-schema: a file written before results said what their
timed calls followed ("timed_after") and how many calls a timing spans ("calls_per_timing"),
and before the bandwidth probe, the latency probe's trials and the probes' cache evictor size
("cache_evictor_bytes"); otherwise all are required.
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


DEVICE_BASELINES = ("nccl allreduce", "staged mpi allreduce")


def median_of(values, where):
    t = sorted(number({"v": x}, "v", where) for x in values)
    mid = len(t) // 2
    return t[mid] if len(t) % 2 else (t[mid - 1] + t[mid]) / 2


def main():
    args = sys.argv[1:]
    options = {"--tensors": "host", "--device-baseline": None}
    positional = []
    timed_after_wanted = True
    while args:
        a = args.pop(0)
        if a == "--old-schema":
            timed_after_wanted = False
        elif a in options:
            if not args:
                fail(f"{a} needs a value")
            options[a] = args.pop(0)
        else:
            positional.append(a)
    if len(positional) != 5 or options["--tensors"] not in ("host", "device"):
        fail(f"usage: {__doc__}")
    tensors, device_baseline = options["--tensors"], options["--device-baseline"]
    bench_path, ranks, methods, sizes, model_path = positional
    ranks, methods, sizes = int(ranks), methods.split(";"), [int(s) for s in sizes.split(";")]
    d = json.load(open(bench_path))
    for key in ("results", "commit", "host", "command", "baselines", "baseline_rule", "link",
                "device", "tensors"):
        if key not in d:
            fail(f"top level has no '{key}'")
    for key in ("commit", "host", "command", "device"):
        if not isinstance(d[key], str) or not d[key]:
            fail(f"'{key}' should be a non-empty string")
    if timed_after_wanted:  # the commit the program was built from
        build = d.get("build")
        if not isinstance(build, dict) or not isinstance(build.get("commit"), str) or \
                not build["commit"] or not isinstance(build.get("dirty"), bool):
            fail(f"'build' should be {{'commit': str, 'dirty': bool}}, got {build!r}")
    probe = d.get("latency_probe")
    if not isinstance(probe, dict):
        fail("top level has no 'latency_probe' object")
    calls = probe.get("calls")
    if not isinstance(calls, int) or calls < 1:
        fail(f"'latency_probe.calls' should be a positive count, got {calls!r}")
    per_call = number(probe, "seconds", "latency_probe", positive=ranks > 1)
    per_message = number(probe, "per_message_s", "latency_probe")
    if ranks > 1 and abs(per_message - per_call / (ranks - 1)) > 1e-12 + 1e-9 * per_call:
        fail(f"latency_probe: per_message_s {per_message} is not seconds / (P-1)")
    if timed_after_wanted:  # the median of its trials
        trials = probe.get("trials_s")
        if not isinstance(trials, list) or not trials:
            fail(f"latency_probe: 'trials_s' should list the trials, got {trials!r}")
        if abs(per_call - median_of(trials, "latency_probe.trials_s")) > 1e-12 + 1e-9 * per_call:
            fail(f"latency_probe: seconds {per_call} is not the median of trials_s {trials}")
    min_timed = number(d, "min_timed_s", "top level") if timed_after_wanted else 0
    # The bandwidth probe (ranks > 1): a ring allreduce and an allgather, bytes_per_s = bytes
    # sent per rank / (the fastest call's seconds - messages x per_message_s).
    bw = d.get("bandwidth_probe")
    if timed_after_wanted and ranks > 1:
        if not isinstance(bw, dict):
            fail("top level has no 'bandwidth_probe' object")
        # An allgather of blocks under 8 KiB goes in ceil(log2 P) rounds from
        # mpi_log_allgather_min_ranks ranks on (0, and files from before it: never).
        rounds_from = d.get("mpi_log_allgather_min_ranks", 0)
        if not isinstance(rounds_from, int) or rounds_from < 0:
            fail(f"'mpi_log_allgather_min_ranks' should be a count of ranks >= 0, got {rounds_from!r}")
        for kind, sent_per_byte, messages in (("allreduce", 2 * (ranks - 1) / ranks, 2 * (ranks - 1)),
                                              ("allgather", ranks - 1, ranks - 1)):
            e = bw.get(kind)
            if not isinstance(e, dict):
                fail(f"bandwidth_probe has no '{kind}'")
            size = number(e, "bytes", f"bandwidth_probe.{kind}", positive=True)
            if kind == "allgather" and 0 < rounds_from <= ranks and size < 8192:
                messages = math.ceil(math.log2(ranks))
            sent = number(e, "sent_bytes", f"bandwidth_probe.{kind}", positive=True)
            seconds = number(e, "seconds", f"bandwidth_probe.{kind}", positive=True)
            calls_s = e.get("calls_s")  # each call's time; seconds is their median
            if not isinstance(calls_s, list) or len(calls_s) != e.get("calls") or \
                    abs(seconds - median_of(calls_s, f"bandwidth_probe.{kind}.calls_s")) > \
                    1e-12 + 1e-9 * seconds:
                fail(f"bandwidth_probe.{kind}: seconds {seconds} is not the median of its "
                     f"{e.get('calls')} calls_s {calls_s!r}")
            if abs(sent - sent_per_byte * size) > 1e-9 * sent or e.get("messages") != messages:
                fail(f"bandwidth_probe.{kind}: sent_bytes {sent} / messages {e.get('messages')} "
                     f"for {size} bytes on {ranks} ranks")
            fastest = number(e, "fastest_s", f"bandwidth_probe.{kind}", positive=True)
            if isinstance(calls_s, list) and calls_s and fastest != min(calls_s):
                fail(f"bandwidth_probe.{kind}: fastest_s {fastest} is not the least of "
                     f"calls_s {calls_s!r}")
            wire_s = fastest - messages * per_message
            if wire_s > 0:
                bps = number(e, "bytes_per_s", f"bandwidth_probe.{kind}", positive=True)
                if abs(bps - sent / wire_s) > 1e-9 * bps:
                    fail(f"bandwidth_probe.{kind}: bytes_per_s {bps} != {sent / wire_s}")
            elif e.get("bytes_per_s") is not None:
                fail(f"bandwidth_probe.{kind}: latency terms exceed the call, yet a rate is given")
    elif timed_after_wanted and bw is not None:
        fail("one rank sends nothing: no bandwidth_probe expected")
    rates_probe = d.get("compute_rates_probe")
    if not isinstance(rates_probe, dict):
        fail("top level has no 'compute_rates_probe' object")
    share = number(rates_probe, "cpu_share", "compute_rates_probe", positive=True)
    on_host = rates_probe.get("ranks_on_host")
    if not isinstance(on_host, int) or not 1 <= on_host <= ranks:
        fail(f"'compute_rates_probe.ranks_on_host' should be in 1..{ranks}, got {on_host!r}")
    # The buffer the kernel probes pass over before each timed call: the L3 size, clamped to
    # 8-128 MiB (src/model/cache_evictor.hpp).
    evictor = rates_probe.get("cache_evictor_bytes", None if timed_after_wanted else 8 << 20)
    if not isinstance(evictor, int) or not (8 << 20) <= evictor <= (128 << 20):
        fail(f"'compute_rates_probe.cache_evictor_bytes' should be 8-128 MiB, got {evictor!r}")
    # Device runs time no host kernels (their steps run the device's); host runs time them
    # between the timed iterations.
    when_wanted = "not measured: device tensors" if tensors == "device" else \
        "between the timed iterations"
    if not isinstance(rates_probe.get("when"), str) or when_wanted not in rates_probe["when"]:
        fail(f"'compute_rates_probe.when' should say '{when_wanted}', "
             f"got {rates_probe.get('when')!r}")
    cores = d.get("cores")
    if share > 1 or (isinstance(cores, int) and abs(share - min(1.0, cores / on_host)) > 1e-12):
        fail(f"compute_rates_probe: cpu_share {share} is not min(1, cores / ranks_on_host)")
    route = d.get("mpi_allreduce")
    if route not in ("ring", "auto", "mpi", "none (no MPI transport)"):
        fail(f"'mpi_allreduce' should be ring, auto or mpi (THINWIRE_MPI_ALLREDUCE), got {route!r}")
    if "--json" not in d["command"]:
        fail("'command' should be the command line that wrote the file")
    if d["tensors"] != tensors:
        fail(f"'tensors' is {d['tensors']!r}, expected {tensors!r}")
    if tensors == "host" and d["device"] != "host":
        fail(f"a host run should say 'device': 'host', got {d['device']!r}")
    if tensors == "device":
        if d["device"] == "host":
            fail("a device run should name its device")
        if "--device" not in d["command"]:
            fail("a device run's command should have --device")
        if not isinstance(d.get("device_index"), int) or d["device_index"] < 0:
            fail(f"'device_index' should be a device index, got {d.get('device_index')!r}")
        if not isinstance(d.get("device_transport"), str) or not d["device_transport"]:
            fail(f"'device_transport' should name the transport, got {d.get('device_transport')!r}")
        if not isinstance(d.get("device_emulated"), bool):
            fail(f"'device_emulated' should be a bool, got {d.get('device_emulated')!r}")
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
        number(r, "bytes_sent", where, positive=ranks > 1)  # one rank sends nothing
        ratio = number(r, "compression_ratio", where, positive=True)
        err = number(r, "rel_err", where)
        number(r, "algbw_GBps", where, positive=True)
        number(r, "busbw_GBps", where, positive=True)
        if r.get("tensors") != tensors:
            fail(f"{where}: 'tensors' is {r.get('tensors')!r}, expected {tensors!r}")
        if not r["identical"]:
            fail(f"{where}: ranks ended with different bits")
        if r["method"] == "none" and (err > 1e-6 or abs(ratio - 1) > 0.1):
            fail(f"{where}: dense should be exact with ratio ~1, got rel_err {err} ratio {ratio}")
        if r["method"] == "onebit" and ranks > 1 and ratio < 5:
            fail(f"{where}: onebit should compress, ratio {ratio}")
        if r["method"].startswith("auto") and "layer_specs" not in r:
            fail(f"{where}: auto results should say what auto chose")
        number(r, "setup_s", where)
        # A compressed method's timed call follows an untimed call of its own; thinwire none,
        # a dense candidate for the baseline, follows the candidate before it.
        if timed_after_wanted:
            after = "other candidate" if r["method"] == "none" else "own call"
            if r.get("timed_after") != after:
                fail(f"{where}: 'timed_after' is {r.get('timed_after')!r}, expected {after!r}")
            # Calls shorter than min_timed_s are timed in bursts: enough calls back to back to
            # last that long by the fastest untimed call, at most 16 and 256 MiB of copies;
            # dense candidates and device tensors one at a time.
            calls = r.get("calls_per_timing")
            untimed = number(r, "untimed_call_s", where)
            if after == "own call" and tensors == "host" and min_timed > 0 and untimed > 0:
                cap = max(1, min(16, (256 << 20) // r["size_bytes"]))
                want = min(max(1, math.ceil(min_timed / untimed)), cap)
            else:
                want = 1
            if calls != want:
                fail(f"{where}: calls_per_timing {calls!r}, expected {want} (untimed call "
                     f"{untimed} s, min_timed_s {min_timed})")
        rates = r.get("compute_rates")
        if tensors == "device":
            if rates is not None:
                fail(f"{where}: a device run should carry no host 'compute_rates'")
            seen.add((r["method"], r["size_bytes"]))
            continue
        if not isinstance(rates, dict):
            fail(f"{where}: no 'compute_rates' object")
        family = r["method"].split(":")[0].split(",")[0]
        own = {"onebit": ["onebit_encode", "onebit_decode"], "qsgd": ["qsgd_encode", "qsgd_decode"],
               "topk": ["topk_encode", "topk_decode_entry"],
               "powersgd": ["powersgd_encode", "powersgd_decode"]}.get(family, [])
        for name in ["copy", "add", "norm", "check"] + own:
            number(rates, name, f"{where}: compute_rates", positive=True)
        seen.add((r["method"], r["size_bytes"]))
    want = {(m, s) for m in methods for s in sizes}
    if seen != want:
        fail(f"results cover {sorted(seen)}, expected {sorted(want)}")
    names = {b["name"] for b in d["baselines"]}
    if tensors == "host":
        if "MPI_Allreduce(default)" not in names:
            fail(f"baselines {names} should include MPI_Allreduce(default)")
    else:
        if any(n.startswith("MPI_Allreduce") for n in names):
            fail(f"baselines {names}: MPI_Allreduce on host memory is no device baseline")
        device_names = names & set(DEVICE_BASELINES)
        if len(device_names) != 1:
            fail(f"baselines {names} should include one of {DEVICE_BASELINES}")
        if device_baseline is not None and device_names != {device_baseline}:
            fail(f"baselines {names}: expected {device_baseline!r}")
        if not names <= set(DEVICE_BASELINES) | {"thinwire none"}:
            fail(f"baselines {names}: unexpected dense candidates for device tensors")
    # Every dense candidate: the exact average (up to f32 rounding), the same bits everywhere
    # (2 ranks: a + b = b + a, whatever the algorithm).
    for b in d["baselines"]:
        where = f"baseline {b.get('name')}@{b.get('size_bytes')}"
        number(b, "time_median_s", where, positive=True)
        err = number(b, "rel_err", where)
        if err > 1e-6:
            fail(f"{where}: a dense allreduce should be exact, rel_err {err}")
        if not isinstance(b.get("identical"), bool):
            fail(f"{where}: 'identical' should be bool, got {b.get('identical')!r}")
        if ranks <= 2 and not b["identical"]:
            fail(f"{where}: ranks ended with different bits")
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

    if model_path == "-":
        print(f"PASS: {len(d['results'])} results, {len(d['baselines'])} baselines "
              f"({tensors} tensors on {d['device']})")
        return
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
    print(f"PASS: {len(d['results'])} results, {len(d['baselines'])} baselines "
          f"({tensors} tensors on {d['device']}), {len(preds)} predictions")


main()
