"""Cheap search fitness: the child a search finds with `fitness.estimator` irt and race vs full scoring.

The same search (breeder, genome space, CMA-ES seed, popsize, generations) runs three times on one live model,
once per estimator. For each: the tokens the search scored (every token position the scorer ran through the
model, calibration included: `tokens_processed` of the search's own scorer) and the held-out score of the
child it found (its genome applied to the live model, which is what ships, scored on the whole held-out
split with its standard error). Targets (issue 25): held-out mean within one stderr of the full search's, at
>= 10x fewer scored tokens. Also: how well each estimator ranks one generation of candidates (Spearman's
rho against full scoring of the same candidates).

Parents: the trained zoo's same-architecture specialists when `release.zoo` provides them (the lm-eval tasks
zoo_lang_a / zoo_lang_b), else the tiny random same-architecture pair with the synthetic task (on random
weights every candidate is near chance, so only the token counts mean much there: stated in the output).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import one_thread, row

METHOD = "linear"
POPSIZE, GENERATIONS = 8, 5
SEARCH_ITEMS, HELDOUT_ITEMS = 96, 200  # random tiny pair, synthetic task
ZOO_SEARCH_ITEMS, ZOO_HELDOUT_ITEMS = 64, 300  # per zoo skill
PROJECTED = 200  # candidates of a real search ("a few hundred")
ESTIMATORS = {"full": {}, "irt": {"irt": {"anchors": 12, "probes": 2}, "elite": 3},
              "race": {"race": {"confidence": 0.9, "round_items": 16}, "elite": 3}}


def _parents(tmp: Path):
    """(father, mother, fitness tasks, what they are): the zoo's specialists when it is there."""
    try:
        from release.zoo.parents import zoo_parent_writers
    except ImportError:
        zoo_parent_writers = None
    if zoo_parent_writers is not None:
        writers = zoo_parent_writers(METHOD)
        father, mother = writers["father"](tmp / "father"), writers["mother"](tmp / "mother")
        tasks = [{"name": name, "weight": 1.0, "search_size": ZOO_SEARCH_ITEMS, "heldout_size": ZOO_HELDOUT_ITEMS}
                 for name in ("zoo_lang_a", "zoo_lang_b")]
        return father, mother, tasks, "trained zoo: specialists lang_a x lang_b (siblings of one base)"
    from release.tiny import write_tiny_same_arch_parents

    parents = write_tiny_same_arch_parents(tmp / "parents", seed=0)
    tasks = [{"name": "synthetic", "weight": 1.0, "search_size": SEARCH_ITEMS, "heldout_size": HELDOUT_ITEMS}]
    return parents.father, parents.mother, tasks, "tiny random same-architecture pair, synthetic task"


def _config(folder: Path, tasks: list[dict], estimator: str):
    from release.config import ReleaseConfig

    return ReleaseConfig.model_validate({
        "name": f"bench-{estimator}", "father": {"repo": "bench/father"}, "mother": {"repo": "bench/mother"},
        "child": {"repo": "bench/child"}, "runs_dir": str(folder), "breed": {"method": METHOD},
        "genome": {"r_max": 1.0, "init_mean": 0.5},
        "search": {"popsize": POPSIZE, "max_generations": GENERATIONS, "seed": 0, "sigma0": 0.25,
                   "device": "cpu", "dtype": "float32"},
        "fitness": {"tasks": tasks, "estimator": estimator, "batch_size": 8, **ESTIMATORS[estimator]}})


