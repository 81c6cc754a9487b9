"""Cost per candidate on a generate_until task: our live-model search vs stock lm-eval re-run per candidate.

Ours: the search hybrid is built once; a candidate writes its ratios in place and runs lm-eval's
`evaluate` on the prebuilt task objects (generate_until goes through stock HFLM.generate_until on the live
model). Stock, the way mergekit-evolve runs each candidate (`mergekit/evo/helpers.py`): merge the
candidate to disk (here our own child writer, `emit_child`), then `lm_eval.simple_evaluate(model="hf",
model_args="pretrained=<dir>,...")`, which loads the model from disk and builds the task (records,
requests) again, then delete the folder. Its TaskManager is built once outside the timing, as mergekit
does (narrow here, which favours stock: mergekit's indexes all of lm-eval's YAMLs once).

Both score the same items of the same candidates; the scores are printed side by side (same genomes,
same greedy generations). Tiny parents, CPU, one thread: the forward passes are cheap, so the ratio shows
the per-candidate overhead a re-merging tool pays; with real-size models the forwards grow on both sides
and the fixed overhead (writing and loading ~19 GB per candidate) grows with them.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import one_thread, row

CANDIDATES = 4
ITEMS = 16
MAX_GEN_TOKS = 8


def run() -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    from release.config import FitnessSpec, TaskSpec
    from release.breeders.emit import emit_child
    from release.evals import Evaluator, TaskSuite
    from release.breeders.hybrid import build_search_hybrid
    from release.tiny import write_tiny_parents
    from tests.evals_tasks import write_local_tasks

    genome_template = json.loads((Path(__file__).resolve().parents[1] / "tests/fixtures/card/genome.json").read_text())
    with tempfile.TemporaryDirectory(prefix="bench-any-task-") as tmp, one_thread():
        tmp = Path(tmp)
        parents = write_tiny_parents(tmp / "parents", seed=0)
        tasks = write_local_tasks(tmp / "tasks", n=2 * ITEMS)
        spec = FitnessSpec(include_path=[tasks], max_gen_toks=MAX_GEN_TOKS,
                           tasks=[TaskSpec(name="local_gen", weight=1.0, search_size=ITEMS, heldout_size=ITEMS)])
        suite = TaskSuite.from_spec(spec, tmp / "evals", seed=0)
        samples = suite.samples("search")
        model = build_search_hybrid(parents.father, parents.mother)
        tok = AutoTokenizer.from_pretrained(parents.father)
        n = model.config.num_hidden_layers
        genomes = [[round(0.1 * ((i + c) % 4), 2) for i in range(n)] for c in range(CANDIDATES)]

        evaluator = Evaluator(model, tok, suite, scorer="fast", batch_size=8, max_gen_toks=MAX_GEN_TOKS)
        model.set_ratios(genomes[0])
        evaluator.evaluate()  # warm-up (first-call costs on both sides are excluded)
        ours, our_scores, our_texts = [], [], []
        for g in genomes:
            t0 = time.perf_counter()
            model.set_ratios(g)
            our_scores.append(evaluator.evaluate().scores["local_gen"])
            ours.append(time.perf_counter() - t0)
            our_texts.append(_generations(evaluator.last_output["samples"]["local_gen"]))

        manager = TaskManager(include_path=[str(tasks)], include_defaults=False)  # once, as mergekit-evolve

        def stock_candidate(g: list[float]) -> tuple[float, list[str]]:
            genome = copy.deepcopy(genome_template) | {"ratios": g, "layer_map": list(model.config.layer_map)}
            out = tmp / "candidate"
            emit_child(parents.father, parents.mother, genome, out, max_shard_size="5GB", progress=False)
            try:
                res = lm_eval.simple_evaluate(
                    model="hf", model_args=f"pretrained={out},trust_remote_code=True,dtype=float32",
                    tasks=["local_gen"], task_manager=manager, samples=samples, batch_size=8, device="cpu",
                    gen_kwargs=f"max_gen_toks={MAX_GEN_TOKS}", bootstrap_iters=0, log_samples=True,
                    verbosity="WARNING")
            finally:
                shutil.rmtree(out)
            return (float(res["results"]["local_gen"]["exact_match,first-number"]),
                    _generations(res["samples"]["local_gen"]))

        stock_candidate(genomes[0])  # warm-up
        stock, stock_scores, stock_texts = [], [], []
        for g in genomes:
            t0 = time.perf_counter()
            score, texts = stock_candidate(g)
            stock.append(time.perf_counter() - t0)
            stock_scores.append(score)
            stock_texts.append(texts)

    lookup = _name_lookup()
    ours_s, stock_s = statistics.median(ours), statistics.median(stock)
    ratio = stock_s / ours_s
    print(f"   generate_until, {ITEMS} items, max_gen_toks {MAX_GEN_TOKS}, {CANDIDATES} candidates (median):")
    print(f"     ours (live hybrid, in-place switch)        {ours_s * 1000:8.0f} ms per candidate")
    print(f"     stock (write child, simple_evaluate)       {stock_s * 1000:8.0f} ms per candidate   -> {ratio:.1f}x")
    same = sum(a == b for x, y in zip(our_texts, stock_texts) for a, b in zip(x, y))
    total = sum(len(x) for x in our_texts)
    print(f"     scores ours  {our_scores}")
    print(f"     scores stock {stock_scores}")
    print(f"     identical generations: {same} of {total} (the candidates differ: {len(set(map(tuple, our_texts)))} "
          "distinct sets of outputs)")
    return {"any_task_generate_until_stock_over_ours": row(
        ratio, "x", ">= 1 (same scores)", ours_ms=round(ours_s * 1000, 1), stock_ms=round(stock_s * 1000, 1),
        same_scores=our_scores == stock_scores, identical_generations=f"{same}/{total}", items=ITEMS,
        max_gen_toks=MAX_GEN_TOKS), **lookup}


def _name_lookup() -> dict:
    """Loading a task by name: lm-eval's TaskManager() (indexes every YAML it ships) vs our resolve() (the
    name map, scanned once per lm-eval version and cached, then only the task's own folder indexed)."""
    import os

    from lm_eval.tasks import TaskManager

    from release.evals.names import builtin_files, resolve

    with tempfile.TemporaryDirectory(prefix="bench-names-") as home:
        saved = os.environ.get("HF_HOME")
        os.environ["HF_HOME"] = home  # a cold name-map cache
        try:
            t0 = time.perf_counter()
            builtin_files()
            scan = time.perf_counter() - t0
            lookups = []
            for name in ("arc_easy", "gsm8k", "wikitext", "hellaswag"):
                t0 = time.perf_counter()
                assert name in resolve([name], []).task_index
                lookups.append(time.perf_counter() - t0)
        finally:
            if saved is None:
                os.environ.pop("HF_HOME")
            else:
                os.environ["HF_HOME"] = saved
    t0 = time.perf_counter()
    assert "arc_easy" in TaskManager().task_index
    full = time.perf_counter() - t0
    lookup = statistics.median(lookups)
    print(f"   task name lookup: lm-eval's full index {full:.1f} s; ours {lookup * 1000:.0f} ms per name "
          f"(median of 4) after a one-off scan of {scan:.1f} s -> {full / lookup:.0f}x")
    return {"any_task_name_lookup_full_index_over_ours": row(full / lookup, "x", ">= 10", full_s=round(full, 2),
                                                             ours_ms=round(lookup * 1000, 1), scan_s=round(scan, 2))}


def _generations(samples: list[dict]) -> list[str]:
    """The raw generated text per item, in doc order."""
    return [s["resps"][0][0] for s in sorted(samples, key=lambda s: s["doc_id"])]
