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

The check streams: the child runs first and only what the statistics need of it is kept (per probe batch,
each layer's call, output and contribution), then the father alone, then the mother alone: one model in
memory at a time, never the three together.
"""

from __future__ import annotations

import copy
import gc
import logging
from pathlib import Path

import torch

from release.errors import ReleaseError
from release.mri.health import (CALIBRATION_TEXT, cosine, diverges, greedy_generation, norm_ratio, text_perplexity,
                                verdict)
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


def _probe_batches(tokenizer, per_domain: int | None, seed: int, device) -> list:
    """One right-padded batch per domain; padding positions are left out of every statistic."""
    return [tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right").to(device)
            for prompts in probe_prompts(per_domain, seed).values()]


@torch.no_grad()
def child_calls(child, batches: list) -> list[dict]:
    """Per batch, what the layer table needs of the child: each layer's call, its output and its own
    contribution (update less the null update), so the child can be freed before a parent is loaded."""
    layers = decoder_layers(child)
    kept = []
    for batch in batches:
        seen = layer_states(child, batch, calls=True)
        for i, layer in enumerate(layers):
            args, kwargs = seen[("call", i)]
            null = _null_update(layer, args, kwargs)
            seen[("null", i)] = null
            seen[("update", i)] = seen[("out", i)] - _hidden_in(args, kwargs) - null
        kept.append(seen)
    return kept


@torch.no_grad()
def add_parent(sums: list[dict], role: str, parent, batches: list, child_seen: list[dict]) -> None:
    """Add one parent's per-layer statistics to `sums`: its layer i on the child's call to layer i, and its
    own hidden states on the same batch."""
    layers = decoder_layers(parent)
    for batch, c in zip(batches, child_seen, strict=True):
        real = batch.attention_mask.bool().flatten()
        own = layer_states(parent, batch)
        for i, layer in enumerate(layers):
            args, kwargs = c[("call", i)]
            update, theirs = c[("update", i)], _update(layer, args, kwargs) - c[("null", i)]
            row = sums[i]
            row[f"cos_{role}"] += float(cosine(update, theirs)[real].sum())
            row[f"norm_{role}"] += float(norm_ratio(update, theirs)[real].sum())
            row[f"hidden_cos_{role}"] += float(cosine(c[("out", i)], own[("out", i)])[real].sum())


def weights_health_check(child_dir: Path, father_dir: Path, mother_dir: Path, out: Path, spec, ratios: dict,
                         device="cpu", dtype=torch.float32, per_domain: int | None = None, seed: int = 0,
                         calibration_text: str | None = None) -> dict:
    """Run the check; write out/health.json and out/health.png; return the health.json content.
    `ratios`: the genome record's {"attn": [...], "ffn": [...], "norms": [...]} (recorded per layer).

    It streams: one model in memory at a time (the child, its layer calls kept; then the father; then the
    mother), never the three together."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(folder):
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()

    text = calibration_text or CALIBRATION_TEXT
    tokenizer = AutoTokenizer.from_pretrained(father_dir)
    child = load(child_dir)
    batches = _probe_batches(tokenizer, per_domain, seed, device)
    child_seen = child_calls(child, batches)
    n = len(decoder_layers(child))
    perplexity = {"child": text_perplexity(child, tokenizer, text)}
    generation = greedy_generation(child, tokenizer, spec)
    del child
    gc.collect()
    keys = ("cos_father", "norm_father", "cos_mother", "norm_mother", "hidden_cos_father", "hidden_cos_mother")
    sums = [dict.fromkeys(keys, 0.0) for _ in range(n)]
    for role, folder, own_tokenizer in (("father", father_dir, tokenizer),
                                        ("mother", mother_dir, AutoTokenizer.from_pretrained(mother_dir))):
        parent = load(folder)
        add_parent(sums, role, parent, batches, child_seen)
        perplexity[role] = text_perplexity(parent, own_tokenizer, text)
        del parent
        gc.collect()
    tokens = sum(int(batch.attention_mask.sum()) for batch in batches)
    layers = [{"layer": i, **{k: v / tokens for k, v in row.items()}} for i, row in enumerate(sums)]
    for row in layers:
        i = row["layer"]
        row["ratio"] = {"attn": ratios["attn"][i], "ffn": ratios["ffn"][i]}
        row["kind"] = "merged"
        row["flagged"] = (diverges(row["cos_father"], row["norm_father"], spec.min_cosine, spec.max_norm_ratio)
                          and diverges(row["cos_mother"], row["norm_mother"], spec.min_cosine, spec.max_norm_ratio))
    return verdict(generation, layers, perplexity, spec, per_domain, seed, out,
                   measure="layer update (same architecture)", what="layer update")
