"""CMA-ES over a breeder's genome space (e.g. one FFN blend ratio per father layer), resumable.

The search owns its random generator and hands it to `cma` as `randn`, so nothing else in the
process (lm-eval reseeds numpy's global generator) can change which candidates it samples, and the
search's state and every told generation are saved atomically after each generation, in a format that
cannot run code (`release.search.checkpoint`); `resume=True` replays them into a fresh CMA-ES and ends with
the same genome as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import cma
import numpy as np
from tqdm.auto import tqdm

from release.config import SearchSpec
from release.errors import ReleaseError
from release.run.files import write_atomic, write_json
from release.search.checkpoint import CHECKPOINT, discard_pickled, read_checkpoint, replay, save_checkpoint

log = logging.getLogger(__name__)

LOG = "candidates.jsonl"
BEST = "best.json"

# fitness(genome) -> (fitness to maximise, per-task scores)
Fitness = Callable[[list[float]], tuple[float, dict[str, float]]]
# on_result(candidate index, fitness, scores, seconds, worker): called as each candidate is scored
OnResult = Callable[[int, float, dict[str, float], float, "int | None"], None]


class Evaluation(Protocol):
    """How a generation's candidates get scored: in this process, or by workers (release.search.distributed)."""

    workers: int  # how many candidates can be scored at once
    busy: int  # how many are being scored now

    def evaluate(self, genomes: list[list[float]], on_result: OnResult) -> None: ...


class InProcess:
    """Scores candidates one after another in this process (`search.workers: 1`)."""

    workers, busy = 1, 0

    def __init__(self, fitness: Fitness):
        self.fitness = fitness

    def evaluate(self, genomes: list[list[float]], on_result: OnResult) -> None:
        for k, genome in enumerate(genomes):
            t0 = time.perf_counter()
            self.busy = 1
            value, scores = self.fitness(genome)
            self.busy = 0
            on_result(k, value, scores, time.perf_counter() - t0, None)


class SearchCallback:
    """Hooks for watching a search (e.g. release.search.tracking); a failing hook never stops the search."""

    def on_start(self, state: SearchState, resumed: bool) -> None: ...

    def on_candidate(self, line: dict) -> None: ...

    def on_generation(self, record: dict, state: SearchState) -> None: ...

    def on_end(self, result: SearchResult) -> None: ...


class SearchSpace(Protocol):
    """What the search reads from a breeder's genome space (`release.breeders.genome.GeneSpace`, or
    ffn_blend's `release.breeders.ffn_genome.GenomeSpace`): CMA-ES's start, scales and bounds, and the
    full genome (and any extra facts for the log) of a point."""

    x0: list[float]
    stds: list[float] | None
    bounds: list

    def full(self, x) -> list[float]: ...

    def describe(self, x) -> dict: ...


class _Randn:
    """An N(0,1) source for cma (its `randn` option), seeded by the config alone."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape):
        return self.rng.standard_normal(shape)


@dataclass
class SearchState:
    fingerprint: str
    generation: int = 0  # generations completed
    evaluations: int = 0
    seconds: float = 0.0
    best_fitness: float = -math.inf
    best_genome: list[float] = field(default_factory=list)
    best_scores: dict[str, float] = field(default_factory=dict)
    best_tau: float | None = None  # the MRI trust of the best candidate (genome.mri only)
    best_x: list[float] | None = None  # CMA-ES's own point for the best candidate, before the space maps it
    history: list[dict] = field(default_factory=list)  # per generation: best, mean, evaluations
    stop_reason: str | None = None
    # Length of the candidate log when this state was saved: on resume the log is cut back to it, so a
    # kill during an append (a torn line, or lines of a generation the checkpoint never saw) leaves no trace.
    log_bytes: int | None = None  # None: a checkpoint from before this was recorded


@dataclass(frozen=True)
class SearchResult:
    genome: list[float]
    fitness: float
    scores: dict[str, float]
    generations: int
    evaluations: int
    seconds: float
    stop_reason: str
    history: list[dict]
    tau: float | None = None
    x: list[float] | None = None  # CMA-ES's raw point of the best candidate (what `space.full` mapped to `genome`)
    # The final sampling distribution's mean (pycma's `xfavorite`, inside the bounds) and its genome: under a
    # noisy fitness a better guess of the optimum than the best candidate, whose score is biased upward.
    mean_x: list[float] | None = None
    mean: list[float] | None = None


def fingerprint(**parts) -> str:
    """What makes a checkpoint valid: config, parents and fitness; budgets may change on resume."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _new_strategy(space: SearchSpace, spec: SearchSpec) -> cma.CMAEvolutionStrategy:
    opts = {"bounds": space.bounds, "popsize": spec.popsize, "randn": _Randn(spec.seed),
            "seed": np.nan, "verbose": -9, "verb_log": 0, "verb_disp": 0, "CMA_stds": space.stds}
    return cma.CMAEvolutionStrategy(space.x0, spec.sigma0, opts)


