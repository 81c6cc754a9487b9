"""lm-eval's CLIcK and MuSR tasks on the real record files of ../shared/data (skipped when absent)."""

import ast
import dataclasses
import json
import random

import pytest

from release.config import FitnessSpec, TaskSpec
from release.evals import Evaluator, TaskSuite

MUSR_LEAVES = {"leaderboard_musr_murder_mysteries": 250, "leaderboard_musr_object_placements": 256,
               "leaderboard_musr_team_allocation": 250}


@pytest.fixture(scope="module")
def suite(shared_data, tmp_path_factory):
    spec = FitnessSpec(tasks=[TaskSpec(name="click", weight=0.6, search_size=100, heldout_size=300),
                              TaskSpec(name="musr", weight=0.4, search_size=30, heldout_size=60)],
                       data_dir=shared_data)
    return TaskSuite.from_spec(spec, tmp_path_factory.mktemp("evals"), seed=42)


def _task(suite, name):
    return next(t for t in suite.tasks if t.name == name)


def test_click_records_run_through_lm_evals_own_click_group(suite, shared_data):
    click = _task(suite, "click")
    assert click.bench.metric == "acc" and click.weight_by_size  # as lm-eval's click.yaml aggregates
    assert len(click.leaves) == 11
    records = [json.loads(line) for line in (shared_data / "click" / "click.jsonl").read_text().splitlines()]
    docs = sorted(json.dumps(doc, sort_keys=True, ensure_ascii=False)
                  for leaf in click.leaves.values() for doc in leaf.eval_docs)
    # lm-eval's process_docs split the 1,995 records into subtasks without overlap or loss.
    assert docs == sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records)
    assert len(docs) == 1995
    for name, leaf in click.leaves.items():
        assert leaf.config.dataset_path == "json"
        for doc in leaf.eval_docs:
            choices, target = leaf.doc_to_choice(doc), leaf.doc_to_target(doc)
            assert target in choices and choices[0] == "A"
            assert leaf.doc_to_text(doc).endswith("정답:")


def test_musr_csv_records_read_like_the_hub_parquet(suite):
    musr = _task(suite, "musr")
    assert musr.bench.metric == "acc_norm" and musr.weight_by_size
    assert {name: len(leaf.eval_docs) for name, leaf in musr.leaves.items()} == MUSR_LEAVES
    for leaf in musr.leaves.values():
        assert leaf.config.dataset_path == "csv"
        for doc in leaf.eval_docs:
            # Same types as the Hub parquet: choices is the Python-literal text lm-eval's utils parse.
            assert isinstance(doc["choices"], str) and type(doc["answer_index"]) is int
            choices = leaf.doc_to_choice(doc)
            assert choices == ast.literal_eval(doc["choices"]) and len(choices) >= 2
            assert choices[doc["answer_index"]] == doc["answer_choice"] == leaf.doc_to_target(doc)
            assert leaf.doc_to_text(doc).endswith("\nAnswer:")


def test_search_subset_is_stratified_and_never_meets_the_heldout_set(suite):
    saved = json.loads((suite.workdir / "subsets.json").read_text())
    for task in suite.tasks:
        sizes = {leaf: len(obj.eval_docs) for leaf, obj in task.leaves.items()}
        total = sum(sizes.values())
        for split, size in (("search", saved["tasks"][task.name]["search"]["n"]),
                            ("heldout", saved["tasks"][task.name]["heldout"]["n"])):
            assert task.n(split) == size
        for leaf, n in sizes.items():
            search, heldout = task.items["search"][leaf], task.items["heldout"][leaf]
            assert not set(search) & set(heldout)
            assert abs(len(search) - task.n("search") * n / total) < 1  # proportional to the subtask's size
        # Disjoint by record too, not only by index.
        seen = {split: {json.dumps(task.leaves[leaf].eval_docs[i], sort_keys=True)
                        for leaf, idx in task.items[split].items() for i in idx} for split in ("search", "heldout")}
        assert not seen["search"] & seen["heldout"]
    assert (suite.search_items == {"click": 100, "musr": 30})


def _few_items(suite, musr_items: int, click_items: int) -> dict:
    """The shortest MuSR stories (one per subtask first: each has its own option count) + random CLIcK items."""
    chosen = {}
    musr = _task(suite, "musr")
    ranked = {leaf: sorted(range(len(obj.eval_docs)), key=lambda i: len(obj.eval_docs[i]["narrative"]))
              for leaf, obj in musr.leaves.items()}
    order = [(leaf, k) for k in range(musr_items) for leaf in sorted(ranked)][:musr_items]
    for leaf, k in order:
        chosen.setdefault(leaf, []).append(ranked[leaf][k])
    click = _task(suite, "click")
    rng = random.Random(0)
    for leaf in rng.sample(sorted(click.leaves), click_items):
        chosen[leaf] = [rng.randrange(len(click.leaves[leaf].eval_docs))]
    return {leaf: sorted(idx) for leaf, idx in chosen.items()}


