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
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import one_thread, row

METHOD = "linear"
POPSIZE, GENERATIONS = 8, 10
# The search's start (genome.init_mean): 0.5 is the plain merge, the defaults' start and on this symmetric pair
# already near the best merge; 0.25 (a merge close to the father) leaves the search something to find.
STARTS = tuple(float(v) for v in os.environ.get("BENCH_ESTIMATORS_STARTS", "0.5,0.25").split(","))
START_MARGIN = 2.0  # the weight merges' default start check (search.start_margin), as the breed stage runs it
SEARCH_ITEMS, HELDOUT_ITEMS = 96, 200  # random tiny pair, synthetic task
ZOO_SEARCH_ITEMS, ZOO_HELDOUT_ITEMS = 128, 300  # per zoo skill
# BENCH_ESTIMATORS_SCALE=k gives the estimators k times the items per candidate (a cheaper saving, for the
# trade-off between tokens and what the search finds).
SCALE = int(os.environ.get("BENCH_ESTIMATORS_SCALE", "1"))
ESTIMATORS = {"full": {},
              "irt": {"irt": {"anchors": 12 * SCALE, "probes": 0}, "elite": 0},
              "race": {"race": {"confidence": 0.9, "round_items": 8, "max_items": 16 * SCALE}, "elite": 0}}


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


def _config(folder: Path, tasks: list[dict], estimator: str, start: float):
    from release.config import ReleaseConfig

    return ReleaseConfig.model_validate({
        "name": f"bench-{estimator}", "father": {"repo": "bench/father"}, "mother": {"repo": "bench/mother"},
        "child": {"repo": "bench/child"}, "runs_dir": str(folder), "breed": {"method": METHOD},
        "genome": {"r_max": 1.0, "init_mean": start},
        "search": {"popsize": POPSIZE, "max_generations": GENERATIONS, "seed": 0, "sigma0": 0.25,
                   "device": "cpu", "dtype": "float32", "start_margin": START_MARGIN},
        "fitness": {"tasks": tasks, "estimator": estimator, "batch_size": 8, **ESTIMATORS[estimator]}})


def _search(config, live, tokenizer, heldout):
    """The breed stage's search, child choice and start check (release.pipeline.stage_breed) on `live`, with
    the tokens its scorer ran from the search's start to the shipped child."""
    from release.search.cmaes import fingerprint, run_search
    from release.search.estimators.scoring import estimated_fitness
    from release.search.fitness import make_fitness
    from release.search.start import keep_start, one_at_a_time

    folder = config.run_dir / "breed"
    full = make_fitness(config, live.model, tokenizer, folder, apply=live.apply)
    lm = full.evaluator.lm
    before = lm.tokens_processed
    evaluation = full
    if config.fitness.estimator != "full":
        evaluation = estimated_fitness(config.fitness, config.search, full.evaluator, live.apply, live.space, folder)
    result = run_search(live.space, evaluation, config.search, folder, fingerprint(estimator=config.fitness.estimator),
                        progress=False)
    raw = result.genome  # what the search hands on: the best candidate, or with an estimator the chosen one
    estimator = evaluation
    if hasattr(evaluation, "choose_child"):
        result = evaluation.choose_child(result, folder / "candidates.jsonl", config.fitness.elite)
        raw, evaluation = result.genome, evaluation.full_fitness
    start = keep_start(raw, live.space.full(live.space.x0), one_at_a_time(evaluation), config.search.start_margin)
    tokens = lm.tokens_processed - before
    record = estimator.record() if hasattr(estimator, "record") else {}
    out = {"tokens": tokens, "evaluations": result.evaluations, "search_fitness": result.fitness, "record": record,
           "kept_start": start["kept_start"], "raw": heldout(raw), "shipped": heldout(start["genome"]),
           "mean": heldout(result.mean), "genome": start["genome"]}
    return out


def _rank_correlation(config, live, tokenizer) -> float:
    """How the estimator ranks one fixed generation against full scoring (not counted in any search's tokens)."""
    from scipy.stats import spearmanr

    from release.search.estimators.scoring import estimated_fitness
    from release.search.fitness import make_fitness

    folder = config.run_dir / "rho"
    full = make_fitness(config, live.model, tokenizer, folder, apply=live.apply)
    fitness = estimated_fitness(config.fitness, config.search, full.evaluator, live.apply, live.space, folder)
    rng = np.random.default_rng(7)  # one generation as CMA-ES's first would draw it, the same for both
    x0 = np.asarray(live.space.x0)
    generation = [live.space.full(np.clip(x0 + config.search.sigma0 * rng.standard_normal(len(x0)),
                                          *live.space.bounds).tolist()) for _ in range(POPSIZE)]
    truth = [full(g)[0] for g in generation]
    got = [0.0] * len(generation)
    fitness.evaluate(generation, lambda k, v, s, sec, w: got.__setitem__(k, v))
    return float(spearmanr(truth, got)[0])


def run() -> dict:
    with one_thread():
        return _measure()


