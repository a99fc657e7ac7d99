"""ProcessGroupTransport: thinwire's collectives over a torch.distributed process group.

For programs not launched by mpirun (e.g. DDP started by another launcher): thinwire then
moves its payloads with the same process group DDP uses, typically gloo on CPU tensors.

thinwire hands over NumPy views of its own memory. They are copied into torch-owned staging
tensors that live as long as the transport, and back after the collective. Wrapping the views
with torch.from_numpy instead would be copy-free but unsafe: gloo's worker threads release
their references to a collective's tensors after it completes, and when that is the last
reference to a tensor created in Python the release needs the GIL, which aborts the process
if it happens while the interpreter shuts down ("terminate called without an active
exception"). Tensors that Python keeps alive are never released by the worker threads.
"""

import numpy as np
import torch
import torch.distributed as dist

from ._thinwire import Transport

_OPS = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                 np.dtype(np.int64): torch.int64, np.dtype(np.uint8): torch.uint8}


class _Staging:
    """A torch tensor, its NumPy view, and (for allgather) its per-rank blocks, kept alive."""

    def __init__(self, dtype, n, blocks):
        self.tensor = torch.empty(n, dtype=dtype)
        self.array = self.tensor.numpy()
        self.blocks = list(self.tensor.view(blocks, -1).unbind(0)) if blocks else None


class ProcessGroupTransport(Transport):
    """A thinwire.Transport over torch.distributed collectives on CPU tensors (gloo)."""

    def __init__(self, group=None):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("ProcessGroupTransport needs torch.distributed.init_process_group() first")
        self._group = group
        self._rank = dist.get_rank(group)
        self._size = dist.get_world_size(group)
        self._backend = dist.get_backend(group)
        self._staging = {}  # (role, dtype, n) -> _Staging; a training step repeats its sizes

    def rank(self):
        return self._rank

    def size(self):
        return self._size

    def name(self):
        return f"torch.distributed/{self._backend}"

    def _stage(self, role, array, n=None, blocks=0):
        n = array.size if n is None else n
        key = (role, array.dtype, n)
        s = self._staging.get(key)
        if s is None:
            s = self._staging[key] = _Staging(_TORCH_DTYPES[array.dtype], n, blocks)
        return s

    def _global(self, rank):
        # broadcast's src is a global rank
        if self._group is None:
            return rank
        return dist.distributed_c10d.get_global_rank(self._group, rank)

    def allreduce(self, data, op):
        if data.dtype == np.uint64:
            # torch has no uint64: reduce the gathered values in rank order here (every rank
            # computes the same bits). thinwire's own traffic never takes this path.
            gathered = np.empty((self._size, data.size), dtype=np.uint64)
            self.allgather(data.view(np.uint8), gathered.view(np.uint8).reshape(-1))
            reduce = {"sum": np.sum, "min": np.min, "max": np.max}[op]
            data[...] = reduce(gathered, axis=0)
            return
        s = self._stage("allreduce", data)
        np.copyto(s.array, data)
        dist.all_reduce(s.tensor, op=_OPS[op], group=self._group)
        np.copyto(data, s.array)

    def allgather(self, send, recv):
        # gloo has no allgather into one tensor in torch 1.13: gather into per-rank blocks
        src = self._stage("allgather.send", send)
        dst = self._stage("allgather.recv", recv, blocks=self._size)
        np.copyto(src.array, send)
        dist.all_gather(dst.blocks, src.tensor, group=self._group)
        np.copyto(recv, dst.array)

    def alltoall(self, send, recv):
        src = self._stage("alltoall.send", send)
        dst = self._stage("alltoall.recv", recv)
        np.copyto(src.array, send)
        dist.all_to_all_single(dst.tensor, src.tensor, group=self._group)
        np.copyto(recv, dst.array)

    def broadcast(self, data, root):
        s = self._stage("broadcast", data)
        np.copyto(s.array, data)
        dist.broadcast(s.tensor, src=self._global(root), group=self._group)
        np.copyto(data, s.array)

    def barrier(self):
        dist.barrier(group=self._group)
