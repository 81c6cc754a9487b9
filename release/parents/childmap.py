"""The child's tensor list: which parent tensor feeds each child tensor, with the shape the child expects.

Works on `ParentMeta` (config + safetensors headers), so the same checks run before any download (the
plan, the pull's file selection) and on local folders (building the hybrid, emitting the child). The
child's expected shapes come from its own model built on the meta device: no memory, no weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from modeling.configuration_darwin import MIXING_RULES, DarwinConfig, layer_kinds_for
from release.errors import ReleaseError
from release.parents.metadata import REDOWNLOAD, ParentMeta

FATHER_TYPE, MOTHER_TYPE = "gemma4", "qwen3_5"
FATHER_TEXT_PREFIX = "model.language_model."  # Gemma4ForConditionalGeneration's text decoder
MOTHER_LAYER_PREFIX = "model.language_model.layers."  # Qwen3_5ForConditionalGeneration's text layers
MIXING_RULE = "ffn_output_blend"
MIXING_FORMULA = MIXING_RULES[MIXING_RULE]

_MOTHER_FFN_KEY = re.compile(r"model\.mother_ffns\.(\d+)\.(.+)")


@dataclass(frozen=True)
class ChildTensor:
    """One child tensor: the parent and tensor it is read from, and its shape and dtype there."""

    role: str  # "father" or "mother"
    key: str  # tensor name in the parent
    file: str  # the parent's shard file holding it
    shape: tuple[int, ...]
    dtype: str | None


def default_layer_map(n_father: int, n_mother: int) -> list[int]:
    """Father layer i takes mother layer round(i * (L_m - 1) / (L_f - 1)): both stacks' ends line up."""
    if n_father == 1:
        return [0]
    return [round(i * (n_mother - 1) / (n_father - 1)) for i in range(n_father)]


def _config_object(meta: ParentMeta):
    from transformers import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[meta.model_type].from_dict(meta.config)
    except Exception as e:  # transformers raises many types for a config it cannot read
        reason = (str(e).splitlines() or [""])[0][:200]
        raise ReleaseError(f"{meta.where}: config.json cannot be read by transformers as {meta.model_type} "
                           f"({type(e).__name__}: {reason}): {REDOWNLOAD}") from None


def parent_text_configs(father: ParentMeta, mother: ParentMeta):
    """(father's full config, mother's text config), after checking they are a Gemma 4 father and a Qwen3.5
    mother of the same hidden size."""
    if (father.model_type, mother.model_type) == (MOTHER_TYPE, FATHER_TYPE):
        raise ReleaseError(
            f"{father.where} is a {MOTHER_TYPE} model and {mother.where} a {FATHER_TYPE} one: "
            "swap father and mother in the release config (the father is the Gemma 4)"
        )
    if father.model_type != FATHER_TYPE:
        raise ReleaseError(f"{father.where} is a {father.model_type!r} model, expected {FATHER_TYPE!r} "
                           "(Gemma 4): choose a Gemma 4 ConditionalGeneration checkpoint as father")
    if mother.model_type != MOTHER_TYPE:
        raise ReleaseError(f"{mother.where} is a {mother.model_type!r} model, expected {MOTHER_TYPE!r} "
                           "(Qwen3.5): choose a Qwen3.5 ConditionalGeneration checkpoint as mother")
    father_config = _config_object(father)
    mother_text = _config_object(mother).text_config
    if father_config.text_config.hidden_size != mother_text.hidden_size:
        raise ReleaseError(
            f"hidden sizes differ: father {father_config.text_config.hidden_size}, mother {mother_text.hidden_size}; "
            "FFN outputs can only be blended between parents of the same hidden size"
        )
    return father_config, mother_text


def checked_layer_map(layer_map: list[int] | None, n_father: int, n_mother: int) -> list[int]:
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


def child_config(father: ParentMeta, mother: ParentMeta, ratios: list[float] | None,
                 layer_map: list[int] | None = None, stored: Literal["active", "all"] = "active") -> DarwinConfig:
    """The child's config for `ratios` (None = all 0): the father's text config plus the blend.

    stored="all" keeps every mapped mother FFN and every father FFN (the search form, any genome runs);
    "active" only what each layer's kind needs (the shipped form): mother FFNs of layers with a nonzero ratio,
    father FFNs of layers with a ratio below 1.
    """
    if stored not in ("active", "all"):
        raise ValueError(f"stored must be 'active' or 'all', not {stored!r}")
    father_config, mother_text = parent_text_configs(father, mother)
    text = father_config.text_config.to_dict()
    n_father = text["num_hidden_layers"]
    layer_map = checked_layer_map(layer_map, n_father, mother_text.num_hidden_layers)
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
            mother_intermediate_size=mother_text.intermediate_size,
            mother_hidden_act=mother_text.hidden_act,
            mother_rms_norm_eps=mother_text.rms_norm_eps,
            mother_norm_zero_centred=True,  # Qwen3.5's RMSNorm multiplies by (1 + weight)
            ratios=ratios,
            layer_map=layer_map,
            stored_mother_layers=kept,
            mixing_rule=MIXING_RULE,
            layer_kinds=None if stored == "all" else layer_kinds_for(ratios),
            architectures=["DarwinForCausalLM"],
            dtype=father_config.dtype or father_config.text_config.dtype,  # the child keeps the parents' dtype
        )
    except ValueError as e:
        raise ReleaseError(f"child genome: {e}") from None


def meta_model(config: DarwinConfig):
    """The child model on the meta device: its tensor names and shapes, no memory."""
    import torch

    from modeling.modeling_darwin import DarwinForCausalLM

    with torch.device("meta"):
        return DarwinForCausalLM(config)


def parent_key(child_key: str) -> tuple[str, str]:
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


def expected_shapes(config: DarwinConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of the child holds (tied weights stored once) -> its shape."""
    model = meta_model(config)
    tied = set(model.all_tied_weights_keys)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}


def child_tensors(father: ParentMeta, mother: ParentMeta, config: DarwinConfig) -> dict[str, ChildTensor]:
    """child tensor name -> its source, after checking each exists in its parent with the shape the child needs."""
    parents = {"father": father, "mother": mother}
    for parent in parents.values():
        if not parent.tensors:
            raise ReleaseError(f"no safetensors weights in {parent.where}: expected model.safetensors or an "
                               "index with shards")
    out = {}
    for child_key, shape in expected_shapes(config).items():
        role, key = parent_key(child_key)
        parent = parents[role]
        info = parent.tensors.get(key)
        if info is None:
            raise ReleaseError(f"{parent.where} lacks tensor {key} (needed for {child_key}): re-download the "
                               f"{role}, its checkpoint is incomplete or not the expected layout")
        if info.shape is not None and info.shape != shape:
            raise ReleaseError(f"{parent.where}: {key} has shape {info.shape} in {info.file}, the child needs "
                               f"{shape} for {child_key}: the parent's config.json does not match its weights")
        out[child_key] = ChildTensor(role, key, info.file, shape, info.dtype)
    return out
