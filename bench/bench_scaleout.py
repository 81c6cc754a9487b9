"""7. Scale-out: the search on 2 Ray workers vs 1, and the Ray path's per-candidate cost vs in-process.

The same search (one CMA-ES generation of POPSIZE candidates, `release.search.cmaes.run_search`) runs three
ways, interleaved over ROUNDS rounds in a rotating order (medians of per-round ratios): in this process
(`search.workers: 1`), on one Ray worker and on two. Each worker is a `release.search.distributed` actor that
builds the live model once (`build_bench_search` below: a search-form Darwin hybrid at hidden 768, the
synthetic task's 16-item search subset, lm-eval machinery, one torch thread), so a candidate costs a
second or more on one core. Time per candidate is the search's own clock (ask/tell, log and checkpoint
included); the three searches must give the same fitness values (asserted): the same work three ways.

Targets: 2 workers / 1 worker >= 1.6x on this 2-core machine; Ray 1 worker / in-process <= 1.05. On a
machine shared with other work the speed-up is depressed (two workers need two idle cores): the load
average at the start and end is recorded beside the figures.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from bench.common import one_thread, row, synthetic_search_config

HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS = 768, 3072, 2688, 6
ITEMS, BATCH, POPSIZE, ROUNDS = 16, 8, 4, 3
SPEEDUP_TARGET, OVERHEAD_TARGET = 1.6, 1.05


def _config(folder: Path):
    return synthetic_search_config(folder, POPSIZE, ITEMS, BATCH)


def build_bench_search(workdir: Path):
    """The live search for the benchmark: the same in this process and in every worker."""
    from bench.common import darwin_model
    from release.search.fitness import LiveSearch, make_fitness
    from release.breeders.ffn_genome import GenomeSpace
    from release.tiny import father_tokenizer

    torch.set_num_threads(1)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tokenizer = father_tokenizer()
    model = darwin_model(HIDDEN, FATHER_FFN, MOTHER_FFN, LAYERS, vocab=len(tokenizer), heads=8,
                         head_dim=HIDDEN // 8, seed=0)
    fitness = make_fitness(_config(workdir), model, tokenizer, workdir)
    fitness([0.25] * LAYERS)  # one-off warm-up (first forward, lazy inits), as a worker's first candidate
    space = GenomeSpace(LAYERS, _config(workdir).genome)
    return LiveSearch(fitness=fitness, space=space, record={"layer_map": list(range(LAYERS))}, method="ffn_blend",
                      device="cpu", dtype="torch.float32")


def _search(evaluation, folder: Path):
    from release.breeders.ffn_genome import GenomeSpace
    from release.search.cmaes import run_search

    config = _config(folder)
    result = run_search(GenomeSpace(LAYERS, config.genome), evaluation, config.search, folder / "breed",
                        fingerprint="bench", progress=False)
    rows = [json.loads(r) for r in (folder / "breed" / "candidates.jsonl").read_text().splitlines()]
    # Workers busy on average: the candidates' own seconds over the search's wall time (2.0 = both always busy).
    busy = sum(r["seconds"] for r in rows) / result.seconds
    return result.seconds / result.evaluations, [r["fitness"] for r in rows], busy


def run() -> dict:
    with one_thread():
        return _measure()


def _measure() -> dict:
    import statistics

    import ray

    from release.search.distributed import RayPool
    from release.search.distributed.cluster import connect

    load_before = os.getloadavg()[0]
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        tmp = Path(tmp)
        live = build_bench_search(tmp / "local")
        started = connect(None, num_cpus=3)  # logical: both pools live at once, only one of them works at a time
        try:
            paths = {"in-process": live.fitness, 1: RayPool(build_bench_search, 1), 2: RayPool(build_bench_search, 2)}
            try:
                for r in range(ROUNDS):  # interleaved, in a rotating order: load drift hits every path alike
                    order = list(paths)[r % 3:] + list(paths)[:r % 3]
                    rounds.append({name: _search(paths[name], tmp / f"r{r}-{name}") for name in order})
            finally:
                for pool in (paths[1], paths[2]):
                    pool.close()
        finally:
            if started:
                ray.shutdown()
    load_after = os.getloadavg()[0]
    for one in rounds:  # the same search three ways: the same fitness values
        assert one[1][1] == one[2][1] == one["in-process"][1], one
    per = {name: statistics.median(one[name][0] for one in rounds) for name in ("in-process", 1, 2)}
    speedup = statistics.median(one[1][0] / one[2][0] for one in rounds)
    overhead = statistics.median(one[1][0] / one["in-process"][0] for one in rounds)
    busy = statistics.median(one[2][2] for one in rounds)
    print(f"   {POPSIZE} candidates x {ITEMS} items, hidden {HIDDEN}, {LAYERS} layers, 1 thread each, {ROUNDS} rounds: "
          f"in-process {per['in-process']:.2f} s, Ray 1 worker {per[1]:.2f} s, 2 workers {per[2]:.2f} s per candidate")
    print(f"   2 workers vs 1: {speedup:.2f}x (target >= {SPEEDUP_TARGET}); Ray 1 worker / in-process "
          f"{overhead:.3f} (target <= {OVERHEAD_TARGET}); load average {load_before:.1f} -> {load_after:.1f} "
          f"on {os.cpu_count()} cores; with 2 workers, {busy:.2f} of them busy on average")
    common = dict(candidates=POPSIZE, items=ITEMS, hidden=HIDDEN, layers=LAYERS, rounds=ROUNDS,
                  load_average_before=round(load_before, 2), load_average_after=round(load_after, 2),
                  cores=os.cpu_count())
    return {
        "scaleout_speedup_2_workers": row(speedup, "time per candidate, 1 worker / 2 workers", f">= {SPEEDUP_TARGET}",
                                          seconds_per_candidate={"1": round(per[1], 3), "2": round(per[2], 3)},
                                          workers_busy_on_average=round(busy, 3),
                                          **common),
        "scaleout_ray_overhead": row(overhead, "time per candidate, Ray 1 worker / in-process",
                                     f"<= {OVERHEAD_TARGET}", seconds_per_candidate={
                                         "ray_1_worker": round(per[1], 3), "in_process": round(per["in-process"], 3)},
                                     **common),
    }


if __name__ == "__main__":
    run()
