"""Fitness on any lm-eval task: include_path tasks of every output type over local files written here,
names resolved without indexing all of lm-eval, lm-eval's results files, and the model-index they feed."""

import json
import math
import time

import pytest
import torch

from release.config import FitnessSpec, GenomeSpec, SearchSpec, TaskSpec
from release.errors import ReleaseError
from release.evals import Evaluator, TaskSuite
from tests.evals_tasks import arithmetic_records, write_jsonl, write_local_tasks

BPB = "bits_per_byte,none"  # rolling task: bits per byte (lower is better), not its first metric word_perplexity


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
    return write_local_tasks(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module")
def father(tiny_parents):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_parents.father).eval(),
            AutoTokenizer.from_pretrained(tiny_parents.father))


def _spec(tasks_dir, *tasks, **extra) -> FitnessSpec:
    return FitnessSpec(include_path=[tasks_dir], tasks=list(tasks), **extra)


def _three(search=6, heldout=6):
    return (TaskSpec(name="local_mc", weight=1.0, search_size=search, heldout_size=heldout),
            TaskSpec(name="local_gen", weight=1.0, search_size=search, heldout_size=heldout),
            TaskSpec(name="local_text", weight=1.0, metric=BPB, search_size=search, heldout_size=heldout))


def test_a_real_search_runs_on_multiple_choice_generate_until_and_rolling_tasks(tasks_dir, tiny_parents, tmp_path):
    from transformers import AutoTokenizer

    from release.breeders.hybrid import build_search_hybrid
    from release.breeders.ffn_genome import GenomeSpace
    from release.search.cmaes import LOG, run_search

    suite = TaskSuite.from_spec(_spec(tasks_dir, *_three(), max_gen_toks=4), tmp_path / "evals", seed=0)
    benches = {t.name: t.bench for t in suite.tasks}
    assert benches["local_mc"].output_types == ("multiple_choice",) and benches["local_mc"].key == "acc,none"
    assert benches["local_gen"].output_types == ("generate_until",)
    assert benches["local_gen"].key == "exact_match,first-number"  # the task's own filter
    assert benches["local_text"].key == BPB and not benches["local_text"].higher_is_better
    for task in suite.tasks:  # disjoint, seeded subsets for every output type
        for leaf in task.leaves:
            assert not set(task.items["search"][leaf]) & set(task.items["heldout"][leaf])
    again = TaskSuite.from_spec(_spec(tasks_dir, *_three(), max_gen_toks=4), tmp_path / "again", seed=0)
    assert again.fingerprint == suite.fingerprint

    model = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    tok = AutoTokenizer.from_pretrained(tiny_parents.father)
    evaluator = Evaluator(model, tok, suite, scorer="fast", batch_size=4, max_gen_toks=4)
    seen = []

    def fitness(genome):  # the search's candidate switch: ratios written in place, no re-merge
        model.set_ratios(genome)
        result = evaluator.evaluate()
        seen.append(result)
        return result.fitness, result.scores

    n = model.config.num_hidden_layers
    result = run_search(GenomeSpace(n, GenomeSpec(r_max=0.5, init_mean=0.2)), fitness,
                        SearchSpec(popsize=2, max_generations=2, seed=0), tmp_path / "breed", fingerprint="f",
                        progress=False)
    rows = [json.loads(line) for line in (tmp_path / "breed" / LOG).read_text().splitlines()]
    assert result.evaluations == len(rows) == 4
    for r in seen:
        assert r.n == {"local_mc": 6, "local_gen": 6, "local_text": 6}
        # Fitness: the normalised weighted sum, bits per byte counted negated (lower is better).
        expected = (r.scores["local_mc"] + r.scores["local_gen"] - r.scores["local_text"]) / 3
        assert r.fitness == pytest.approx(expected, abs=1e-12)
        assert r.scores["local_text"] > 0 and r.stderrs["local_text"] is None
        assert set(r.loglikelihoods) == {"local_mc"}  # generate/rolling answers are no option log-likelihoods
    assert len({round(r.scores["local_text"], 9) for r in seen}) == 4  # every candidate is another model
    assert evaluator.scorer == "fast" and evaluator.lm.checks  # multiple choice went through the checked cache
    # The winner again: the same score (nothing drifts between candidates: few-shot, generation, cache).
    model.set_ratios(result.genome)
    assert evaluator.evaluate().fitness == result.fitness


