"""The INSTALLED Python package under mpiexec -n 2: imported from the prefix, thinwire
initialises MPI itself (no mpi4py first), reduces NumPy arrays, and drives a few DDP steps
through the hook over both transports with identical parameters on every rank."""

import os
import sys

import numpy as np

import thinwire

prefix = sys.argv[1]
assert os.path.realpath(thinwire.__file__).startswith(os.path.realpath(prefix)), thinwire.__file__
comm = thinwire.Communicator.from_mpi()
assert thinwire._thinwire.mpi_initialized_by_thinwire()
from mpi4py import MPI  # noqa: E402  MPI is initialised: mpi4py leaves init and finalize to thinwire

world = MPI.COMM_WORLD


def same(a):
    b = np.ascontiguousarray(a).tobytes()
    return world.allreduce(int(world.bcast(b) == b), op=MPI.MIN) == 1


red = thinwire.Reducer(comm, [("w", (64, 32)), ("b", (32,))], "onebit")
g = [np.random.default_rng(comm.rank).standard_normal(s).astype(np.float32) for s in ((64, 32), (32,))]
red.allreduce(g)
assert all(same(x) for x in g)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import thinwire.torch as twt  # noqa: E402

torch.set_num_threads(1)
os.environ["MASTER_ADDR"] = "127.0.0.1"
if comm.rank == 0:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
else:
    port = None
os.environ["MASTER_PORT"] = str(world.bcast(port))
dist.init_process_group("gloo", rank=comm.rank, world_size=comm.size)
for transport in ("mpi", "process_group"):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 40), torch.nn.Tanh(), torch.nn.Linear(40, 4))
    model = torch.nn.parallel.DistributedDataParallel(net)
    state = twt.HookState(spec="powersgd:2,min_numel=0", model=net, transport=transport)
    model.register_comm_hook(state, twt.comm_hook)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(16, 20, generator=torch.Generator().manual_seed(comm.rank))
    for step in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        assert same(torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()), step
    assert state.stats()["bytes_sent"] < state.stats()["bytes_dense"]
dist.destroy_process_group()
if comm.rank == 0:
    print(f"PASS: installed thinwire {thinwire.__version__} from {os.path.dirname(thinwire.__file__)}")
