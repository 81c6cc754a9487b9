"""Assemble a Darwin child from its two parents' checkpoint folders, reading only the tensors it needs.

One mapping, `child_tensor_sources`, says where every tensor of a child comes from (parent shard file and
tensor name). The live hybrid for the search (`build_search_hybrid`) and the child written to disk by
`release.emit` both follow it, so what was evaluated is what ships. Neither parent is ever materialised whole:
the model is built on the meta device, then filled tensor by tensor from the parents' safetensors shards.

Parents are checkpoints in their ConditionalGeneration form, like the real repos: the father a Gemma 4
(`model.language_model.*`), the mother a Qwen3.5 (only her `model.language_model.layers.J.mlp.*` and
`...layers.J.post_attention_layernorm.weight`, her pre-FFN norm, are read).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from modeling.configuration_darwin import MIXING_RULES, DarwinConfig, layer_kinds_for
from release.errors import ReleaseError

log = logging.getLogger(__name__)

FATHER_TYPE, MOTHER_TYPE = "gemma4", "qwen3_5"
FATHER_TEXT_PREFIX = "model.language_model."  # Gemma4ForConditionalGeneration's text decoder
MOTHER_LAYER_PREFIX = "model.language_model.layers."  # Qwen3_5ForConditionalGeneration's text layers
MIXING_RULE = "ffn_output_blend"
MIXING_FORMULA = MIXING_RULES[MIXING_RULE]

_MOTHER_FFN_KEY = re.compile(r"model\.mother_ffns\.(\d+)\.(.+)")


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


def default_layer_map(n_father: int, n_mother: int) -> list[int]:
    """Father layer i takes mother layer round(i * (L_m - 1) / (L_f - 1)): both stacks' ends line up."""
    if n_father == 1:
        return [0]
    return [round(i * (n_mother - 1) / (n_father - 1)) for i in range(n_father)]