def test_the_fast_scorer_equals_stock_lm_eval_on_an_include_path_multiple_choice_task(tasks_dir, father, tmp_path):
    from lm_eval import evaluator as lm_evaluator
    from lm_eval.models.huggingface import HFLM

    model, tok = father
    suite = TaskSuite.from_spec(_spec(tasks_dir, TaskSpec(name="local_mc", weight=1, search_size=12, heldout_size=8)),
                                tmp_path, seed=1)
    fast = Evaluator(model, tok, suite, scorer="fast", verify=0).evaluate()
    # Stock lm-eval: its own HFLM, nothing of ours, on the same items.
    hflm = HFLM(pretrained=model, tokenizer=tok, backend="causal", batch_size=8, softmax_dtype=torch.float32)
    out = lm_evaluator.evaluate(lm=hflm, task_dict=suite.task_dict("search"), samples=suite.samples("search"),
                                bootstrap_iters=0, log_samples=True)
    stock = {s["doc_id"]: s for s in out["samples"]["local_mc"]}
    assert fast.item_scores["local_mc"] == {i: float(s["acc"]) for i, s in stock.items()}
    worst = max(abs(a - float(b[0])) for i, lls in fast.loglikelihoods["local_mc"].items()
                for a, b in zip(lls, stock[i]["filtered_resps"], strict=True))
    assert worst < 1e-4
    assert fast.scores["local_mc"] == out["results"]["local_mc"]["acc,none"]


def test_few_shot_examples_are_the_same_for_every_candidate(tasks_dir, father, tmp_path):
    """A task's few-shot sampler advances its generator on every draw: reseeded before each evaluation."""
    model, tok = father
    spec = _spec(tasks_dir, TaskSpec(name="local_mc", weight=1, num_fewshot=2, search_size=6, heldout_size=6))
    suite = TaskSuite.from_spec(spec, tmp_path, seed=0)
    assert suite.tasks[0].bench.num_fewshot == 2
    evaluator = Evaluator(model, tok, suite, scorer="stock")
    prompts = []
    for _ in range(2):
        evaluator.evaluate()
        prompts.append([s["arguments"][0][0] for s in evaluator.last_output["samples"]["local_mc"]])
    assert prompts[0] == prompts[1]
    assert all(p.count("Question:") == 3 for p in prompts[0])  # two examples, then the item


def test_data_files_point_a_task_at_other_local_records(tasks_dir, father, tmp_path):
    other = write_jsonl(tmp_path / "other.jsonl", arithmetic_records(30, seed=9)["mc"])
    for files in (str(other), {"test": [str(other)]}):
        suite = TaskSuite.from_spec(_spec(tasks_dir, TaskSpec(name="local_mc", weight=1, data_files=files,
                                                              search_size=10, heldout_size=20)), tmp_path, seed=0)
        (leaf,) = suite.tasks[0].leaves.values()
        assert len(leaf.eval_docs) == 30 and leaf.config.dataset_path == "json"
        assert leaf.eval_docs[0] == arithmetic_records(30, seed=9)["mc"][0]
    with pytest.raises(ReleaseError, match=r"data_files must all be \.json/\.jsonl, \.csv or \.parquet"):
        bad = tmp_path / "records.txt"
        bad.write_text("x")
        TaskSuite.from_spec(_spec(tasks_dir, TaskSpec(name="local_mc", weight=1, data_files=str(bad))), tmp_path, 0)


def test_a_name_lm_eval_does_not_know_is_one_line_with_the_closest_names(tasks_dir, tmp_path):
    from release.evals.names import builtin_files, resolve

    builtin_files()  # the once-per-lm-eval-version scan (cached): not what a lookup costs
    start = time.perf_counter()
    manager = resolve(["arc_easy"], [tasks_dir])
    lookup = time.perf_counter() - start
    assert "arc_easy" in manager.task_index and len(manager.all_tasks) < 20  # its folder, not all ~14k
    assert lookup < 3.0  # lm-eval's full index takes 6-15 s on this machine class
    for typo, close in (("hellaswagg", "hellaswag"), ("local_mcq", "local_mc")):
        with pytest.raises(ReleaseError) as e:
            TaskSuite.from_spec(_spec(tasks_dir, TaskSpec(name=typo, weight=1)), tmp_path, seed=0)
        assert "\n" not in str(e.value) and f"'{typo}'" in str(e.value) and close in str(e.value)
    with pytest.raises(ReleaseError, match=r"local_mc has no metric f1,none \(it reports acc,none, acc_norm,none\)"):
        TaskSuite.from_spec(_spec(tasks_dir, TaskSpec(name="local_mc", weight=1, metric="f1")), tmp_path, seed=0)


