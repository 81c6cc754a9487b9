"""Reading one parent tensor: a failure, or a weight that is not finite, is one line naming the parent,
the file and the tensor (issue 22 items 6 and 7), not a traceback from deep inside a later stage.

Every place that first reads a parent's tensors (the MRI scan, the live search model, the child's shards)
reads them through `parent_tensor`; the finiteness check runs on the tensor already in memory, so it
costs no second read of the weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from release.errors import ReleaseError

FIX = "the parent checkpoint is damaged: re-download it (--force pull) or choose another revision"


@contextmanager
def reading(role: str, path: str | Path, key: str):
    """Turn a failure to read `key` from the parent's shard `path` into one line."""
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as e:
        if isinstance(e, ReleaseError) or "out of memory" in str(e).lower():
            raise  # already one line; or the device's memory, not the file
        reason = next(iter(str(e).strip().splitlines()), type(e).__name__)[:200]
        raise ReleaseError(f"the {role}'s {Path(path).name}: cannot read tensor {key} ({reason}): {FIX}") from None


def parent_tensor(role: str, handle, path: str | Path, key: str):
    """`key` from an open safetensors handle of the parent's shard `path`, checked to be finite."""
    import torch

    with reading(role, path, key):
        tensor = handle.get_tensor(key)
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ReleaseError(f"the {role}'s {Path(path).name}: tensor {key} holds {bad} NaN or infinite value(s) of "
                           f"{tensor.numel()}: {FIX}")
    return tensor


def open_shard(role: str, path: str | Path, key: str, **options):
    """safe_open(path), a failure to open it named as for the tensor `key` the caller is after."""
    from safetensors import safe_open

    with reading(role, path, key):
        return safe_open(str(path), framework="pt", **options)
