"""CMA-ES over a breeder's genome space (e.g. one FFN blend ratio per father layer), resumable.

The search owns its random generator and hands it to `cma` as `randn`, so nothing else in the
process (lm-eval reseeds numpy's global generator) can change which candidates it samples, and the
generator's state travels inside cma's own pickle. After every generation the whole state is saved
atomically; `resume=True` continues from it and ends with the same genome as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cma
import numpy as np
from tqdm.auto import tqdm

from release.config import GenomeSpec, SearchSpec
from release.errors import ReleaseError
from release.files import write_atomic, write_json

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pkl"
LOG = "candidates.jsonl"
BEST = "best.json"

# fitness(genome) -> (fitness to maximise, per-task scores)
Fitness = Callable[[list[float]], tuple[float, dict[str, float]]]


class GenomeSpace:
    """Maps CMA-ES's free coordinates to a full genome: frozen layers pinned at 0, bounds [0, r_max].

    With `genome.mri` the last coordinate is the MRI trust tau in [0, 1], and a candidate's ratios are
    clip(tau * r_MRI + (1 - tau) * g, 0, r_max) (`release.mri.trust`); without it the space is exactly the
    ratios of the free layers.
    """

    def __init__(self, n_layers: int, spec: GenomeSpec, r_mri: list[float] | None = None):
        bad = [i for i in spec.frozen if i >= n_layers]
        if bad:
            raise ReleaseError(f"genome.frozen names layers {bad}, but the father has {n_layers} layers (0-{n_layers - 1})")
        if spec.scales is not None and len(spec.scales) != n_layers:
            raise ReleaseError(f"genome.scales has {len(spec.scales)} entries; give one per father layer ({n_layers})")
        self.n_layers = n_layers
        self.r_max = spec.r_max
        self.frozen = list(spec.frozen)
        self.free = [i for i in range(n_layers) if i not in set(spec.frozen)]
        if not self.free:
            raise ReleaseError("genome.frozen freezes every layer: leave at least one layer free to search")
        self.x0 = [min(spec.init_mean, spec.r_max)] * len(self.free)
        self.stds = None if spec.scales is None else [spec.scales[i] for i in self.free]
        self.bounds = [0.0, spec.r_max]
        self.r_mri = None
        if spec.mri:
            if r_mri is None or len(r_mri) != n_layers:
                raise ReleaseError("genome.mri is on but no r_MRI per father layer was given: run the mri stage "
                                   "first (darwin-release mri CONFIG)")
            self.r_mri = [float(r) for r in r_mri]
            self.x0.append(spec.mri_trust_init)
            self.stds = None if self.stds is None else [*self.stds, 1.0]
            self.bounds = [[0.0] * len(self.free) + [0.0], [spec.r_max] * len(self.free) + [1.0]]

    @property
    def dimensions(self) -> int:
        return len(self.x0)

    def tau(self, x) -> float | None:
        return None if self.r_mri is None else float(min(max(x[-1], 0.0), 1.0))

    def full(self, x) -> list[float]:
        genome = [0.0] * self.n_layers
        for i, v in zip(self.free, x):
            genome[i] = float(min(max(v, 0.0), self.r_max))
        if self.r_mri is None:
            return genome
        from release.mri.trust import trust_weighted

        return trust_weighted(self.tau(x), self.r_mri, genome, self.r_max, self.frozen)

    @property
    def names(self) -> list[str]:
        """The genome's gene names (what a breeder reads the genome by): the ratio of each father layer."""
        return [f"r.{i}" for i in range(self.n_layers)]

    def named(self, genome: list[float]) -> dict[str, float]:
        if len(genome) != self.n_layers:
            raise ReleaseError(f"the genome has {len(genome)} ratios, expected one per father layer ({self.n_layers})")
        return dict(zip(self.names, genome))

    def describe(self, x) -> dict:
        """What the search log records beside the genome: tau and r_MRI with MRI trust, else nothing."""
        return {} if self.r_mri is None else {"tau": self.tau(x), "r_mri": self.r_mri}


class _Randn:
    """A picklable N(0,1) source for cma (its `randn` option), seeded by the config alone."""

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


