"""thinwire as a PyTorch DistributedDataParallel communication hook.

    import thinwire.torch as twt
    model = torch.nn.parallel.DistributedDataParallel(net)
    state = twt.HookState(spec="powersgd:4", model=net)
    model.register_comm_hook(state, twt.comm_hook)

Each DDP gradient bucket is compressed with the bucket's parameters as layers, so PowerSGD
sees each weight as a matrix and biases (below min_numel) go dense; one thinwire Reducer per
bucket index is created on first use. The hook returns a completed future holding the
averaged bucket, identical on every rank.

Transport: "mpi" (thinwire's MPI transport; the default when launched by mpirun/srun with as
many ranks as the process group) or "process_group" (thinwire's collectives over the DDP
process group through torch.distributed, e.g. gloo, for any other launcher).
"""

import os

import torch
import torch.distributed as dist

from . import Communicator, Error, Reducer

__all__ = ["HookState", "comm_hook", "ProcessGroupTransport", "launched_by_mpi"]


def __getattr__(name):  # ProcessGroupTransport is imported on first use
    if name == "ProcessGroupTransport":
        from ._process_group import ProcessGroupTransport

        return ProcessGroupTransport
    raise AttributeError(name)


def launched_by_mpi():
    """The world size announced by an MPI launcher (Open MPI, MPICH/Hydra, PMIx, Slurm with
    PMI), or None."""
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


class HookState:
    """State of the thinwire DDP communication hook.

    spec:          compression spec for every bucket, e.g. "powersgd:4", "topk:0.01", "onebit"
    model:         the module wrapped by DDP (optional): its parameter names become the layer
                   names in statistics and error messages
    transport:     "auto", "mpi" or "process_group" (see the module's doc)
    process_group: the DDP process group (None: the default group)
    communicator:  a ready thinwire.Communicator instead of transport/process_group

    Collective: create it on every rank, after torch.distributed.init_process_group().
    """

    def __init__(self, spec="powersgd:4", *, model=None, transport="auto", process_group=None,
                 communicator=None):
        self.spec = spec
        self.process_group = process_group
        # Parameters get a fixed number (their position in the model, else the order in which
        # the hook first sees them) and a bucket's layers are sorted by it: DDP re-forms its
        # buckets in another order after the first step, and a bucket of the same parameters
        # must keep its Reducer (error memories, warm start) and match a saved state.
        self._index, self._names = {}, {}
        if model is not None:
            for n, p in model.named_parameters():
                self._names[id(p)] = n
                self._index.setdefault(id(p), len(self._index))
        self.reducers = {}  # bucket index -> Reducer
        self.iteration = 0  # completed DDP steps (buckets with is_last())
        self.rebuilt = 0  # reducers replaced because DDP re-formed a bucket
        self._pending = {}  # layer signature -> state bytes from load_state_dict()
        if communicator is None:
            communicator = self._communicator(transport)
        self.comm = communicator

    def _communicator(self, transport):
        if transport not in ("auto", "mpi", "process_group"):
            raise Error(f"thinwire torch error: transport '{transport}' is not one of auto, mpi, "
                        "process_group", "invalid_argument")
        if transport == "auto":
            world = dist.get_world_size(self.process_group) if dist.is_initialized() else None
            transport = "mpi" if launched_by_mpi() is not None and launched_by_mpi() == world else "process_group"
        if transport == "mpi":
            return Communicator.from_mpi()
        from ._process_group import ProcessGroupTransport

        return Communicator.from_transport(ProcessGroupTransport(self.process_group))

    def _layers(self, bucket):
        """The bucket's layers in parameter-number order, and for each its position in the
        bucket."""
        entries = []
        for position, p in enumerate(bucket.parameters()):
            number = self._index.setdefault(id(p), len(self._index))
            name = self._names.get(id(p), f"param{number}")
            entries.append((number, name, tuple(p.shape), position))
        entries.sort()
        return [(name, shape) for _, name, shape, _ in entries], [pos for *_, pos in entries]

    def reducer(self, bucket):
        """The Reducer of this bucket index and, for each of its layers, the parameter's
        position in the bucket. Created (collectively) on first use, and again if DDP put other
        parameters into the bucket."""
        layers, order = self._layers(bucket)
        r = self.reducers.get(bucket.index())
        if r is None or r.layers != layers:
            if r is not None:
                self.rebuilt += 1
            r = Reducer(self.comm, layers, self.spec)
            saved = self._pending.pop(_signature(layers, r.spec), None)
            if saved is not None:
                r.load_state_bytes(saved)
            self.reducers[bucket.index()] = r
        return r, order

    def stats(self):
        """Totals over every bucket's Reducer: bytes_sent, bytes_dense, steps (DDP steps),
        seconds, and the per-layer entries of all buckets."""
        total = {"steps": self.iteration, "bytes_sent": 0, "bytes_dense": 0, "layers": [],
                 "seconds": {"encode": 0.0, "comm": 0.0, "decode": 0.0, "total": 0.0}}
        for _, r in sorted(self.reducers.items()):
            s = r.stats()
            total["bytes_sent"] += s["bytes_sent"]
            total["bytes_dense"] += s["bytes_dense"]
            for k in total["seconds"]:
                total["seconds"][k] += s["seconds"][k]
            total["layers"].extend(s["layers"])
        sent = total["bytes_sent"]
        total["compression_ratio"] = total["bytes_dense"] / sent if sent else 1.0
        return total

    def state_dict(self):
        """This rank's compression state of every bucket, for torch.save (each rank saves its
        own). Restored buckets are matched by their layers, so the state is applied when DDP
        forms the same bucket again."""
        buckets = {_signature(r.layers, r.spec): r.state_bytes() for r in self.reducers.values()}
        buckets.update(self._pending)
        return {"spec": self.spec, "iteration": self.iteration, "rank": self.comm.rank,
                "size": self.comm.size, "buckets": buckets}

    def load_state_dict(self, state):
        if state.get("rank") != self.comm.rank or state.get("size") != self.comm.size:
            raise Error(f"thinwire torch error [rank {self.comm.rank}]: hook state was saved by rank "
                        f"{state.get('rank')} of {state.get('size')}, this is rank {self.comm.rank} "
                        f"of {self.comm.size}", "mismatch")
        self.iteration = int(state["iteration"])
        self._pending = dict(state["buckets"])
        for index, r in list(self.reducers.items()):
            saved = self._pending.pop(_signature(r.layers, r.spec), None)
            if saved is not None:
                r.load_state_bytes(saved)


def _signature(layers, spec):
    return repr((spec, [(name, tuple(shape)) for name, shape in layers]))


def comm_hook(state, bucket):
    """DistributedDataParallel.register_comm_hook(state, comm_hook): compresses the bucket with
    thinwire and returns a completed future holding the average over ranks."""
    buffer = bucket.buffer()
    reducer, order = state.reducer(bucket)
    # The bucket's gradients are consecutive slices of its flat buffer, in the order of
    # bucket.parameters(); reducing slices of the buffer itself writes the result where DDP
    # reads it.
    slices, offset = [], 0
    for p in bucket.parameters():
        slices.append(buffer[offset:offset + p.numel()])
        offset += p.numel()
    if offset != buffer.numel():
        raise Error(f"thinwire torch error: bucket {bucket.index()} holds {buffer.numel()} elements, "
                    f"its parameters {offset}", "internal")
    views = [slices[position] for position in order]
    reducer.allreduce(views)
    if bucket.is_last():
        state.iteration += 1
    future = torch.futures.Future()
    future.set_result(buffer)
    return future