_REDOWNLOAD = "re-download it (--force pull) or choose a revision whose checkpoint is complete"


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ReleaseError(f"{what}: {path} not found: point it at a complete checkpoint folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # not JSON, or not UTF-8
        data = None
    if not isinstance(data, dict):
        raise ReleaseError(f"{what} {path} is not valid JSON holding a mapping: {_REDOWNLOAD}")
    return data


def _model_type(folder: Path, role: str) -> str:
    path = Path(folder) / "config.json"
    model_type = _read_json(path, f"{role} config").get("model_type")
    if not isinstance(model_type, str):
        raise ReleaseError(f"{role} config {path} has no model_type: {_REDOWNLOAD}")
    return model_type


def _auto_config(folder: Path, role: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        reason = (str(e).splitlines() or [""])[0][:200]
        raise ReleaseError(f"{role} config {Path(folder) / 'config.json'} cannot be read by transformers "
                           f"({type(e).__name__}: {reason}): {_REDOWNLOAD}") from None


def _parent_text_configs(father_dir: Path, mother_dir: Path):
    """The parents' text configs, after checking they are a Gemma 4 father and a Qwen3.5 mother that fit."""
    father_type, mother_type = _model_type(father_dir, "father"), _model_type(mother_dir, "mother")
    if (father_type, mother_type) == (MOTHER_TYPE, FATHER_TYPE):
        raise ReleaseError(
            f"father {father_dir} is a {MOTHER_TYPE} model and mother {mother_dir} a {FATHER_TYPE} one: "
            "swap father and mother in the release config (the father is the Gemma 4)"
        )
    if father_type != FATHER_TYPE:
        raise ReleaseError(f"father {father_dir} is a {father_type!r} model, expected {FATHER_TYPE!r} "
                           "(Gemma 4): choose a Gemma 4 ConditionalGeneration checkpoint as father")
    if mother_type != MOTHER_TYPE:
        raise ReleaseError(f"mother {mother_dir} is a {mother_type!r} model, expected {MOTHER_TYPE!r} "
                           "(Qwen3.5): choose a Qwen3.5 ConditionalGeneration checkpoint as mother")
    father = _auto_config(father_dir, "father")
    mother = _auto_config(mother_dir, "mother").text_config
    if father.text_config.hidden_size != mother.hidden_size:
        raise ReleaseError(
            f"hidden sizes differ: father {father.text_config.hidden_size}, mother {mother.hidden_size}; "
            "FFN outputs can only be blended between parents of the same hidden size"
        )
    return father, mother


def _checked_layer_map(layer_map: list[int] | None, n_father: int, n_mother: int) -> list[int]:
    if layer_map is None:
        return default_layer_map(n_father, n_mother)
    if len(layer_map) != n_father:
        raise ReleaseError(f"genome.layer_map has {len(layer_map)} entries, expected one per father layer "
                           f"({n_father}): list a mother layer for each, or leave it out for the default map")
    outside = [j for j in layer_map if not 0 <= j < n_mother]
    if outside:
        raise ReleaseError(f"genome.layer_map names mother layers {outside}, but the mother has layers "
                           f"0..{n_mother - 1}: use indices in that range")
    return [int(j) for j in layer_map]


def make_child_config(father_dir: Path, mother_dir: Path, ratios: list[float] | None,
                      layer_map: list[int] | None = None,
                      stored: Literal["active", "all"] = "active") -> DarwinConfig:
    """The child's config for `ratios` (None = all 0): the father's text config plus the blend.

    stored="all" keeps every mapped mother FFN and every father FFN (the search form, any genome runs);
    "active" only what each layer's kind needs (the shipped form): mother FFNs of layers with a nonzero ratio,
    father FFNs of layers with a ratio below 1.
    """
    if stored not in ("active", "all"):
        raise ValueError(f"stored must be 'active' or 'all', not {stored!r}")
    father, mother = _parent_text_configs(Path(father_dir), Path(mother_dir))
    text = father.text_config.to_dict()
    n_father = text["num_hidden_layers"]
    layer_map = _checked_layer_map(layer_map, n_father, mother.num_hidden_layers)
    ratios = [0.0] * n_father if ratios is None else [float(r) for r in ratios]
    if len(ratios) != n_father:
        raise ReleaseError(f"the genome has {len(ratios)} ratios, expected one per father layer ({n_father})")
    if stored == "all":
        kept = sorted(set(layer_map))
    else:
        kept = sorted({layer_map[i] for i, r in enumerate(ratios) if r != 0})
    for key in ("model_type", "transformers_version", "architectures", "dtype"):
        text.pop(key, None)
    try:
        return DarwinConfig(
            **text,
            mother_intermediate_size=mother.intermediate_size,
            mother_hidden_act=mother.hidden_act,
            mother_rms_norm_eps=mother.rms_norm_eps,
            mother_norm_zero_centred=True,  # Qwen3.5's RMSNorm multiplies by (1 + weight)
            ratios=ratios,
            layer_map=layer_map,
            stored_mother_layers=kept,
            mixing_rule=MIXING_RULE,
            layer_kinds=None if stored == "all" else layer_kinds_for(ratios),
            architectures=["DarwinForCausalLM"],
            dtype=father.dtype or father.text_config.dtype,  # the child keeps the parents' dtype
        )
    except ValueError as e:
        raise ReleaseError(f"child genome: {e}") from None


def _weight_files(folder: Path, role: str = "parent") -> dict[str, Path]:
    """Tensor name -> shard file, from the index's weight_map (or the single model.safetensors).

    Shards are not checked here (a selective pull holds only the needed ones): `child_tensor_sources` is.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, f"{role} index").get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ReleaseError(f"{role} index {index} has no weight_map of tensor -> shard: {_REDOWNLOAD}")
        return {key: folder / name for key, name in weight_map.items()}
    single = folder / "model.safetensors"
    if single.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(single), framework="pt") as f:
                return dict.fromkeys(f.keys(), single)
        except SafetensorError as e:
            raise ReleaseError(f"{role} weights {single} are not a readable safetensors file ({e}): "
                               f"{_REDOWNLOAD}") from None
    raise ReleaseError(f"no safetensors weights in {folder}: expected model.safetensors or an index with shards")


def _meta_model(config: DarwinConfig):
    from modeling.modeling_darwin import DarwinForCausalLM

    with torch.device("meta"):
        return DarwinForCausalLM(config)


def _parent_key(child_key: str) -> tuple[str, str]:
    """(parent, tensor name in that parent) for one child tensor."""
    mother = _MOTHER_FFN_KEY.fullmatch(child_key)
    if mother:
        j, rest = mother.groups()
        if rest == "norm.weight":
            return "mother", f"{MOTHER_LAYER_PREFIX}{j}.post_attention_layernorm.weight"
        return "mother", f"{MOTHER_LAYER_PREFIX}{j}.mlp.{rest}"
    if child_key.startswith("model."):
        return "father", FATHER_TEXT_PREFIX + child_key.removeprefix("model.")
    return "father", child_key  # an untied lm_head.weight sits at the top level of the father too


def _stored_keys(model) -> list[str]:
    """Every tensor a checkpoint of `model` holds: its state dict less weights tied to another."""
    tied = set(model.all_tied_weights_keys)
    return [k for k in model.state_dict() if k not in tied]


def child_tensor_sources(father_dir: Path, mother_dir: Path, config: DarwinConfig) -> dict[str, TensorSource]:
    """child tensor name -> where it is read from, for the child described by `config` (either form)."""
    folders = {"father": Path(father_dir), "mother": Path(mother_dir)}
    files = {role: _weight_files(folder, role) for role, folder in folders.items()}
    sources = {}
    for child_key in _stored_keys(_meta_model(config)):
        role, key = _parent_key(child_key)
        if key not in files[role]:
            raise ReleaseError(f"{role} {folders[role]} lacks tensor {key} (needed for {child_key}): "
                               f"re-download the {role}, its checkpoint is incomplete or not the expected layout")
        if not files[role][key].is_file():
            raise ReleaseError(f"{role} index model.safetensors.index.json in {folders[role]} names shard "
                               f"{files[role][key].name} (for {key}), which is missing: {_REDOWNLOAD}")
        sources[child_key] = TensorSource(files[role][key], key)
    return sources


def build_hybrid(father_dir: Path, mother_dir: Path, config: DarwinConfig, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, progress: bool = False):
    """The child of `config` as a live model on `device` in `dtype`, in eval mode, read from the parents."""
    from safetensors import safe_open
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
            with safe_open(str(shard), framework="pt", device=str(device)) as f:
                for child_key, key in pairs:
                    tensor, target = f.get_tensor(key), targets[child_key]
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
