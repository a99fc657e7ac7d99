"""A tiny harness for collective Python tests under mpiexec: every rank runs every test in the
same order; a failure is counted, not raised, so the other ranks are not left waiting; at the
end the failures of all ranks are summed and rank 0 prints PASS or FAIL."""

import sys
import traceback

import numpy as np
from mpi4py import MPI

WORLD = MPI.COMM_WORLD
RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()
_tests = []


def test(fn):
    _tests.append(fn)
    return fn


def same_on_all_ranks(array):
    """Every rank holds rank 0's bits."""
    mine = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    root = WORLD.bcast(mine.tobytes(), root=0)
    return WORLD.allreduce(int(root == mine.tobytes()), op=MPI.MIN) == 1


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raises(code, fn, *args, match=None):
    """fn(*args) raises thinwire.Error with this code (and a message containing match)."""
    import thinwire

    try:
        fn(*args)
    except thinwire.Error as e:
        assert e.code == code, f"expected Error({code}), got Error({e.code}): {e}"
        assert match is None or match in str(e), f"message lacks '{match}': {e}"
        return e
    raise AssertionError(f"expected thinwire.Error({code}), nothing was raised")


def run(name):
    failures = 0
    for fn in _tests:
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every failure, keep the ranks in step
            failures += 1
            print(f"{name}: rank {RANK}: {fn.__name__} FAILED", file=sys.stderr)
            traceback.print_exc()
        WORLD.Barrier()
    total = WORLD.allreduce(failures)
    if RANK == 0:
        print(f"{'PASS' if total == 0 else 'FAIL'}: {name}: {len(_tests)} tests on {SIZE} ranks, "
              f"{total} failures", flush=True)
    return 1 if total else 0
