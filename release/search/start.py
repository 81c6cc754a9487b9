"""The search's start, kept unless a candidate clearly beats it: a guard against the winner's curse.

CMA-ES starts at `genome.init_mean` (for a weight merge of trained parents: every share 0.5, the plain
50/50 merge a user gets with no search). The best of many candidates scored on one fixed subset is biased
upward by about two standard errors, so the searched best ships only if, scored again beside the start on
the same items, it beats the start by more than `search.start_margin` standard errors of their paired
difference (per item, when the fitness reports item scores; else the two standard errors combined).
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)


def paired_stderr(a: dict, b: dict, weights: dict[str, float]) -> float | None:
    """Standard error of the weighted difference of two evaluations on the same items.

    `a`, `b`: task -> {item: score}; `weights`: task -> weight (normalised here)."""
    total = sum(weights.values())
    variance = 0.0
    for task, w in weights.items():
        items = sorted(set(a.get(task, {})) & set(b.get(task, {})))
        if len(items) < 2:
            return None
        d = [a[task][i] - b[task][i] for i in items]
        mean = sum(d) / len(d)
        variance += (w / total) ** 2 * sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)
    return math.sqrt(variance)


def keep_start(best: list[float], start: list[float], fitness, margin: float) -> dict:
    """Score the searched best and the start side by side with `fitness(genome) -> (value, scores)`; return
    the record, whose `genome` is the one that ships. The fitness may carry `stderr` (of its last call) and
    `items()` (task -> item -> score, and task weights, of its last call) for the paired noise."""
    record = {"margin": margin, "start_genome": list(start), "searched_genome": list(best)}
    if [float(x) for x in best] == [float(x) for x in start]:
        return {**record, "kept_start": True, "genome": list(start), "reason": "the best candidate is the start"}
    best_value, _ = fitness(list(best))
    best_se, best_items = getattr(fitness, "stderr", None), _items(fitness)
    start_value, start_scores = fitness(list(start))
    start_se, start_items = getattr(fitness, "stderr", None), _items(fitness)
    noise = None
    if best_items and start_items:
        noise = paired_stderr(best_items[0], start_items[0], best_items[1])
    if noise is None and best_se is not None and start_se is not None:
        noise = math.hypot(best_se, start_se)
    noise = noise or 0.0
    kept = not best_value - start_value > margin * noise
    reason = (f"searched best {best_value:.4f} vs start {start_value:.4f}: a gain of {best_value - start_value:+.4f} "
              f"against {margin:g} x {noise:.4f} (standard error of the difference): "
              + ("the start ships" if kept else "the searched best ships"))
    log.info("start check: %s", reason)
    return {**record, "searched_fitness": best_value, "start_fitness": start_value, "noise": noise,
            "kept_start": kept, "start_scores": start_scores, "genome": list(start) if kept else list(best),
            "reason": reason}


def one_at_a_time(evaluation):
    """`fitness(genome) -> (value, scores)` from the search's evaluation: the in-process fitness itself (with
    its `stderr` and `items`), or one candidate at a time through the Ray workers (which report neither)."""
    if not hasattr(evaluation, "evaluate"):
        return evaluation

    def fitness(genome: list[float]):
        got = {}
        evaluation.evaluate([genome], lambda k, value, scores, seconds, worker: got.update(v=value, s=scores))
        return got["v"], got["s"]

    return fitness


def _items(fitness):
    items = getattr(fitness, "items", None)
    return items() if callable(items) else None