def _agree(suite, model, tokenizer, items):
    # A suite of the same task objects whose search split is just these items.
    suite = TaskSuite([dataclasses.replace(t, items={"search": {leaf: items.get(leaf, []) for leaf in t.leaves},
                                                     "heldout": {}}) for t in suite.tasks], suite.seed, suite.workdir)
    stock = Evaluator(model, tokenizer, suite, scorer="stock").evaluate()
    fast = Evaluator(model, tokenizer, suite, scorer="fast", verify=0).evaluate()  # compared in full below
    assert fast.loglikelihoods.keys() == stock.loglikelihoods.keys() == items.keys()
    worst = 0.0
    for leaf, docs in stock.loglikelihoods.items():
        assert docs.keys() == fast.loglikelihoods[leaf].keys() == set(items[leaf])
        for doc_id, lls in docs.items():
            other = fast.loglikelihoods[leaf][doc_id]
            worst = max(worst, max(abs(a - b) for a, b in zip(lls, other, strict=True)))
            assert lls.index(max(lls)) == other.index(max(other))  # same predicted option
        assert fast.item_scores[leaf] == stock.item_scores[leaf]  # same acc / acc_norm per item
    assert worst < 1e-4
    assert fast.scores == stock.scores and fast.fitness == stock.fitness
    return stock, fast


def test_fast_scorer_chooses_what_stock_lm_eval_chooses_on_the_father(suite, tiny_parents):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_parents.father).eval()
    tok = AutoTokenizer.from_pretrained(tiny_parents.father)
    items = _few_items(suite, musr_items=4, click_items=10)
    stock, fast = _agree(suite, model, tok, items)
    assert stock.n == fast.n == {"click": 10, "musr": 4}
    # MuSR contexts (1.3k-2.2k tokens, far past the sliding window of 16) run once instead of once per option.
    assert stock.tokens / fast.tokens > 1.8


def test_fast_scorer_agrees_on_the_mother(suite, tiny_parents):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_parents.mother).eval()
    tok = AutoTokenizer.from_pretrained(tiny_parents.mother)
    stock, fast = _agree(suite, model, tok, _few_items(suite, musr_items=1, click_items=10))
    assert stock.n == {"click": 10, "musr": 1}


def test_lm_evals_results_file_holds_the_click_and_musr_rows_the_card_reads(suite, tiny_parents, tmp_path):
    """Group rows: MuSR's (every subtask has items) aggregated by lm-eval itself, CLIcK's (10 of 11 subtasks)
    by its group rule; the card's numbers are read back from the file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from release.evals.lm_eval_results import read_scores, start_tracker, write_results

    model = AutoModelForCausalLM.from_pretrained(tiny_parents.father).eval()
    tok = AutoTokenizer.from_pretrained(tiny_parents.father)
    items = _few_items(suite, musr_items=3, click_items=10)
    small = TaskSuite([dataclasses.replace(t, items={"heldout": {leaf: items.get(leaf, []) for leaf in t.leaves},
                                                     "search": {}}) for t in suite.tasks], suite.seed, suite.workdir)
    evaluator = Evaluator(model, tok, small, split="heldout", scorer="fast", groups=True)
    tracker = start_tracker()
    r = evaluator.evaluate()
    assert "leaderboard_musr" in evaluator.last_output["results"]  # lm-eval aggregated this group itself
    assert r.scores["musr"] == pytest.approx(evaluator.last_output["results"]["leaderboard_musr"]["acc_norm,none"])
    path = write_results(evaluator.last_output, evaluator.lm, small, evaluator.leaf_stderrs(),
                         {k: (r.scores[k], r.stderrs[k]) for k in r.scores}, tmp_path / "eval_results",
                         repo="org/child", revision=None, trust_remote_code=True, dtype="float32", device="cpu",
                         batch_size=8, samples_index=small.samples("heldout"), tracker=tracker, log_samples=False,
                         env={"lm_eval_version": "0.4.13"})
    wanted = {t.name: {"target": t.bench.target, "metric": t.bench.metric, "filter": "none"} for t in small.tasks}
    scores = read_scores(path, wanted)
    assert {k: v["value"] for k, v in scores.items()} == r.scores
    assert {k: v["stderr"] for k, v in scores.items()} == r.stderrs
    data = json.loads(path.read_text())
    assert data["results"]["click"]["acc,none"] == r.scores["click"]
    assert "/work/shared" not in path.read_text() and data["configs"]["click_cul_economy"]["dataset_kwargs"][
        "data_files"]["train"] == "click.jsonl"
