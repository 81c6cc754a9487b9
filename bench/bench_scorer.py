"""Prefix-cache scorer vs stock lm-eval on the same MuSR items, side by side in one run.

Both score the same seeded, stratified MuSR items (from ../shared/data/musr) with the tiny Gemma 4 father
through lm-eval's own task machinery; only the model wrapper differs. Reports the tokens (positions,
padding included) each runs through the model, wall time, and how far their log-likelihoods and
predictions are apart.

    python bench/bench_scorer.py [--items 20]     # prints a table and the JSON entry; writes bench/out/
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "out" / "bench_scorer.json"


def _compare(stock, fast) -> tuple[float, float]:
    """(max |dLL| over every option, fraction of items where both pick the same option and score the same)."""
    worst, same, total = 0.0, 0, 0
    for leaf, docs in stock.loglikelihoods.items():
        for doc_id, lls in docs.items():
            other = fast.loglikelihoods[leaf][doc_id]
            worst = max(worst, max(abs(a - b) for a, b in zip(lls, other, strict=True)))
            same += (lls.index(max(lls)) == other.index(max(other))
                     and stock.item_scores[leaf][doc_id] == fast.item_scores[leaf][doc_id])
            total += 1
    return worst, same / total


def run(items: int = 20, data_dir: Path = SHARED_DATA, seed: int = 0, batch_size: int = 8,
        threads: int | None = 1) -> dict:
    """`threads`: torch intra-op threads (1 by default: on a shared, busy CPU two threads spin and stall)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from release.config import FitnessSpec, TaskSpec
    from release.evals import Evaluator, TaskSuite
    from release.tiny import write_tiny_father

    if not (Path(data_dir) / "musr").is_dir():
        raise SystemExit(f"MuSR records not found under {data_dir}/musr: run beside ../shared/data")
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="bench-scorer-") as tmp:
        folder = write_tiny_father(Path(tmp) / "father", seed=0)
        spec = FitnessSpec(tasks=[TaskSpec(name="musr", weight=1.0, search_size=items, heldout_size=1)],
                           data_dir=data_dir, batch_size=batch_size)
        suite = TaskSuite.from_spec(spec, Path(tmp) / "evals", seed=seed)
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        stock = Evaluator(model, tokenizer, suite, scorer="stock", batch_size=batch_size).evaluate()
        # verify=0: its one-off check (two contexts scored both ways) is a per-run cost, not a per-candidate one.
        fast = Evaluator(model, tokenizer, suite, scorer="fast", batch_size=batch_size, verify=0).evaluate()
        # The self-check as a search runs it (first two stories, against the stock path's measured noise),
        # in fp32 and in bf16 (the GPU search's dtype), where a fixed 1e-4 tolerance used to turn it off.
        checks = {}
        for dtype in (torch.float32, torch.bfloat16):
            evaluator = Evaluator(model.to(dtype), tokenizer, suite, scorer="fast", batch_size=batch_size)
            evaluator.evaluate()
            checks[str(dtype).removeprefix("torch.")] = (evaluator.scorer == "fast", evaluator.lm.checks)

    worst, agree = _compare(stock, fast)
    token_ratio, speedup = stock.tokens / fast.tokens, stock.seconds / fast.seconds
    print(f"MuSR, {sum(stock.n.values())} items, tiny Gemma 4 father, batch {batch_size}, "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"{'':8}{'tokens':>10}{'seconds':>10}{'acc_norm':>10}")
    for name, r in (("stock", stock), ("fast", fast)):
        print(f"{name:8}{r.tokens:>10}{r.seconds:>10.2f}{r.scores['musr']:>10.3f}")
    print(f"ratios: {token_ratio:.2f}x fewer tokens, {speedup:.2f}x faster; max |dLL| {worst:.2e}; "
          f"same predictions on {agree:.0%} of items")
    rows = {}
    for dtype, (on, done) in checks.items():
        worst, tolerance = max(c["max_dll"] for c in done), min(c["tolerance"] for c in done)
        print(f"self-check in {dtype}: {'stays on' if on else 'TURNED OFF'}; max |dLL| fast vs stock {worst:.2e}, "
              f"smallest tolerance {tolerance:.2e} (4 x measured noise) over {len(done)} stories")
        rows[f"scorer_selfcheck_{dtype}_on"] = {"value": float(on), "unit": "1 = fast scorer stays on",
                                                "target": "1.0", "max_abs_dll": worst,
                                                "smallest_tolerance": tolerance, "stories_checked": len(done)}
    return rows | {
        "scorer_musr_token_ratio": {"value": round(token_ratio, 3), "unit": "x fewer tokens than stock",
                                    "target": ">= 1.8"},
        "scorer_musr_speedup": {"value": round(speedup, 3), "unit": "x less wall time than stock", "target": "> 1"},
        "scorer_musr_max_abs_dll": {"value": worst, "unit": "nats", "target": "<= 1e-4"},
        "scorer_musr_same_predictions": {"value": agree, "unit": "fraction of items", "target": "1.0"},
        "scorer_musr_stock_tokens": {"value": stock.tokens, "unit": "tokens", "target": None},
        "scorer_musr_fast_tokens": {"value": fast.tokens, "unit": "tokens", "target": None},
        "scorer_musr_stock_seconds": {"value": round(stock.seconds, 3), "unit": "s", "target": None},
        "scorer_musr_fast_seconds": {"value": round(fast.seconds, 3), "unit": "s", "target": None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(items=args.items, data_dir=args.data_dir, threads=args.threads)
    from release.run.files import write_json

    write_json(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
