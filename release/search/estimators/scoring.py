"""Cheap search fitness (`fitness.estimator: irt | race`) on the live model, and the tokens it saved.

Both estimators score items through the search's own evaluator (`Evaluator.score_items`: lm-eval's tasks,
metrics and the same scorer), a few at a time, on the live model switched to a candidate by `apply`:

- `IrtFitness` scores the calibration genomes (the parents' corners of the genome space and a few seeded
  probes) on the whole search subset once, fits the items (`irt`), and from then on scores
  each candidate on the anchors only;
- `RaceEvaluation` scores a whole generation in rounds (`race`) and stops giving items to a
  candidate once its rank is settled.

Each keeps a ledger of the tokens it scored against what full scoring of the same candidates would have cost
(one full evaluation's tokens, measured), and saves it with what it needs to resume (the calibration
responses) in `estimator.json`. Only the search uses them: the final evaluation always scores the whole
held-out split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from release.run.files import write_json
from release.search.estimators.irt import build_estimator
from release.search.estimators.race import Race

log = logging.getLogger(__name__)

STATE = "estimator.json"

Apply = Callable[[list[float]], None]


@dataclass
class Ledger:
    """Tokens the search scored, and what full scoring of the same candidates would have cost."""

    estimator: str
    full_tokens: int = 0  # one full evaluation of the search subset (measured)
    calibration_tokens: int = 0  # spent before the search (IRT probes; race: the one full reference)
    candidate_tokens: int = 0  # spent on candidates
    full_scoring_tokens: int = 0  # genomes scored on every item after the search (the elite, the transplant)
    candidates: int = 0
    anchors: int | None = None
    items: int = 0

    @property
    def scored(self) -> int:
        return self.calibration_tokens + self.candidate_tokens + self.full_scoring_tokens

    def record(self) -> dict:
        full = self.full_tokens * self.candidates
        return {**asdict(self), "tokens_scored": self.scored, "tokens_full": full,
                "saved_ratio": round(full / self.scored, 3) if self.scored else None}


class ItemScorer:
    """Scores a genome on some items of the search subset (positions in the item layout) on the live model."""

    def __init__(self, evaluator, layout, apply: Apply):
        self.evaluator, self.layout, self.apply = evaluator, layout, apply

    def score(self, genome: list[float], items) -> tuple[np.ndarray, int]:
        self.apply(genome)
        scores, tokens = self.evaluator.score_items(self.layout.samples(items))
        return self.layout.values(scores, items), tokens

    def full(self, genome: list[float]) -> tuple[np.ndarray, int]:
        return self.score(genome, np.arange(len(self.layout)))


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_state(path: Path, key: str) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("key") == key else None


def _save_state(path: Path, state: dict) -> None:
    write_json(path, state)  # atomic


class _Estimated:
    """What both estimators share: full scoring of single genomes, and choosing the child among the elite."""

    scorer: ItemScorer
    ledger: Ledger

    exact: dict[tuple, np.ndarray]  # genomes already scored on every item: their item scores
    child_from: str | None = None  # after choose_child: "mean" (the search's final mean) or "elite"

    def full(self, genome: list[float]) -> tuple[float, dict[str, float]]:
        """Full scoring of one genome (not a search candidate): for the elite and the transplant. Its standard
        error is then in `self.full_fitness.stderr`, as the transplant reads it of a fitness."""
        y = self.exact.get(tuple(genome))
        if y is None:  # (a raced candidate that answered every item is not scored again)
            y, tokens = self.scorer.full(genome)
            self.ledger.full_scoring_tokens += tokens
            self._save()
            self.exact[tuple(genome)] = y
        layout = self.scorer.layout
        self.full_fitness.stderr = layout.stderr(y)
        return float(layout.weights @ y), layout.task_scores(y)

    @property
    def full_fitness(self):
        """`full` as a fitness function carrying the last score's `stderr` (the transplant's noise)."""
        if getattr(self, "_full_fitness", None) is None:
            last = {}

            def fitness(genome: list[float]) -> tuple[float, dict[str, float]]:
                last["genome"] = tuple(genome)
                return self.full(genome)

            def items() -> tuple[dict, dict[str, float]]:
                """The last genome's item scores by task and the task weights: the start check compares two
                genomes item by item (paired), as it does with full scoring."""
                layout, y = self.scorer.layout, self.exact[last["genome"]]
                by_task: dict[str, dict] = {}
                for key, task, value in zip(layout.keys, layout.tasks, y):
                    by_task.setdefault(task, {})[key] = float(value)
                return by_task, {t: abs(w) for t, w in layout.task_weights.items()}

            fitness.stderr = None
            fitness.items = items
            self._full_fitness = fitness
        return self._full_fitness

    def choose_child(self, result, log_path: Path, elite: int):
        """The search's result with the child chosen by full scoring of the search subset among the search's
        final mean (when it has one: under a noisy fitness CMA-ES's mean, an average over generations, is a
        better guess than any one candidate) and the `elite` best estimated distinct candidates of the log (the
        best estimate of many is biased upward: the winner's curse)."""
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        best: dict[tuple, dict] = {}
        for line in sorted(lines, key=lambda l: -l["fitness"]):
            best.setdefault(tuple(line["genome"]), line)
        mean = getattr(result, "mean", None)
        pool = [{"genome": list(mean), "x": result.mean_x, "fitness": None, "mean": True}] if mean else []
        pool += [line for line in best.values() if tuple(line["genome"]) != tuple(mean or ())][:elite]
        if not pool:
            raise ValueError("no candidate to choose the child from: set fitness.elite to 1 or more")
        chosen = None
        for line in pool:
            value, scores = self.full(line["genome"])
            if chosen is None or value > chosen[0]:
                chosen = (value, scores, line)
        value, scores, line = chosen
        self.child_from = "mean" if line.get("mean") else "elite"
        self._save()
        what = "the search's final mean" if line.get("mean") else f"the estimated {line['fitness']:.4f} candidate"
        log.info("%s estimator: the child is %s, the best in full scoring (%.4f) of %d genomes re-scored on every "
                 "search item", self.ledger.estimator, what, value, len(pool))
        return dataclasses.replace(result, genome=line["genome"], fitness=value, scores=scores, tau=line.get("tau"),
                                   x=line.get("x", result.x))

    def _save(self) -> None: ...


class IrtFitness(_Estimated):
    """An `Evaluation` (release search): each generation answers freshly drawn anchors (one item per IRT
    cluster, the same for the whole generation, so its candidates are compared on the same items), and each
    candidate's fitness is the gp-IRT estimate from its answers. Called on one genome it answers the
    representative anchors."""

    workers, busy = 1, 0

    def __init__(self, scorer: ItemScorer, calibration: list[list[float]], anchors: int, dims: int, seed: int,
                 folder: Path):
        self.scorer, self.layout, self.seed = scorer, scorer.layout, seed
        self.path = folder / STATE
        key = _digest({"items": self.layout.keys, "calibration": calibration, "anchors": anchors, "dims": dims,
                       "seed": seed})
        state = _load_state(self.path, key)
        if state is None:  # score the calibration genomes on every search item
            responses, tokens = [], []
            for genome in calibration:
                y, t = scorer.full(genome)
                responses.append(y.tolist())
                tokens.append(t)
            ledger = Ledger("irt", full_tokens=int(np.median(tokens)), calibration_tokens=int(sum(tokens)))
            state = {"key": key, "responses": responses, "calibration": calibration}
        else:
            ledger = Ledger(**state["ledger"])
            log.info("IRT estimator: calibration responses reused from %s", self.path)
        self.responses = np.asarray(state["responses"])
        self.estimator = build_estimator(self.responses, self.layout.weights, anchors, dims, seed)
        ledger.anchors, ledger.items = len(self.estimator.anchors), len(self.layout)
        self.ledger, self.state = ledger, state
        # calibration genomes were scored on every item: the start check and the elite reuse their answers
        self.exact = {tuple(g): y for g, y in zip(state["calibration"], self.responses)}
        self.stderr = None  # no per-candidate standard error of an estimate (see loo_error)
        self._save()

    def _estimate(self, genome: list[float], anchors: np.ndarray) -> tuple[float, dict[str, float]]:
        answers, tokens = self.scorer.score(genome, anchors)
        y_hat = self.estimator.predict(answers, anchors)
        self.ledger.candidate_tokens += tokens
        self.ledger.candidates += 1
        return float(self.layout.weights @ y_hat), self.layout.task_scores(y_hat)

    def __call__(self, genome: list[float]) -> tuple[float, dict[str, float]]:
        value, scores = self._estimate(genome, self.estimator.anchors)
        self._save()
        return value, scores

    def evaluate(self, genomes: list[list[float]], on_result) -> None:
        # The anchors depend on the generation's genomes only: a resumed search draws the same ones.
        anchors = self.estimator.draw(np.random.default_rng([self.seed, int(_digest(genomes), 16)]))
        for k, genome in enumerate(genomes):
            t0 = time.perf_counter()
            self.busy = 1
            value, scores = self._estimate(genome, anchors)
            self.busy = 0
            on_result(k, value, scores, time.perf_counter() - t0, None)
        self._save()

    def record(self) -> dict:
        return {**self.ledger.record(), "lam": self.estimator.lam, "loo_error": round(self.estimator.loo_error, 5),
                "calibration_genomes": len(self.responses), "anchors_drawn": "per generation",
                "child_from": self.child_from}

    def _save(self) -> None:
        _save_state(self.path, {**self.state, "ledger": asdict(self.ledger), "record": self.record()})


class RaceEvaluation(_Estimated):
    """An `Evaluation` (release search) that races each generation's candidates on the search items."""

    workers, busy = 1, 0

    def __init__(self, scorer: ItemScorer, reference: list[float], confidence: float, round_items: int, tie: float,
                 seed: int, folder: Path, max_items: int | None = None):
        self.scorer, self.layout = scorer, scorer.layout
        self.confidence, self.round_items, self.tie, self.seed = confidence, round_items, tie, seed
        self.max_items = max_items
        self.path = folder / STATE
        key = _digest({"items": self.layout.keys, "reference": reference, "seed": seed})
        state = _load_state(self.path, key)
        if state is None:  # one full evaluation of the start: what a candidate costs without the race
            y, tokens = scorer.full(reference)
            state = {"key": key, "ledger": asdict(Ledger("race", full_tokens=tokens, calibration_tokens=tokens)),
                     "reference": list(reference), "responses": y.tolist()}
        self.ledger = Ledger(**state["ledger"])
        self.ledger.items = len(self.layout)
        self.key, self.state = key, state
        self.stderr = None
        # the start check scores the start again: it reuses these answers
        self.exact = {tuple(state["reference"]): np.asarray(state["responses"])} if "responses" in state else {}
        self._save()

    def evaluate(self, genomes: list[list[float]], on_result) -> None:
        # The item order depends on the generation's genomes only: a resumed search races the same way.
        rng = np.random.default_rng([self.seed, int(_digest(genomes), 16)])
        race = Race(len(genomes), self.layout.weights, rng.permutation(len(self.layout)), self.confidence,
                    self.round_items, self.tie, cut=max(1, len(genomes) // 2),  # cma selects the best half
                    max_items=self.max_items)
        seconds = [0.0] * len(genomes)

        def answer(i, items):
            t0 = time.perf_counter()
            self.busy = 1
            values, tokens = self.scorer.score(genomes[i], items)
            self.busy = 0
            self.ledger.candidate_tokens += tokens
            seconds[i] += time.perf_counter() - t0
            return values

        estimates = race.run(answer)
        predicted = race.predict()
        self.ledger.candidates += len(genomes)
        self._save()
        log.debug("race: %d of %d candidate-items scored", race.items_scored, len(genomes) * len(self.layout))
        for i in range(len(genomes)):
            scores = self.layout.task_scores(predicted[i])
            if race.seen[i] == len(self.layout):
                self.exact[tuple(genomes[i])] = predicted[i]
            on_result(i, float(estimates[i]), scores, seconds[i], None)

    def record(self) -> dict:
        return {**self.ledger.record(), "confidence": self.confidence, "round_items": self.round_items,
                "tie": self.tie, "max_items": self.max_items, "child_from": self.child_from}

    def _save(self) -> None:
        _save_state(self.path, {**self.state, "ledger": asdict(self.ledger), "record": self.record()})


def _bounds(space) -> tuple[np.ndarray, np.ndarray]:
    """The genome space's free-coordinate bounds as two arrays (cma takes scalars or per-gene lists)."""
    low, high = space.bounds
    n = len(space.x0)
    return np.broadcast_to(np.asarray(low, dtype=float), (n,)).copy(), np.broadcast_to(np.asarray(high, dtype=float), (n,)).copy()


def calibration_genomes(space, sigma0: float, probes: int, seed: int) -> list[list[float]]:
    """The genomes the IRT items are fitted on: the space's two corners (every gene at its low end, i.e. the
    father, and at its high end, the mother's side), the search's start (which the start check scores in full
    anyway) and `probes` seeded draws from the search's first sampling distribution N(x0, sigma0^2 * scales^2),
    clipped to the bounds."""
    low, high = _bounds(space)
    x0 = np.asarray(space.x0, dtype=float)
    scales = np.ones_like(x0) if space.stds is None else np.asarray(space.stds, dtype=float)
    rng = np.random.default_rng([seed, 25])  # its own generator: the search's samples stay as they were
    xs = [low, high, np.clip(x0, low, high)] + [np.clip(x0 + sigma0 * scales * rng.standard_normal(len(x0)), low, high) for _ in range(probes)]
    return [space.full(x.tolist()) for x in xs]


def estimated_fitness(spec, search, evaluator, apply: Apply, space, folder: Path):
    """The search's fitness for `fitness.estimator` irt or race (`spec`: the FitnessSpec, `search`: the
    SearchSpec), on the live model behind `evaluator` and `apply`."""
    from release.evals.items import item_layout

    scorer = ItemScorer(evaluator, item_layout(evaluator.suite, "search"), apply)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.estimator == "irt":
        genomes = calibration_genomes(space, search.sigma0, spec.irt.probes, search.seed)
        return IrtFitness(scorer, genomes, spec.irt.anchors, spec.irt.dims, search.seed, folder)
    if spec.estimator == "race":
        return RaceEvaluation(scorer, space.full(list(space.x0)), spec.race.confidence, spec.race.round_items,
                              spec.race.tie, search.seed, folder, spec.race.max_items)
    raise ValueError(f"unknown estimator {spec.estimator!r}")
