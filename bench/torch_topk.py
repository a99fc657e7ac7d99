#!/usr/bin/env python3
"""thinwire's exact top-k encode against torch.topk(x.abs(), k) on the same CUDA tensor, in one
process, timed with torch.cuda.Event.

    PYTHONPATH=build/python python3 bench/torch_topk.py [--n 64M] [--density 0.01] \
        [--iters 20] [--warmup 3] [--json bench/results/topk_vs_torch_h100.json]

x = torch.randn(n) on the device (seeded generator). Each timed run is preceded (untimed) by
writing a buffer larger than the L2, so that both start from DRAM; thinwire's and torch's runs
alternate. thinwire's encode is the whole payload (selection, packing of k ascending indices
and k values); torch's time includes x.abs(). The selections are checked: thinwire's values
are x at its indices, and the multiset of their magnitudes equals torch's k values (ties at the
threshold may pick different indices; the JSON counts how many differ).

The kernels are reached through thinwire._thinwire_bench, a module built with the CUDA kernels
(cmake target _thinwire_bench, in <build>/python/thinwire/). Without torch or without a CUDA
device it prints why, writes {"skipped": true, "reason": ...} to --json and exits 0. Exit
status 1: the module is missing or failed, or the selections disagree.
"""

import argparse
import datetime
import faulthandler
import importlib.machinery
import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL = 0.33  # thinwire's time / torch.topk's time, at most
WIRE_MAGIC = 0x31525754  # "TWR1"


def parse_count(s):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.strip()
    if s and s[-1].lower() in mult:
        return int(s[:-1]) * mult[s[-1].lower()]
    return int(s)


def git(*args):
    try:
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def provenance():
    """The same fields as bench/bench_common.cpp's provenance()."""
    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "command": shlex.join([os.path.basename(sys.executable)] + sys.argv),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_json(path, doc):
    if path:
        with open(path, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"wrote {path}")


def load_bench_module(build_dir):
    """thinwire._thinwire_bench from the installed/importable package, else from a build tree,
    loaded on its own (the package's __init__ needs _thinwire, which a kernels-only build may
    lack). Returns (module, where) or (None, why)."""
    tried = []
    dirs = []
    if build_dir:
        dirs.append(os.path.join(build_dir, "python", "thinwire"))
    spec = importlib.util.find_spec("thinwire")
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(spec.submodule_search_locations)
    for d in (os.environ.get("THINWIRE_BUILD_DIR"), os.path.join(REPO, "build")):
        if d:
            dirs.append(os.path.join(d, "python", "thinwire"))
    for d in dirs:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(d, "_thinwire_bench" + suffix)
            if not os.path.exists(path):
                continue
            try:
                loader = importlib.machinery.ExtensionFileLoader("_thinwire_bench", path)
                mspec = importlib.util.spec_from_file_location("_thinwire_bench", path,
                                                               loader=loader)
                mod = importlib.util.module_from_spec(mspec)
                loader.exec_module(mod)
                return mod, path
            except ImportError as e:
                tried.append(f"{path}: {e}")
        tried.append(f"{d}: no _thinwire_bench module")
    return None, "; ".join(tried)


