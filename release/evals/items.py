"""A split's items as one flat, weighted list: the fitness is linear in the items' scores.

The evaluator aggregates a task's leaves the way its lm-eval group says (`weight_by_size`: the mean over
all items; otherwise the mean of the leaf means) and weights tasks by their normalised weights. Both are
linear, so every item k has a weight w_k with fitness = sum_k w_k * score_k (the weights sum to 1). The
cheap-fitness estimators (release.search.estimators) work on this form: they predict the score of every item and
take the same weighted sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from release.errors import ReleaseError
from release.evals.suite import SPLITS, TaskSuite


@dataclass(frozen=True)
class ItemLayout:
    keys: tuple[tuple[str, int], ...]  # (leaf task, doc index) per item
    weights: np.ndarray  # fitness weight per item (their absolute values sum to 1; negative: lower is better)
    tasks: tuple[str, ...]  # the config task each item belongs to
    task_weights: dict[str, float]  # normalised task weights (negative: lower is better)

    def __len__(self) -> int:
        return len(self.keys)

    def samples(self, items) -> dict[str, list[int]]:
        """lm-eval `samples=` for the items at these positions."""
        out: dict[str, list[int]] = {}
        for k in items:
            leaf, doc = self.keys[int(k)]
            out.setdefault(leaf, []).append(doc)
        return {leaf: sorted(docs) for leaf, docs in out.items()}

    def values(self, item_scores: dict[str, dict[int, float]], items) -> np.ndarray:
        """The scores of the items at these positions, from an evaluator's per-item scores."""
        return np.array([item_scores[self.keys[int(k)][0]][self.keys[int(k)][1]] for k in items], dtype=float)

    def stderr(self, y: np.ndarray) -> float | None:
        """Standard error of the fitness w @ y over these items, as the evaluator computes it: each task's mean
        over its items (stdev / sqrt(n)), weighted; None when a task has a single item."""
        tasks = np.asarray(self.tasks)
        total = 0.0
        for t, weight in self.task_weights.items():
            values = y[tasks == t]
            if len(values) < 2:
                return None
            total += (weight * values.std(ddof=1) / np.sqrt(len(values))) ** 2
        return float(np.sqrt(total))

    def task_scores(self, y: np.ndarray) -> dict[str, float]:
        """Per-task scores from (predicted) item scores: each task's share of the weighted sum."""
        tasks = np.asarray(self.tasks)
        return {t: float(self.weights[tasks == t] @ y[tasks == t] / self.task_weights[t]) for t in self.task_weights}


def item_layout(suite: TaskSuite, split: str = "search") -> ItemLayout:
    if split not in SPLITS:
        raise ReleaseError(f"unknown evaluation split {split!r}: use one of {', '.join(SPLITS)}")
    for task in suite.tasks:  # the estimators predict item scores whose weighted sum is the fitness
        if not (task.bench.mean and task.bench.higher_is_better):
            raise ReleaseError(f"fitness.tasks {task.name}: its metric {task.bench.metric} is not a mean of per-item "
                               "scores where higher is better, which fitness.estimator needs: use estimator: full")
    total = sum(t.weight for t in suite.tasks)
    keys, weights, tasks = [], [], []
    for task in suite.tasks:
        if not task.bench.mean:
            raise ReleaseError(f"fitness task {task.name}: its metric {task.bench.metric} is not a mean over items, so "
                               "it cannot be estimated from a few of them; use fitness.estimator: full")
        # lower-is-better tasks enter the fitness negated (Evaluator.evaluate): so do their items
        share = task.weight / total * (1 if task.bench.higher_is_better else -1)
        leaves = {leaf: docs for leaf, docs in task.items[split].items() if docs}
        n = sum(len(d) for d in leaves.values())
        for leaf, docs in sorted(leaves.items()):
            # weight_by_size: every item of the task counts the same; else every leaf does.
            w = share / n if task.weight_by_size else share / (len(leaves) * len(docs))
            keys += [(leaf, int(d)) for d in docs]
            weights += [w] * len(docs)
            tasks += [task.name] * len(docs)
    return ItemLayout(tuple(keys), np.asarray(weights), tuple(tasks),
                      {t.name: t.weight / total * (1 if t.bench.higher_is_better else -1) for t in suite.tasks})
