"""Configuration of a Darwin child: a Gemma 4 text decoder whose FFNs are blended with a mother's FFNs.

The config is the father's Gemma 4 text config (every Gemma 4 field, flat, so the stock Gemma 4 components
read it unchanged) plus the blend: the mother FFN's shape, one ratio per father layer, the father-layer ->
mother-layer map, which mother FFNs the checkpoint stores and the name of the mixing rule. The mixing rule
itself is stated in `modeling_darwin.py`.

This file ships in every child repository and runs under `trust_remote_code`: it imports only `transformers`.

Pinned transformers: these files subclass transformers' Gemma 4 decoder layer (re-implementing its `forward` with
the arguments the stock model passes), reuse Qwen3.5's RMSNorm and hook into `from_pretrained`'s weight
initialisation. None of that is public API: minor releases of transformers change it without notice, while
patch releases only fix bugs. So the installed transformers must have the same major.minor as
`TRANSFORMERS_VERSION`, the release these files were written and tested for; the config records it as
`darwin_transformers_version`. The check runs at import, before anything from Gemma 4 is imported, so a user on
another version gets one line naming what to install instead of an ImportError deep inside transformers.
"""

import transformers

TRANSFORMERS_VERSION = "5.24.0"


def check_transformers_version(installed: str | None = None) -> None:
    """Refuse a transformers whose major.minor differs from TRANSFORMERS_VERSION (see the module docstring)."""
    installed = transformers.__version__ if installed is None else installed
    if installed.split(".")[:2] != TRANSFORMERS_VERSION.split(".")[:2]:
        raise ImportError(
            f"this Darwin model's code was written for transformers {TRANSFORMERS_VERSION} but {installed} is "
            f"installed: run `pip install transformers=={TRANSFORMERS_VERSION}`"
        )


check_transformers_version()

from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig  # noqa: E402 (after the check)

# Mixing rules this code implements, by name (explained in modeling_darwin.py's docstring).
MIXING_RULES = {
    "ffn_output_blend": "h + (1 - r) * PostNorm_F(MLP_F(PreNorm_F(h))) + r * PostNorm_F(MLP_M(Norm_M(h)))",
}

# Layer kinds of a shipped child. A "father" layer may still blend in a mother FFN that the checkpoint stores
# for another layer; a "mother" layer has no father FFN and runs at r = 1 only.
LAYER_KINDS = ("father", "mother", "blend")


def layer_kinds_for(ratios: list[float]) -> list[str]:
    """The kind of each layer of a shipped child: r = 0 father FFN only, r = 1 mother FFN only, else blend."""
    return ["father" if r == 0 else "mother" if r == 1 else "blend" for r in ratios]


# Written into config.json so `AutoConfig`/`AutoModelForCausalLM` find these classes with `trust_remote_code`.
AUTO_MAP = {
    "AutoConfig": "configuration_darwin.DarwinConfig",
    "AutoModelForCausalLM": "modeling_darwin.DarwinForCausalLM",
}


