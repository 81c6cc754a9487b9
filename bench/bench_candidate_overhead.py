"""2. Candidate overhead: time per search candidate / time of that candidate's forward passes.

A CMA-ES candidate should cost its evaluation's forward passes and nothing more: the task objects, item
subsets and the lm-eval model wrapper are built once, and switching genomes writes the ratio buffer.
Measured by running the search itself (`release.search.cmaes.run_search`, one generation of CMA-ES) with the
search's own candidate function (`release.search.fitness.make_fitness`: set_ratios + Evaluator.evaluate on the
48-item search subset of the synthetic task, lm-eval's multiple-choice machinery, batch 8) on a live
search-form Darwin hybrid with the father's tokenizer. Time per candidate is the search's own clock over
all candidates (CMA-ES ask/tell, the candidate log and checkpoint included); the forward time is measured
inside the same candidates by hooks around `model.forward` (the same calls a replay would make), so both
figures come from the same run and load drift on the shared machine cancels out. The overhead is broken
down by timing lm-eval's request building, tokenisation and per-item metrics in the same run.

The ratio depends on how long the forward passes take: at hidden 768, FFN 3072 / 2688, 6 layers on one CPU
thread they take seconds, on a GPU with the real 42-layer model tens of milliseconds per batch. The
overhead per item (ms) is therefore reported too, to project the ratio to other hardware.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from bench.common import one_thread, row, synthetic_search_config

HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS = 768, 3072, 2688, 6
ITEMS, BATCH, POPSIZE = 48, 8, 4
TARGET = 1.05


class _Stopwatch:
    """Accumulated seconds per named part."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def wrap(self, part: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - t0)
        return timed


@contextlib.contextmanager
def _timed_forwards(model: torch.nn.Module, watch: _Stopwatch):
    """Time every top-level forward of `model` (module hooks, so exactly the model's own work)."""
    started: list[float] = []
    pre = model.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))
    post = model.register_forward_hook(lambda *_: watch.add("forward", time.perf_counter() - started.pop()))
    try:
        yield
    finally:
        pre.remove()
        post.remove()


@contextlib.contextmanager
def _timed_lm_eval_parts(watch: _Stopwatch):
    """Time lm-eval's per-candidate Python work: building requests (prompts), tokenising, per-item metrics."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM

    parts = {"build requests": (ConfigurableTask, "build_all_requests"), "tokenise": (HFLM, "tok_encode"),
             "metrics": (ConfigurableTask, "process_results")}
    with contextlib.ExitStack() as stack:
        for part, (cls, name) in parts.items():
            stack.enter_context(mock.patch.object(cls, name, watch.wrap(part, getattr(cls, name))))
        yield


def _config(folder: Path):
    return synthetic_search_config(folder, POPSIZE, ITEMS, BATCH)


def run() -> dict:
    with one_thread():
        return _measure()


def _measure() -> dict:
    from bench.common import darwin_model
    from release.search.fitness import make_fitness
    from release.breeders.ffn_genome import GenomeSpace
    from release.search.cmaes import run_search
    from release.tiny import father_tokenizer

    tokenizer = father_tokenizer()
    model = darwin_model(HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS, vocab=len(tokenizer), heads=8,
                         head_dim=HIDDEN // 8, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-candidate-") as tmp:
        config = _config(Path(tmp))
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        fitness = make_fitness(config, model, tokenizer, Path(tmp))
        fitness([config.genome.init_mean] * LAYERS)  # one-off warm-up (first forward, lazy inits): amortised
        watch = _Stopwatch()
        with _timed_forwards(model, watch), _timed_lm_eval_parts(watch):
            result = run_search(GenomeSpace(LAYERS, config.genome), fitness, config.search, Path(tmp) / "breed",
                                fingerprint="bench", progress=False)
    n = result.evaluations
    assert n == POPSIZE and 0.0 <= result.fitness <= 1.0, result
    per_candidate, forward = result.seconds / n, watch.seconds["forward"] / n
    ratio = per_candidate / forward
    overhead = per_candidate - forward
    parts = {part: watch.seconds.get(part, 0.0) / n for part in ("build requests", "tokenise", "metrics")}
    parts["other (collation, log-softmax, filters, search)"] = overhead - sum(parts.values())
    breakdown = ", ".join(f"{part} {s * 1e3:.0f}" for part, s in parts.items())
    print(f"   {n} CMA-ES candidates x {ITEMS} items, hidden {HIDDEN}, {LAYERS} layers, 1 thread: "
          f"{per_candidate:.2f} s per candidate, forward passes {forward:.2f} s")
    print(f"   candidate / forward = {ratio:.3f} (target <= {TARGET}); overhead {overhead * 1e3:.0f} ms per candidate "
          f"({overhead / ITEMS * 1e3:.2f} ms per item): {breakdown} ms")
    return {"candidate_overhead_ratio": row(
        ratio, "candidate time / forward time", f"<= {TARGET}", seconds_per_candidate=round(per_candidate, 4),
        forward_seconds_per_candidate=round(forward, 4), overhead_ms_per_item=round(overhead / ITEMS * 1e3, 3),
        overhead_ms_breakdown={part: round(s * 1e3, 1) for part, s in parts.items()}, candidates=n, items=ITEMS,
        hidden=HIDDEN, layers=LAYERS)}


if __name__ == "__main__":
    run()