def _measure() -> dict:
    from transformers import AutoTokenizer

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-estimators-") as tmp:
        tmp = Path(tmp)
        father, mother, tasks, what = _parents(tmp)
        tokenizer = AutoTokenizer.from_pretrained(father)
        seen: dict[tuple, tuple] = {}  # genome -> held-out (fitness, stderr, item scores): the same weights
        for start in STARTS:
            suffix = ("" if start == 0.5 else f"_from_{start:g}") + ("" if SCALE == 1 else f"_items_x{SCALE}")
            results.update(_compare(tmp / f"start-{start:g}", father, mother, tasks, what, tokenizer, start, suffix,
                                    seen))
    return results


def _compare(tmp: Path, father: Path, mother: Path, tasks: list[dict], what: str, tokenizer, start: float,
             suffix: str, seen: dict) -> dict:
    from release.breeders import get_breeder
    from release.evals import Evaluator
    from release.search.fitness import task_suite

    results, out = {}, {}
    configs = {e: _config(tmp / e, tasks, e, start) for e in ESTIMATORS}
    live = get_breeder(METHOD).build_live(father, mother, configs["full"], device="cpu", dtype=torch.float32)
    judge = Evaluator(live.model, tokenizer, task_suite(configs["full"]), split="heldout", batch_size=8)

    def heldout(genome):
        """(held-out fitness, stderr, item scores) of a genome on the live model, scored once."""
        if tuple(genome) not in seen:
            live.apply(list(genome))
            r = judge.evaluate()
            seen[tuple(genome)] = (r.fitness, r.stderr, r.item_scores)
        return seen[tuple(genome)]

    for estimator, config in configs.items():
        t0 = time.perf_counter()
        out[estimator] = _search(config, live, tokenizer, heldout)
        out[estimator]["seconds"] = time.perf_counter() - t0
        print(f"   (start {start:g}, {estimator}: {out[estimator]['seconds']:.0f} s)", flush=True)
    for estimator in ("irt", "race"):
        out[estimator]["rho"] = _rank_correlation(configs[estimator], live, tokenizer)
    full = out["full"]
    items = sum(t["search_size"] for t in tasks), sum(t["heldout_size"] for t in tasks)
    print(f"   parents: {what}; {POPSIZE} x {GENERATIONS} candidates, {items[0]} search items, "
          f"{items[1]} held-out items, start check margin {START_MARGIN:g}, 1 thread")
    first = heldout(live.space.full(live.space.x0))
    print(f"   the start (every share {start:g}): held-out {first[0]:.4f} +- {first[1]:.4f}")
    for estimator, r in out.items():
        saved = full["tokens"] / r["tokens"]
        (raw, raw_se, _), (shipped, _, shipped_items) = r["raw"], r["shipped"]
        gap = shipped - full["shipped"][0]
        paired = _paired_se(shipped_items, full["shipped"][2])
        raw_gap = raw - full["raw"][0]
        raw_paired = _paired_se(r["raw"][2], full["raw"][2])
        print(f"   {estimator:>4}: scored {r['tokens']:,} tokens ({saved:.1f}x fewer than full) in {r['seconds']:.0f} s; "
              f"searched child held-out {raw:.4f} +- {raw_se:.4f} (vs full {raw_gap:+.4f}, paired SE {raw_paired:.4f}), "
              f"search's mean {r['mean'][0]:.4f}; shipped {'the start' if r['kept_start'] else 'the searched child'}: "
              f"{shipped:.4f} (vs full {gap:+.4f}, paired SE {paired:.4f})"
              + (f"; generation rank rho {r['rho']:.2f}" if "rho" in r else ""))
        if estimator == "full":
            continue
        results[f"estimator_{estimator}_tokens_saved{suffix}"] = row(
            saved, "full-search tokens / search tokens (search to shipped child)", ">= 10",
            tokens=r["tokens"], full_tokens=full["tokens"], candidates=POPSIZE * GENERATIONS, parents=what,
            start=start, record=r["record"], seconds=round(r["seconds"], 1), full_seconds=round(full["seconds"], 1))
        results[f"estimator_{estimator}_heldout_gap{suffix}"] = row(
            gap, "shipped child's held-out fitness minus the full search's",
            f"gap >= -full stderr ({full['shipped'][1]:.4f})", start=start, start_heldout=round(first[0], 4),
            heldout=round(shipped, 4), full_heldout=round(full["shipped"][0], 4), paired_se=round(paired, 4),
            within_one_stderr=gap >= -full["shipped"][1], kept_start=r["kept_start"],
            full_kept_start=full["kept_start"], searched_heldout=round(raw, 4),
            full_searched_heldout=round(full["raw"][0], 4), searched_gap=round(raw_gap, 4),
            searched_paired_se=round(raw_paired, 4), searched_within_one_stderr=raw_gap >= -full["raw"][1],
            generation_rho=round(r["rho"], 3))
    return results


def _paired_se(a: dict, b: dict) -> float:
    """Standard error of the difference of two held-out means on the same items, pooled over every item
    (the zoo's two tasks have equal weights and sizes, so the fitness is the plain mean)."""
    d = np.array([a[leaf][doc] - b[leaf][doc] for leaf in a for doc in a[leaf]], dtype=float)
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 and d.any() else 0.0


if __name__ == "__main__":
    run()
