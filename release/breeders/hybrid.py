"""Assemble a Darwin child from its two parents' checkpoint folders, reading only the tensors it needs.

One mapping, `child_tensor_sources`, says where every tensor of a child comes from (parent shard file and
tensor name). The live hybrid for the search (`build_search_hybrid`) and the child written to disk by
`release.breeders.emit` both follow it, so what was evaluated is what ships. Neither parent is ever materialised whole:
the model is built on the meta device, then filled tensor by tensor from the parents' safetensors shards.

Parents are checkpoints in their ConditionalGeneration form, like the real repos: the father a Gemma 4
(`model.language_model.*`), the mother a Qwen3.5 (only her `model.language_model.layers.J.mlp.*` and
`...layers.J.post_attention_layernorm.weight`, her pre-FFN norm, are read).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from modeling.configuration_darwin import DarwinConfig
from release.errors import ReleaseError
from release.parents.childmap import (  # noqa: F401  (re-exported: the stages import them from here)
    FATHER_TEXT_PREFIX, FATHER_TYPE, MIXING_FORMULA, MIXING_RULE, MOTHER_LAYER_PREFIX, MOTHER_TYPE,
    child_config, child_tensors, default_layer_map,
)
from release.parents.metadata import REDOWNLOAD, read_config, read_folder
from release.parents.tensors import open_shard, parent_tensor

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TensorSource:
    """Where one child tensor lives in a parent: the shard file and the tensor's name in it."""

    path: Path
    key: str


def modeling_files() -> list[Path]:
    """The trust_remote_code files every child folder carries next to its config.json."""
    from modeling import configuration_darwin

    folder = Path(configuration_darwin.__file__).parent
    return [folder / "configuration_darwin.py", folder / "modeling_darwin.py"]


def read_model_type(folder: Path, role: str) -> str:
    """A parent folder's model_type (a damaged config.json is a one-line error)."""
    return read_config(role, folder)["model_type"]


def weight_files(folder: Path, role: str = "parent") -> dict[str, Path]:
    """Tensor name -> shard file path, from the index (or the single model.safetensors), headers not read
    for shards that are absent (a selective pull holds only the needed ones)."""
    return {key: Path(folder) / t.file for key, t in read_folder(role, folder).tensors.items()}


def make_child_config(father_dir: Path, mother_dir: Path, ratios: list[float] | None,
                      layer_map: list[int] | None = None,
                      stored: Literal["active", "all"] = "active") -> DarwinConfig:
    """The child's config for `ratios` (None = all 0), from the parents' folders (see childmap.child_config)."""
    return child_config(read_folder("father", father_dir), read_folder("mother", mother_dir), ratios,
                        layer_map=layer_map, stored=stored)


def child_tensor_sources(father_dir: Path, mother_dir: Path, config: DarwinConfig) -> dict[str, TensorSource]:
    """child tensor name -> where it is read from, for the child described by `config` (either form)."""
    folders = {"father": Path(father_dir), "mother": Path(mother_dir)}
    metas = {role: read_folder(role, folder) for role, folder in folders.items()}
    sources = {}
    for child_key, t in child_tensors(metas["father"], metas["mother"], config).items():
        path = folders[t.role] / t.file
        if not path.is_file():
            raise ReleaseError(f"{t.role} index model.safetensors.index.json in {folders[t.role]} names shard "
                               f"{t.file} (for {t.key}), which is missing: {REDOWNLOAD}")
        sources[child_key] = TensorSource(path, t.key)
    return sources


def build_hybrid(father_dir: Path, mother_dir: Path, config: DarwinConfig, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, progress: bool = False):
    """The child of `config` as a live model on `device` in `dtype`, in eval mode, read from the parents."""
    from transformers import GenerationConfig
    from transformers import initialization as init
    from transformers.modeling_utils import local_torch_dtype

    from modeling.modeling_darwin import DarwinForCausalLM

    sources = child_tensor_sources(father_dir, mother_dir, config)
    # As from_pretrained does: meta device, default dtype set, so buffers get the dtypes transformers gives them.
    with local_torch_dtype(dtype, DarwinForCausalLM.__name__), init.no_tie_weights(), torch.device("meta"):
        model = DarwinForCausalLM(config)
    model.to_empty(device=device)
    targets = model.state_dict(keep_vars=True)
    by_shard: dict[Path, list[tuple[str, str]]] = defaultdict(list)
    for child_key, source in sources.items():
        by_shard[source.path].append((child_key, source.key))
    with torch.no_grad():
        for shard, pairs in tqdm(sorted(by_shard.items()), desc="read parent shards", unit="shard",
                                 disable=not progress):
            role = "father" if shard.parent == Path(father_dir) else "mother"
            with open_shard(role, shard, pairs[0][1], device=str(device)) as f:
                for child_key, key in pairs:
                    tensor, target = parent_tensor(role, f, shard, key), targets[child_key]
                    if tensor.shape != target.shape:
                        raise ReleaseError(f"{shard.name}: {key} has shape {tuple(tensor.shape)}, the child needs "
                                           f"{tuple(target.shape)} for {child_key}: the parent's config.json "
                                           "does not match its weights")
                    target.copy_(tensor)
                    target._is_hf_initialized = True  # so initialize_weights below leaves it alone
    model.tie_weights()
    model.initialize_weights()  # only what no file holds: rotary tables, embedding scales, the ratio buffer
    if (Path(father_dir) / "generation_config.json").is_file():  # the father's stop tokens and defaults
        model.generation_config = GenerationConfig.from_pretrained(father_dir)
    log.info("built Darwin hybrid: %d tensors from %d parent shards, %d mother FFNs, on %s in %s",
             len(sources), len(by_shard), len(config.stored_mother_layers), device, dtype)
    return model.eval()


def build_search_hybrid(father_dir: Path, mother_dir: Path, layer_map: list[int] | None = None,
                        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        progress: bool = False):
    """The live hybrid the search evaluates: every mapped mother FFN present, all ratios 0 (= the father)
    until `model.set_ratios(genome)`."""
    config = make_child_config(father_dir, mother_dir, ratios=None, layer_map=layer_map, stored="all")
    return build_hybrid(father_dir, mother_dir, config, device=device, dtype=dtype, progress=progress)