@pytest.mark.parametrize("offline", [True, False])
def test_a_hub_task_without_its_data_fails_in_one_line_naming_the_dataset(offline, tmp_path, monkeypatch):
    if offline:
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ReleaseError) as e:
        TaskSuite.from_spec(FitnessSpec(tasks=[TaskSpec(name="arc_easy", weight=1)]), tmp_path, seed=0)
    message = str(e.value)
    assert "\n" not in message and "allenai/ai2_arc" in message and "data_files" in message


def test_plan_counts_the_tokens_of_every_output_type(tasks_dir, father, tmp_path):
    """The plan's count without a model: rolling windows exactly, generation at most max_gen_toks per item."""
    from release.config import ReleaseConfig
    from release.plan.costs import count_tokens
    from release.plan.requests import search_requests

    model, tok = father
    config = ReleaseConfig.model_validate({
        "name": "p", "father": {"repo": "a/f"}, "mother": {"repo": "a/m"}, "child": {"repo": "a/c"},
        "fitness": {"include_path": [str(tasks_dir)], "max_gen_toks": 5, "batch_size": 4,
                    "tasks": [t.model_dump() for t in _three(search=5)]}})
    requests = search_requests(config, tok, max_length=8192)
    kinds = {r.kind for r in requests}
    assert kinds == {"loglikelihood", "rolling", "generate"}
    suite = TaskSuite.from_spec(config.fitness, tmp_path, config.search.seed)
    for scorer in ("fast", "stock"):
        per_type = {}
        for name in ("local_mc", "local_text", "local_gen"):
            one = TaskSuite([t for t in suite.tasks if t.name == name], suite.seed, suite.workdir)
            per_type[name] = Evaluator(model, tok, one, scorer=scorer, batch_size=4, max_gen_toks=5,
                                       verify=0).evaluate().tokens
        predicted = {kind: count_tokens([r for r in requests if r.kind == kind], 4, 8192, scorer).tokens
                     for kind in ("loglikelihood", "rolling", "generate")}
        assert predicted["loglikelihood"] == per_type["local_mc"]
        assert predicted["rolling"] == per_type["local_text"]
        assert 0 < per_type["local_gen"] <= predicted["generate"]  # generation may stop at "\n" before 5 tokens


# ---- final evaluation: lm-eval's files, the card rendered from them, the model-index ----

