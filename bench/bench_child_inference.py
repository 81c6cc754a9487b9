"""3. Child inference cost: prefill tokens/s of shipped children with k active layers vs the father.

A shipped child stores, and runs, a mother FFN only where its ratio is nonzero, so its cost should follow
the matmul FLOPs it adds: predicted tokens/s = father tokens/s x F_father / F_child. The FLOPs of every
part (attention projections and scores, father FFN, mother FFN, per-layer inputs, LM head) are counted by
torch's own FlopCounterMode on one forward of each model, not by a hand formula.

Fair because: the father is transformers' stock Gemma4ForCausalLM and every child a real DarwinForCausalLM in
shipped form (only the active mother FFNs exist), all with the same father weights, at widths where matmuls
dominate on a CPU (hidden 1024, FFN 4096 / 3584, the E4B proportions); each round times one prefill of the
same token batch on every model, in a rotating order, and the figures are medians of per-round ratios, so
load from other processes on the machine hits all models alike. One thread: the machine is shared, and
oversubscribed OpenMP threads spin at barriers, which swamps the compute being compared. Prefill, not
batch-1 decoding: on a CPU a single decode step is framework overhead, not FLOPs. The k = 0 child must also give the father's logits
exactly (it runs the father's computation and nothing else).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import darwin_model, one_thread, row

HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS = 1024, 4096, 3584, 6
BATCH, SEQ = 2, 64
ACTIVE_COUNTS = (3, 6)  # k; k = 0 is always measured
ROUNDS, WARMUP = 11, 1
TOLERANCE = 0.10  # the "within 10% of the prediction"


def _active_layers(k: int) -> list[int]:
    """k layers spread over the stack (any k layers cost the same; spreading keeps both layer types)."""
    return sorted({round(i * (LAYERS - 1) / max(k - 1, 1)) for i in range(k)}) if k else []


def _child(k: int, father_state: dict):
    active = _active_layers(k)
    ratios = [0.3 if i in active else 0.0 for i in range(LAYERS)]
    model = darwin_model(HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS, ratios=ratios, stored=active, heads=8,
                         head_dim=HIDDEN // 8, seed=k)
    # assign: the father's tensors themselves (shared, not copied), so four models fit in the memory of two
    missing, unexpected = model.load_state_dict(father_state, strict=False, assign=True)
    assert not unexpected and all(".mother_ffns." in key for key in missing), (missing, unexpected)
    assert len(model.model.mother_ffns) == k  # shipped form: only the active mother FFNs exist
    return model


def _flops(model, input_ids) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(input_ids=input_ids, use_cache=False)
    return counter.get_total_flops()


def _prefill_seconds(model, input_ids) -> float:
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(input_ids=input_ids, use_cache=False)
        return time.perf_counter() - t0


def _median_ratios(times: dict[str, list[float]], base: str) -> dict[str, tuple[float, float]]:
    """name -> (median of per-round base_time / time, i.e. tokens/s relative to base; half the IQR)."""
    out = {}
    for name, ts in times.items():
        ratios = [b / t for b, t in zip(times[base], ts)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        out[name] = (statistics.median(ratios), (q3 - q1) / 2)
    return out


def run() -> dict:
    with one_thread():
        return _measure()


def _measure() -> dict:
    from transformers import Gemma4ForCausalLM

    base = darwin_model(HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS, stored=[], heads=8, head_dim=HIDDEN // 8, seed=0)
    father_state = base.state_dict()
    # The stock Gemma 4 decoder on the same config and weights (a DarwinConfig is a Gemma4TextConfig).
    father = Gemma4ForCausalLM(base.config).eval()
    father.load_state_dict(father_state, assign=True)
    models = {"father": father, "k=0": base}
    models.update({f"k={k}": _child(k, father_state) for k in ACTIVE_COUNTS})

    input_ids = torch.randint(0, base.config.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        same_logits = torch.equal(father(input_ids=input_ids).logits, base(input_ids=input_ids).logits)
    assert same_logits, "the k = 0 child must give the father's logits exactly"
    flops = {name: _flops(m, input_ids) for name, m in models.items()}
    assert flops["k=0"] == flops["father"], flops

    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(WARMUP + ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate, so no model always runs first
        for name in order:
            seconds = _prefill_seconds(models[name], input_ids)
            if r >= WARMUP:
                times[name].append(seconds)
    speed = _median_ratios(times, "father")
    tokens = BATCH * SEQ
    father_tps = tokens / statistics.median(times["father"])

    k0, k0_noise = speed["k=0"]
    print(f"   prefill {BATCH}x{SEQ} tokens, hidden {HIDDEN}, {LAYERS} layers, 1 thread: father {father_tps:,.0f} "
          f"tok/s; k=0 child {k0:.3f}x father (target 1.0 within noise, +-{k0_noise:.3f} here)")
    results = {"child_inference_k0_vs_father": row(
        k0, "x father tokens/s", "1.0 within noise", noise=round(k0_noise, 4),
        father_tokens_per_s=round(father_tps, 1), same_logits=same_logits, rounds=ROUNDS)}
    for k in ACTIVE_COUNTS:
        predicted = flops["father"] / flops[f"k={k}"]  # tokens/s relative to the father
        measured, noise = speed[f"k={k}"]
        print(f"   k={k}: {measured:.3f}x father tokens/s, FLOPs predict {predicted:.3f}x: "
              f"{measured / predicted:.3f} of prediction (target {1 - TOLERANCE:.2f}-{1 + TOLERANCE:.2f})")
        results[f"child_inference_k{k}_vs_prediction"] = row(
            measured / predicted, "measured / predicted tokens/s", f"{1 - TOLERANCE:.2f}-{1 + TOLERANCE:.2f}",
            k=k, layers=LAYERS, measured_vs_father=round(measured, 4), predicted_vs_father=round(predicted, 4),
            noise=round(noise, 4), child_gflops=round(flops[f"k={k}"] / 1e9, 3),
            father_gflops=round(flops["father"] / 1e9, 3),
            mother_ffn_gflops_per_layer=round((flops[f"k={k}"] - flops["father"]) / k / 1e9, 3))
    return results


if __name__ == "__main__":
    run()
