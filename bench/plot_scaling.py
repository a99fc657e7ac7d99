#!/usr/bin/env python3
"""Plots of thinwire's scaling results (Debian python3-matplotlib), from the JSON that
thinwire-bench-allreduce and thinwire-cost-model write:

  time vs size       --sizes BENCH.json          time per call vs gradient size, per method
  speedup vs rate    --rates BENCH.json...       speedup over the dense baseline vs link rate
                     [--rate-size BYTES]         (one benchmark run per rate, e.g. emulated)
  speedup vs ranks   --model MODEL.json          predicted speedup vs ranks, per link rate
                     [--max-ranks 1024]
  model validation   --validation VALID.json     predicted vs measured time

  python3 bench/plot_scaling.py --sizes a.json --rates r100.json r200.json --model m.json \\
      --out-dir bench/results
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = "osD^v<>ph*"


def load(path):
    with open(path) as f:
        return json.load(f)


def method_order(results):
    seen = []
    for r in results:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


def rate_mbit(rate):
    """'200mbit' -> 200.0; 'not shaped' / 'none' -> None."""
    units = {"kbit": 1e-3, "mbit": 1.0, "gbit": 1e3, "bit": 1e-6}
    for u, scale in units.items():
        if rate.endswith(u):
            try:
                return float(rate[: -len(u)]) * scale
            except ValueError:
                return None
    return None


def size_label(b):
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if b >= div:
            return f"{b / div:g}{unit}"
    return str(b)


def plot_sizes(path, out):
    d = load(path)
    res = d["results"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(method_order(res)):
        pts = sorted((r["size_bytes"], r["time_median_s"]) for r in res if r["method"] == m)
        ax.plot([p[0] for p in pts], [1e3 * p[1] for p in pts], marker=MARKERS[i % 10], label=m)
    base = {}
    for r in res:
        base[r["size_bytes"]] = (r["baseline_time_median_s"], r["baseline"])
    xs = sorted(base)
    ax.plot(xs, [1e3 * base[x][0] for x in xs], "k--", lw=1.5,
            label="dense baseline (" + ", ".join(sorted({base[x][1] for x in xs})) + ")")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([size_label(x) for x in xs])
    ax.set_xlabel("gradient size (bytes of f32)")
    ax.set_ylabel("time per allreduce call (ms, median)")
    ax.set_title(f"{d['ranks']} ranks, link {d['link']['rate']}"
                 f"{' (emulated)' if d['link']['emulated'] else ''}, layers '{d['layers']}'")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


def plot_rates(paths, size, out):
    runs = [load(p) for p in paths]
    # x positions: shaped rates in order, the unshaped run(s) last.
    labelled = []
    for d in runs:
        mbit = rate_mbit(d["link"]["rate"])
        labelled.append((mbit if mbit is not None else float("inf"), d))
    labelled.sort(key=lambda t: t[0])
    xs = list(range(len(labelled)))
    labels = [f"{m:g} Mbit/s" if m != float("inf") else "unshaped" for m, _ in labelled]
    methods = []
    for _, d in labelled:
        for m in method_order(d["results"]):
            if m not in methods:
                methods.append(m)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ranks = sorted({d["ranks"] for _, d in labelled})
    for i, m in enumerate(methods):
        ys = []
        for _, d in labelled:
            rs = [r for r in d["results"] if r["method"] == m and (size is None or r["size_bytes"] == size)]
            ys.append(rs[-1]["speedup"] if rs else float("nan"))
        ax.plot(xs, ys, marker=MARKERS[i % 10], label=m)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels)
    ax.set_yscale("log")
    ax.set_xlabel("link rate per host (tc tbf)")
    ax.set_ylabel("speedup over the dense baseline")
    sizes = sorted({r["size_bytes"] for _, d in labelled for r in d["results"]
                    if size is None or r["size_bytes"] == size})
    ax.set_title(f"{'/'.join(map(str, ranks))} ranks, {', '.join(size_label(s) for s in sizes)} "
                 "f32, measured")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


def plot_model(path, max_ranks, out):
    d = load(path)
    preds = [p for p in d["predictions"] if p["ranks"] <= max_ranks]
    rates = sorted({p["gbps"] for p in preds})
    methods = [m for m in dict.fromkeys(p["method"] for p in preds) if m != "none"]
    cols = min(4, len(rates))
    rows = (len(rates) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False,
                             sharey=True)
    for k, g in enumerate(rates):
        ax = axes[k // cols][k % cols]
        for i, m in enumerate(methods):
            pts = sorted((p["ranks"], p["speedup"]) for p in preds
                         if p["gbps"] == g and p["method"] == m)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[i % 10], ms=3,
                    label=m)
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{g:g} Gbit/s", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel("predicted speedup vs dense")
        if k // cols == rows - 1:
            ax.set_xlabel("ranks")
    for k in range(len(rates), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    n = sum(1 for _ in d.get("layers", []))
    fig.suptitle(f"cost model: {n} layer(s), latency {d['params']['latency_s'] * 1e6:g} us, "
                 f"codec rates from {os.path.basename(d['codec_json'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


def plot_validation(path, out):
    d = load(path)
    v = d["validation"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    methods = list(dict.fromkeys(r["method"] for r in v))
    for i, m in enumerate(methods):
        pts = [r for r in v if r["method"] == m]
        ax.scatter([1e3 * r["measured_s"] for r in pts], [1e3 * r["predicted_s"] for r in pts],
                   marker=MARKERS[i % 10], label=m)
    lo = min(min(r["measured_s"], r["predicted_s"]) for r in v) * 1e3 * 0.7
    hi = max(max(r["measured_s"], r["predicted_s"]) for r in v) * 1e3 * 1.4
    ax.plot([lo, hi], [lo, hi], "k-", lw=1)
    ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="g", alpha=0.1,
                    label="±20%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured ms (emulated cluster)")
    ax.set_ylabel("predicted ms (cost model)")
    ax.set_title(f"cost model vs emulated cluster (max |error| "
                 f"{100 * d['largest_abs_error']:.0f}%)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", help="benchmark JSON with several sizes")
    ap.add_argument("--rates", nargs="+", help="benchmark JSON files, one per link rate")
    ap.add_argument("--rate-size", type=int, help="size (bytes) to plot from --rates files")
    ap.add_argument("--model", help="thinwire-cost-model JSON (a sweep)")
    ap.add_argument("--max-ranks", type=int, default=1024)
    ap.add_argument("--validation", help="thinwire-cost-model --validate JSON")
    ap.add_argument("--out-dir", default=".")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    if a.sizes:
        plot_sizes(a.sizes, os.path.join(a.out_dir, "time_vs_size.png"))
    if a.rates:
        plot_rates(a.rates, a.rate_size, os.path.join(a.out_dir, "speedup_vs_rate.png"))
    if a.model:
        plot_model(a.model, a.max_ranks, os.path.join(a.out_dir, "predicted_speedup_vs_ranks.png"))
    if a.validation:
        plot_validation(a.validation, os.path.join(a.out_dir, "model_validation.png"))
    if not (a.sizes or a.rates or a.model or a.validation):
        ap.error("nothing to plot: give --sizes, --rates, --model or --validation")


if __name__ == "__main__":
    main()