def test_final_evaluation_writes_lm_evals_files_and_the_pushed_card_reads_them(tiny_parents, tmp_path):
    from huggingface_hub import HfApi, ModelCard, hf_hub_download
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from release.card.model_card import render_model_card
    from release.config import ReleaseConfig
    from release.evals import ModelSpec, evaluate_models
    from release.evals.final import copy_eval_results
    from release.hub.client import Hub
    from tests.conftest import LOCALHUB_TOKEN
    from tests.test_card import FIXTURES

    # local_mc's YAML names a Hub dataset (and config); data_files stand in for its records.
    tasks = write_local_tasks(tmp_path / "tasks", mc_dataset="darwin-test/arith-mc", mc_config="plus")
    fitness = {"include_path": [str(tasks)], "log_samples": True, "max_gen_toks": 4, "tasks": [
        {"name": "local_mc", "weight": 0.5, "num_fewshot": 1, "search_size": 6, "heldout_size": 8,
         "data_files": str(tasks / "mc.jsonl")},
        {"name": "local_gen", "weight": 0.3, "search_size": 6, "heldout_size": 8},
        {"name": "local_text", "weight": 0.2, "metric": BPB, "search_size": 6, "heldout_size": 8}]}
    config = ReleaseConfig.model_validate({
        "name": "any-task", "father": {"repo": "darwin-local/tiny-gemma4-father"},
        "mother": {"repo": "darwin-local/tiny-qwen3_5-mother"}, "child": {"repo": "darwin-local/any-task-child"},
        "fitness": fitness, "runs_dir": str(tmp_path / "runs")})
    suite = TaskSuite.from_spec(config.fitness, tmp_path / "evals", seed=0)
    models = {"child": ModelSpec(tiny_parents.father, config.child.repo, None, trust_remote_code=True),
              "father": ModelSpec(tiny_parents.father, config.father.repo, "a" * 40),
              "mother": ModelSpec(tiny_parents.mother, config.mother.repo, "b" * 40)}
    out = tmp_path / "eval" / "results.json"
    results = evaluate_models(models, suite, out, device="cpu", progress=False, max_gen_toks=4, log_samples=True)

    child_dir = tmp_path / "child"
    child_dir.mkdir()
    files = copy_eval_results(out, child_dir)
    render_model_card(config, json.loads((FIXTURES / "genome.json").read_text()), results, None, child_dir)
    repo = "darwin-local/any-task-child"
    Hub(token=LOCALHUB_TOKEN).push_folder(child_dir, repo)

    # Pushed: lm-eval's files for all three models, read back with json.load and lm-eval's keys.
    pushed = sorted(f for f in HfApi().list_repo_files(repo) if f.startswith("eval_results/"))
    assert pushed == sorted(p.relative_to(child_dir).as_posix() for p in files)
    card = ModelCard.load(repo)
    for role, entry in results["models"].items():
        data = json.loads(open(hf_hub_download(repo, entry["lm_eval_results"])).read())
        for key in ("results", "configs", "versions", "n-shot", "n-samples", "higher_is_better", "config", "date",
                    "lm_eval_version"):
            assert key in data, key
        assert data["config"]["model_args"].startswith(f"pretrained={entry['repo']}")
        assert data["n-shot"] == {"local_gen": 0, "local_mc": 1, "local_text": 0}
        assert data["n-samples"]["local_mc"]["effective"] == 8
        rows = {"local_mc": ("acc", "none"), "local_gen": ("exact_match", "first-number"), "local_text": ("bits_per_byte", "none")}
        for name, (metric, filt) in rows.items():
            value, se = data["results"][name][f"{metric},{filt}"], data["results"][name][f"{metric}_stderr,{filt}"]
            assert entry["scores"][name]["value"] == value
            assert entry["scores"][name]["stderr"] == (None if se == "N/A" else se)
        samples = [f for f in pushed if f.startswith(entry["lm_eval_results"].rsplit("/", 1)[0] + "/samples_")]
        assert len(samples) == 3  # fitness.log_samples: per-item samples of every task
        text = json.dumps(data)
        assert str(tmp_path) not in text and "/tmp/" not in text  # published: no local paths
        if role == "child":  # the card's table shows these very numbers
            cells = [line for line in card.text.splitlines() if line.startswith("| local_mc ")][0]
            acc = data["results"]["local_mc"]["acc,none"]
            assert f"{acc:.3f} ± {data['results']['local_mc']['acc_stderr,none']:.3f}" in cells

    # model-index: only local_mc names a Hub dataset (the others' records exist nowhere but here).
    name, entries = model_index_to_eval_results(card.data.to_dict()["model-index"])
    (entry,) = entries
    assert (entry.dataset_type, entry.dataset_config, entry.dataset_split) == ("darwin-test/arith-mc", "plus", "test")
    assert entry.dataset_args == {"num_few_shot": 1}
    assert entry.metric_type == "acc" and entry.metric_value == results["models"]["child"]["scores"]["local_mc"]["value"]
    assert "lm-evaluation-harness" in entry.source_url and "held-out" in entry.source_name
    assert "search split" in entry.source_name and "8 disjoint held-out items" in entry.source_name
    assert math.isfinite(results["models"]["child"]["fitness"]["value"])


