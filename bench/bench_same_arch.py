"""7. Same-architecture genome switch vs one candidate evaluation, and vs mergekit writing the merge.

Two parents of one architecture at the real layer width of a 4B model (Qwen3-4B's decoder layer: hidden
2560, FFN 9728, 32 query / 8 KV heads of 128), a few layers, the mother a fine-tune of the father. The
weights breeder's live model holds both parents; a genome switch rewrites every tensor in place
(`Live.apply` with every share changed, so nothing is skipped). It is timed against

- one candidate evaluation: the search's own fitness call (`release.search.fitness.make_fitness` with the
  breeder's `apply`: switch + `Evaluator.evaluate` on the 48-item synthetic search subset, batch 8), on the
  same live model, in alternating rounds (median round); the switch's share of it is the figure (target
  <= 5% on CPU). The 48 short synthetic items are a small evaluation: a real one (CLIcK 200 + MuSR 120
  items, long MuSR stories) has far more tokens, so there the share is smaller still;
- what a merge-then-evaluate tool does per candidate: mergekit 0.1.5 writing the same merge (same method
  and parameters) to disk (`mergekit.merge.run_merge`, in process, no tokenizer copy, no card), before any
  reload. That is a lower bound for that route, so the ratio is too.

One torch thread (a shared 2-core machine).
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from pathlib import Path

import torch

from bench.common import median_seconds, one_thread, row

HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM, LAYERS = 2560, 9728, 32, 8, 128, 2
ITEMS, BATCH, ROUNDS = 48, 8, 3
METHODS = ("linear", "dare_ties")
TARGET = 0.05


def _config(folder: Path, method: str):
    from release.config import BreedSpec, FitnessSpec, GenomeSpec, ReleaseConfig, SearchSpec, TaskSpec

    return ReleaseConfig(
        name="bench", father={"repo": "bench/father"}, mother={"repo": "bench/mother"}, child={"repo": "bench/child"},
        breed=BreedSpec(method=method), genome=GenomeSpec(r_max=1.0, init_mean=0.3), runs_dir=folder,
        search=SearchSpec(popsize=4, max_generations=1, seed=0, device="cpu", dtype="float32"),
        fitness=FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0, search_size=ITEMS)], batch_size=BATCH),
    )


def _mergekit(father: Path, mother: Path, method: str, t: float, density: float, out: Path) -> float:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    recipe = {
        "linear": {"models": [{"model": str(father), "parameters": {"weight": 1 - t}},
                              {"model": str(mother), "parameters": {"weight": t}}]},
        "dare_ties": {"base_model": str(father),
                      "models": [{"model": str(mother), "parameters": {"weight": t, "density": density}}]},
    }[method]
    config = MergeConfiguration.model_validate({"merge_method": method, "dtype": "float32", **recipe})
    t0 = time.perf_counter()
    run_merge(config, out_path=str(out), options=MergeOptions(copy_tokenizer=False, write_model_card=False,
                                                               quiet=True))
    return time.perf_counter() - t0


def run() -> dict:
    with one_thread():
        return _measure()


def _measure() -> dict:
    from release.breeders import get_breeder
    from release.search.fitness import make_fitness
    from release.tiny import father_tokenizer, write_tiny_causal_pair

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-same-arch-") as tmp:
        tmp = Path(tmp)
        parents = write_tiny_causal_pair(tmp / "parents", seed=0, hidden=HIDDEN, intermediate=FFN, layers=LAYERS,
                                         heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM)
        tokenizer = father_tokenizer()
        for method in METHODS:
            config = _config(tmp / method, method)
            breeder = get_breeder(method)
            live = breeder.build_live(parents.father, parents.mother, config, device="cpu", dtype=torch.float32)
            params = sum(e.a.numel() for e in live.state)
            rng = random.Random(0)
            genomes = [live.space.full([rng.uniform(0.3, 0.9) for _ in live.space.free]) for _ in range(8)]
            it = iter(genomes * 100)
            fitness = make_fitness(config, live.model, tokenizer, tmp / method, apply=live.apply)
            fitness(genomes[0])  # warm-up: first forward, lazy inits
            # Rounds alternate switches and candidates, so load drift on the shared machine hits both alike.
            rounds = []
            for _ in range(ROUNDS):
                switch = median_seconds(lambda: live.apply(next(it)), repeat=3, warmup=0)
                candidate = median_seconds(lambda: fitness(next(it)), repeat=1, warmup=0)
                rounds.append((switch / candidate, switch, candidate))
            share, switch, candidate = sorted(rounds)[len(rounds) // 2]
            named = live.space.named(genomes[1])
            density = named.get("density", 1.0)
            mergekit = _mergekit(parents.father, parents.mother, method, 0.5, density, tmp / f"mergekit-{method}")
            print(f"   {method}: {LAYERS} layers at hidden {HIDDEN}, FFN {FFN} ({params / 1e6:.0f} M parameters), "
                  f"1 thread: switch {switch:.3f} s, candidate evaluation {candidate:.2f} s -> switch is "
                  f"{share:.1%} of it (target <= {TARGET:.0%}); mergekit writing the same merge {mergekit:.2f} s "
                  f"= {mergekit / switch:.1f}x the switch")
            results[f"same_arch_switch_share_{method}"] = row(
                share, "switch / candidate evaluation", f"<= {TARGET}", switch_seconds=round(switch, 4),
                candidate_seconds=round(candidate, 4), items=ITEMS, layers=LAYERS, hidden=HIDDEN, ffn=FFN,
                parameters_m=round(params / 1e6, 1))
            results[f"same_arch_switch_vs_mergekit_{method}"] = row(
                mergekit / switch, "mergekit write / switch", "> 1", mergekit_seconds=round(mergekit, 4),
                switch_seconds=round(switch, 4))
            del live, fitness
    return results


if __name__ == "__main__":
    run()
