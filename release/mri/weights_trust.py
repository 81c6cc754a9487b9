"""Darwin MRI trust for same-architecture breeders: r_MRI per decoder layer, and the ratio hook that applies it.

Both parents have the same layers, so layer i of the father meets layer i of the mother. Per layer:

- static_p(i): the mean `static.tensor_stats` score over the parent's attention and FFN tensors of layer i,
  divided by that parent's mean over the layers (relative strength within a parent, as for ffn_blend);
- probe: d(i), the cosine distance of the father's and the mother's hidden states after layer i on the
  probe prompts (each on its own stream, real tokens only). probe_F(i) = 1 and probe_M(i) = d(i) / mean d:
  where the mother's computation departs most from the father's she carries what he lacks, so she is
  trusted more there (identical parents: d = 0 everywhere, probe_M = 1).

MRI_p = w * static_p + (1 - w) * probe_p (Darwin V6: w = 0.4), r_MRI = MRI_M / (MRI_F + MRI_M). With
`genome.mri` the genome gets a `tau` gene, and a candidate's attention and FFN shares are
clip(tau * r_MRI + (1 - tau) * g, 0, r_max) per layer (frozen layers stay 0; `norms` is not per layer and
stays as searched).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import torch

from release.breeders.layout import check_same_architecture, gene_of
from release.mri.prompts import probe_prompts
from release.mri.static import DEFAULT_BINS, tensor_stats
from release.mri.trust import STATIC_WEIGHT, trust_weighted
from release.parents.tensors import open_shard, parent_tensor

log = logging.getLogger(__name__)


def static_layers(father_dir: Path, mother_dir: Path, n_layers: int, bins: int = DEFAULT_BINS) -> dict:
    """role -> per layer: the mean score of its attention and FFN tensors (one tensor in memory at a time)."""
    tensors = check_same_architecture(Path(father_dir), Path(mother_dir))
    sums = {role: [[0.0, 0] for _ in range(n_layers)] for role in ("father", "mother")}
    for key, infos in tensors.items():
        component, layer = gene_of(key)
        if layer is None or not key.endswith("weight") or len(infos[0].shape) < 2:
            continue  # norms and biases say little about a layer's strength
        for role, info in zip(("father", "mother"), infos):
            with open_shard(role, info.path, key) as f:
                sums[role][layer][0] += tensor_stats(parent_tensor(role, f, info.path, key), bins)["score"]
            sums[role][layer][1] += 1
    return {role: [s / max(n, 1) for s, n in rows] for role, rows in sums.items()}


@torch.no_grad()
def hidden_states(model, batches: list) -> list[dict]:
    """Per batch, the model's hidden state after each decoder layer (all that the distances need of it)."""
    from release.mri.weights_health import layer_states  # imports matplotlib

    return [layer_states(model, batch) for batch in batches]


@torch.no_grad()
def probe_distances(father_states: list[dict], mother, batches: list) -> list[float]:
    """Per decoder layer: mean cosine distance (1 - cos) of the two parents' hidden states after it, from the
    father's kept states and the mother run now on the same batches."""
    from release.mri.health import cosine  # imports matplotlib
    from release.mri.weights_health import decoder_layers, layer_states  # imports matplotlib

    n = len(decoder_layers(mother))
    sums, tokens = [0.0] * n, 0
    for batch, f in zip(batches, father_states, strict=True):
        real = batch.attention_mask.bool().flatten()
        m = layer_states(mother, batch)  # one batch of the mother's states at a time
        for i in range(n):
            sums[i] += float((1 - cosine(f[("out", i)], m[("out", i)]))[real].sum())
        tokens += int(real.sum())
    return [s / tokens for s in sums]


def r_mri_scores(static: dict, distances: list[float], static_weight: float = STATIC_WEIGHT) -> list[dict]:
    n = len(distances)
    mean_f = sum(static["father"]) / n or 1.0
    mean_m = sum(static["mother"]) / n or 1.0
    mean_d = sum(distances) / n
    out = []
    for i in range(n):
        s_f, s_m = static["father"][i] / mean_f, static["mother"][i] / mean_m
        p_f, p_m = 1.0, distances[i] / mean_d if mean_d > 0 else 1.0
        mri_f = static_weight * s_f + (1 - static_weight) * p_f
        mri_m = static_weight * s_m + (1 - static_weight) * p_m
        total = mri_f + mri_m
        out.append({"layer": i, "static": {"father": s_f, "mother": s_m}, "probe": {"father": p_f, "mother": p_m},
                    "cos_distance": distances[i], "r_mri": mri_m / total if total > 0 else 0.5})
    return out


def scan_same_arch(father_dir: Path, mother_dir: Path, per_domain: int | None = None, seed: int = 0,
                   device="cpu", dtype=torch.float32, bins: int = DEFAULT_BINS,
                   static_weight: float = STATIC_WEIGHT) -> list[dict]:
    """Per decoder layer: both parents' static and probe scores, the cosine distance and r_MRI.

    It streams: the father runs the probe prompts first and only his hidden states are kept, then the mother
    is loaded: one parent in memory at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(folder):
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()

    tokenizer = AutoTokenizer.from_pretrained(father_dir)
    # one right-padded batch per domain; padding positions are left out of every statistic
    batches = [tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right").to(device)
               for prompts in probe_prompts(per_domain, seed).values()]
    father = load(father_dir)
    father_states = hidden_states(father, batches)
    del father
    gc.collect()
    mother = load(mother_dir)
    distances = probe_distances(father_states, mother, batches)
    del mother, father_states
    gc.collect()
    layers = r_mri_scores(static_layers(father_dir, mother_dir, len(distances), bins), distances, static_weight)
    log.info("same-architecture MRI: r_MRI %s", ", ".join(f"{row['r_mri']:.2f}" for row in layers))
    return layers


def trust_hook(r_mri: list[float], r_max: float, frozen: list[int]):
    """The ratio hook of MRI trust: attention and FFN shares pulled towards r_MRI by the genome's `tau`."""
    def hook(ratios: dict, named: dict) -> dict:
        tau = float(named["tau"])
        return {**ratios, "attn": trust_weighted(tau, r_mri, ratios["attn"], r_max, frozen),
                "ffn": trust_weighted(tau, r_mri, ratios["ffn"], r_max, frozen)}
    return hook