def test_the_zoos_task_folder_is_known_without_include_path(tmp_path, monkeypatch):
    import release.evals.suite as suite_module

    zoo = write_local_tasks(tmp_path / "zoo_tasks")
    yaml_text = (zoo / "local_mc.yaml").read_text().replace("task: local_mc", "task: zoo_arith")
    (zoo / "local_mc.yaml").write_text(yaml_text)
    monkeypatch.setattr(suite_module, "ZOO_TASKS", zoo)
    suite = TaskSuite.from_spec(FitnessSpec(tasks=[TaskSpec(name="zoo_arith", weight=1, search_size=4)]),
                                tmp_path / "evals", seed=0)
    assert list(suite.tasks[0].leaves) == ["zoo_arith"]
    monkeypatch.setattr(suite_module, "ZOO_TASKS", tmp_path / "absent")  # before the zoo lands on main
    with pytest.raises(ReleaseError, match="knows no task, group or tag 'zoo_arith'"):
        TaskSuite.from_spec(FitnessSpec(tasks=[TaskSpec(name="zoo_arith", weight=1)]), tmp_path / "e2", seed=0)


def test_checkpoints_of_configs_without_the_new_keys_keep_their_search_key():
    """The search checkpoint's key is made from fitness.search_key(): unchanged for configs that set none
    of the keys added with any-task fitness (so their searches still resume), changed when one is set."""
    spec = FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0, search_size=48, heldout_size=96)])
    assert spec.search_key() == {
        "kind": "benchmark", "tasks": [{"name": "synthetic", "weight": 1.0, "search_size": 48, "heldout_size": 96}],
        "data_dir": None, "scorer": "fast", "batch_size": 8, "calibration_text": None}
    # Stage keys hash the spec's text: the same text as before these keys existed.
    assert str(spec) == ("kind='benchmark' tasks=[TaskSpec(name='synthetic', weight=1.0, search_size=48, "
                         "heldout_size=96)] data_dir=None scorer='fast' batch_size=8 calibration_text=None")
    assert "log_samples=True" in str(FitnessSpec(tasks=spec.tasks, log_samples=True))  # the evaluate stage reruns
    assert FitnessSpec(tasks=spec.tasks, log_samples=True).search_key() == spec.search_key()  # final eval only
    assert FitnessSpec(tasks=spec.tasks, max_gen_toks=8).search_key() != spec.search_key()
    few = FitnessSpec(tasks=[spec.tasks[0].model_copy(update={"num_fewshot": 2})])
    assert few.search_key()["tasks"][0]["num_fewshot"] == 2


def test_few_shot_examples_never_show_held_out_items(tasks_dir, father, tmp_path):
    """local_mc has only a test split, so lm-eval draws its examples from the evaluated docs: held-out ones
    are left out of that pool (the search would otherwise see them, answers included)."""
    model, tok = father
    rows = [{"question": f"Item {i}: what is {i % 7} plus 2?", "choices": [str(i % 7 + 2), "0", "1", "99"],
             "label": 0} for i in range(40)]
    records = write_jsonl(tmp_path / "unique.jsonl", rows)
    spec = _spec(tasks_dir, TaskSpec(name="local_mc", weight=1, num_fewshot=3, data_files=str(records),
                                     search_size=10, heldout_size=25))
    suite = TaskSuite.from_spec(spec, tmp_path / "evals", seed=0)
    heldout = {rows[i]["question"] for i in suite.samples("heldout")["local_mc"]}
    evaluator = Evaluator(model, tok, suite, scorer="stock")
    evaluator.evaluate()
    shown = [q.split("\nAnswer:")[0].removeprefix("Question: ")
             for s in evaluator.last_output["samples"]["local_mc"] for q in s["arguments"][0][0].split("\n\n")[:-1]]
    assert len(shown) == 3 * 10 and not set(shown) & heldout


def test_per_item_scores_for_the_estimators_follow_the_tasks_filter_and_metric(tasks_dir, father, tmp_path):
    from release.evals.items import item_layout

    model, tok = father
    suite = TaskSuite.from_spec(_spec(tasks_dir, *_three(), max_gen_toks=4), tmp_path, seed=0)
    evaluator = Evaluator(model, tok, suite, scorer="stock", max_gen_toks=4)
    full = evaluator.evaluate()
    gen = {"local_gen": suite.samples("search")["local_gen"]}
    scores, _ = evaluator.score_items(gen)
    assert scores == {"local_gen": full.item_scores["local_gen"]}  # exact_match under its own regex filter
    with pytest.raises(ReleaseError, match="local_text: its metric bits_per_byte is not a mean"):
        item_layout(suite)  # bits per byte (lower is better, not a mean of items): no item-score estimator