class DarwinConfig(Gemma4TextConfig):
    r"""
    mother_intermediate_size (`int`):
        Width of the mother's FFN (gate/up projections).
    mother_hidden_act (`str`):
        Activation of the mother's FFN (a key of `transformers.activations.ACT2FN`).
    mother_rms_norm_eps (`float`):
        Epsilon of the mother's pre-FFN RMSNorm.
    mother_norm_zero_centred (`bool`):
        Whether the mother's RMSNorm multiplies by `1 + weight` (Qwen3.5) rather than by `weight`.
    ratios (`list[float]`):
        Blend ratio of each father layer, in [0, 1]; 0 means the pure father FFN. Defaults to all 0.
    layer_map (`list[int]`, *optional*):
        Mother layer whose FFN each father layer blends in. Required as soon as any FFN is stored.
    stored_mother_layers (`list[int]`, *optional*):
        Mother layers whose FFN (and pre-FFN norm) the checkpoint holds, each once. Defaults to every mapped
        layer (the search form); a shipped child stores only those with a nonzero ratio.
    mixing_rule (`str`):
        Name of the rule combining the two FFN outputs (see `modeling_darwin.py`).
    darwin_transformers_version (`str`):
        The transformers release this model's code was written for (`TRANSFORMERS_VERSION`); install it to run
        the model.
    layer_kinds (`list[str]`, *optional*):
        What each layer stores and runs: "father" (the father FFN only, r = 0), "mother" (the mother FFN only,
        r = 1: no father FFN weights) or "blend" (both). Defaults to every layer holding the father FFN and
        blending in any stored mother FFN (the search form, where any genome runs).
    """

    model_type = "darwin"

    mother_intermediate_size: int = 9216
    mother_hidden_act: str = "silu"
    mother_rms_norm_eps: float = 1e-6
    mother_norm_zero_centred: bool = True
    ratios: list[float] | None = None
    layer_map: list[int] | None = None
    stored_mother_layers: list[int] | None = None
    mixing_rule: str = "ffn_output_blend"
    darwin_transformers_version: str = TRANSFORMERS_VERSION
    layer_kinds: list[str] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        n_layers = self.num_hidden_layers
        self.ratios = [float(r) for r in (self.ratios if self.ratios is not None else [0.0] * n_layers)]
        if self.layer_map is not None:
            self.layer_map = [int(j) for j in self.layer_map]
        stored = self.stored_mother_layers if self.stored_mother_layers is not None else self.layer_map or []
        self.stored_mother_layers = sorted({int(j) for j in stored})
        self.darwin_transformers_version = TRANSFORMERS_VERSION  # what the code writing this config needs
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)
        self._check_blend()

    def _check_blend(self) -> None:
        if self.mixing_rule not in MIXING_RULES:
            raise ValueError(f"unknown mixing_rule {self.mixing_rule!r}: this code implements {list(MIXING_RULES)}")
        if self.enable_moe_block:
            raise ValueError("Darwin children blend dense FFNs: a Gemma 4 MoE father is not supported")
        if self.layer_map is None and self.stored_mother_layers:
            raise ValueError("stored_mother_layers needs a layer_map (father layer -> mother layer)")
        if self.layer_map is not None and len(self.layer_map) != self.num_hidden_layers:
            raise ValueError(
                f"layer_map has {len(self.layer_map)} entries, expected one per layer ({self.num_hidden_layers})"
            )
        if any(j < 0 for j in (self.layer_map or []) + self.stored_mother_layers):
            raise ValueError("layer_map and stored_mother_layers hold mother layer indices, which are >= 0")
        if self.layer_kinds is not None:
            if len(self.layer_kinds) != self.num_hidden_layers:
                raise ValueError(f"layer_kinds has {len(self.layer_kinds)} entries, expected one per layer "
                                 f"({self.num_hidden_layers})")
            unknown = sorted(set(self.layer_kinds) - set(LAYER_KINDS))
            if unknown:
                raise ValueError(f"unknown layer kinds {unknown}: use {list(LAYER_KINDS)}")
        self.check_ratios(self.ratios)

    def check_ratios(self, ratios: list[float]) -> None:
        """Refuse a genome this checkpoint cannot run: wrong length, out of [0, 1], a nonzero ratio whose
        mother FFN is not stored, or a ratio its layer's kind does not allow."""
        if len(ratios) != self.num_hidden_layers:
            raise ValueError(f"got {len(ratios)} ratios, expected one per layer ({self.num_hidden_layers})")
        outside = [i for i, r in enumerate(ratios) if not 0.0 <= r <= 1.0]  # also catches NaN
        if outside:
            raise ValueError(f"ratios of layers {outside} are outside [0, 1]")
        stored = set(self.stored_mother_layers)
        layer_map = self.layer_map or [None] * len(ratios)
        missing = [i for i, r in enumerate(ratios) if r != 0 and layer_map[i] not in stored]
        if missing:
            raise ValueError(
                f"layers {missing} have nonzero ratios but their mother FFNs are not stored in this model: "
                "keep them at 0, or build the model with those FFNs (the search form stores every mapped one)"
            )
        kinds = self.layer_kinds or ["blend"] * len(ratios)
        wrong = [i for i, (k, r) in enumerate(zip(kinds, ratios)) if k == "mother" and r != 1]
        if wrong:
            raise ValueError(f"layers {wrong} are mother-only in this model (no father FFN stored) and run at "
                             "r = 1 only: load a model that stores both FFNs for them")


DarwinConfig.register_for_auto_class()

__all__ = ["LAYER_KINDS", "TRANSFORMERS_VERSION", "DarwinConfig", "check_transformers_version",
           "layer_kinds_for"]
