#!/usr/bin/env python3
"""Fashion-MNIST under PyTorch DistributedDataParallel on the CPU (gloo), with the same model,
data, seed and steps for each gradient communication scheme:

  none                  DDP's own dense allreduce (no hook)
  torch:powersgd:R      torch's powerSGD_hook, rank R (PowerSGDState defaults otherwise,
                        start_powerSGD_iter=2: the smallest it accepts)
  thinwire:SPEC         thinwire's DDP hook with compression spec SPEC over MPI
  thinwire-gloo:SPEC    the same over the DDP process group (gloo) instead of MPI

The configurations train side by side on the same batches, one step of each in turn, so that
other load on the machine slows all of them alike. For each: test accuracy, training loss,
bytes sent per rank and step, ms per step, and whether every rank ended with identical
parameters. Launch with mpirun (torchrun is broken in Debian's
python3-torch); the ranks read RANK/WORLD_SIZE from Open MPI's variables:

  mpirun -np 2 python3 examples/pytorch/ddp_fashion_mnist.py \\
      --configs none,torch:powersgd:4,thinwire:powersgd:4,thinwire:topk:0.01,thinwire:onebit \\
      --json bench/results/pytorch_ddp.json

Bytes are counted as thinwire's Stats count them: a ring allreduce of B bytes sends
2(P-1)/P*B per rank. For "none" that is computed from the model's size; for torch's PowerSGD
every torch.distributed.all_reduce the hook makes is counted; for thinwire it is
Stats.bytes_sent (payloads plus its 256-byte per-step control exchange per bucket).
"""

import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def env_int(*names, default=None):
    for n in names:
        if os.environ.get(n, "").isdigit():
            return int(os.environ[n])
    return default


def load(kind):
    """Fashion-MNIST images as float32 (N, 784) scaled to [0, 1], labels as int64."""
    with gzip.open(f"{DATA}/{kind}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(f"{DATA}/{kind}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


def make_model(hidden, seed):
    torch.manual_seed(seed)
    sizes = [784] + hidden
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-1], 10))
    return torch.nn.Sequential(*layers)


class AllreduceCounter:
    """Counts the bytes of every torch.distributed.all_reduce (Python-level hooks call it) while
    `active` is set."""

    def __init__(self):
        self.bytes = 0
        self.active = False
        self._orig = dist.all_reduce

        def counting(tensor, *args, **kwargs):
            if self.active:
                self.bytes += tensor.numel() * tensor.element_size()
            return self._orig(tensor, *args, **kwargs)

        dist.all_reduce = counting


def ring_bytes(b, p):
    return 2 * (p - 1) * b / p


def same_on_all_ranks(t):
    ref = t.clone()
    dist.broadcast(ref, 0)
    ok = torch.tensor([int(torch.equal(ref, t))])
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


class Run:
    """One configuration: its own model (same initial weights), DDP wrapper, hook, optimizer."""

    def __init__(self, name, args):
        import thinwire.torch as twt
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

        self.name = name
        self.net = make_model(args.hidden, args.seed)
        self.model = torch.nn.parallel.DistributedDataParallel(self.net)
        self.hook_state = None
        self.counter = None
        if name.startswith("torch:powersgd:"):
            self.hook_state = psgd.PowerSGDState(
                process_group=None, matrix_approximation_rank=int(name.split(":")[2]),
                start_powerSGD_iter=2, random_seed=args.seed)
            self.model.register_comm_hook(self.hook_state, psgd.powerSGD_hook)
            self.counter = AllreduceCounter()
        elif name.startswith("thinwire:") or name.startswith("thinwire-gloo:"):
            kind, spec = name.split(":", 1)
            self.hook_state = twt.HookState(spec=spec, model=self.net,
                                            transport="mpi" if kind == "thinwire" else "process_group")
            self.model.register_comm_hook(self.hook_state, twt.comm_hook)
        elif name != "none":
            raise SystemExit(f"unknown config '{name}'")
        self.opt = torch.optim.SGD(self.net.parameters(), lr=args.lr, momentum=0.9)
        self.times, self.losses = [], []

    def step(self, x, y):
        if self.counter:
            self.counter.active = True
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        self.times.append(time.perf_counter() - t0)
        if self.counter:
            self.counter.active = False
        self.losses.append(loss.item())

    def result(self, args, test, world):
        params = torch.cat([p.detach().reshape(-1) for p in self.net.parameters()])
        n_params = params.numel()
        identical = same_on_all_ranks(params)
        with torch.no_grad():
            x_test, y_test = test
            accuracy = (self.net(x_test).argmax(1) == y_test).float().mean().item()
        # A step ends when its slowest rank's does: per step the maximum over ranks, then the
        # median over steps (robust to other load on the machine) and the mean.
        skip = min(args.warmup_steps, args.steps - 1)
        step_ms = torch.tensor(self.times[skip:], dtype=torch.float64) * 1000.0
        dist.all_reduce(step_ms, op=dist.ReduceOp.MAX)
        r = {
            "config": self.name,
            "test_accuracy": accuracy,
            "train_loss_last_100": float(np.mean(self.losses[-100:])),
            "ms_per_step": float(step_ms.median()),
            "ms_per_step_mean": float(step_ms.mean()),
            "identical_params_on_all_ranks": identical,
            "params": n_params,
        }
        dense_per_step = ring_bytes(4 * n_params, world)
        if self.name == "none":
            r["bytes_sent_per_step"] = dense_per_step
            r["bytes_counted_by"] = "ring model of DDP's dense f32 allreduce: 2(P-1)/P * 4 * params"
        elif self.counter:
            r["bytes_sent_per_step"] = ring_bytes(self.counter.bytes, world) / args.steps
            r["bytes_counted_by"] = "every torch.distributed.all_reduce of the hook, ring model"
        else:
            s = self.hook_state.stats()
            r["bytes_sent_per_step"] = s["bytes_sent"] / args.steps
            r["bytes_counted_by"] = "thinwire Stats.bytes_sent (payloads + control exchange)"
            r["thinwire_seconds_per_step"] = {k: v / args.steps for k, v in s["seconds"].items()}
            r["transport"] = self.hook_state.comm.transport_name
            r["routes"] = {l["name"]: l["route"] for l in s["layers"]}
            r["relative_sq_error"] = {l["name"]: l["sq_error"] / l["sq_norm"]
                                      for l in s["layers"] if l["sq_norm"] > 0}
        r["compression_ratio"] = dense_per_step / r["bytes_sent_per_step"]
        return r


