"""The health check: the emitted child against both parents, layer by layer, before it is pushed.

On the probe prompts, at every layer i of the child (loaded from its folder with `AutoModelForCausalLM`
and `trust_remote_code`, exactly as users will load it), a hook on the FFN step reads the residual input h
and the update u the child adds to the residual stream. On the same h the father's layer gives the father
branch f and the mapped mother FFN (read alone from her shards) the mother branch m of the mixing rule. The
check streams: the child runs first and only its activations are kept, then the father (a Darwin hybrid
holding no mother FFN) with one mother FFN at a time, then the mother for her perplexity, so one model is in
memory at a time. Per layer, averaged over tokens:

- cos(u, f), |u| / |f|  and  cos(u, m), |u| / |m|;
- cos of the child's hidden state after layer i with the father's on the same prompt.

A child layer computes (1 - r) f + r m, so it always stays close to at least one parent's branch; a layer
whose update diverges from BOTH (cosine below `min_cosine`, or norm off by more than `max_norm_ratio`
either way) is flagged: two branches that cancel (interference) or a damaged layer. A blend can also lose
one parent and still sit near the other (r m alone is close to m): so u is fitted as a f + b m over the
layer's tokens, and a blend whose share of either parent (a against 1 - r, b against r) is off by more than
`max_norm_ratio` either way is flagged too (not judged where f and m point the same way: their shares
cannot be told apart there). Also: perplexity of
child, father and mother on a small calibration text (each with its own tokenizer), and a greedy generation.
The check fails on flagged layers, a child perplexity above `max_perplexity_ratio` times the worse parent's,
non-finite logits, or a generation that produces nothing.
"""

from __future__ import annotations

import gc
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from release.errors import ReleaseError
from release.breeders.hybrid import build_hybrid, make_child_config
from release.run.files import write_json
from release.mri.mother_ffn import load_mother_ffn
from release.mri.plots import plot_health
from release.mri.prompts import probe_prompts

log = logging.getLogger(__name__)

HEALTH_JSON = "health.json"
HEALTH_PNG = "health.png"
GENERATION_PROMPT = "The capital of France is"
# A short English and Korean calibration text for the perplexities (fitness.calibration_text replaces it).
CALIBRATION_TEXT = (
    "The detective examined the evidence carefully; the suspect had a motive, an opportunity and the means. "
    "In the kitchen, Emma placed the keys on the table before leaving for the garden with her brother. "
    "The team must allocate each person to a task so that the work is done most efficiently. "
    "한국어 문화와 역사에 관한 질문입니다. 보기 중에서 가장 알맞은 것을 고르십시오. "
    "Answer the question by choosing the best option."
)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float().flatten(0, -2), b.float().flatten(0, -2), dim=-1, eps=1e-12)


def norm_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.float().flatten(0, -2).norm(dim=-1) / (b.float().flatten(0, -2).norm(dim=-1) + 1e-12)


def _capture(layers, record: dict, ffn: bool):
    """Hooks storing each layer's output hidden state (and, for the child, its FFN step's residual and update)."""
    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(
            lambda m, args, out, i=i: record.__setitem__(("hidden", i), out[0] if isinstance(out, tuple) else out)))
        if ffn:
            handles.append(layer.ffn_step.register_forward_hook(
                lambda m, args, out, i=i: record.__setitem__(("ffn", i), args)))
    return handles


def _probe_batches(tokenizer, per_domain: int | None, seed: int, device) -> list:
    """One right-padded batch per domain; padding positions are left out of every statistic."""
    return [tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right").to(device)
            for prompts in probe_prompts(per_domain, seed).values()]