def fingerprint(**parts) -> str:
    """What makes a checkpoint valid: config, parents and fitness; budgets may change on resume."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_checkpoint(folder: Path, expected: str) -> tuple[cma.CMAEvolutionStrategy, SearchState]:
    path = folder / CHECKPOINT
    try:
        saved = pickle.loads(path.read_bytes())
        es, state = pickle.loads(saved["es"]), SearchState(**saved["state"])
    except Exception as e:  # any damage to the file means the same thing to the user
        raise ReleaseError(f"search checkpoint {path} is corrupt ({type(e).__name__}): start a new search "
                           "(--force breed, or breed without --resume)") from None
    if state.fingerprint != expected:
        raise ReleaseError(f"search checkpoint {path} belongs to another config or other parents: start a new "
                           "search (--force breed) or restore the config it was made with")
    return es, state


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
    for line in path.read_text().splitlines() if path.exists() else []:
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


def run_search(space: GenomeSpace, fitness: Fitness, spec: SearchSpec, folder: Path, fingerprint: str,
               resume: bool = False, progress: bool = True) -> SearchResult:
    """Search the genome with CMA-ES, maximising `fitness`; state and log go to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG
    if resume and (folder / CHECKPOINT).exists():
        es, state = _load_checkpoint(folder, fingerprint)
        _truncate_log(log_path, state)
        log.info("resuming search at generation %d (%d evaluations done)", state.generation, state.evaluations)
    else:
        if (folder / CHECKPOINT).exists() and not resume:
            log.info("starting a new search: the previous checkpoint in %s is discarded", folder)
        opts = {"bounds": space.bounds, "popsize": spec.popsize, "randn": _Randn(spec.seed),
                "seed": np.nan, "verbose": -9, "verb_log": 0, "verb_disp": 0, "CMA_stds": space.stds}
        es = cma.CMAEvolutionStrategy(space.x0, spec.sigma0, opts)
        state = SearchState(fingerprint=fingerprint)
        log_path.unlink(missing_ok=True)

    started, elapsed_before = time.monotonic(), state.seconds
    total = None
    if spec.max_generations is not None:
        total = spec.max_generations * spec.popsize
    if spec.max_evaluations is not None:
        total = min(total or spec.max_evaluations, spec.max_evaluations)
    bar = tqdm(total=total, initial=state.evaluations, desc="search", unit="eval", disable=not progress,
               dynamic_ncols=True)
    try:
        while (reason := _stop_reason(es, state, spec, started, elapsed_before)) is None:
            xs = es.ask()
            values, lines = [], []
            for k, x in enumerate(xs):
                genome = space.full(x)
                t0 = time.perf_counter()
                value, scores = fitness(genome)
                if not math.isfinite(value):
                    raise ReleaseError(f"the fitness of candidate {k} in generation {state.generation} is "
                                       f"{value}: check the fitness tasks and their weights, then breed again")
                lines.append({"generation": state.generation, "candidate": k, "genome": genome,
                              "scores": scores, "fitness": value, "seconds": round(time.perf_counter() - t0, 4),
                              **space.describe(x)})
                values.append(value)
                if value > state.best_fitness:
                    state.best_fitness, state.best_genome, state.best_scores = value, genome, scores
                    state.best_tau = space.tau(x)
                bar.update(1)
                bar.set_postfix(gen=state.generation + 1, best=f"{state.best_fitness:.4f}")
            es.tell(xs, [-v for v in values])  # cma minimises
            state.generation += 1
            state.evaluations += len(xs)
            state.history.append({"generation": state.generation - 1, "best": max(values),
                                  "mean": float(np.mean(values)), "best_so_far": state.best_fitness})
            state.seconds = elapsed_before + time.monotonic() - started
            with log_path.open("ab") as f:
                f.write("".join(json.dumps(line) + "\n" for line in lines).encode())
                f.flush()
                os.fsync(f.fileno())  # on disk before the checkpoint that counts these bytes
                state.log_bytes = f.tell()
            write_atomic(folder / CHECKPOINT, pickle.dumps({"es": es.pickle_dumps(), "state": asdict(state)}))
            log.info("generation %d: best %.4f, mean %.4f, best so far %.4f", state.generation,
                     max(values), np.mean(values), state.best_fitness)
    finally:
        bar.close()
    if not state.best_genome:
        raise ReleaseError(f"the search stopped ({reason}) before evaluating any candidate: raise "
                           "search.max_generations, max_evaluations or time_budget_s")
    state.stop_reason = reason
    state.seconds = elapsed_before + time.monotonic() - started
    result = SearchResult(genome=state.best_genome, fitness=state.best_fitness, scores=state.best_scores,
                          generations=state.generation, evaluations=state.evaluations,
                          seconds=round(state.seconds, 3), stop_reason=reason, history=state.history,
                          tau=state.best_tau)
    write_json(folder / BEST, asdict(result))
    log.info("search stopped (%s) after %d evaluations: best fitness %.4f", reason, state.evaluations,
             state.best_fitness)
    return result