def _search(config, father: Path, mother: Path, tokenizer):
    from release.breeders import get_breeder
    from release.evals import Evaluator
    from release.search.cmaes import fingerprint, run_search
    from release.search.estimators.scoring import estimated_fitness
    from release.search.fitness import make_fitness, task_suite

    live = get_breeder(config.breed.method).build_live(father, mother, config, device="cpu", dtype=torch.float32)
    folder = config.run_dir / "breed"
    full = make_fitness(config, live.model, tokenizer, folder, apply=live.apply)
    lm = full.evaluator.lm
    before = lm.tokens_processed
    fitness = full
    if config.fitness.estimator != "full":
        fitness = estimated_fitness(config.fitness, config.search, full.evaluator, live.apply, live.space, folder)
    result = run_search(live.space, fitness, config.search, folder, fingerprint(estimator=config.fitness.estimator),
                        progress=False)
    if hasattr(fitness, "choose_child"):  # what the breed stage does with an estimator
        result = fitness.choose_child(result, folder / "candidates.jsonl", config.fitness.elite)
    tokens = lm.tokens_processed - before
    record = fitness.record() if hasattr(fitness, "record") else {}
    # How the estimator ranks one fixed generation against full scoring (not counted in the search's tokens).
    rho = None
    if config.fitness.estimator != "full":
        rng = np.random.default_rng(7)  # one generation as CMA-ES's first would draw it, the same for both
        generation = [live.space.full(np.clip(np.asarray(live.space.x0) + config.search.sigma0 * 2 *
                                              rng.standard_normal(len(live.space.x0)), *live.space.bounds).tolist())
                      for _ in range(POPSIZE)]
        truth = [full(g)[0] for g in generation]
        if hasattr(fitness, "evaluate"):
            got = [0.0] * len(generation)
            fitness.evaluate(generation, lambda k, v, s, sec, w: got.__setitem__(k, v))
        else:
            got = [fitness(g)[0] for g in generation]
        from scipy.stats import spearmanr

        rho = float(spearmanr(truth, got)[0]) if len(set(truth)) > 1 else float("nan")
    live.apply(result.genome)
    heldout = Evaluator(live.model, tokenizer, task_suite(config), split="heldout", batch_size=8).evaluate()
    return {"tokens": tokens, "evaluations": result.evaluations, "heldout": heldout.fitness,
            "stderr": heldout.stderr, "search_fitness": result.fitness, "rho": rho, "record": record,
            "genome": result.genome}


def run() -> dict:
    with one_thread():
        return _measure()


def _measure() -> dict:
    from transformers import AutoTokenizer

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    results, out = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-estimators-") as tmp:
        tmp = Path(tmp)
        father, mother, tasks, what = _parents(tmp)
        tokenizer = AutoTokenizer.from_pretrained(father)
        for estimator in ESTIMATORS:
            out[estimator] = _search(_config(tmp / estimator, tasks, estimator), father, mother, tokenizer)
        full = out["full"]
        items = sum(t["search_size"] for t in tasks), sum(t["heldout_size"] for t in tasks)
        print(f"   parents: {what}; {POPSIZE} x {GENERATIONS} candidates, {items[0]} search items, "
              f"{items[1]} held-out items, 1 thread")
        for estimator, r in out.items():
            saved = full["tokens"] / r["tokens"]
            gap = r["heldout"] - full["heldout"]
            print(f"   {estimator:>4}: scored {r['tokens']:,} tokens ({saved:.1f}x fewer than full), held-out "
                  f"{r['heldout']:.4f} +- {r['stderr']:.4f} (vs full {gap:+.4f}), search fitness "
                  f"{r['search_fitness']:.4f}" + (f", generation rank rho {r['rho']:.2f}" if r["rho"] is not None else ""))
            if estimator == "full":
                continue
            within = abs(gap) <= full["stderr"]
            # Tokens of a longer search at the same per-candidate cost (computed, not measured): the estimator's
            # fixed costs (calibration, elite, transplant) are spread over more candidates.
            rec = r["record"]
            per_candidate = rec["candidate_tokens"] / rec["candidates"]
            fixed = rec["calibration_tokens"] + rec["full_scoring_tokens"]
            projected = PROJECTED * rec["full_tokens"] / (fixed + PROJECTED * per_candidate)
            print(f"         a {PROJECTED}-candidate search at the same costs would score {projected:.1f}x fewer tokens "
                  f"(computed from the measured per-candidate and fixed tokens)")
            results[f"estimator_{estimator}_tokens_saved"] = row(saved, "full-search tokens / search tokens", ">= 10",
                                                                 tokens=r["tokens"], full_tokens=full["tokens"],
                                                                 candidates=POPSIZE * GENERATIONS, parents=what,
                                                                 record=r["record"],
                                                                 projected_at=PROJECTED, projected=round(projected, 2))
            results[f"estimator_{estimator}_heldout_gap"] = row(
                gap, "held-out fitness minus the full search's child's", f"|gap| <= full stderr ({full['stderr']:.4f})",
                heldout=round(r["heldout"], 4), full_heldout=round(full["heldout"], 4), within_one_stderr=within,
                generation_rho=None if r["rho"] is None or math.isnan(r["rho"]) else round(r["rho"], 3))
    return results


if __name__ == "__main__":
    run()