def _load_checkpoint(folder: Path, expected: str, space: SearchSpace,
                     spec: SearchSpec) -> tuple[cma.CMAEvolutionStrategy, SearchState, list, list]:
    path = folder / CHECKPOINT
    saved, candidates, fitness = read_checkpoint(path)
    try:
        state = SearchState(**saved)
    except TypeError:
        raise ReleaseError(f"search checkpoint {path} is corrupt (its state has other fields): start a new search "
                           "(--force breed, or breed without --resume)") from None
    if state.fingerprint != expected:
        raise ReleaseError(f"search checkpoint {path} belongs to another config or other parents: start a new "
                           "search (--force breed) or restore the config it was made with")
    if len(candidates) != state.generation:
        raise ReleaseError(f"search checkpoint {path} is corrupt ({len(candidates)} generations told, "
                           f"{state.generation} recorded): start a new search (--force breed)")
    es = _new_strategy(space, spec)
    replay(es, candidates, fitness, path)
    return es, state, [c.tolist() for c in candidates], fitness.tolist()


def _truncate_log(path: Path, state: SearchState) -> None:
    """Cut the candidate log back to what the checkpoint saw: a generation interrupted before its
    checkpoint, or a line torn by a kill during the append, is dropped."""
    size = path.stat().st_size if path.exists() else 0
    if state.log_bytes is not None:
        if size < state.log_bytes:
            raise ReleaseError(f"search log {path} is shorter than its checkpoint records: start a new search "
                               "(--force breed, or breed without --resume)")
        if path.exists():
            os.truncate(path, state.log_bytes)
        return
    keep = []  # an older checkpoint: keep whole lines of checkpointed generations, up to a torn one
    for line in path.read_bytes().decode(errors="replace").splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except ValueError:
            break
        if row["generation"] < state.generation:
            keep.append(line)
    write_atomic(path, "".join(line + "\n" for line in keep))


def _stop_reason(es, state: SearchState, spec: SearchSpec, started: float, elapsed_before: float) -> str | None:
    if spec.max_generations is not None and state.generation >= spec.max_generations:
        return "max_generations"
    if spec.max_evaluations is not None and state.evaluations >= spec.max_evaluations:
        return "max_evaluations"
    if spec.time_budget_s is not None and elapsed_before + time.monotonic() - started >= spec.time_budget_s:
        return "time_budget"
    stop = es.stop()
    if stop:
        return "cma:" + ",".join(sorted(stop))
    return None


