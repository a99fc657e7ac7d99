"""thinwire with PyTorch under mpiexec -n 2: CPU tensors (float32, float16, bfloat16) in place,
and the DDP communication hook for a few steps over both transports (MPI and the gloo process
group): identical parameters on every rank after every step, falling loss, the same bits over
both transports, and a hook state that restores bit for bit."""

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

import thinwire
import thinwire.torch as twt
from mpi_harness import RANK, SIZE, WORLD, free_port, raises, run, same_on_all_ranks, test

torch.set_num_threads(1)
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
if "MASTER_PORT" not in os.environ:  # a free port, so that parallel test runs do not collide
    os.environ["MASTER_PORT"] = str(WORLD.bcast(free_port() if RANK == 0 else None))
dist.init_process_group("gloo", rank=RANK, world_size=SIZE)
comm = thinwire.Communicator.from_mpi()
LAYERS = [("w", (40, 30)), ("b", (30,))]


def grads(step, dtype=torch.float32):
    g = torch.Generator().manual_seed(1000 * RANK + step)
    return [torch.randn(shape, generator=g).to(dtype) for _, shape in LAYERS]


@test
def torch_tensors_in_place():
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        red = thinwire.Reducer(comm, LAYERS, "topk:0.1")
        g = grads(0, dtype)
        before = [t.data_ptr() for t in g]
        red.allreduce(g)
        assert [t.data_ptr() for t in g] == before and all(t.dtype == dtype for t in g)
        for t in g:
            assert same_on_all_ranks(t.view(torch.int16).numpy() if dtype != torch.float32 else t.numpy())
    # float32 tensors and NumPy arrays give the same bits
    a, b = thinwire.Reducer(comm, LAYERS, "powersgd:2"), thinwire.Reducer(comm, LAYERS, "powersgd:2")
    t = grads(1)
    n = [x.numpy().copy() for x in t]
    a.allreduce(t)
    b.allreduce(n)
    assert all(x.numpy().tobytes() == y.tobytes() for x, y in zip(t, n))
    # tensors that require grad are reduced through their data
    p = [x.clone().requires_grad_() for x in grads(2)]
    a.allreduce(p)


@test
def cuda_tensors_match_cpu_tensors():
    """CUDA tensors go through the device pipeline; top-k gives the CPU tensors' bits, the
    others agree to rounding (README "GPU path"). Skips, saying so, without a CUDA device."""
    if not torch.cuda.is_available():
        print(f"[rank {RANK}] *** SKIP cuda_tensors_match_cpu_tensors: torch sees no CUDA device ***")
        return
    torch.cuda.set_device(0 if torch.cuda.device_count() < SIZE else RANK)
    if torch.cuda.device_count() < SIZE:  # NCCL refuses two ranks on one GPU: stage over MPI
        os.environ["THINWIRE_TRANSPORT"] = "mpi"
    c = thinwire.Communicator.from_mpi()
    for spec, exact in (("topk:0.1", True), ("onebit", False), ("powersgd:2", False)):
        for dtype in (torch.float32, torch.bfloat16):
            on_cpu, on_gpu = thinwire.Reducer(c, LAYERS, spec), thinwire.Reducer(c, LAYERS, spec)
            for step in range(3):
                cpu = grads(step, dtype)
                gpu = [t.cuda() for t in cpu]
                on_cpu.allreduce(cpu)
                on_gpu.allreduce(gpu)
                back = [t.cpu() for t in gpu]
                for a, b in zip(cpu, back):
                    assert same_on_all_ranks(b.view(torch.int16).numpy() if dtype != torch.float32
                                             else b.numpy())
                    if exact:
                        assert torch.equal(a, b), f"{spec} {dtype} step {step}: CUDA != CPU"
                    else:
                        err = (a.float() - b.float()).norm() / max(a.float().norm(), 1e-12)
                        assert err < 1e-2, f"{spec} {dtype} step {step}: relative difference {err}"
    os.environ.pop("THINWIRE_TRANSPORT", None)
    if RANK == 0:  # says that the CUDA case ran (the GPU check's summary looks for it)
        print(f"cuda_tensors_match_cpu_tensors: checked on {torch.cuda.get_device_name()}",
              flush=True)


