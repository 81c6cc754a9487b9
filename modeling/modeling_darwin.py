"""Darwin child: the father's Gemma 4 text decoder, each FFN blended with a mother (Qwen3.5) FFN.

Mixing rule "ffn_output_blend". For father layer i with ratio r = ratios[i] and mother layer j = layer_map[i],
after the attention block (h is the residual stream):

    h = h + (1 - r) * PostNorm_F(MLP_F(PreNorm_F(h))) + r * PostNorm_F(MLP_M(Norm_M(h)))

F is the father's layer i (Gemma 4: gated gelu MLP between pre/post-feedforward RMSNorms); M is the mother's
layer j (Qwen3.5: gated silu MLP after its zero-centred pre-FFN norm, `post_attention_layernorm`). The
outputs are blended, not the weights (the two FFNs differ in width and activation), and the mother branch goes
through the father's post-FFN norm so that its scale matches the father's residual stream. A layer at r = 0
runs no mother computation and needs no mother weights: with every r = 0 the child is the father exactly.

A shipped child records each layer's kind (`layer_kinds` in its config): "father" (r = 0, father FFN only),
"mother" (r = 1: the mother branch alone, `h + PostNorm_F(MLP_M(Norm_M(h)))`; the layer stores and allocates
no father FFN and no father pre-FFN norm) or "blend" (both FFNs). Without `layer_kinds` every layer holds the
father FFN (the search form).
Everything else (attention, KV sharing, sliding/full layers, per-layer inputs, layer scalars, tied
embeddings, logit softcapping) is transformers' own Gemma 4 code.

Checkpoint keys:

    model.embed_tokens.weight, model.embed_tokens_per_layer.weight, model.norm.weight,
    model.per_layer_model_projection.weight, model.per_layer_projection_norm.weight,
    model.layers.N.*                                 father layer N, named as in Gemma4ForCausalLM
    model.mother_ffns.J.norm.weight                  mother layer J's pre-FFN norm (her post_attention_layernorm)
    model.mother_ffns.J.{gate,up,down}_proj.weight   mother layer J's FFN
    lm_head.weight                                   tied to model.embed_tokens.weight, not stored

A mother FFN is stored once, under its mother layer J, however many father layers blend it in. The search
form stores every mapped mother FFN, so that any genome runs; a shipped child stores only those with a
nonzero ratio (`stored_mother_layers` in the config). The ratios live in one buffer on the model's device
(`model.model.mother_ffns.ratios`); `set_ratios` rewrites it in place and copies no weight.

This file ships in every child repository and runs under `trust_remote_code`: it imports only `torch` and
`transformers`.
"""

import torch
from torch import nn

# First: checks the installed transformers (configuration_darwin.py) before anything of Gemma 4 is imported.
from .configuration_darwin import DarwinConfig, check_transformers_version

check_transformers_version()

from transformers import initialization as init  # noqa: E402
from transformers.activations import ACT2FN  # noqa: E402
from transformers.modeling_utils import PreTrainedModel  # noqa: E402
from transformers.models.gemma4.modeling_gemma4 import (  # noqa: E402
    Gemma4ForCausalLM,
    Gemma4PreTrainedModel,
    Gemma4RMSNorm,
    Gemma4TextDecoderLayer,
    Gemma4TextModel,
)
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5RMSNorm  # noqa: E402