def run_search(space: SearchSpace, fitness: Fitness | Evaluation, spec: SearchSpec, folder: Path, fingerprint: str,
               resume: bool = False, progress: bool = True, callbacks: tuple[SearchCallback, ...] = ()) -> SearchResult:
    """Search the genome with CMA-ES, maximising `fitness`; state and log go to `folder`.

    `fitness` is a function scored in this process, or an `Evaluation` that hands candidates to workers;
    either way CMA-ES, the log and the checkpoint stay here, and the result does not depend on which.
    """
    evaluation = fitness if hasattr(fitness, "evaluate") else InProcess(fitness)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG
    if resume:
        discard_pickled(folder)
    if resume and (folder / CHECKPOINT).exists():
        es, state, told, told_fitness = _load_checkpoint(folder, fingerprint, space, spec)
        _truncate_log(log_path, state)
        log.info("resuming search at generation %d (%d evaluations done)", state.generation, state.evaluations)
    else:
        if (folder / CHECKPOINT).exists() and not resume:
            log.info("starting a new search: the previous checkpoint in %s is discarded", folder)
        es = _new_strategy(space, spec)
        state, told, told_fitness = SearchState(fingerprint=fingerprint), [], []
        log_path.unlink(missing_ok=True)
    _notify(callbacks, "on_start", state, resume and state.generation > 0)

    started, elapsed_before = time.monotonic(), state.seconds
    total = None
    if spec.max_generations is not None:
        total = spec.max_generations * spec.popsize
    if spec.max_evaluations is not None:
        total = min(total or spec.max_evaluations, spec.max_evaluations)
    bar = tqdm(total=total, initial=state.evaluations, desc="search", unit="eval", disable=not progress,
               dynamic_ncols=True)
    scored = [0]  # candidates scored by this process, for the rate shown
    try:
        while (reason := _stop_reason(es, state, spec, started, elapsed_before)) is None:
            xs = es.ask()
            genomes = [space.full(x) for x in xs]
            lines: list[dict | None] = [None] * len(xs)

            def on_result(k, value, scores, seconds, worker, generation=state.generation):
                if not math.isfinite(value):
                    raise ReleaseError(f"the fitness of candidate {k} in generation {generation} is "
                                       f"{value}: check the fitness tasks and their weights, then breed again")
                lines[k] = {"generation": generation, "candidate": k, "genome": genomes[k], "scores": scores,
                            "fitness": value, "seconds": round(seconds, 4), "worker": worker,
                            "x": [float(v) for v in xs[k]], **space.describe(xs[k])}
                _notify(callbacks, "on_candidate", lines[k])
                bar.update(1)
                scored[0] += 1
                rate = 60 * scored[0] / max(time.monotonic() - started, 1e-9)
                bar.set_postfix(gen=generation + 1, best=f"{max(state.best_fitness, value):.4f}",
                                busy=f"{evaluation.busy}/{evaluation.workers}", per_min=f"{rate:.1f}")

            evaluation.evaluate(genomes, on_result)
            values = [line["fitness"] for line in lines]
            for line in lines:  # in candidate order, whatever order the workers finished in
                if line["fitness"] > state.best_fitness:
                    state.best_fitness, state.best_genome = line["fitness"], line["genome"]
                    state.best_scores, state.best_tau = line["scores"], line.get("tau")
                    state.best_x = line["x"]
            es.tell(xs, [-v for v in values])  # cma minimises
            told.append([list(map(float, x)) for x in xs])
            told_fitness.append(values)
            state.generation += 1
            state.evaluations += len(xs)
            record = {"generation": state.generation - 1, "best": max(values), "mean": float(np.mean(values)),
                      "best_so_far": state.best_fitness}
            state.history.append(record)
            state.seconds = elapsed_before + time.monotonic() - started
            with log_path.open("ab") as f:
                f.write("".join(json.dumps(line) + "\n" for line in lines).encode())
                f.flush()
                os.fsync(f.fileno())  # on disk before the checkpoint that counts these bytes
                state.log_bytes = f.tell()
            save_checkpoint(folder / CHECKPOINT, asdict(state), told, told_fitness)
            _notify(callbacks, "on_generation", {**record, "sigma": float(es.sigma)}, state)
            log.info("generation %d: best %.4f, mean %.4f, best so far %.4f", state.generation,
                     max(values), np.mean(values), state.best_fitness)
    finally:
        bar.close()
    if not state.best_genome:
        raise ReleaseError(f"the search stopped ({reason}) before evaluating any candidate: raise "
                           "search.max_generations, max_evaluations or time_budget_s")
    state.stop_reason = reason
    state.seconds = elapsed_before + time.monotonic() - started
    mean_x = [float(v) for v in es.result.xfavorite]
    result = SearchResult(genome=state.best_genome, fitness=state.best_fitness, scores=state.best_scores,
                          generations=state.generation, evaluations=state.evaluations,
                          seconds=round(state.seconds, 3), stop_reason=reason, history=state.history,
                          tau=state.best_tau, x=state.best_x, mean_x=mean_x,
                          mean=space.full(mean_x))
    write_json(folder / BEST, asdict(result))
    _notify(callbacks, "on_end", result)
    log.info("search stopped (%s) after %d evaluations: best fitness %.4f", reason, state.evaluations,
             state.best_fitness)
    return result


def _notify(callbacks, hook: str, *args) -> None:
    for callback in callbacks:
        try:
            getattr(callback, hook)(*args)
        except Exception as e:  # watching the search must never break it
            log.warning("search callback %s.%s failed (%s: %s); the search goes on", type(callback).__name__,
                        hook, type(e).__name__, e)