def median(xs):
    s = sorted(xs)
    m = len(s)
    return s[m // 2] if m % 2 else 0.5 * (s[m // 2 - 1] + s[m // 2])


def summary(ms):
    return {"median_ms": median(ms), "min_ms": min(ms), "max_ms": max(ms), "runs_ms": ms}


def check_selection(torch, x, out, k, header_bytes):
    """thinwire's top-k payload `out` (uint8 tensor) for x against torch.topk(x.abs(), k)."""
    n = x.numel()
    hb = header_bytes
    magic = int.from_bytes(bytes(out[:4].cpu().tolist()), "little")
    idx = out[hb:hb + 4 * k].view(torch.int32).long() & 0xFFFFFFFF
    vals = out[hb + 4 * k:hb + 8 * k].view(torch.float32)
    tv, ti = torch.topk(x.abs(), k)
    in_range = bool((idx < n).all())
    increasing = bool((idx[1:] > idx[:-1]).all()) if k > 1 else True
    values_ok = in_range and bool(torch.equal(vals, x[idx.clamp(max=n - 1)]))
    magnitudes_ok = bool(torch.equal(vals.abs().sort(descending=True).values, tv))
    shared = int(torch.isin(idx, ti).sum()) if in_range else 0
    ties = int((x.abs() == tv[-1]).sum())
    return {"agree": magic == WIRE_MAGIC and in_range and increasing and values_ok
            and magnitudes_ok,
            "header_magic_ok": magic == WIRE_MAGIC,
            "indices_increasing_below_n": in_range and increasing,
            "values_are_x_at_indices": values_ok,
            "magnitudes_equal_torch_topk": magnitudes_ok,
            "indices_shared_with_torch": shared,
            "indices_differing_from_torch": k - shared,
            "elements_tied_at_threshold": ties}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="64M", help="floats (K, M, G: binary multiples); default 64M")
    ap.add_argument("--density", type=float, default=0.01, help="k = density * n (default 0.01)")
    ap.add_argument("--iters", type=int, default=20, help="timed runs each (at least 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--json", default="", help="write the results to FILE")
    ap.add_argument("--build-dir", default="",
                    help="thinwire build tree holding python/thinwire/_thinwire_bench*.so "
                         "(default: the importable thinwire package, $THINWIRE_BUILD_DIR, "
                         "<repo>/build)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds for the whole measurement before giving up (exit 3)")
    ap.add_argument("--no-flush", action="store_true", help="do not flush the L2 before runs")
    args = ap.parse_args()
    try:
        n = parse_count(args.n)
    except ValueError:
        ap.error(f"--n: not a count: {args.n!r}")
    if not 1 <= n < 1 << 32:
        ap.error("--n must be in [1, 2^32)")
    if not 0 < args.density <= 1:
        ap.error("--density must be in (0, 1]")
    if args.iters < 20:
        print(f"--iters {args.iters} raised to 20 (the medians need at least 20 runs)")
        args.iters = 20
    args.warmup = max(args.warmup, 0)

    doc = provenance()
    doc.update({"n": n, "iters": args.iters, "density": args.density})

    def skip(reason):
        print(f"torch_topk.py: skipped: {reason}")
        doc.update({"skipped": True, "reason": reason})
        write_json(args.json, doc)
        return 0

    try:
        import torch
    except ImportError as e:
        return skip(f"PyTorch is not available ({e})")
    doc["torch"] = torch.__version__
    if not torch.cuda.is_available():
        return skip(f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                    f"CUDA {torch.version.cuda})")
    if not 0 <= args.device < torch.cuda.device_count():
        return skip(f"--device {args.device} does not exist "
                    f"({torch.cuda.device_count()} device(s))")

    tw, where = load_bench_module(args.build_dir)
    if tw is None:
        print("torch_topk.py: error: thinwire's benchmark module _thinwire_bench was not found "
              "(it is built with the CUDA kernels: ninja -C build _thinwire_bench, then "
              f"--build-dir build or PYTHONPATH=build/python). Tried: {where}", file=sys.stderr)
        return 1
    count, why = tw.device_count()
    if count <= 0 or tw.emulated():
        print(f"torch_topk.py: error: torch sees a GPU but thinwire's kernels do not: "
              f"{why or 'CPU emulation'}", file=sys.stderr)
        return 1

    dev = torch.device("cuda", args.device)
    torch.cuda.set_device(dev)
    doc.update({"skipped": False, "device": torch.cuda.get_device_name(dev),
                "device_index": args.device, "torch_cuda": torch.version.cuda,
                "thinwire_module": where})
    k = tw.topk_count(args.density, n)
    doc["k"] = k
    print(f"{doc['device']}: n = {n}, k = {k}, {args.iters} runs after {args.warmup} warm-up, "
          f"torch {torch.__version__}")

    # A hung kernel ends the program instead of blocking it.
    faulthandler.dump_traceback_later(args.timeout, exit=True)
    try:
        gen = torch.Generator(device=dev)
        gen.manual_seed(args.seed)
        x = torch.randn(n, device=dev, dtype=torch.float32, generator=gen)
        ws_bytes = tw.topk_workspace_bytes(n, k)
        workspace = torch.empty(max(ws_bytes, 16), dtype=torch.uint8, device=dev)
        payload_bytes = tw.topk_payload_bytes(k)
        out = torch.zeros(payload_bytes, dtype=torch.uint8, device=dev)
        l2 = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or (64 << 20)
        flush = torch.empty(max(2 * l2, 64 << 20), dtype=torch.uint8, device=dev)
        stream = torch.cuda.current_stream(dev)

        def thinwire_topk():
            tw.topk_encode(x.data_ptr(), n, k, out.data_ptr(), workspace.data_ptr(),
                           workspace.numel(), stream.cuda_stream, args.device)

        def torch_topk():
            return torch.topk(x.abs(), k)

        def torch_topk_unsorted():
            return torch.topk(x.abs(), k, sorted=False)

        cases = {"thinwire_topk_exact_encode": thinwire_topk,
                 "torch_topk_abs": torch_topk,
                 "torch_topk_abs_unsorted": torch_topk_unsorted}
        for _ in range(args.warmup):
            for fn in cases.values():
                fn()
        torch.cuda.synchronize(dev)
        events = {name: [] for name in cases}
        for _ in range(args.iters):
            for name, fn in cases.items():  # alternating, so that clock changes hit all alike
                if not args.no_flush:
                    flush.zero_()
                start = torch.cuda.Event(enable_timing=True)
                stop = torch.cuda.Event(enable_timing=True)
                start.record(stream)
                fn()
                stop.record(stream)
                events[name].append((start, stop))
        torch.cuda.synchronize(dev)
        results = {name: summary([s.elapsed_time(e) for s, e in evs])
                   for name, evs in events.items()}

        # The payload of the last run against torch.topk of the same x.
        thinwire_topk()
        check = check_selection(torch, x, out, k, tw.header_bytes)
        torch.cuda.synchronize(dev)
    finally:
        faulthandler.cancel_dump_traceback_later()

    agree = check["agree"]
    tw_ms = results["thinwire_topk_exact_encode"]["median_ms"]
    th_ms = results["torch_topk_abs"]["median_ms"]
    ratio = tw_ms / th_ms
    ratio_unsorted = tw_ms / results["torch_topk_abs_unsorted"]["median_ms"]
    doc.update({
        "timing": "torch.cuda.Event around each run on the current stream; L2 flushed before "
                  "each run (untimed); the three cases alternate",
        "results": [{"name": name, **r} for name, r in results.items()],
        "ratio_thinwire_vs_torch_topk": ratio,
        "ratio_thinwire_vs_torch_topk_unsorted": ratio_unsorted,
        "check": check,
        "goals": {"topk_exact_time_vs_torch_topk": {
            "goal": GOAL, "direction": "<=", "measured": ratio, "pass": ratio <= GOAL,
            "case": "thinwire_topk_exact_encode / torch_topk_abs (median times)"}},
    })

    print(f"\n{'case':32s} {'median ms':>10s} {'min ms':>10s}")
    for name, r in results.items():
        print(f"{name:32s} {r['median_ms']:10.3f} {r['min_ms']:10.3f}")
    print(f"\nselection check: {'OK' if agree else 'MISMATCH'} "
          f"({check['indices_differing_from_torch']} of {k} indices differ from torch's; "
          f"{check['elements_tied_at_threshold']} element(s) tied at the threshold)")
    if not agree:
        print(f"  details: {json.dumps(check)}")
    print(f"goal thinwire / torch.topk(x.abs(), k) = {ratio:.3f} (<= {GOAL}): "
          f"{'PASS' if ratio <= GOAL else 'FAIL'}   (vs sorted=False: {ratio_unsorted:.3f})")
    write_json(args.json, doc)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
