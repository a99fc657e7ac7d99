"""The thinwire Python module with NumPy arrays, under mpiexec -n 2 (or more): identical bits on
every rank, errors with their codes, save/load round trips, mpi4py communicators and a
Python-implemented Transport. Run from CTest with PYTHONPATH pointing at the package."""

import os
import sys
import tempfile

import numpy as np
from mpi4py import MPI  # initialises MPI first: thinwire must then leave it alone

import thinwire
from mpi_harness import RANK, SIZE, WORLD, raises, run, same_on_all_ranks, test

LAYERS = [("w1", (48, 40)), ("b1", (40,)), ("w2", (33, 70))]
SPECS = ["none", "topk:0.05", "onebit", "qsgd:4", "powersgd:3", "topk:0.1,ef=econtrol,min_numel=0"]
comm = thinwire.Communicator.from_mpi(WORLD)  # an mpi4py communicator
scratch = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()


def grads(step, rank=RANK, dtype=np.float32):
    rng = np.random.default_rng([rank, step, 7])
    return [rng.standard_normal(shape).astype(dtype) for _, shape in LAYERS]


@test
def communicators():
    assert comm.rank == RANK and comm.size == SIZE, comm
    assert not thinwire._thinwire.mpi_initialized_by_thinwire()  # mpi4py did
    world = thinwire.Communicator.from_mpi()  # None: MPI_COMM_WORLD
    fint = thinwire.Communicator.from_mpi(WORLD.py2f())  # a Fortran handle
    assert world.rank == fint.rank == RANK
    raises("invalid_argument", thinwire.Communicator.from_mpi, "world")
    raises("invalid_argument", thinwire.Communicator.from_transport, 42)


@test
def results_identical_on_all_ranks():
    for spec in SPECS:
        red = thinwire.Reducer(comm, LAYERS, spec)
        for step in range(4):
            g = grads(step)
            red.allreduce(g)
            for (name, _), x in zip(LAYERS, g):
                assert same_on_all_ranks(x), f"{spec}: step {step} layer {name} differs"
            if spec == "none":
                exact = [sum(grads(step, r)[i].astype(np.float64) for r in range(SIZE)) / SIZE
                         for i in range(len(LAYERS))]
                for x, e in zip(g, exact):
                    assert np.max(np.abs(x - e)) < 1e-6
        s = red.stats()
        assert s["steps"] == 4 and red.step == 4
        assert [l["name"] for l in s["layers"]] == [n for n, _ in LAYERS]
        if spec != "none":
            assert s["bytes_sent"] < s["bytes_dense"], (spec, s["bytes_sent"], s["bytes_dense"])
        assert red.spec == spec or spec.startswith("topk:0.1"), red.spec


@test
def float16_arrays():
    red = thinwire.Reducer(comm, LAYERS, "topk:0.1")
    g = grads(0, dtype=np.float16)
    red.allreduce(g)
    assert all(same_on_all_ranks(x) for x in g)
    assert all(x.dtype == np.float16 for x in g)


@test
def bad_specs_and_layers():
    raises("invalid_argument", thinwire.Reducer, comm, LAYERS, "topk:2", match="topk")
    raises("invalid_argument", thinwire.Reducer, comm, LAYERS, "zip")
    raises("invalid_argument", thinwire.Reducer, comm, [("w", (-3, 4))], "none", match="'w")
    raises("invalid_argument", thinwire.Reducer, comm, [("w", "ab")], "none")
    raises("invalid_argument", thinwire.Reducer, comm, [("w", (4,)), ("w", (4,))], "none",
           match="both named 'w'")
    raises("invalid_argument", thinwire.Reducer, "comm", LAYERS, "none")


