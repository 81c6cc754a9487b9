"""Fitness for the search and the final evaluation, from the release config.

The search's fitness switches the live hybrid's genome in place and scores it on the search subset:
tasks, subsets and the lm-eval model wrapper are built once, so a candidate costs only forward passes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from release.config import ReleaseConfig
from release.search.cmaes import Fitness

log = logging.getLogger(__name__)


def task_suite(config: ReleaseConfig):
    from release.evals import TaskSuite  # imports lm_eval and torch

    # Seeded by the search seed: the same config always splits items the same way.
    return TaskSuite.from_spec(config.fitness, config.run_dir / "evals", config.search.seed)


@dataclass
class LiveSearch:
    """The live search model's fitness, and what the driver needs to know of it."""

    # None on the driver of a distributed search (the workers hold the model); with fitness.estimator race, an
    # Evaluation that races each generation
    fitness: Fitness | None
    space: Any  # the breeder's genome space (names, named, full)
    record: dict  # breeder facts the breed stage records (e.g. layer_map)
    method: str  # breed.method
    device: str
    dtype: str


def build_live_search(config: ReleaseConfig, pulled: dict, r_mri: list[float] | None = None) -> LiveSearch:
    """The breeder's live search model from the pulled parents, and its fitness, as the config says.

    The one place that does so: the in-process search and every Ray worker call it, so a candidate's
    fitness cannot depend on where it was scored.
    """
    from transformers import AutoTokenizer

    from release.breeders import get_breeder  # imports torch
    from release.device import pick_device, pick_dtype, tune_cpu_threads  # imports torch

    father, mother = Path(pulled["father"]["path"]), Path(pulled["mother"]["path"])
    breeder = get_breeder(config.breed.method)
    device = pick_device(config.search.device)
    dtype = pick_dtype(config.search.dtype, device)
    base = {"base_dir": Path(pulled["base"]["path"])} if pulled.get("base") else {}  # weight merges over an ancestor
    live = breeder.build_live(father, mother, config, device=device, dtype=dtype, r_mri=r_mri, **base)  # r_MRI: genome.mri
    tune_cpu_threads(live.model)
    tokenizer = AutoTokenizer.from_pretrained(father)
    fitness = make_fitness(config, live.model, tokenizer, config.run_dir / "breed", progress=False, apply=live.apply)
    if config.fitness.estimator != "full":  # cheap search fitness: scores a few items per candidate
        from release.search.estimators.scoring import estimated_fitness

        fitness = estimated_fitness(config.fitness, config.search, fitness.evaluator, live.apply, live.space,
                                    config.run_dir / "breed")
    return LiveSearch(fitness=fitness, space=live.space, record=live.record, method=breeder.method,
                      device=str(device), dtype=str(dtype))


def make_fitness(config: ReleaseConfig, model, tokenizer, folder: Path, progress: bool = False,
                 apply: Callable[[list[float]], None] | None = None) -> Fitness:
    """`fitness(genome) -> (value, per-task scores)` on the live model `model`.

    `apply(genome)` switches the candidate in place (a breeder's `Live.apply`); default: `model.set_ratios`.
    """
    spec = config.fitness
    apply = apply or model.set_ratios
    if spec.kind == "calibration":
        from release.evals.calibration import CalibrationSet  # imports torch

        text = CalibrationSet.from_spec(spec, tokenizer, config.search.seed)

        def calibration(genome: list[float]) -> tuple[float, dict[str, float]]:
            apply(genome)
            result = text.score(model, "search")
            calibration.stderr = result.stderr  # the noise the start and transplant checks use
            return result.value, {"calibration_ll": result.value}

        calibration.stderr = None
        calibration.calibration = text.describe()
        return calibration

    from release.evals import Evaluator  # imports lm_eval and torch

    evaluator = Evaluator(model, tokenizer, task_suite(config), split="search", scorer=spec.scorer,
                          batch_size=spec.batch_size, progress=progress, max_gen_toks=spec.max_gen_toks)

    leaf_task = {leaf: t.name for t in evaluator.suite.tasks for leaf in t.leaves}
    weights = {t.name: t.weight for t in evaluator.suite.tasks}
    last = {}

    def benchmark(genome: list[float]) -> tuple[float, dict[str, float]]:
        apply(genome)
        result = evaluator.evaluate()
        benchmark.stderr = result.stderr  # the last fitness's standard error: the search noise (transplant)
        last["items"] = result.item_scores
        return result.fitness, result.scores

    def items() -> tuple[dict, dict[str, float]]:
        """The last call's item scores by task ({task: {(leaf, doc): score}}) and the task weights, for
        paired comparisons of two candidates on the same items (release.search.start)."""
        by_task = {}
        for leaf, scores in last.get("items", {}).items():
            by_task.setdefault(leaf_task[leaf], {}).update({(leaf, doc): v for doc, v in scores.items()})
        return by_task, weights

    benchmark.stderr = None
    benchmark.items = items
    benchmark.evaluator = evaluator  # what the cheap estimators score items with
    return benchmark


def evaluate_release(config: ReleaseConfig, pulled: dict, child_dir: Path, out: Path, progress: bool = True,
                     child_trust_remote_code: bool = True) -> dict:
    """Child, father and mother on the same held-out items; writes results.json and returns it."""
    from release.evals import ModelSpec, evaluate_models  # imports lm_eval and torch

    models = {
        "child": ModelSpec(path=child_dir, repo=config.child.repo, revision=None,
                           trust_remote_code=child_trust_remote_code),
        # A parent is scored as the release reads it: text only, when its pull skipped the other shards.
        **{role: ModelSpec(path=Path(pulled[role]["path"]), repo=pulled[role]["repo"],
                           revision=pulled[role]["revision"], text_only=bool(pulled[role].get("skipped_shards")))
           for role in ("father", "mother")},
    }
    spec = config.fitness
    calibration = None
    if spec.kind == "calibration":  # its held-out share: what the search optimised, on text it never saw
        from release.evals.calibration import CalibrationSet  # imports torch

        def calibration(tokenizer):
            return CalibrationSet.from_spec(spec, tokenizer, config.search.seed)

    return evaluate_models(models, task_suite(config) if spec.tasks else None, out, scorer=spec.scorer,
                           batch_size=spec.batch_size, device=config.search.device,
                           dtype=config.search.dtype, progress=progress, max_gen_toks=spec.max_gen_toks,
                           log_samples=spec.log_samples, calibration=calibration)
