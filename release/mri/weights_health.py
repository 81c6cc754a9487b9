"""The health check of a same-architecture child (linear, slerp, ties, dare_ties) against both parents.

The parents and the child are stock models of one class, so each is loaded with `AutoModelForCausalLM`
(no custom code). On the probe prompts a hook on each of the child's decoder layers reads the call (its
input h and arguments: positions, mask, ...) and its output h'; the father's and the mother's layer i are
then run on that very call. Per layer, averaged over the real (unpadded) tokens:

- cos(c_child, c_father), |c_child| / |c_father| and the same against the mother, where c = u - u0 is the
  layer's own contribution: its update u = h' - h to the residual stream, less the update u0 the child's
  layer makes with every weight zero (Gemma 4's `layer_scalar` rescales the stream even then, which alone
  kept a zeroed layer's update at cosine ~0.6 with its parents'); all on the child's own input (a local
  measure: an earlier layer's drift does not count against this one);
- cos of the child's hidden state after the layer with the father's and with the mother's (each model on
  its own stream: how far the child has drifted by then; reported, not judged).

A merged layer lies between its parents, so its update stays close to at least one parent's; a layer
whose update diverges from BOTH (cosine below `min_cosine`, or norm off by more than `max_norm_ratio`
either way) is flagged: interference, or a damaged layer. Perplexities, the generation check, the verdict,
health.json and health.png are the cross-architecture check's (release/mri/health.py).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from release.errors import ReleaseError
from release.mri.health import CALIBRATION_TEXT, cosine, diverges, text_perplexity, norm_ratio, write_verdict
from release.mri.prompts import probe_prompts

log = logging.getLogger(__name__)


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder layers of a stock CausalLM or ConditionalGeneration model (not a vision/audio tower's)."""
    n = model.config.get_text_config().num_hidden_layers
    for name, module in model.named_modules():
        if (isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] == "layers" and len(module) == n
                and not any(part in name for part in ("vision", "audio"))):
            return module
    raise ReleaseError(f"{type(model).__name__} has no list of {n} decoder layers the health check can read: "
                       "set health.enabled: false for this architecture")


def _capture(layers, record: dict, calls: bool) -> list:
    """Hooks storing each layer's output hidden state and, with `calls`, its input and call arguments."""
    def inp(m, args, kwargs, i):
        record[("call", i)] = (args, kwargs)

    def out(m, args, output, i):
        record[("out", i)] = output[0] if isinstance(output, tuple) else output

    handles = []
    for i, layer in enumerate(layers):
        if calls:
            handles.append(layer.register_forward_pre_hook(lambda m, a, k, i=i: inp(m, a, k, i), with_kwargs=True))
        handles.append(layer.register_forward_hook(lambda m, a, o, i=i: out(m, a, o, i)))
    return handles


@torch.no_grad()
def layer_states(model, batch, calls: bool = False) -> dict:
    seen = {}
    handles = _capture(decoder_layers(model), seen, calls)
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return seen


def _hidden_in(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@torch.no_grad()
def _update(layer, args, kwargs) -> torch.Tensor:
    """What `layer` adds to the residual stream on this call."""
    output = layer(*args, **kwargs)
    return (output[0] if isinstance(output, tuple) else output) - _hidden_in(args, kwargs)


@torch.no_grad()
def _null_update(layer, args, kwargs) -> torch.Tensor:
    """What `layer` adds on this call with every weight zero (its buffers kept): the part of an update that
    says nothing about the layer's weights."""
    null = copy.deepcopy(layer)
    for p in null.parameters():
        p.zero_()
    return _update(null, args, kwargs)


@torch.no_grad()
def layer_table(child, father, mother, tokenizer, per_domain: int | None, seed: int) -> list[dict]:
    n = len(decoder_layers(child))
    keys = ("cos_father", "norm_father", "cos_mother", "norm_mother", "hidden_cos_father", "hidden_cos_mother")
    sums = [dict.fromkeys(keys, 0.0) for _ in range(n)]
    tokens = 0
    device = next(child.parameters()).device
    parents = {"father": (father, decoder_layers(father)), "mother": (mother, decoder_layers(mother))}
    for prompts in probe_prompts(per_domain, seed).values():
        # one right-padded batch per domain; padding positions are left out of every statistic
        batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right").to(device)
        real = batch.attention_mask.bool().flatten()
        c = layer_states(child, batch, calls=True)
        child_layers = decoder_layers(child)
        nulls = [_null_update(child_layers[i], *c[("call", i)]) for i in range(n)]
        for role, (model, layers) in parents.items():
            own = layer_states(model, batch)
            for i in range(n):
                args, kwargs = c[("call", i)]
                update = c[("out", i)] - _hidden_in(args, kwargs) - nulls[i]
                parent = _update(layers[i], args, kwargs) - nulls[i]
                row = sums[i]
                row[f"cos_{role}"] += float(cosine(update, parent)[real].sum())
                row[f"norm_{role}"] += float(norm_ratio(update, parent)[real].sum())
                row[f"hidden_cos_{role}"] += float(cosine(c[("out", i)], own[("out", i)])[real].sum())
        tokens += int(real.sum())
    return [{"layer": i, **{k: v / tokens for k, v in row.items()}} for i, row in enumerate(sums)]


def weights_health_check(child_dir: Path, father_dir: Path, mother_dir: Path, out: Path, spec, ratios: dict,
                         device="cpu", dtype=torch.float32, per_domain: int | None = None, seed: int = 0,
                         calibration_text: str | None = None) -> dict:
    """Run the check; write out/health.json and out/health.png; return the health.json content.
    `ratios`: the genome record's {"attn": [...], "ffn": [...], "norms": [...]} (recorded per layer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(folder):
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()

    text = calibration_text or CALIBRATION_TEXT
    tokenizer = AutoTokenizer.from_pretrained(father_dir)
    child, father, mother = load(child_dir), load(father_dir), load(mother_dir)
    layers = layer_table(child, father, mother, tokenizer, per_domain, seed)
    for row in layers:
        i = row["layer"]
        row["ratio"] = {"attn": ratios["attn"][i], "ffn": ratios["ffn"][i]}
        row["kind"] = "merged"
        row["flagged"] = (diverges(row["cos_father"], row["norm_father"], spec.min_cosine, spec.max_norm_ratio)
                          and diverges(row["cos_mother"], row["norm_mother"], spec.min_cosine, spec.max_norm_ratio))
    perplexity = {"child": text_perplexity(child, tokenizer, text), "father": text_perplexity(father, tokenizer, text),
                  "mother": text_perplexity(mother, AutoTokenizer.from_pretrained(mother_dir), text)}
    del father, mother

    return write_verdict(child, tokenizer, layers, perplexity, spec, per_domain, seed, out,
                         measure="layer update (same architecture)", what="layer update")