@test
def one_ranks_bad_arguments_fail_every_rank():
    # Each problem on the last rank only: every rank raises at once (the others used to wait in
    # the construction agreement or the step until THINWIRE_TIMEOUT_S, then time out).
    last = SIZE - 1
    bad = RANK == last
    cases = [
        ("topk:2" if bad else "topk:0.1", LAYERS, "topk density"),
        ("none", [("w", (2.7,))] if bad else [("w", (2,))], "dimension 2.7 is not an integer"),
        ("none", [("w", "48")] if bad else [("w", (4, 8))], "is not an integer"),
        ("none", [(None, (4,))] if bad else [("w", (4,))], "is not a str"),
        (0.5 if bad else "none", LAYERS, "spec must be a str"),
    ]
    for spec, layers, why in cases:
        e = raises("invalid_argument", thinwire.Reducer, comm, layers, spec)
        assert (why in str(e)) if bad else (f"on rank {last}" in str(e)), f"rank {RANK}: {e}"
    red = thinwire.Reducer(comm, [("e", (0,)), ("w", (4,))], "none")
    for spoil, why in [(lambda: None, "takes a list of tensors"),
                       (lambda: [np.zeros(0, np.float64), np.ones(4, np.float32)], "dtype float64")]:
        g = spoil() if bad else [np.zeros(0, np.float32), np.ones(4, np.float32)]
        e = raises("invalid_argument", red.allreduce, g)
        assert (why in str(e)) if bad else (f"rank {last}" in str(e)), f"rank {RANK}: {e}"
    assert red.step == 0  # no step completed on any rank
    raises("invalid_argument", red.save_state, None, match="str or os.PathLike")


@test
def mismatched_ranks():
    layers = list(LAYERS)
    if RANK == 0:
        layers[2] = ("w2", (33, 71))
    raises("mismatch", thinwire.Reducer, comm, layers, "topk:0.05", match="w2")
    raises("mismatch", thinwire.Reducer, comm, LAYERS, "topk:0.05" if RANK else "topk:0.02")


@test
def bad_tensors_fail_every_rank():
    red = thinwire.Reducer(comm, LAYERS, "topk:0.05")
    last = SIZE - 1
    cases = {
        "not C-contiguous": lambda g: g.__setitem__(0, np.asfortranarray(g[0])),
        "dtype float64": lambda g: g.__setitem__(1, g[1].astype(np.float64)),
        "read-only": lambda g: g[2].setflags(write=False),
        "is not a NumPy array": lambda g: g.__setitem__(1, list(g[1])),
    }
    for why, spoil in cases.items():
        g = grads(0)
        if RANK == last:
            spoil(g)
        e = raises("invalid_argument", red.allreduce, g)
        assert (why in str(e)) == (RANK == last), f"rank {RANK}: {e}"
        assert f"rank {last}" in str(e), e
    g = grads(0)
    if RANK == last:
        g[1] = np.zeros(41, np.float32)  # wrong size
    raises("invalid_argument", red.allreduce, g, match="expected 40 elements")
    raises("invalid_argument", red.allreduce, grads(0)[:2], match="2 tensors for 3 layers")
    red.allreduce(grads(0))  # still usable
    assert red.step == 1


def train(red, first, count):
    out = []
    for step in range(first, first + count):
        g = grads(step)
        red.allreduce(g)
        out.append(g)
    return out


@test
def save_load_continues_bit_for_bit():
    n, m = 3, 3
    for spec in ["topk:0.05", "onebit", "qsgd:4,seed=5", "powersgd:3", "powersgd:3,ef=econtrol"]:
        path = os.path.join(scratch, f"py_state.{RANK}.bin")
        a = thinwire.Reducer(comm, LAYERS, spec)
        train(a, 0, n)
        a.save_state(path)
        blob = a.state_bytes()
        expected = train(a, n, m)

        for restore in ("file", "bytes"):
            b = thinwire.Reducer(comm, LAYERS, spec)
            b.load_state(path) if restore == "file" else b.load_state_bytes(blob)
            assert b.step == n
            got = train(b, n, m)
            for step, (x, y) in enumerate(zip(got, expected)):
                for (name, _), u, v in zip(LAYERS, x, y):
                    assert u.tobytes() == v.tobytes(), f"{spec} ({restore}): step {n + step} {name}"

        other = thinwire.Reducer(comm, LAYERS, "topk:0.02")
        raises("mismatch", other.load_state, path)
        fewer = thinwire.Reducer(comm, LAYERS[:2], spec)
        raises("mismatch", fewer.load_state, path)
        raises("invalid_argument", fewer.load_state_bytes, blob[:50])
        raises("invalid_argument", fewer.load_state, os.path.join(scratch, "no", "such.bin"))
        os.remove(path)


