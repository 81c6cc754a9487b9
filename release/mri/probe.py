"""Probe MRI: the father FFN branch and the mapped mother FFN branch on the same residual inputs.

The probe prompts run through a father-only Darwin hybrid (r = 0, no mother FFN stored: the father exactly).
At each father layer i a forward hook on the FFN step (`DarwinFFNStep`) keeps the residual input h and the
father branch f = PostNorm_F(MLP_F(PreNorm_F(h))); then, one layer at a time, the mapped mother FFN alone is
read from her shards and gives the mother branch of the mixing rule on the same h, m = PostNorm_F(MLP_M(Norm_M(h))),
so the probe holds the father plus one mother FFN (and the kept activations), never the whole search hybrid.
Per token, averaged per domain:

- cos_distance  1 - cos(f, m): how differently the two FFNs would move the residual stream
- rel_norm      |m| / |f|
- father_share  |f| / |h| and mother_share |m| / |h|: how much each branch would change the stream

The prompts are fixed and the forward is deterministic, so the result is a function of the parents, the
prompt subset (seeded) and the device/dtype.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from release.mri.prompts import probe_prompts

METRICS = ("cos_distance", "rel_norm", "father_share", "mother_share")


def token_stats(h: torch.Tensor, f: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
    h, f, m = h.float().flatten(0, -2), f.float().flatten(0, -2), m.float().flatten(0, -2)
    eps = 1e-12
    fn, mn, hn = f.norm(dim=-1), m.norm(dim=-1), h.norm(dim=-1)
    return {"cos_distance": 1 - F.cosine_similarity(f, m, dim=-1, eps=eps), "rel_norm": mn / (fn + eps),
            "father_share": fn / (hn + eps), "mother_share": mn / (hn + eps)}


@torch.no_grad()
def probe_run(model, tokenizer, mother_ffn: Callable[[int], torch.nn.Module], per_domain: int | None = None,
              seed: int = 0) -> dict:
    """Per domain and father layer, the mean of each metric over the probe prompts' tokens. `model`: the
    father-only hybrid; `mother_ffn(i)`: the mother FFN mapped to father layer i, loaded when called."""
    layers = model.model.layers
    kept: dict[tuple[str, int], tuple] = {}
    domain_now = [None]

    def hook_for(i):
        def hook(module, args, output):
            kept[(domain_now[0], i)] = args  # (residual h, father branch f), padding included

        return hook

    handles = [layer.ffn_step.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    masks = {}
    try:
        for domain, prompts in probe_prompts(per_domain, seed).items():
            # One right-padded batch per domain: causal attention keeps real tokens exact, and the statistics
            # skip the padding positions.
            batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right").to(device)
            domain_now[0], masks[domain] = domain, (len(prompts), batch.attention_mask.bool().flatten())
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    per_layer = {domain: [] for domain in masks}
    for i, layer in enumerate(layers):
        mother_i = mother_ffn(i)  # one mother FFN in memory at a time
        for domain, (_, real) in masks.items():
            residual, father = kept.pop((domain, i))
            mother = layer.post_feedforward_layernorm(mother_i(residual))
            per_layer[domain].append({name: float(values[real].sum())
                                      for name, values in token_stats(residual, father, mother).items()})
        del mother_i
    domains = {}
    for domain, (prompts, real) in masks.items():
        tokens = int(real.sum())
        domains[domain] = {"prompts": prompts, "tokens": tokens,
                           "layers": [{k: v / tokens for k, v in row.items()} for row in per_layer[domain]]}
    mean = [{k: sum(d["layers"][i][k] for d in domains.values()) / len(domains) for k in METRICS}
            for i in range(len(layers))]
    return {"domains": domains, "layers": mean}
