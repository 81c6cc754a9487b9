"""Static MRI: per-tensor statistics of the parents' FFN weights, read one tensor at a time.

For every tensor: the Shannon entropy (bits) of the histogram of |w| over [0, max|w|] in `bins` equal bins,
the standard deviation (population, correction 0) and the L2 norm. Tensors are read by name from the
safetensors shards and dropped after their statistics are taken, so neither parent is ever held whole.

Per layer, a parent's static score is the mean over its gate/up/down tensors of
`normalised entropy * RMS` (entropy / log2(bins) times L2 / sqrt(numel)): how much spread-out signal the
FFN carries. Scores are comparable within one parent only (the two FFNs differ in width), so `trust.py`
divides each parent's scores by that parent's mean before combining them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from release.breeders.hybrid import FATHER_TEXT_PREFIX, MOTHER_LAYER_PREFIX, weight_files
from release.parents.tensors import open_shard, parent_tensor

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
DEFAULT_BINS = 256


def tensor_stats(w: torch.Tensor, bins: int = DEFAULT_BINS) -> dict:
    """Entropy (bits) of the |w| histogram, std, L2 norm, and the layer score term of one tensor."""
    w = w.detach().float().flatten()
    a = w.abs()
    top = float(a.max()) if a.numel() else 0.0
    if top == 0.0:
        entropy = 0.0  # every weight zero: one value, no spread
    else:
        counts = torch.histc(a, bins=bins, min=0.0, max=top)
        p = counts[counts > 0] / a.numel()
        entropy = float(-(p * p.log2()).sum())
    l2 = float(w.norm())
    rms = l2 / math.sqrt(max(w.numel(), 1))
    return {"entropy": entropy, "std": float(w.std(correction=0)), "l2": l2,
            "score": entropy / math.log2(bins) * rms}


def _layer_stats(role: str, files: dict[str, Path], prefix: str, bins: int) -> dict:
    tensors = {}
    for proj in PROJECTIONS:
        key = f"{prefix}mlp.{proj}.weight"
        with open_shard(role, files[key], key) as f:  # one tensor in memory at a time
            # the first read of this weight: a NaN is named here, not by histc as "a bug"
            tensors[proj] = tensor_stats(parent_tensor(role, f, files[key], key), bins)
    return {"tensors": tensors, "score": sum(t["score"] for t in tensors.values()) / len(tensors)}


def static_scan(father_dir: Path, mother_dir: Path, layer_map: list[int], bins: int = DEFAULT_BINS) -> dict:
    """Statistics of every father FFN tensor and of every mapped mother FFN tensor (each mother layer once)."""
    father_files, mother_files = weight_files(Path(father_dir)), weight_files(Path(mother_dir))
    father = [_layer_stats("father", father_files, f"{FATHER_TEXT_PREFIX}layers.{i}.", bins)
              for i in range(len(layer_map))]
    mother = {j: _layer_stats("mother", mother_files, f"{MOTHER_LAYER_PREFIX}{j}.", bins) for j in sorted(set(layer_map))}
    return {"bins": bins, "father": father, "mother": {str(j): s for j, s in mother.items()}}
