"""Turns NumPy arrays and PyTorch tensors into the descriptions _thinwire.Reducer takes.

A tensor this rank cannot pass (wrong dtype, not contiguous, read-only, not on the CPU, not a
tensor at all) is still handed over, as a null pointer of the right size: the Reducer's
per-step check then fails the step on EVERY rank, so no rank is left waiting in a collective,
and the rank at fault raises the local reason found here.
"""

import sys

import numpy as np

F32, F16, BF16 = 0, 1, 2
_NUMPY_DTYPES = {np.dtype(np.float32): F32, np.dtype(np.float16): F16}
_ACCEPTED = "float32, float16 (NumPy or PyTorch) or bfloat16 (PyTorch)"


def _torch_dtypes(torch):
    return {torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16}


def describe(tensor):
    """Returns (description, problem): problem is None or why the tensor cannot be used."""
    if isinstance(tensor, np.ndarray):
        code = _NUMPY_DTYPES.get(tensor.dtype)
        numel = int(tensor.size)
        if code is None:
            return (None, F32, numel, -1, 0, 0), f"dtype {tensor.dtype} (thinwire takes {_ACCEPTED})"
        if not tensor.flags.c_contiguous:
            return (None, code, numel, -1, 0, 0), "array is not C-contiguous (use np.ascontiguousarray and copy back)"
        if not tensor.flags.writeable:
            return (None, code, numel, -1, 0, 0), "array is read-only (thinwire reduces in place)"
        return (tensor, code, numel, -1, 0, 0), None
    torch = sys.modules.get("torch")  # no torch import for NumPy users
    if torch is not None and isinstance(tensor, torch.Tensor):
        return _describe_torch(torch, tensor)
    return (None, F32, 0, -1, 0, 0), f"{type(tensor).__name__} is not a NumPy array or PyTorch tensor"


def _describe_torch(torch, t):
    numel = int(t.numel())
    code = _torch_dtypes(torch).get(t.dtype)
    if code is None:
        return (None, F32, numel, -1, 0, 0), f"dtype {t.dtype} (thinwire takes {_ACCEPTED})"
    if not t.is_contiguous():
        return (None, code, numel, -1, 0, 0), "tensor is not contiguous (use .contiguous() and copy back)"
    if t.device.type == "cuda":
        stream = torch.cuda.current_stream(t.device).cuda_stream
        return (None, code, numel, t.device.index, t.data_ptr(), stream), None
    if t.device.type != "cpu":
        return (None, code, numel, -1, 0, 0), f"tensor on device '{t.device}' (thinwire takes CPU tensors)"
    d = t.detach()
    try:
        array = d.view(torch.int16).numpy() if code == BF16 else d.numpy()
    except (RuntimeError, TypeError) as e:  # e.g. conjugate or negative views
        return (None, code, numel, -1, 0, 0), f"tensor cannot be viewed as memory: {e}"
    return (array.reshape(-1), code, numel, -1, 0, 0), None
