"""Issue 28: breeding trained parents. On the zoo's same-architecture pair (specialists A x B), side by
side on the same held-out items: the plain 50/50 linear merge (no search), each method's start, the
search's raw best, and the child the settings ship (the start check on), with the paired standard error
of each against the plain merge. Also DARE-TIES at fixed densities (where `density_min` must sit).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_trained_parents [--zoo release/zoo/models] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _config(method: str, runs: Path, search_size: int, heldout_size: int, popsize: int, generations: int,
            extra: dict | None = None):
    from release.config import ReleaseConfig

    raw = {"name": f"zoo-{method}", "runs_dir": str(runs), "father": {"repo": "zoo/lang_a"},
           "mother": {"repo": "zoo/lang_b"}, "child": {"repo": "zoo/child"}, "breed": {"method": method},
           "search": {"popsize": popsize, "max_generations": generations, "seed": 42, "device": "cpu",
                      "dtype": "float32"},
           "fitness": {"tasks": [{"name": f"zoo_lang_{s}", "weight": 1.0, "search_size": search_size,
                                  "heldout_size": heldout_size} for s in "ab"]}}
    for key, value in (extra or {}).items():
        raw.setdefault(key, {}).update(value)
    return ReleaseConfig.model_validate(raw)


class Bench:
    """One method's live model, its search fitness and a held-out evaluator on the same live model."""

    def __init__(self, config, father: Path, mother: Path):
        import torch
        from transformers import AutoTokenizer

        from release.breeders import get_breeder
        from release.evals import Evaluator
        from release.search.fitness import make_fitness, task_suite

        torch.set_num_threads(1)
        self.config = config
        self.live = get_breeder(config.breed.method).build_live(father, mother, config, device="cpu",
                                                               dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(father)
        self.fitness = make_fitness(config, self.live.model, tokenizer, config.run_dir / "breed",
                                    apply=self.live.apply)
        self.held = Evaluator(self.live.model, tokenizer, task_suite(config), split="heldout")
        self.weights = {t.name: t.weight for t in config.fitness.tasks}

    def heldout(self, genome: list[float]) -> dict:
        self.live.apply(genome)
        r = self.held.evaluate()
        items = {}
        leaf_task = {leaf: t.name for t in self.held.suite.tasks for leaf in t.leaves}
        for leaf, scores in r.item_scores.items():
            items.setdefault(leaf_task[leaf], {}).update({(leaf, d): v for d, v in scores.items()})
        return {"mean": r.fitness, "stderr": r.stderr, "scores": r.scores, "items": items}

    def start(self) -> list[float]:
        return self.live.space.full(self.live.space.x0)

    def search(self) -> dict:
        from release.search.cmaes import run_search
        from release.search.start import keep_start

        t0 = time.perf_counter()
        result = run_search(self.live.space, self.fitness, self.config.search, self.config.run_dir / "breed",
                            "bench", resume=False, progress=False)
        margin = self.config.search.start_margin
        check = keep_start(result.genome, self.start(), self.fitness, margin) if margin else None
        return {"best": result.genome, "best_fitness": result.fitness, "evaluations": result.evaluations,
                "shipped": check["genome"] if check else result.genome, "check": check and check["reason"],
                "seconds": round(time.perf_counter() - t0, 1)}


def _row(name: str, held: dict, plain: dict | None, weights: dict) -> dict:
    from release.search.start import paired_stderr

    row = {"child": name, "heldout_mean": round(held["mean"], 4), "stderr": round(held["stderr"], 4),
           **{k: round(v, 4) for k, v in held["scores"].items()}}
    if plain is not None:
        row["vs_plain"] = round(held["mean"] - plain["mean"], 4)
        row["vs_plain_paired_se"] = round(paired_stderr(held["items"], plain["items"], weights), 4)
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=Path("release/zoo/models"))
    parser.add_argument("--search-size", type=int, default=128)
    parser.add_argument("--heldout-size", type=int, default=500)
    parser.add_argument("--popsize", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--methods", default="linear,dare_ties")
    parser.add_argument("--densities", default="0.2,0.3,0.5,0.7,0.9")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    father, mother = args.zoo / "lang_a", args.zoo / "lang_b"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sizes = (Path(tmp), args.search_size, args.heldout_size, args.popsize, args.generations)
        linear = Bench(_config("linear", *sizes), father, mother)
        plain = linear.heldout(linear.start())  # every share 0.5: the plain 50/50 linear merge
        rows.append(_row("plain 50/50 linear merge (no search)", plain, None, linear.weights))
        for role, genome in (("father (A)", [0.0] * len(linear.start())), ("mother (B)", [1.0] * len(linear.start()))):
            rows.append(_row(role, linear.heldout(genome), plain, linear.weights))
        for method in args.methods.split(","):
            bench = linear if method == "linear" else Bench(_config(method, *sizes), father, mother)
            if method == "dare_ties":
                for d in map(float, args.densities.split(",")):
                    genome = [d if n == "density" else 0.5 for n in bench.live.space.names]
                    rows.append(_row(f"dare_ties shares 0.5, density {d}", bench.heldout(genome), plain, bench.weights))
            found = bench.search()
            print(json.dumps({"method": method, **{k: v for k, v in found.items() if k not in ("best", "shipped")}}))
            rows.append(_row(f"{method}: searched best (raw)", bench.heldout(found["best"]), plain, bench.weights))
            rows.append(_row(f"{method}: shipped child (start check)", bench.heldout(found["shipped"]), plain,
                             bench.weights) | {"check": found["check"], "evaluations": found["evaluations"]})
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
