"""17. The method benchmark: does our search breed a better child than the merges a user would run by hand?

On the committed trained zoo (release/zoo/: Gemma 4 specialists `lang_a` (father) and `lang_b` (mother),
fine-tuned from one `base`; lm-eval tasks zoo_lang_a + zoo_lang_b), every method gets the **same candidate
budget** B on the same search items, and its pick is scored on the same held-out items:

- the parents and the uniform merges a mergekit user would run (no search, 0 candidates): linear 0.5;
  TIES d=0.5; DARE-TIES d=0.5 -- each without a base (the father is the base, the project's two-parent
  form) and over the common `base` (task vectors, mergekit's `base_model`; the breeder's shares 0.5 / 0.5
  weight each task vector 0.5, i.e. mergekit's weight 1 each with `normalize: true`);
- the best of a grid of B points over one global weight t of the linear merge (picked on search items);
- random search: B genomes uniform in the linear breeder's genome space (per-layer attention/FFN shares
  and the norms' share), the best on search items;
- our CMA-ES: `release.search.cmaes.run_search` with the same-architecture `linear` breeder, B evaluations;
  knobs: `genome.init_mean`, `genome.frozen`, `search.sigma0`, `search.popsize` (`--init-mean` etc.);
- the same through main's start check (`release.search.start.keep_start`, `--start-margin`, the breed
  stage's default for weight merges: 2): the searched best ships only if, scored again beside the start,
  it beats it by 2 paired standard errors (2 evaluations beyond the budget);
- our CMA-ES with MRI trust (`genome.mri`: r_MRI per layer from `release.mri.weights_trust.scan_same_arch`,
  tau searched as one more gene).

Everything goes through the project's own parts: breeders' live models (`build_live`, `apply`), the
search fitness (`release.search.fitness.make_fitness`) and the held-out `Evaluator`. Printed per method:
held-out mean +- stderr, the difference to linear 0.5 with its paired stderr (per item, per task,
combined over the tasks as the fitness weights them), the search-items fitness of the pick (of a
fixed merge too, scored for reference outside the budget), and the tokens scored (search + held-out). One torch thread.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m bench.bench_method [--budget 24 --search-items 48 ...]
    python -m bench bench_method   # the default budget, results into bench/results.json
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import one_thread, row

TASKS = ("zoo_lang_a", "zoo_lang_b")
DEFAULTS = dict(budget=24, popsize=6, sigma0=0.15, init_mean=0.5, search_items=32, heldout_items=200, seed=42,
                density=0.5, mri_prompts=2, start_margin=2.0)


def _config(folder: Path, method: str, args, base: bool = False, mri: bool = False):
    from release.config import ReleaseConfig

    return ReleaseConfig.model_validate(dict(
        name="bench-method", father={"repo": "zoo/lang_a"}, mother={"repo": "zoo/lang_b"},
        **({"base": {"repo": "zoo/base"}} if base else {}), child={"repo": "bench/child"},
        breed={"method": method, "density_init": args.density, "density_min": 0.05},
        genome={"r_max": 1.0, "init_mean": args.init_mean, "frozen": [], "mri": mri},
        search={"popsize": args.popsize, "sigma0": args.sigma0, "max_generations": None,
                "max_evaluations": args.budget, "seed": args.seed, "device": "cpu", "dtype": "float32"},
        fitness={"tasks": [{"name": t, "weight": 1.0, "search_size": args.search_items,
                            "heldout_size": args.heldout_items} for t in TASKS], "scorer": "fast", "batch_size": 32},
        runs_dir=str(folder),  # one folder for every config: the same seed draws the same items
    ))


class Arm:
    """One breeder's live model with its search fitness and held-out evaluator (items shared by all arms)."""

    def __init__(self, folder: Path, models: Path, method: str, args, base: bool = False, r_mri=None):
        import torch
        from transformers import AutoTokenizer

        from release.breeders import get_breeder
        from release.evals import Evaluator
        from release.search.fitness import make_fitness, task_suite

        self.config = _config(folder, method, args, base=base, mri=r_mri is not None)
        self.live = get_breeder(method).build_live(models / "lang_a", models / "lang_b", self.config, device="cpu",
                                                   dtype=torch.float32, r_mri=r_mri,
                                                   base_dir=models / "base" if base else None)
        tokenizer = AutoTokenizer.from_pretrained(models / "lang_a")
        self.fitness = make_fitness(self.config, self.live.model, tokenizer, folder / "fit", apply=self.live.apply)
        self.heldout = Evaluator(self.live.model, tokenizer, task_suite(self.config), split="heldout",
                                 scorer="fast", batch_size=32)
        self.space = self.live.space

    def search_tokens(self) -> int:
        return self.fitness.evaluator.lm.tokens_processed

    def uniform(self, t: float, density: float = 1.0) -> list[float]:
        return [density if n == "density" else t for n in self.space.names]

    def score(self, genome: list[float]):
        self.live.apply(genome)
        return self.heldout.evaluate()


