"""Benchmark fitness of a live model: lm-eval's own task machinery, model wrapper built once.

A candidate costs only the model's forward passes: the suite's task objects and the lm-eval model
wrapper are built once per Evaluator and `lm_eval.evaluator.evaluate` runs on a prebuilt task dict with
a fixed `samples=` subset. Not `simple_evaluate`: it reseeds the global random/numpy/torch generators on
every call. lm-eval's request cache stays off (it is keyed on text and would return stale scores while
the weights change underneath).

Scores: each task's own metric as lm-eval defines it (CLIcK `acc`, MuSR `acc_norm`, any task's first
metric and filter, or the config's `metric: "name,filter"`). Every output type runs: multiple-choice and
loglikelihood requests through the scorer (the fast prefix-cached one by default), generate_until and
loglikelihood_rolling through stock lm-eval (HFLM) on the same live model. A group's score is
aggregated the way its lm-eval group config says (`weight_by_size: true` for both: the item-weighted
mean over subtasks, i.e. the mean over all its items). Standard error of a task: lm-eval's
`mean_stderr` over the same items (None for metrics not aggregated by a mean, e.g. perplexities).
Fitness: sum of w_i * s_i with the weights normalised to sum 1 (Genesis' 0.6/0.4 are unchanged), where
s_i is the score, negated for metrics where lower is better (perplexity, bits per byte); its stderr
treats the task means as independent: sqrt(sum w_i^2 se_i^2).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field

import torch
from lm_eval import evaluator as lm_evaluator
from lm_eval.api.metrics import aggregate_subtask_metrics, mean_stderr, unweighted_mean_stderr

from release.errors import ReleaseError
from release.evals.scorer import PrefixCacheLM, StockLM
from release.evals.suite import SuiteTask, TaskSuite, check_split

log = logging.getLogger(__name__)

SCORERS = {"fast": PrefixCacheLM, "stock": StockLM}
MIN_MAX_LENGTH = 4096  # MuSR stories run past 1k tokens; HFLM left-truncates (a log line only) beyond max_length


@dataclass
class EvalResult:
    fitness: float
    scores: dict[str, float]
    stderr: float | None = None
    stderrs: dict[str, float | None] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    tokens: int = 0  # token positions the model processed for this evaluation
    # leaf task -> doc index -> per-option log-likelihoods / the item's metric value (for audits and tests)
    loglikelihoods: dict[str, dict[int, list[float]]] = field(default_factory=dict, repr=False)
    item_scores: dict[str, dict[int, float]] = field(default_factory=dict, repr=False)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Hide lm-eval's per-task log lines and progress bars (one per task per call: noise in a search loop).

    Its bars cannot be switched off, so stderr is muted while it runs; our logging handlers keep their
    own stream and still print, and errors still raise.
    """
    if not enabled:
        yield
        return
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
            yield
    finally:
        logger.setLevel(level)


def weighted_fitness(weights: dict[str, float], values: dict[str, float],
                     stderrs: dict[str, float | None]) -> tuple[float, float | None]:
    """Normalised weighted sum and its stderr sqrt(sum w_i^2 se_i^2) (None if any task has none)."""
    total = sum(weights.values())
    w = {k: v / total for k, v in weights.items()}
    value = sum(w[k] * values[k] for k in w)
    if any(stderrs.get(k) is None for k in w):
        return value, None
    return value, math.sqrt(sum((w[k] * stderrs[k]) ** 2 for k in w))


