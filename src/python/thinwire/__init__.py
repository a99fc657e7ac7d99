"""thinwire: communication-compressed allreduce for data-parallel training.

    import numpy as np, thinwire
    comm = thinwire.Communicator.from_mpi()          # under mpirun; initialises MPI if needed
    red = thinwire.Reducer(comm, [("fc1.weight", (256, 784)), ("fc1.bias", (256,))], "topk:0.01")
    red.allreduce([w_grad, b_grad])                  # in place; every rank ends with the same bits
    red.stats()["bytes_sent"]

Tensors are NumPy arrays (float32, float16) or PyTorch CPU tensors (float32, float16,
bfloat16), contiguous and writable; they are reduced in place. Every failure raises
thinwire.Error, whose .code is "invalid_argument", "mismatch", "timeout", "transport_error",
"unsupported" or "internal". For PyTorch DDP see thinwire.torch.
"""

import json as _json
import operator as _operator
import os as _os

from . import _tensors
from ._errors import CODES, Error
from ._thinwire import Communicator, Transport, __version__
from ._thinwire import Reducer as _CoreReducer

__all__ = ["Communicator", "Transport", "Reducer", "Error", "CODES", "__version__"]


def _layer_name_of(name):
    if not isinstance(name, str):
        raise TypeError(f"layer name {name!r} is not a str")
    return name


def _dimension(d):
    # operator.index accepts ints and NumPy integers and refuses 2.7, "48" and 4.0, which int()
    # would have turned into another shape; a bool is refused too.
    if isinstance(d, bool):
        raise TypeError(f"dimension {d!r} is not an integer")
    try:
        return _operator.index(d)
    except TypeError:
        raise TypeError(f"dimension {d!r} is not an integer") from None


def _path(path):
    name = _os.fspath(path) if isinstance(path, (str, _os.PathLike)) else None
    if isinstance(name, str):
        return name
    raise Error(f"thinwire python error: a state path must be a str or os.PathLike, not {path!r}",
                "invalid_argument")


class Reducer:
    """Compressed allreduce of a model's gradients, one allreduce() call per training step.

    comm:   a thinwire.Communicator
    layers: a list of (name, shape) tuples, one per tensor passed to allreduce(); PowerSGD
            views a layer as shape[0] rows by the product of the other dimensions
    spec:   a compression spec, e.g. "topk:0.01", "onebit", "qsgd:4", "powersgd:4,ef=econtrol"
            (the environment variable THINWIRE_COMPRESSION, when set, replaces it)

    Construction and allreduce() are collective: every rank calls them in the same order. Ranks
    whose layers or specs differ raise Error(code="mismatch").
    """

    def __init__(self, comm, layers, spec):
        if not isinstance(comm, Communicator):
            raise Error(f"thinwire python error: Reducer needs a thinwire.Communicator, not {comm!r}",
                        "invalid_argument")
        problem = None
        try:
            specs = [(_layer_name_of(name), [_dimension(d) for d in shape]) for name, shape in layers]
        except (TypeError, ValueError) as e:
            problem = ("layers must be a list of (name, shape) tuples with str names and integer "
                       f"dimensions: {e}")
        if problem is None and not isinstance(spec, str):
            problem = f"spec must be a str like 'topk:0.01', not {spec!r}"
        if problem is not None:
            # Construction is collective: a problem on this rank must fail every rank, not leave
            # the others waiting. The core refuses a negative dimension through its agreement
            # exchange; this rank then raises its own message.
            specs, spec = [("(invalid arguments)", [-1])], ""
        try:
            self._core = _CoreReducer(comm, specs, spec)
        except Error as e:
            if problem is not None:
                raise Error(f"thinwire python error: {problem}", "invalid_argument") from None
            raise
        if problem is not None:  # not reached: the core refuses the layer above
            raise Error(f"thinwire python error: {problem}", "invalid_argument")

    def allreduce(self, tensors):
        """Collective, in place: tensors[i] is layer i's gradient. On return every rank holds the
        same bits: the average over ranks of what was transmitted, error feedback applied."""
        descriptions, problems = [], []
        try:
            tensors = list(tensors)
        except TypeError:
            # No tensors from this rank: the core's count check fails every rank together.
            problems.append(f"allreduce() takes a list of tensors, not {tensors!r}")
            tensors = []
        for i, t in enumerate(tensors):
            d, problem = _tensors.describe(t)
            if problem and d[2] == 0:
                # No memory for 0 elements passes the collective check: claim one element, so
                # that the check fails on every rank together instead of this one raising alone
                # after the others completed the step.
                d = (None, d[1], 1) + tuple(d[3:])
            descriptions.append(d)
            if problem:
                problems.append(f"tensor {i} ({self._layer_name(i)}): {problem}")
        try:
            self._core.allreduce(descriptions)
        except Error as e:
            if problems:  # this rank caused it: say why in its own terms
                raise Error(f"thinwire python error: {'; '.join(problems)} [{e}]", e.code) from None
            raise
        if problems:  # not reached: a problem tensor always fails the collective check
            raise Error(f"thinwire python error: {'; '.join(problems)}", "invalid_argument")

    def _layer_name(self, i):
        layers = self._core.layers
        return f"layer '{layers[i][0]}'" if i < len(layers) else "no such layer"

    def stats(self):
        """Totals since construction: bytes_sent, bytes_dense, compression_ratio, steps,
        seconds by phase and per-layer entries (spec, route, bytes, errors)."""
        return _json.loads(self._core.stats_json())

    def reset_stats(self):
        self._core.reset_stats()

    def save_state(self, path):
        """Writes this rank's compression state (error memories, warm-start factors, step
        counter). Not collective: every rank saves its own file, e.g. f"state.{rank}.bin"."""
        self._core.save_state(_path(path))

    def load_state(self, path):
        """Restores a state saved by a Reducer with the same layers, spec, ranks and rank; else
        raises Error (mismatch; invalid_argument for a corrupt file). An auto Reducer takes each
        layer's saved spec when it is one of its candidates (recalibrate() chooses again)."""
        self._core.load_state(_path(path))

    def state_bytes(self):
        """The same state as save_state() writes, as bytes (e.g. for torch.save)."""
        return self._core.state_bytes()

    def load_state_bytes(self, data):
        self._core.load_state_bytes(bytes(data))

    @property
    def step(self):
        """Completed allreduce() calls (restored by load_state)."""
        return self._core.step

    @property
    def last_step_skipped(self):
        return self._core.last_step_skipped

    @property
    def spec(self):
        """The spec in force, canonical form."""
        return self._core.spec

    @property
    def layers(self):
        return [(name, tuple(shape)) for name, shape in self._core.layers]

    @property
    def communicator(self):
        return self._core.communicator

    def __repr__(self):
        return f"<thinwire.Reducer {len(self._core.layers)} layers, spec '{self.spec}', step {self.step}>"