def _paired(result, reference, weights: dict[str, float]) -> tuple[float, float]:
    """The held-out difference to `reference` and its paired stderr (per-item differences, per task, combined
    with the fitness weights)."""
    total = sum(weights.values())
    diff, var = 0.0, 0.0
    for task, w in weights.items():
        leaves = [leaf for leaf in result.item_scores if leaf == task or leaf.startswith(task)]
        d = np.array([result.item_scores[leaf][k] - reference.item_scores[leaf][k]
                      for leaf in leaves for k in sorted(result.item_scores[leaf])])
        diff += w / total * d.mean()
        var += (w / total) ** 2 * (d.var(ddof=1) / len(d) if len(d) > 1 else 0.0)
    return float(diff), math.sqrt(var)


def _best_of(arm: Arm, genomes: list[list[float]]) -> tuple[list[float], float]:
    best, best_value = None, -math.inf
    for g in genomes:
        value, _ = arm.fitness(g)
        if value > best_value:
            best, best_value = g, value
    return best, best_value


def measure(args) -> dict:
    from release.mri.weights_trust import scan_same_arch
    from release.search.cmaes import run_search
    from release.zoo.manifest import ZOO_DIR

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    models = ZOO_DIR / "models"
    weights = {t: 1.0 for t in TASKS}
    picks = []  # (label, arm, genome, search fitness, search tokens, candidates, seconds)
    with tempfile.TemporaryDirectory(prefix="bench-method-") as tmp:
        tmp = Path(tmp)
        linear = Arm(tmp, models, "linear", args)
        picks += [("father (lang_a)", linear, linear.uniform(0.0), None, 0, 0, 0.0),
                  ("mother (lang_b)", linear, linear.uniform(1.0), None, 0, 0, 0.0),
                  ("linear 0.5", linear, linear.uniform(0.5), None, 0, 0, 0.0)]
        for method in ("ties", "dare_ties"):
            for base in (False, True):
                arm = Arm(tmp, models, method, args, base=base)
                label = f"{method} d={args.density} t=0.5" + (" over base" if base else " (father as base)")
                picks.append((label, arm, arm.uniform(0.5, args.density), None, 0, 0, 0.0))

        def searched(label, arm, choose):
            t0, tokens = time.monotonic(), arm.search_tokens()
            genome, value = choose()
            picks.append((label, arm, genome, value, arm.search_tokens() - tokens, args.budget,
                          time.monotonic() - t0))
            print(f"   {label}: search fitness {value:.4f} ({time.monotonic() - t0:.0f} s)", flush=True)

        grid = [linear.uniform(t) for t in np.linspace(0.0, 1.0, args.budget)]
        searched(f"grid over one weight ({args.budget} points)", linear, lambda: _best_of(linear, grid))
        rng = np.random.default_rng(args.seed)
        lows, highs = np.broadcast_to(linear.space.bounds[0], len(linear.space.free)), \
            np.broadcast_to(linear.space.bounds[1], len(linear.space.free))
        randoms = [linear.space.full(rng.uniform(lows, highs)) for _ in range(args.budget)]
        searched("random search", linear, lambda: _best_of(linear, randoms))

        finals = {}  # search name -> the search's final distribution mean (pycma's xfavorite)

        def cmaes(arm, name):
            result = run_search(arm.space, arm.fitness, arm.config.search, tmp / name, fingerprint=name,
                                progress=False)
            assert result.evaluations == args.budget, result.evaluations
            finals[name] = result.mean
            return result.genome, result.fitness

        def checked(arm, name):
            """The searched best through main's start check (search.start_margin), as the breed stage ships it:
            two more evaluations, beyond the budget."""
            from release.search.start import keep_start

            genome, value = cmaes(arm, name)
            start = arm.space.full(arm.space.x0)
            record = keep_start(genome, start, arm.fitness, args.start_margin)
            print(f"   start check: {record.get('reason')}", flush=True)
            if "start_fitness" not in record:  # the best candidate was the start itself
                return record["genome"], value
            return record["genome"], record["start_fitness"] if record["kept_start"] else record["searched_fitness"]

        searched(f"CMA-ES linear (init {args.init_mean}, sigma {args.sigma0}, pop {args.popsize})", linear,
                 lambda: cmaes(linear, "cmaes"))
        # the same search's final mean instead of its best candidate (no more candidates; its search-items score
        # is for reference, as the fixed merges' are)
        picks.append(("the same, its final mean instead of its best", linear, finals["cmaes"], None, 0, args.budget, 0.0))
        searched(f"the same + start check (margin {args.start_margin})", linear, lambda: checked(linear, "cmaes-c"))
        t0 = time.monotonic()
        r_mri = [row_["r_mri"] for row_ in scan_same_arch(models / "lang_a", models / "lang_b",
                                                           per_domain=args.mri_prompts, seed=args.seed)]
        print(f"   r_MRI per layer {[round(r, 3) for r in r_mri]} ({time.monotonic() - t0:.0f} s)", flush=True)
        mri = Arm(tmp, models, "linear", args, r_mri=r_mri)
        searched("CMA-ES linear + MRI trust", mri, lambda: cmaes(mri, "cmaes-mri"))

        rows, reference = [], None
        for label, arm, genome, value, tokens, candidates, seconds in picks:
            if value is None:  # no search: its search-items score, for reference only (not in its budget or tokens)
                value = arm.fitness(genome)[0]
            before = arm.heldout.lm.tokens_processed
            result = arm.score(genome)
            heldout_tokens = arm.heldout.lm.tokens_processed - before
            if label == "linear 0.5":
                reference = result
            rows.append((label, result, value, tokens, heldout_tokens, candidates))

    print(f"   budget {args.budget} candidates per searching method; {args.search_items} search / "
          f"{args.heldout_items} held-out items per task ({', '.join(TASKS)}), seed {args.seed}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("   | method | candidates | search fitness | held-out mean ± stderr | vs linear 0.5 (paired SE) | "
          "zoo_lang_a / zoo_lang_b | tokens search + held-out |")
    print("   |---|---|---|---|---|---|---|")
    out = {}
    for label, result, value, tokens, heldout_tokens, candidates in rows:
        diff, se = _paired(result, reference, weights)
        print(f"   | {label} | {candidates} | {value:.3f} | "
              f"{result.fitness:.3f} ± {result.stderr:.3f} | {diff:+.3f} ({se:.3f}) | "
              f"{result.scores[TASKS[0]]:.3f} / {result.scores[TASKS[1]]:.3f} | {tokens:,} + {heldout_tokens:,} |")
        key = "method_" + "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")
        out[key] = row(result.fitness, "held-out mean accuracy", ">= linear 0.5 for searches",
                       stderr=round(result.stderr, 4), vs_linear_half=round(diff, 4), paired_se=round(se, 4),
                       search_fitness=round(value, 4), candidates=candidates,
                       search_tokens=tokens, heldout_tokens=heldout_tokens)
    return out


def _args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return parser.parse_args(argv)


def run() -> dict:
    with one_thread():
        return measure(_args([]))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)
    with one_thread():
        measure(_args())