@torch.no_grad()
def _child_activations(child, batches: list) -> list[dict]:
    """Per batch, the child's FFN residual and update and its hidden state at every layer, real tokens only:
    all the layer table needs of the child, so the child can be freed before a parent is loaded."""
    kept = []
    for batch in batches:
        real = batch.attention_mask.bool().flatten()
        seen = {}
        handles = _capture(child.model.layers, seen, ffn=True)
        try:
            child(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        flat = lambda x: x.flatten(0, -2)[real]  # noqa: E731
        kept.append({key: tuple(map(flat, value)) if key[0] == "ffn" else flat(value) for key, value in seen.items()})
    return kept


@torch.no_grad()
def _layer_table(child_seen: list[dict], reference, batches: list, mother_dir: Path, device, dtype) -> list[dict]:
    """The per-layer statistics from the child's kept activations, the father-only reference (its hidden
    states on the same batches, its FFN on the child's residuals) and one mother FFN at a time."""
    ref_layers = reference.model.layers
    n = len(ref_layers)
    sums = [dict.fromkeys(("cos_father", "norm_father", "cos_mother", "norm_mother", "hidden_cos_father"), 0.0)
            for _ in range(n)]
    grams = [dict.fromkeys(("ff", "mm", "fm", "fu", "mu"), 0.0) for _ in range(n)]  # dot products, for the shares
    tokens = 0
    for batch, seen_child in zip(batches, child_seen):
        real = batch.attention_mask.bool().flatten()
        seen_father = {}
        handles = _capture(ref_layers, seen_father, ffn=False)
        try:
            reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        for i in range(n):
            father_hidden = seen_father[("hidden", i)].flatten(0, -2)[real]
            sums[i]["hidden_cos_father"] += float(cosine(seen_child[("hidden", i)], father_hidden).sum())
        tokens += int(real.sum())
    layer_map = reference.config.layer_map
    for i, layer in enumerate(ref_layers):
        mother = load_mother_ffn(mother_dir, reference.config, layer_map[i], device, dtype)
        for seen_child in child_seen:
            residual, update = seen_child[("ffn", i)]
            f = layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(residual)))
            m = layer.post_feedforward_layernorm(mother(residual))
            row = sums[i]
            row["cos_father"] += float(cosine(update, f).sum())
            row["norm_father"] += float(norm_ratio(update, f).sum())
            row["cos_mother"] += float(cosine(update, m).sum())
            row["norm_mother"] += float(norm_ratio(update, m).sum())
            fr, mr, ur = (x.float() for x in (f, m, update))
            for key, (a, b) in {"ff": (fr, fr), "mm": (mr, mr), "fm": (fr, mr), "fu": (fr, ur), "mu": (mr, ur)}.items():
                grams[i][key] += float((a * b).sum())
        del mother
    return [{"layer": i, **{k: v / tokens for k, v in row.items()}, **_shares(grams[i])} for i, row in enumerate(sums)]


def _shares(g: dict) -> dict:
    """The least-squares a, b of u = a f + b m (None where f and m are too alike to tell apart)."""
    det = g["ff"] * g["mm"] - g["fm"] ** 2
    if g["ff"] <= 0 or g["mm"] <= 0 or det <= (1 - 0.95 ** 2) * g["ff"] * g["mm"]:  # |cos(f, m)| > 0.95
        return {"share_father": None, "share_mother": None}
    return {"share_father": (g["fu"] * g["mm"] - g["mu"] * g["fm"]) / det,
            "share_mother": (g["mu"] * g["ff"] - g["fu"] * g["fm"]) / det}


def lost_share(row: dict, max_norm_ratio: float) -> bool:
    """A blend layer (0 < r < 1) whose fitted share of a parent is off from its ratio by more than
    `max_norm_ratio` either way: it lost (or swamped) that parent's contribution."""
    r = row["ratio"]
    if row["kind"] != "blend" or not 0 < r < 1 or row["share_father"] is None:
        return False
    return not all(1 / max_norm_ratio <= got / want <= max_norm_ratio
                   for got, want in ((row["share_father"], 1 - r), (row["share_mother"], r)))


def diverges(cos: float, norm: float, min_cosine: float, max_norm_ratio: float) -> bool:
    return not (cos >= min_cosine and 1 / max_norm_ratio <= norm <= max_norm_ratio)


@torch.no_grad()
def text_perplexity(model, tokenizer, text: str, max_tokens: int = 512) -> float:
    """exp of the mean next-token negative log-likelihood of `text` (the calibration fitness's measure; not
    imported from release.evals, which would load lm-eval just for this)."""
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens].to(next(model.parameters()).device)
    logits = model(input_ids=ids).logits[:, :-1].float()
    return math.exp(float(F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())))


