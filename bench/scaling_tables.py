#!/usr/bin/env python3
"""Markdown tables for README "Scaling" from the JSON of thinwire-bench-allreduce and
thinwire-cost-model --validate, so that the README quotes the files verbatim.

    python3 bench/scaling_tables.py bench/results/scaling/goal_4x200mbit_64M.json ...
    python3 bench/scaling_tables.py --validation bench/results/scaling/model_validation.json
    python3 bench/scaling_tables.py --validation-detail bench/results/scaling/model_validation.json
    python3 bench/scaling_tables.py --validation-pooled RUN1/model_validation.json RUN2/...
    python3 bench/scaling_tables.py --measured-spread RUN1/model_validation.json RUN2/...
    python3 bench/scaling_tables.py --goal-runs bench/results/scaling/goal_4x200mbit_64M*.json
"""
import argparse
import json
import statistics


def mb(b):
    return f"{b / 1e6:.2f} MB" if b >= 1e6 else f"{b / 1e3:.1f} kB"


def bench_table(path):
    d = json.load(open(path))
    rate = d["link"]["rate"]
    load = d.get("load_average_at_start", ["?"])[0]
    print(f"\n`{path}` — {d['ranks']} ranks, link {rate}"
          f"{' (emulated)' if d['link']['emulated'] else ''}, layers '{d['layers']}', "
          f"{d['iters']} timed calls, commit {d['commit'][:7]}, load average at start {load}\n")
    sizes = sorted({r["size_bytes"] for r in d["results"]})
    for s in sizes:
        bases = [b for b in d["baselines"] if b["size_bytes"] == s]
        print("| method | ms per call | speedup | sent per rank | ratio | rel_err |")
        print("|---|---|---|---|---|---|")
        for b in bases:
            mark = " **(baseline)**" if b["chosen"] else ""
            print(f"| dense: {b['name']}{mark} | {1e3 * b['time_median_s']:.1f} | "
                  f"{b['time_median_s'] and min(x['time_median_s'] for x in bases) / b['time_median_s']:.2f}x"
                  " | | | |")
        for r in d["results"]:
            if r["size_bytes"] != s or (r["method"] == "none"):
                continue
            chose = ""
            if "layer_specs" in r:
                chose = " → " + ", ".join(f"{k}" + (f" ×{v}" if v > 1 else "")
                                          for k, v in r["layer_specs"].items())
            print(f"| `{r['method']}`{chose} | {1e3 * r['time_median_s']:.1f} | "
                  f"**{r['speedup']:.1f}x** | {mb(r['bytes_sent'])} | {r['compression_ratio']:.0f}x | "
                  f"{r['rel_err']:.3f} |")
        print()


def validation_table(path):
    d = json.load(open(path))
    v = d["validation"]
    groups = {}
    for r in v:
        groups.setdefault((r["ranks"], r["rate"], r["layers"]), []).append(r)
    print("| ranks | rate | layers | results | largest \\|error\\| | mean \\|error\\| |")
    print("|---|---|---|---|---|---|")
    for (p, rate, layers), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], float(kv[0][1][:-4]), kv[0][2])):
        errs = [abs(r["error"]) for r in rs]
        print(f"| {p} | {rate} | {layers} | {len(rs)} | {100 * max(errs):.0f}% | "
              f"{100 * sum(errs) / len(errs):.0f}% |")
    print(f"\nlargest |error| over all {len(v)}: {100 * d['largest_abs_error']:.0f}%")


def config_key(r):
    """A validation result's configuration, sorting by ranks, rate, single before mix, size."""
    return (r["ranks"], float(r["rate"][:-4]), r["rate"], r["layers"] != "single",
            r["layers"], r["size_bytes"])


def config_label(layers, size):
    return (f"{size / (1 << 20):.3g} MiB" +
            ("" if layers == "single" else f", layers '{layers}'"))


def by_core_share(entries):
    """The within-20% count split by whether each emulated host had a core of its own: where
    hosts share the cores (cpu_share < 1) a step's compute also depends on how the scheduler
    interleaves them, which the model does not describe."""
    parts = []
    for label, own in (("a core per host", True), ("hosts sharing cores", False)):
        rs = [r for r in entries if (r.get("cpu_share", 1.0) >= 1.0) == own]
        if rs:
            parts.append(f"{label}: {sum(1 for r in rs if abs(r['error']) <= 0.2)} of {len(rs)}")
    return "; ".join(parts)