def train_side_by_side(configs, args, train, test, rank, world):
    """Trains every configuration on the same batches, one step of each in turn (the order
    rotating from step to step), so that other load on the machine affects all alike."""
    runs = [Run(name, args) for name in configs]
    x_train, y_train = train
    n = x_train.shape[0]
    global_batch = args.batch * world
    per_epoch = n // global_batch
    for step in range(args.steps):
        epoch, i = divmod(step, per_epoch)
        order = np.random.default_rng([args.seed, epoch]).permutation(n)
        idx = order[i * global_batch + rank * args.batch:i * global_batch + (rank + 1) * args.batch]
        x, y = x_train[idx], y_train[idx]
        for k in range(len(runs)):
            runs[(step + k) % len(runs)].step(x, y)
    return [r.result(args, test, world) for r in runs]


def provenance(argv, world):
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*a):
        try:
            return subprocess.run(["git", "-C", here, *a], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    import thinwire

    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "command": f"mpirun -np {world} " + " ".join([sys.executable] + argv),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "thinwire": thinwire.__version__,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="none,torch:powersgd:4,thinwire:powersgd:4,thinwire:topk:0.01,thinwire:onebit")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64, help="samples per rank and step")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",")], default=[512, 256])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-steps", type=int, default=20, help="steps left out of the timing")
    p.add_argument("--repeat", type=int, default=1, help="train the configs this many times")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--json", help="write the results here (rank 0)")
    args = p.parse_args()

    rank = env_int("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", default=0)
    world = env_int("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", default=1)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29650")
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)

    train, test = load("train"), load("t10k")
    configs = [c for c in args.configs.split(",") if c]
    results = []
    for rep in range(args.repeat):
        for r in train_side_by_side(configs, args, train, test, rank, world):
            r["repeat"] = rep
            results.append(r)
            if rank == 0:
                print(f"{r['config']:28s} acc {100 * r['test_accuracy']:6.2f}%  loss {r['train_loss_last_100']:.4f}  "
                      f"sent/step {r['bytes_sent_per_step'] / 1e3:9.1f} kB ({r['compression_ratio']:6.1f}x)  "
                      f"{r['ms_per_step']:7.2f} ms/step  identical params: {r['identical_params_on_all_ranks']}",
                      flush=True)

    ok = all(r["identical_params_on_all_ranks"] for r in results)
    if rank == 0 and args.json:
        doc = provenance(sys.argv, world)
        doc.update({"ranks": world, "steps": args.steps, "batch_per_rank": args.batch, "lr": args.lr,
                    "momentum": 0.9, "hidden": args.hidden, "seed": args.seed, "threads_per_rank": args.threads,
                    "timing": f"configs trained side by side, one step of each in turn; wall time of a "
                              f"training step (forward, backward with communication, optimizer), slowest "
                              f"rank per step; ms_per_step is the median over the steps after the first "
                              f"{args.warmup_steps}, ms_per_step_mean the mean",
                    "results": results})
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