def health_check(child_dir: Path, father_dir: Path, mother_dir: Path, out: Path, spec, layer_map: list[int],
                 ratios: list[float], device="cpu", dtype=torch.float32, per_domain: int | None = None,
                 seed: int = 0, calibration_text: str | None = None) -> dict:
    """Run the check; write out/health.json and out/health.png; return the health.json content.

    It streams: one model in memory at a time (the child, then the father with one mother FFN at a time,
    then the mother for her perplexity), plus the child's activations on the probe prompts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = calibration_text or CALIBRATION_TEXT
    tokenizer = AutoTokenizer.from_pretrained(father_dir)
    child = AutoModelForCausalLM.from_pretrained(child_dir, trust_remote_code=True, dtype=dtype).to(device).eval()
    batches = _probe_batches(tokenizer, per_domain, seed, device)
    child_seen = _child_activations(child, batches)
    perplexity = {"child": text_perplexity(child, tokenizer, text)}
    generation = greedy_generation(child, tokenizer, spec)
    kinds = child.config.layer_kinds
    del child
    gc.collect()

    # the father alone (no mother FFN stored): the reference at r = 0
    config = make_child_config(father_dir, mother_dir, ratios=None, layer_map=layer_map, stored="active")
    reference = build_hybrid(father_dir, mother_dir, config, device=device, dtype=dtype)
    layers = _layer_table(child_seen, reference, batches, mother_dir, device, dtype)
    perplexity["father"] = text_perplexity(reference, tokenizer, text)
    del reference, child_seen
    gc.collect()
    mother = AutoModelForCausalLM.from_pretrained(mother_dir, dtype=dtype).to(device).eval()
    perplexity["mother"] = text_perplexity(mother, AutoTokenizer.from_pretrained(mother_dir), text)
    del mother
    gc.collect()

    kinds = kinds or ["blend"] * len(layers)
    for row in layers:
        row["ratio"], row["kind"] = ratios[row["layer"]], kinds[row["layer"]]
        diverged = (diverges(row["cos_father"], row["norm_father"], spec.min_cosine, spec.max_norm_ratio)
                    and diverges(row["cos_mother"], row["norm_mother"], spec.min_cosine, spec.max_norm_ratio))
        row["lost_share"] = not diverged and lost_share(row, spec.max_norm_ratio)  # the subtler of the two
        row["flagged"] = diverged or row["lost_share"]
    return verdict(generation, layers, perplexity, spec, per_domain, seed, out)


@torch.no_grad()
def greedy_generation(child, tokenizer, spec) -> dict:
    """The child's greedy continuation of GENERATION_PROMPT (`spec.new_tokens` at most)."""
    ids = tokenizer(GENERATION_PROMPT, return_tensors="pt").input_ids.to(child.device)
    generated = child.generate(input_ids=ids, max_new_tokens=spec.new_tokens, do_sample=False)
    new = generated[0, ids.shape[1]:]
    return {"prompt": GENERATION_PROMPT, "new_tokens": int(new.numel()),
            "text": tokenizer.decode(new, skip_special_tokens=True)}


def verdict(generation: dict, layers: list[dict], perplexity: dict, spec, per_domain: int, seed: int, out: Path,
            measure: str | None = None, what: str = "FFN") -> dict:
    """The verdict both health checks share: the reasons to fail (flagged layers, perplexity, no token),
    then health.json and its chart in `out`."""
    lost = [row["layer"] for row in layers if row.get("lost_share")]
    flagged = [row["layer"] for row in layers if row["flagged"]]
    diverged = [i for i in flagged if i not in lost]
    reasons = []
    if diverged:
        reasons.append(f"layers {', '.join(map(str, diverged))} diverge from both parents")
    if lost:
        reasons.append(f"blend layers {', '.join(map(str, lost))} lost a parent's share of their update")
    worst_parent = max(perplexity["father"], perplexity["mother"])
    if not math.isfinite(perplexity["child"]):
        reasons.append("the child's logits are not finite")
    elif perplexity["child"] > spec.max_perplexity_ratio * worst_parent:
        reasons.append(f"child perplexity {perplexity['child']:.1f} exceeds {spec.max_perplexity_ratio:g}x the "
                       f"worse parent's ({worst_parent:.1f})")
    if generation["new_tokens"] == 0:
        reasons.append("greedy generation produced no token")
    result = {
        "passed": not reasons, "reasons": reasons, "flagged_layers": flagged, "layers": layers,
        "perplexity": perplexity, "generation": generation, **({"measure": measure} if measure else {}),
        "thresholds": {"min_cosine": spec.min_cosine, "max_norm_ratio": spec.max_norm_ratio,
                       "max_perplexity_ratio": spec.max_perplexity_ratio},
        "prompts": {"per_domain": per_domain, "seed": seed},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / HEALTH_JSON, result)
    plot_health(layers, out / HEALTH_PNG, what=what)
    log.info("health: %s", "passed" if result["passed"] else "; ".join(reasons))
    return result


def require_healthy(result: dict, where: Path) -> None:
    """Stop the release before push on a failed check: one line naming what failed and the overrides."""
    if not result["passed"]:
        raise ReleaseError(f"health check failed: {'; '.join(result['reasons'])} (see {where}): fix the genome "
                           "or breed again, or push anyway with --force push or health.stop_on_failure: false")