class DarwinMotherFFN(nn.Module):
    """One mother layer's FFN with her own pre-FFN norm: MLP_M(Norm_M(h))."""

    def __init__(self, config: DarwinConfig):
        super().__init__()
        hidden, width = config.hidden_size, config.mother_intermediate_size
        norm_class = Qwen3_5RMSNorm if config.mother_norm_zero_centred else Gemma4RMSNorm
        self.norm = norm_class(hidden, eps=config.mother_rms_norm_eps)
        self.gate_proj = nn.Linear(hidden, width, bias=False)
        self.up_proj = nn.Linear(hidden, width, bias=False)
        self.down_proj = nn.Linear(width, hidden, bias=False)
        self.act_fn = ACT2FN[config.mother_hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = self.norm(hidden_states)
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DarwinMotherFFNs(nn.ModuleDict):
    """The stored mother FFNs keyed by mother layer, and the blend state every decoder layer reads: the ratio
    buffer (on the model's device) and a host-side copy of which father layers are active, so that skipping a
    layer at r = 0 never waits on the device."""

    def __init__(self, config: DarwinConfig):
        super().__init__({str(j): DarwinMotherFFN(config) for j in config.stored_mother_layers})
        self.layer_map = config.layer_map
        self.register_buffer("ratios", torch.tensor(config.ratios), persistent=False)
        self.active = [r != 0 for r in config.ratios]

    def for_layer(self, layer_idx: int) -> DarwinMotherFFN:
        return self[str(self.layer_map[layer_idx])]

    @torch.no_grad()
    def write_ratios(self, ratios: list[float]) -> None:
        self.ratios.copy_(torch.tensor(ratios, dtype=self.ratios.dtype))
        self.active = [r != 0 for r in ratios]


class DarwinFFNStep(nn.Module):
    """A hook point with no weights: `forward(residual, update)` returns `update`, the FFN step's contribution
    to the residual stream, so forward hooks can read both (the MRI probe and the health check do)."""

    def forward(self, residual: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        return update


class DarwinDecoderLayer(Gemma4TextDecoderLayer):
    """A Gemma 4 decoder layer whose FFN step follows the mixing rule; attention and PLE are unchanged."""

    def __init__(self, config: DarwinConfig, layer_idx: int, mother_ffns: DarwinMotherFFNs):
        super().__init__(config, layer_idx)
        # Owned (and saved) once by the text model; a plain reference outside the module tree, so the shared
        # FFNs are neither registered nor saved once per layer.
        self.__dict__["mother_ffns"] = mother_ffns
        self.kind = config.layer_kinds[layer_idx] if config.layer_kinds else "blend"
        if self.kind == "mother":  # a mother-only layer holds no father FFN: nothing stored, nothing allocated
            self.mlp = None
            self.pre_feedforward_layernorm = None
        self.ffn_step = DarwinFFNStep()

    def forward(
        self,
        hidden_states: torch.Tensor,
        per_layer_input: torch.Tensor | None = None,
        shared_kv_states=None,
        position_embeddings: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, _ = self.self_attn(
            hidden_states=hidden_states,
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            shared_kv_states=shared_kv_states,
            position_ids=position_ids,
            cache=cache,
            **kwargs,
        )
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = residual + hidden_states

        # The mixing rule (module docstring).
        residual = hidden_states
        blend = self.mother_ffns
        if self.kind == "mother":  # r = 1: the mother branch alone
            update = self.post_feedforward_layernorm(blend.for_layer(self.layer_idx)(residual))
        else:
            father = self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(hidden_states)))
            if blend.active[self.layer_idx]:
                r = blend.ratios[self.layer_idx]
                mother = self.post_feedforward_layernorm(blend.for_layer(self.layer_idx)(residual))
                update = (1 - r) * father + r * mother
            else:
                update = father
        hidden_states = residual + self.ffn_step(residual, update)

        if self.hidden_size_per_layer_input:
            residual = hidden_states
            hidden_states = self.per_layer_input_gate(hidden_states)
            hidden_states = self.act_fn(hidden_states)
            hidden_states = hidden_states * per_layer_input
            hidden_states = self.per_layer_projection(hidden_states)
            hidden_states = self.post_per_layer_input_norm(hidden_states)
            hidden_states = residual + hidden_states

        hidden_states *= self.layer_scalar
        return hidden_states


class DarwinPreTrainedModel(Gemma4PreTrainedModel):
    config: DarwinConfig
    config_class = DarwinConfig
    base_model_prefix = "model"
    _no_split_modules = ["DarwinDecoderLayer"]
    input_modalities = ("text",)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing a checkpoint whose shards lack a weight its config names
        (a mother FFN listed in `stored_mother_layers`, or any father tensor): transformers would initialise it
        at random with only a warning, and the model would load and silently compute something else."""
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        missing = sorted(info["missing_keys"])
        if missing:
            where = args[0] if args else kwargs.get("pretrained_model_name_or_path", "the checkpoint")
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise ValueError(
                f"{where}: its weights lack {len(missing)} tensor(s) that config.json needs ({shown}); refusing to "
                "fill them with random values: re-download the model, or fix stored_mother_layers in config.json"
            )
        return (model, info) if wants_info else model

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, Qwen3_5RMSNorm):
            init.zeros_(module.weight)  # zero-centred: multiplies by 1 + weight
        elif isinstance(module, DarwinMotherFFNs):
            init.copy_(module.ratios, torch.tensor(self.config.ratios))  # not in the checkpoint: from config.json


class DarwinTextModel(DarwinPreTrainedModel, Gemma4TextModel):
    """Gemma4TextModel with Darwin decoder layers and the mother FFNs they blend in."""

    def __init__(self, config: DarwinConfig):
        super().__init__(config)  # Gemma 4's embeddings, PLE, norm and rotary tables
        self.mother_ffns = DarwinMotherFFNs(config)
        # Replaces the stock layers Gemma4TextModel just built (free under from_pretrained's meta device).
        self.layers = nn.ModuleList(
            [DarwinDecoderLayer(config, i, self.mother_ffns) for i in range(config.num_hidden_layers)]
        )
        self.post_init()

    @property
    def ratios(self) -> torch.Tensor:
        return self.mother_ffns.ratios

    def set_ratios(self, ratios) -> None:
        """Switch genome in place: writes the ratio buffer, copies no weight, builds nothing."""
        if isinstance(ratios, torch.Tensor):
            ratios = ratios.detach().cpu().tolist()
        values = [float(r) for r in ratios]
        self.config.check_ratios(values)
        self.mother_ffns.write_ratios(values)
        self.config.ratios = values  # so save_pretrained writes the genome that runs
        if self.config.layer_kinds is not None:  # mother-only layers stay so; the others follow their ratio
            self.config.layer_kinds = [k if k == "mother" else ("father" if r == 0 else "blend")
                                       for k, r in zip(self.config.layer_kinds, values)]


class DarwinForCausalLM(DarwinPreTrainedModel, Gemma4ForCausalLM):
    """The Darwin child with Gemma 4's LM head (tied, softcapped); `forward` is Gemma4ForCausalLM's."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: DarwinConfig):
        # Not Gemma4ForCausalLM.__init__, which would build a stock Gemma4TextModel only to replace it.
        PreTrainedModel.__init__(self, config)
        self.model = DarwinTextModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @property
    def ratios(self) -> torch.Tensor:
        return self.model.ratios

    def set_ratios(self, ratios) -> None:
        self.model.set_ratios(ratios)


DarwinForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["DarwinForCausalLM", "DarwinPreTrainedModel", "DarwinTextModel"]
