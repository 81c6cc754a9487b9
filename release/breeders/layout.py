"""The checkpoint layout of two same-architecture parents, read from safetensors headers only: which tensors
each holds (shard, shape, dtype), the check that both hold the same tensors at the same shapes, and which
genome gene (a layer's attention or FFN, or everything else) each tensor belongs to.

Shared by the weight-merge breeders (release/breeders/weights.py) and their MRI scan
(release/mri/weights_trust.py), so neither imports the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from release.errors import ReleaseError

# The decoder layers of a CausalLM (`model.layers.N`) or of a ConditionalGeneration (`model.language_model.layers.N`).
_DECODER_LAYER = re.compile(r"^(?:model\.language_model|model|language_model\.model|language_model)\.layers\.(\d+)\.(.+)$")
_FFN = re.compile(r"(?:^|\.)(?:mlp|feed_forward|block_sparse_moe|experts)\.")
_ATTN = re.compile(r"(?:^|\.)(?:self_attn|linear_attn|attn|attention)\.")


def gene_of(key: str) -> tuple[str, int | None]:
    """(component, decoder layer) of a checkpoint tensor: ("attn", i), ("ffn", i) or ("norms", None)."""
    m = _DECODER_LAYER.match(key)
    if m:
        rest = m.group(2)
        if _FFN.search(rest):
            return "ffn", int(m.group(1))
        if _ATTN.search(rest):
            return "attn", int(m.group(1))
    return "norms", None


def gene_module(key: str) -> str | None:
    """The module prefix a layer gene covers, e.g. `model.layers.3.self_attn.` (None: a `norms` tensor).

    Every tensor whose name starts with it belongs to the same gene as `key` (what a mergekit filter names)."""
    m = _DECODER_LAYER.match(key)
    if not m:
        return None
    rest = m.group(2)
    hit = _FFN.search(rest) or _ATTN.search(rest)
    return key[:m.start(2) + hit.end()] if hit else None


@dataclass(frozen=True)
class TensorInfo:
    path: Path
    shape: tuple[int, ...]
    dtype: str


def _headers(folder: Path, role: str) -> dict[str, TensorInfo]:
    """Tensor name -> shard, shape and dtype, from the safetensors headers only (no weights read)."""
    from safetensors import safe_open

    from release.breeders.hybrid import weight_files  # hybrid imports transformers

    files = weight_files(folder, role)
    out = {}
    for path in dict.fromkeys(files.values()):
        if not path.is_file():
            raise ReleaseError(f"{role} index model.safetensors.index.json in {folder} names shard {path.name}, "
                               "which is missing: re-download it (--force pull) or choose a complete revision")
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                sl = f.get_slice(key)
                out[key] = TensorInfo(path, tuple(sl.get_shape()), sl.get_dtype())
    return out


def check_same_architecture(father_dir: Path, mother_dir: Path,
                            other: str = "mother") -> dict[str, tuple[TensorInfo, TensorInfo]]:
    """Both parents' tensors by name, after checking the parents share model_type and every tensor shape.
    `other`: the second model's role in messages (the mother, or the common ancestor "base")."""
    # hybrid imports transformers; one reader, so a damaged config.json is the same one-line error
    from release.breeders.hybrid import read_model_type

    father_type, mother_type = read_model_type(father_dir, "father"), read_model_type(mother_dir, other)
    if father_type != mother_type:
        raise ReleaseError(f"father is a {father_type!r} model and {other} a {mother_type!r} one: weight merges "
                           "need one architecture; choose parents of one model_type, or breed.method: ffn_blend")
    father, mother = _headers(Path(father_dir), "father"), _headers(Path(mother_dir), other)
    for key in sorted(father.keys() | mother.keys()):
        if key not in mother:
            raise ReleaseError(f"{other} {mother_dir} lacks tensor {key} that the father has: weight merges need "
                               "the same tensors in every model (same config, same checkpoint layout)")
        if key not in father:
            raise ReleaseError(f"father {father_dir} lacks tensor {key} that the {other} has: weight merges need "
                               "the same tensors in every model (same config, same checkpoint layout)")
        if father[key].shape != mother[key].shape:
            raise ReleaseError(f"tensor {key} has shape {father[key].shape} in the father but {mother[key].shape} "
                               f"in the {other}: weight merges need models of the same size")
    return {key: (father[key], mother[key]) for key in father}
