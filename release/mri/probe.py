"""Probe MRI: the father FFN branch and the mapped mother FFN branch on the same residual inputs.

The probe prompts run through the live search hybrid at r = 0 (the father exactly). At each father layer i a
forward hook on the FFN step (`DarwinFFNStep`) sees the residual input h and the father branch
f = PostNorm_F(MLP_F(PreNorm_F(h))); it computes the mapped mother branch of the mixing rule on the same h,
m = PostNorm_F(MLP_M(Norm_M(h))), and records per token, averaged per domain:

- cos_distance  1 - cos(f, m): how differently the two FFNs would move the residual stream
- rel_norm      |m| / |f|
- father_share  |f| / |h| and mother_share |m| / |h|: how much each branch would change the stream

The prompts are fixed and the forward is deterministic, so the result is a function of the parents, the
prompt subset (seeded) and the device/dtype.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from release.mri.prompts import probe_prompts

METRICS = ("cos_distance", "rel_norm", "father_share", "mother_share")


def _token_stats(h: torch.Tensor, f: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
    h, f, m = h.float().flatten(0, -2), f.float().flatten(0, -2), m.float().flatten(0, -2)
    eps = 1e-12
    fn, mn, hn = f.norm(dim=-1), m.norm(dim=-1), h.norm(dim=-1)
    return {"cos_distance": 1 - F.cosine_similarity(f, m, dim=-1, eps=eps), "rel_norm": mn / (fn + eps),
            "father_share": fn / (hn + eps), "mother_share": mn / (hn + eps)}


@torch.no_grad()
def probe_run(model, tokenizer, per_domain: int | None = None, seed: int = 0) -> dict:
    """Per domain and father layer, the mean of each metric over the probe prompts' tokens."""
    layers = model.model.layers
    mother_ffns = model.model.mother_ffns
    saved = model.ratios.detach().cpu().tolist()
    model.set_ratios([0.0] * len(layers))  # the father's own residual stream
    sums: dict[int, dict[str, float]] = defaultdict(lambda: dict.fromkeys(METRICS, 0.0))
    counts = [0]
    mask = [None]

    def hook_for(i):
        layer = layers[i]

        def hook(module, args, output):
            residual, father = args
            mother = layer.post_feedforward_layernorm(mother_ffns.for_layer(i)(residual))
            real = mask[0].flatten()  # padding positions do not count
            for name, values in _token_stats(residual, father, mother).items():
                sums[i][name] += float(values[real].sum())
            if i == 0:
                counts[0] += int(real.sum())

        return hook

    handles = [layer.ffn_step.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    domains = {}
    try:
        for domain, prompts in probe_prompts(per_domain, seed).items():
            sums.clear()
            counts[0] = 0
            # One right-padded batch per domain: causal attention keeps real tokens exact, and the hooks skip
            # the padding positions.
            batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right").to(device)
            mask[0] = batch.attention_mask.bool()
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            domains[domain] = {"prompts": len(prompts), "tokens": counts[0],
                               "layers": [{k: v / counts[0] for k, v in sums[i].items()} for i in range(len(layers))]}
    finally:
        for h in handles:
            h.remove()
        model.set_ratios(saved)
    mean = [{k: sum(d["layers"][i][k] for d in domains.values()) / len(domains) for k in METRICS}
            for i in range(len(layers))]
    return {"domains": domains, "layers": mean}
