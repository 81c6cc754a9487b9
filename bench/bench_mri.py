"""7. Darwin MRI: what the diagnosis costs, and what transplanted layers save at inference.

(a) MRI stage time / one candidate evaluation, on the same model: the embedded default's tiny parents
    (release/tiny.py) and its fitness (the synthetic task's 48-item search subset, batch 8, the search's own
    `make_fitness` on the live search hybrid). The MRI time is the whole stage (`release.mri.scan.run_mri`:
    building its search hybrid from the shards, the static scan of every FFN tensor, the probe run on all
    36 probe prompts). Interleaved rounds, medians.
(b) Child tokens/s with transplanted layers vs the same genome unsnapped: genome
    [0.1, 0.9, 0.05, 0.5, 0.88, 0.3] on 6 layers at hidden 1024, FFN 4096 / 3584 (bench 3's widths), the
    unsnapped child a blend on every layer; the snapped one ([0, 1, 0, 0.5, 1, 0.3]) has two father-only
    and two mother-only layers, built by the modeling code from `layer_kinds` with the same weights.
    Prefill of 2x64 tokens, 1 thread, interleaved rounds, median of per-round ratios; FLOPs predict it.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.common import darwin_model, one_thread, row

ROUNDS = 3
GENOME = [0.1, 0.9, 0.05, 0.5, 0.88, 0.3]
HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS = 1024, 4096, 3584, 6
BATCH, SEQ, TPS_ROUNDS = 2, 64, 11


def run() -> dict:
    with one_thread():
        return {**_mri_cost(), **_transplant_speed()}


def _mri_cost() -> dict:
    from release.config import load_config
    from release.search.fitness import make_fitness
    from release.breeders.hybrid import build_search_hybrid
    from release.mri.scan import run_mri
    from release.tiny import write_tiny_parents
    from transformers import AutoTokenizer

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-mri-") as tmp:
        tmp = Path(tmp)
        parents = write_tiny_parents(tmp / "parents", seed=0)
        default = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
        config = default.model_copy(update={"runs_dir": tmp / "runs"})
        model = build_search_hybrid(parents.father, parents.mother)
        fitness = make_fitness(config, model, AutoTokenizer.from_pretrained(parents.father), tmp)
        genome = [0.15 if i not in config.genome.frozen else 0.0 for i in range(6)]
        fitness(genome)  # warm-up, as in the search (tasks and tokenisation built once)
        run_mri(parents.father, parents.mother, tmp / "mri")  # warm-up (imports, first forwards)
        candidate, mri = [], []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            fitness(genome)
            candidate.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_mri(parents.father, parents.mother, tmp / "mri", frozen=config.genome.frozen)
            mri.append(time.perf_counter() - t0)
    c, m = statistics.median(candidate), statistics.median(mri)
    print(f"   tiny default parents: one candidate {c:.2f} s, MRI stage {m:.2f} s: MRI / candidate = {m / c:.2f} "
          "(target <= 3)")
    return {"mri_stage_vs_candidate": row(m / c, "MRI stage time / one candidate evaluation", "<= 3",
                                          mri_seconds=round(m, 3), candidate_seconds=round(c, 3), rounds=ROUNDS)}


def _transplant_speed() -> dict:
    from modeling.configuration_darwin import layer_kinds_for
    from release.mri.trust import snap

    snapped = snap(GENOME, 0.15, 0.85)
    unsnapped_model = darwin_model(HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS, ratios=GENOME, heads=8,
                                   head_dim=HIDDEN // 8, seed=0)
    stored = [i for i, r in enumerate(snapped) if r > 0]
    snapped_model = darwin_model(HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS, ratios=snapped, stored=stored,
                                 layer_kinds=layer_kinds_for(snapped), heads=8, head_dim=HIDDEN // 8, seed=1)
    state = {k: v for k, v in unsnapped_model.state_dict().items() if k in snapped_model.state_dict()}
    missing, _ = snapped_model.load_state_dict(state, strict=False, assign=True)
    assert not [k for k in missing if "rotary" not in k and "ratios" not in k], missing
    snapped_model.set_ratios(snapped)
    models = {"unsnapped": unsnapped_model, "snapped": snapped_model}
    ids = torch.randint(0, 1024, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))

    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for name, model in models.items():
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(input_ids=ids, use_cache=False)
        flops[name] = counter.get_total_flops()
    times = {name: [] for name in models}
    for r in range(TPS_ROUNDS + 1):
        for name in (list(models) if r % 2 else list(models)[::-1]):
            with torch.inference_mode():
                t0 = time.perf_counter()
                models[name](input_ids=ids, use_cache=False)
                if r:
                    times[name].append(time.perf_counter() - t0)
    ratios = [u / s for u, s in zip(times["unsnapped"], times["snapped"])]
    speedup, predicted = statistics.median(ratios), flops["unsnapped"] / flops["snapped"]
    print(f"   transplanted child (2 father-only, 2 mother-only, 2 blend of 6) vs unsnapped (6 blend): "
          f"{speedup:.3f}x tokens/s, FLOPs predict {predicted:.3f}x")
    return {"transplant_child_speedup": row(speedup, "x tokens/s of the unsnapped child", "> 1 (FLOPs predict)",
                                            predicted=round(predicted, 4), genome=GENOME, snapped=snapped,
                                            rounds=TPS_ROUNDS)}


if __name__ == "__main__":
    run()