@test
def bad_torch_tensors():
    red = thinwire.Reducer(comm, LAYERS, "none")
    for why, spoil in {"not contiguous": lambda t: t.t(), "dtype torch.float64": lambda t: t.double(),
                       "dtype torch.int32": lambda t: t.int()}.items():
        g = grads(0)
        if RANK == 0:
            g[0] = spoil(g[0])
        e = raises("invalid_argument", red.allreduce, g)
        assert (why in str(e)) == (RANK == 0), e


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))


def batches(step):
    g = torch.Generator().manual_seed(10_000 + 100 * (step % 2) + RANK)  # two batches per rank
    x = torch.randn(32, 64, generator=g)
    y = (x[:, :10] * 3).argmax(1)  # learnable labels
    return x, y


def params(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def train(net, state, first, steps, opt=None):
    model = torch.nn.parallel.DistributedDataParallel(net)
    model.register_comm_hook(state, twt.comm_hook)
    opt = opt or torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.5)
    losses = []
    for step in range(first, first + steps):
        x, y = batches(step)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        assert same_on_all_ranks(params(net).numpy()), f"parameters differ after step {step}"
        losses.append(WORLD.allreduce(loss.item()) / SIZE)
    return losses, opt


@test
def ddp_hook_keeps_ranks_identical_and_learns():
    finals = {}
    for transport in ("mpi", "process_group"):
        for spec in ("powersgd:4", "topk:0.05", "onebit"):
            net = make_model()
            state = twt.HookState(spec=spec, model=net, transport=transport)
            expected = "mpi" if transport == "mpi" else "torch.distributed/gloo"
            assert state.comm.transport_name == expected, state.comm.transport_name
            losses, _ = train(net, state, 0, 12)
            s = state.stats()
            assert losses[-1] < 0.8 * losses[0], f"{transport} {spec}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"
            assert s["steps"] == 12 and 0 < s["bytes_sent"] < s["bytes_dense"], s
            assert {l["name"] for l in s["layers"]} == {"0.weight", "0.bias", "2.weight", "2.bias"}
            finals[transport, spec] = params(net)
            if RANK == 0:
                print(f"  {transport:13s} {spec:10s} loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
                      f"{s['compression_ratio']:.1f}x fewer bytes", flush=True)
    for spec in ("powersgd:4", "topk:0.05", "onebit"):  # transports only move bytes
        assert torch.equal(finals["mpi", spec], finals["process_group", spec]), spec


@test
def hook_transport_auto_is_mpi_under_mpirun():
    assert twt.launched_by_mpi() == SIZE
    assert twt.HookState(spec="none").comm.transport_name == "mpi"
    raises("invalid_argument", lambda: twt.HookState(spec="none", transport="nccl"))


@test
def hook_state_restores_bit_for_bit():
    n, m = 4, 4
    net = make_model(1)
    state = twt.HookState(spec="powersgd:2", model=net, transport="mpi")
    _, opt = train(net, state, 0, n)
    saved = {"model": {k: v.clone() for k, v in net.state_dict().items()},
             "opt": opt.state_dict(), "hook": state.state_dict()}
    saved["opt"] = {"state": {k: {kk: vv.clone() if torch.is_tensor(vv) else vv for kk, vv in v.items()}
                              for k, v in saved["opt"]["state"].items()},
                    "param_groups": saved["opt"]["param_groups"]}
    train(net, state, n, m, opt)
    expected = params(net)

    net2 = make_model(2)  # other weights: everything must come from the checkpoint
    net2.load_state_dict(saved["model"])
    opt2 = torch.optim.SGD(net2.parameters(), lr=0.2, momentum=0.5)
    opt2.load_state_dict(saved["opt"])
    state2 = twt.HookState(spec="powersgd:2", model=net2, transport="mpi")
    state2.load_state_dict(saved["hook"])
    train(net2, state2, n, m, opt2)
    assert state2.rebuilt == 0 and not state2._pending, "the saved bucket states were not used"
    assert torch.equal(params(net2), expected), "resumed training differs from uninterrupted training"

    other = twt.HookState(spec="powersgd:2", model=net2, transport="mpi")
    bad = dict(saved["hook"], rank=(RANK + 1) % SIZE)
    raises("mismatch", other.load_state_dict, bad)


code = run("test_torch")
dist.destroy_process_group()
sys.exit(code)
