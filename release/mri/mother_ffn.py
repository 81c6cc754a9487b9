"""One mother FFN read alone from her shards: what the streaming diagnostics hold of the mother at a time."""

from __future__ import annotations

from pathlib import Path

import torch

from release.breeders.hybrid import weight_files
from release.parents.childmap import parent_key
from release.parents.tensors import open_shard, parent_tensor


def load_mother_ffn(mother_dir: Path, config, j: int, device, dtype):
    """Mother layer j's FFN and pre-FFN norm (a `DarwinMotherFFN` of `config`), on `device` in `dtype`."""
    from modeling.modeling_darwin import DarwinMotherFFN

    files = weight_files(mother_dir, "mother")
    with torch.device("meta"):  # no random init of weights read next
        ffn = DarwinMotherFFN(config)
    state = {}
    for name in ffn.state_dict():
        role, key = parent_key(f"model.mother_ffns.{j}.{name}")
        with open_shard(role, files[key], key) as handle:
            state[name] = parent_tensor(role, handle, files[key], key)
    ffn.load_state_dict(state, assign=True)
    return ffn.to(device=device, dtype=dtype).eval()