def validation_detail(path):
    """One row per configuration (ranks, rate, gradient), the error per method."""
    d = json.load(open(path))
    v = d["validation"]
    methods = list(dict.fromkeys(r["method"] for r in v))
    rows = {}
    for r in v:
        rows.setdefault(config_key(r), {})[r["method"]] = r
    print("| ranks | rate | gradient | " + " | ".join(f"`{m}`" for m in methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    for key in sorted(rows):
        p, _, rate, _, layers, size = key
        cells = []
        for m in methods:
            r = rows[key].get(m)
            cells.append("" if r is None else
                         f"{1e3 * r['measured_s']:.0f} / {1e3 * r['predicted_s']:.0f} "
                         f"({100 * r['error']:+.0f}%)")
        print(f"| {p} | {rate} | {config_label(layers, size)} | " + " | ".join(cells) + " |")
    errs = [abs(r["error"]) for r in v]
    within = sum(1 for e in errs if e <= 0.2)
    print(f"\nmeasured / predicted ms (error); {within} of {len(errs)} within ±20%, "
          f"largest |error| {100 * max(errs):.0f}%, mean {100 * sum(errs) / len(errs):.0f}% "
          f"({by_core_share(v)})")


def validation_pooled(paths):
    """Several validation runs of the same configurations: per configuration, the median
    error over the runs and its range. One run's error mixes the model's with the VM's
    run-to-run spread; the median over runs keeps what is systematic."""
    runs = [json.load(open(p))["validation"] for p in paths]
    methods = list(dict.fromkeys(r["method"] for v in runs for r in v))
    rows, share = {}, {}
    for v in runs:
        for r in v:
            rows.setdefault(config_key(r), {}).setdefault(r["method"], []).append(r["error"])
            share[config_key(r)] = r.get("cpu_share", 1.0)
    print("| ranks | rate | gradient | " + " | ".join(f"`{m}`" for m in methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    medians = []
    for key in sorted(rows):
        p, _, rate, _, layers, size = key
        cells = []
        for m in methods:
            errs = rows[key].get(m)
            if not errs:
                cells.append("")
                continue
            med = statistics.median(errs)
            medians.append({"error": med, "cpu_share": share[key]})
            cell = f"{100 * med:+.0f}% ({100 * min(errs):+.0f} … {100 * max(errs):+.0f})"
            cells.append(f"**{cell}**" if abs(med) > 0.2 else cell)
        print(f"| {p} | {rate} | {config_label(layers, size)} | " + " | ".join(cells) + " |")
    within = sum(1 for m in medians if abs(m["error"]) <= 0.2)
    counts = [sum(1 for r in v if abs(r["error"]) <= 0.2) for v in runs]
    print(f"\nmedian error over {len(runs)} runs (smallest … largest); {within} of {len(medians)} "
          f"configurations within ±20% in the median ({by_core_share(medians)}), largest "
          f"|median| {100 * max(abs(m['error']) for m in medians):.0f}%; single runs: "
          + ", ".join(f"{c} of {len(v)} ({by_core_share(v)})" for c, v in zip(counts, runs)))


def measured_spread(paths, limit=0.2):
    """Several runs of the same programs on the same machine: per configuration and method, the
    slowest run's measured time over the fastest's. Above (1 + limit) / (1 - limit), 1.5 for
    ±20 %, no single time is within the limit of every run (0.8 × the slowest is more than
    1.2 × the fastest), so a model can meet the limit in every run only if its inputs, which
    each run measures for itself, move with that run's time."""
    runs = [json.load(open(p))["validation"] for p in paths]
    times, share = {}, {}
    for v in runs:
        for r in v:
            key = config_key(r) + (r["method"],)
            times.setdefault(key, []).append(r["measured_s"])
            share[key] = r.get("cpu_share", 1.0)
    bound = (1 + limit) / (1 - limit)
    spread = {k: max(t) / min(t) for k, t in times.items() if len(t) == len(runs)}
    print(f"| hosts' cores | configurations | median slowest / fastest | above 1.2 | "
          f"above {bound:.3g} | largest |")
    print("|---|---|---|---|---|---|")
    for label, own in (("a core per host", True), ("sharing cores", False)):
        ks = [k for k in spread if (share[k] >= 1.0) == own]
        if not ks:
            continue
        xs = sorted(spread[k] for k in ks)
        print(f"| {label} | {len(xs)} | {statistics.median(xs):.2f} | "
              f"{sum(1 for x in xs if x > 1.2)} | {sum(1 for x in xs if x > bound)} | "
              f"{xs[-1]:.2f} |")
    wide = sorted((k for k in spread if spread[k] > bound), key=lambda k: -spread[k])
    print(f"\nmeasured time of the same configuration over {len(runs)} runs; above {bound:.3g} no "
          f"time is within ±{100 * limit:.0f}% of every run" + (":" if wide else ""))
    for k in wide:
        p, _, rate, _, layers, size, method = k
        print(f"- {p} hosts, {rate}, {config_label(layers, size)}, `{method}`: "
              + ", ".join(f"{1e3 * t:.1f}" for t in times[k]) + f" ms ({spread[k]:.2f}×)")


def model_table(path, ranks=(4, 64, 1024), gbps=(0.2, 1, 10, 100)):
    """Predicted speedup over dense for a few rank counts and link rates."""
    d = json.load(open(path))
    preds = d["predictions"]
    methods = [m for m in dict.fromkeys(p["method"] for p in preds) if m != "none"]
    print("| Gbit/s | ranks | dense ms | " + " | ".join(f"`{m}`" for m in methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    for g in gbps:
        for n in ranks:
            row = {p["method"]: p for p in preds if p["gbps"] == g and p["ranks"] == n}
            if not row:
                continue
            cells = []
            for m in methods:
                p = row[m]
                cell = f"{p['speedup']:.2f}x"
                if "auto_chose" in p:
                    cell += " (" + p["auto_chose"] + ")"
                cells.append(cell)
            print(f"| {g:g} | {n} | {1e3 * row['none']['time_s']:.0f} | " + " | ".join(cells) + " |")


def auto_table(paths):
    """auto against the dense baseline of each run and size (one row per run and size)."""
    print("| link | size | dense baseline | `auto` | `auto:topk` | `auto:powersgd` |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        d = json.load(open(path))
        link = (("emulated, unshaped" if d["link"]["rate"] == "none" else d["link"]["rate"])
                if d["link"]["emulated"] else "shared memory")
        for s in sorted({r["size_bytes"] for r in d["results"]}):
            rs = {r["method"]: r for r in d["results"] if r["size_bytes"] == s}
            base = next(iter(rs.values()))
            cells = []
            for m in ("auto", "auto:topk", "auto:powersgd"):
                r = rs.get(m)
                if r is None:
                    cells.append("")
                    continue
                chose = ", ".join(f"{k}" + (f" ×{v}" if v > 1 else "")
                                  for k, v in r["layer_specs"].items())
                cells.append(f"**{r['speedup']:.2f}x** ({1e3 * r['time_median_s']:.1f} ms, {chose})")
            print(f"| {d['ranks']} ranks, {link} | {s / (1 << 20):g} MiB | "
                  f"{1e3 * base['baseline_time_median_s']:.1f} ms ({base['baseline']}) | "
                  + " | ".join(cells) + " |")


def goal_runs(paths):
    """One row per run of the issue's goal configuration (4 hosts, 200 Mbit/s, 64 MiB): the
    same-run dense baseline and each method's speedup over it; `auto` on unshaped links from
    the goal_4xunshaped file of the same suffix, where there is one."""
    methods = ("onebit", "topk:0.01", "qsgd:4", "powersgd:4", "auto")
    print("| file | commit | date | CPU | dense baseline | " +
          " | ".join(f"`{m}`" for m in methods) + " | `auto`, unshaped links |")
    print("|---|---|---|---|---|" + "---|" * len(methods) + "---|")
    for path in paths:
        d = json.load(open(path))
        rs = {r["method"]: r for r in d["results"] if r["size_bytes"] == 64 << 20}
        if not rs:
            raise SystemExit(f"{path}: no 64 MiB result (not a run of the goal configuration)")
        base = next(iter(rs.values()))
        cells = [f"{rs[m]['speedup']:.1f}x" if m in rs else "" for m in methods]
        unshaped = ""
        try:
            u = json.load(open(path.replace("goal_4x200mbit_64M", "goal_4xunshaped_64M")))
            a = [r for r in u["results"] if r["method"] == "auto"]
            if a:
                unshaped = f"{a[0]['speedup']:.2f}x ({a[0]['baseline']})"
        except OSError:
            pass
        name = path.split("bench/results/scaling/")[-1]
        print(f"| `{name}` | {d['commit'][:7]} | {d.get('date_utc', '')[:10]} | {d.get('cpu', '')} | "
              f"{1e3 * base['baseline_time_median_s']:.0f} ms ({base['baseline']}) | " +
              " | ".join(cells) + f" | {unshaped} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", nargs="*")
    ap.add_argument("--validation")
    ap.add_argument("--validation-detail")
    ap.add_argument("--validation-pooled", nargs="+")
    ap.add_argument("--measured-spread", nargs="+")
    ap.add_argument("--model")
    ap.add_argument("--model-gbps", default="0.2,1,10,100",
                    help="link rates (Gbit/s) of --model's table, comma-separated")
    ap.add_argument("--auto", nargs="+")
    ap.add_argument("--goal-runs", nargs="+")
    a = ap.parse_args()
    for p in a.bench:
        bench_table(p)
    if a.validation:
        validation_table(a.validation)
    if a.validation_detail:
        validation_detail(a.validation_detail)
    if a.validation_pooled:
        validation_pooled(a.validation_pooled)
    if a.measured_spread:
        measured_spread(a.measured_spread)
    if a.model:
        model_table(a.model, gbps=tuple(float(g) for g in a.model_gbps.split(",")))
    if a.auto:
        auto_table(a.auto)
    if a.goal_runs:
        goal_runs(a.goal_runs)


if __name__ == "__main__":
    main()