class Mpi4pyTransport(thinwire.Transport):
    """thinwire's collectives implemented in Python with mpi4py: exercises the trampoline."""

    OPS = {"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}

    def __init__(self, mpi_comm):
        super().__init__()
        self.c = mpi_comm.Dup()
        self.calls = 0

    def rank(self):
        return self.c.Get_rank()

    def size(self):
        return self.c.Get_size()

    def name(self):
        return "mpi4py"

    def allreduce(self, data, op):
        self.calls += 1
        self.c.Allreduce(MPI.IN_PLACE, data, op=self.OPS[op])

    def allgather(self, send, recv):
        self.calls += 1
        self.c.Allgather(send, recv)

    def alltoall(self, send, recv):
        self.calls += 1
        self.c.Alltoall(send, recv)

    def broadcast(self, data, root):
        self.c.Bcast(data, root=root)

    def barrier(self):
        self.c.Barrier()


@test
def python_transport_gives_the_same_bits_as_mpi():
    transport = Mpi4pyTransport(WORLD)
    pycomm = thinwire.Communicator.from_transport(transport)
    del transport  # the communicator keeps the Python object alive
    assert pycomm.transport_name == "mpi4py" and pycomm.rank == RANK
    for spec in ["topk:0.05", "onebit", "qsgd:4", "powersgd:3"]:
        native = thinwire.Reducer(comm, LAYERS, spec)
        python = thinwire.Reducer(pycomm, LAYERS, spec)
        for step in range(3):
            g1, g2 = grads(step), grads(step)
            native.allreduce(g1)
            python.allreduce(g2)
            assert all(u.tobytes() == v.tobytes() for u, v in zip(g1, g2)), f"{spec} step {step}"
    assert python.stats()["bytes_sent"] == native.stats()["bytes_sent"]


class GrowingTransport(Mpi4pyTransport):
    """A size() that changes after the Communicator read it: the views handed to allgather and
    alltoall keep the first size (a larger one let Python write past thinwire's buffers)."""

    def __init__(self, mpi_comm):
        super().__init__(mpi_comm)
        self.asked = 0
        self.recv_bytes = []

    def size(self):
        self.asked += 1
        return self.c.Get_size() if self.asked == 1 else 64 * self.c.Get_size()

    def allgather(self, send, recv):
        self.recv_bytes.append((send.nbytes, recv.nbytes))
        super().allgather(send, recv)


@test
def python_transport_size_is_read_once():
    transport = GrowingTransport(WORLD)
    growing = thinwire.Communicator.from_transport(transport)
    red = thinwire.Reducer(growing, LAYERS, "onebit")
    red.allreduce(grads(0))
    assert transport.recv_bytes and all(r == s * SIZE for s, r in transport.recv_bytes), \
        transport.recv_bytes


class FailingTransport(Mpi4pyTransport):
    def allgather(self, send, recv):
        raise ValueError("link down")


@test
def python_transport_errors_break_the_communicator():
    broken = thinwire.Communicator.from_transport(FailingTransport(WORLD))
    e = raises("transport_error", thinwire.Reducer, broken, LAYERS, "none", match="link down")
    assert broken.broken
    raises("transport_error", thinwire.Reducer, broken, LAYERS, "none", match="broken")


class InterruptedTransport(Mpi4pyTransport):
    """Ctrl-C while a collective is in Python: every rank raises KeyboardInterrupt in the same
    collective, so none is left waiting."""

    def allgather(self, send, recv):
        raise KeyboardInterrupt


@test
def ctrl_c_in_a_python_transport_stays_a_keyboard_interrupt():
    interrupted = thinwire.Communicator.from_transport(InterruptedTransport(WORLD))
    try:
        thinwire.Reducer(interrupted, LAYERS, "none")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("a KeyboardInterrupt in allgather() did not reach the caller")
    # The collective was cut short: the communicator is broken, as after any failure, and the
    # next error is an ordinary thinwire.Error (the interrupt was raised once).
    assert interrupted.broken
    raises("transport_error", thinwire.Reducer, interrupted, LAYERS, "none", match="broken")


sys.exit(run("test_numpy"))