class Evaluator:
    def __init__(self, model: torch.nn.Module, tokenizer, suite: TaskSuite, split: str = "search",
                 scorer: str = "fast", batch_size: int = 8, progress: bool = False, verify: int = 2,
                 groups: bool = False, max_gen_toks: int | None = None):
        """`verify`: how many contexts the fast scorer also scores the stock way before trusting its cache;
        `groups`: lm-eval also aggregates the suite's groups (its results then hold their rows);
        `max_gen_toks`: generate_until tasks whose config names none generate at most this many tokens."""
        check_split(split)
        if scorer not in SCORERS:
            raise ReleaseError(f"unknown scorer {scorer!r}: use fitness.scorer 'fast' or 'stock'")
        self.suite, self.split, self.progress = suite, split, progress
        model.eval()
        extra = {"verify": verify} if scorer == "fast" else {}
        if max_gen_toks is not None:
            extra["max_gen_toks"] = max_gen_toks
        self.lm = SCORERS[scorer](pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size,
                                  softmax_dtype=torch.float32, progress=progress, **extra)
        if self.lm.max_length < MIN_MAX_LENGTH and any(t.name == "musr" for t in suite.tasks):
            log.warning("model max_length %d < %d: long MuSR prompts will be left-truncated",
                        self.lm.max_length, MIN_MAX_LENGTH)
        self._task_dict = suite.task_dict(split, groups=groups)
        self._samples = suite.samples(split)
        self._reported_checks = 0
        self.last_output: dict | None = None  # lm-eval's own result of the last evaluation (results, samples)

    @property
    def scorer(self) -> str:
        """The scorer in use: "fast" can turn into "stock" if the prefix cache failed its check."""
        return "fast" if isinstance(self.lm, PrefixCacheLM) and self.lm.caching else "stock"

    def evaluate(self) -> EvalResult:
        start, tokens = time.perf_counter(), self.lm.tokens_processed
        self.suite.reseed_fewshot()
        with _quiet(not self.progress):
            out = lm_evaluator.evaluate(lm=self.lm, task_dict=self._task_dict, samples=self._samples,
                                        bootstrap_iters=0, log_samples=True, cache_requests=False)
        self.last_output = out
        result = EvalResult(fitness=0.0, scores={})
        for task in self.suite.tasks:
            value, se, n = self._score(task, out, result)
            result.scores[task.name], result.stderrs[task.name], result.n[task.name] = value, se, n
        weights = {t.name: t.weight for t in self.suite.tasks}
        # Fitness is maximised: a metric where lower is better counts negated.
        signed = {t.name: result.scores[t.name] * (1 if t.bench.higher_is_better else -1) for t in self.suite.tasks}
        result.fitness, result.stderr = weighted_fitness(weights, signed, result.stderrs)
        result.seconds = time.perf_counter() - start
        result.tokens = self.lm.tokens_processed - tokens
        self._report_self_check()
        return result

    def score_items(self, samples: dict[str, list[int]]) -> tuple[dict[str, dict[int, float]], int]:
        """Per-item scores (leaf -> doc -> the task's metric) of these items of the split, and the tokens it took.

        One lm-eval pass over just these items (the cheap-fitness estimators ask for a few at a time)."""
        wanted = {leaf: sorted(docs) for leaf, docs in samples.items() if docs}
        unknown = set(wanted) - set(self._samples)
        if unknown:
            raise ReleaseError(f"items of {sorted(unknown)} are not in the {self.split} split")
        bench = {leaf: t.bench for t in self.suite.tasks for leaf in t.leaves}
        task_dict = {"tasks": {leaf: obj for leaf, obj in self._task_dict["tasks"].items() if leaf in wanted}}
        tokens = self.lm.tokens_processed
        self.suite.reseed_fewshot()
        with _quiet(not self.progress):
            out = lm_evaluator.evaluate(lm=self.lm, task_dict=task_dict, samples=wanted, bootstrap_iters=0,
                                        log_samples=True, cache_requests=False)
        self._report_self_check()
        scores = {leaf: {s["doc_id"]: float(s[bench[leaf].metric]) for s in out["samples"][leaf]
                         if s["filter"] == bench[leaf].filter} for leaf in wanted}
        return scores, self.lm.tokens_processed - tokens

    def _report_self_check(self) -> None:
        """Say once what the fast scorer's self-check measured (it runs during the first evaluation)."""
        checks = getattr(self.lm, "checks", [])
        if len(checks) > self._reported_checks and self.scorer == "fast":
            log.info("fast scorer checked against stock lm-eval on %d contexts: max |dLL| %.2e within tolerance "
                     "%.2e (%g x the floating-point noise measured on the stock path)", len(checks),
                     max(c["max_dll"] for c in checks), min(c["tolerance"] for c in checks), self.lm.noise_factor)
        self._reported_checks = len(checks)

    def _score(self, task: SuiteTask, out: dict, result: EvalResult) -> tuple[float, float | None, int]:
        bench = task.bench
        means, sizes, per_leaf = [], [], []
        for leaf in task.items[self.split]:
            if leaf not in self._samples:
                continue
            items = [s for s in out["samples"][leaf] if s["filter"] == bench.filter]
            means.append(float(out["results"][leaf][bench.key]))
            sizes.append(len(items))
            if bench.mean:  # per-item values: 0/1 accuracies, exact matches, ...
                per_leaf.append([float(s[bench.metric]) for s in items])
                result.item_scores[leaf] = {s["doc_id"]: float(s[bench.metric]) for s in items}
            if all(isinstance(r, (list, tuple)) for s in items for r in s["filtered_resps"]):  # loglikelihoods
                result.loglikelihoods[leaf] = {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in items}
        value = float(aggregate_subtask_metrics(means, sizes, task.weight_by_size))
        se = None
        if not bench.mean:
            pass  # perplexity-like aggregates: lm-eval gives them no closed-form stderr either
        elif task.weight_by_size:  # the mean over all items: its stderr over all items
            everything = [v for values in per_leaf for v in values]
            se = mean_stderr(everything) if len(everything) > 1 else None
        elif all(len(v) > 1 for v in per_leaf):
            se = unweighted_mean_stderr([mean_stderr(v) for v in per_leaf])
        return value, (float(se) if se is not None else None), sum(sizes)

    def leaf_stderrs(self) -> dict[str, float | None]:
        """Per leaf task of the last evaluation: the closed-form stderr lm-eval reports for a mean with
        bootstrap_iters > 0 (its `mean_stderr`), None for other aggregations."""
        out = {}
        for task in self.suite.tasks:
            for leaf in task.items[self.split]:
                if leaf in self._samples and self.last_output is not None:
                    items = [s for s in self.last_output["samples"][leaf] if s["filter"] == task.bench.filter]
                    values = [float(s[task.bench.metric]) for s in items] if task.bench.mean else []
                    out[leaf] = float(mean_stderr(values)) if len(values) > 1 else None
        return out
