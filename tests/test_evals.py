"""Fitness and final evaluation on lm-eval, with the tiny parents and the synthetic task (no shared data)."""

import json
import logging
import math
import random
import re
import weakref

import numpy as np
import pytest
import torch

from release.config import FitnessSpec, TaskSpec
from release.errors import ReleaseError
from release.evals import Evaluator, ModelSpec, TaskSuite, calibration_fitness, evaluate_models
from release.evals import final as final_module
from release.evals.benchmarks import ALIASES
from release.evals.names import lm_eval_tasks_dir, resolve
from release.evals.scorer import PrefixCacheLM, StockLM
from release.evals.subsets import allocate, split_items
from release.evals.synthetic import make_items

SYNTHETIC = FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0, search_size=12, heldout_size=8)])


def _lm_kwargs(model, tok, **extra) -> dict:
    """What both scorers are built with in these tests (the evaluator's settings), plus `extra`."""
    return dict(pretrained=model, tokenizer=tok, backend="causal", softmax_dtype=torch.float32, progress=False,
                **extra)


def _load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def father(tiny_parents):
    return _load(tiny_parents.father)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return TaskSuite.from_spec(SYNTHETIC, tmp_path_factory.mktemp("evals"), seed=0)


# ---- synthetic task and subsets ----

def test_synthetic_items_are_seeded_and_well_formed():
    a, b, c = make_items(40, seed=1), make_items(40, seed=1), make_items(40, seed=2)
    assert a == b and a != c
    for item in a:
        assert len(item["options"]) == 4 and len(set(item["options"])) == 4
        assert 0 <= item["answer"] < 4
        assert item["question"].endswith("\nAnswer:") and len(item["question"]) < 200
    for item in a[::4]:  # the addition family: the marked answer is the sum
        x, y = re.search(r"What is (\d+) plus (\d+)\?", item["question"]).groups()
        assert item["options"][item["answer"]] == str(int(x) + int(y))
    # The correct letter is spread over A-D, so always answering one letter cannot score well.
    counts = np.bincount([item["answer"] for item in make_items(400, seed=0)], minlength=4)
    assert counts.min() > 70


def test_allocation_is_proportional_and_exact():
    sizes = {"a": 132, "b": 233, "c": 285, "d": 59, "e": 41}
    share = allocate(100, sizes)
    assert sum(share.values()) == 100
    for k, n in sizes.items():
        assert abs(share[k] - 100 * n / sum(sizes.values())) < 1


def test_search_and_heldout_are_disjoint_stratified_and_seeded():
    sizes = {"lang": 650, "cul": 1345, "tiny": 3}
    search, heldout = split_items("click", sizes, 100, 300, seed=7)
    assert (search, heldout) == split_items("click", sizes, 100, 300, seed=7)
    assert search != split_items("click", sizes, 100, 300, seed=8)[0]
    assert sum(map(len, search.values())) == 100 and sum(map(len, heldout.values())) == 300
    for task, n in sizes.items():
        assert not set(search[task]) & set(heldout[task])
        assert search[task] == sorted(search[task]) and all(0 <= i < n for i in search[task] + heldout[task])
        assert abs(len(search[task]) - 100 * n / 1998) < 1
    _, rest = split_items("click", sizes, 100, None, seed=7)
    assert sum(map(len, rest.values())) == 1998 - 100
    with pytest.raises(ReleaseError, match="do not fit"):
        split_items("click", sizes, 1990, 20, seed=7)


def test_suite_persists_its_subsets(tmp_path, suite):
    saved = json.loads((suite.workdir / "subsets.json").read_text())
    assert saved["fingerprint"] == suite.fingerprint
    entry = saved["tasks"]["synthetic"]
    assert entry["search"]["indices"] == {"darwin_synthetic": suite.samples("search")["darwin_synthetic"]}
    assert entry["search"]["n"] == 12 and entry["heldout"]["n"] == 8
    assert entry["dataset"] is None  # generated records: no Hub dataset id is invented for them
    assert not set(suite.samples("search")["darwin_synthetic"]) & set(suite.samples("heldout")["darwin_synthetic"])
    assert suite.search_items == {"synthetic": 12}
    # Same seed elsewhere: same items and fingerprint (no paths in it); another seed: other items.
    again = TaskSuite.from_spec(SYNTHETIC, tmp_path / "again", seed=0)
    assert again.fingerprint == suite.fingerprint
    assert TaskSuite.from_spec(SYNTHETIC, tmp_path / "other", seed=1).fingerprint != suite.fingerprint


def test_config_problems_are_one_line_release_errors(tmp_path):
    (tmp_path / "empty").mkdir()  # a missing folder is refused at config load; here one without the records
    local = FitnessSpec(tasks=[TaskSpec(name="click", weight=1.0)], data_dir=tmp_path / "empty")
    with pytest.raises(ReleaseError, match=r"click/click\.jsonl not found"):
        TaskSuite.from_spec(local, tmp_path / "a", seed=0)
    with pytest.raises(ReleaseError, match="a task suite needs fitness.tasks"):  # a calibration search may list
        TaskSuite.from_spec(FitnessSpec(kind="calibration"), tmp_path / "b", seed=0)  # tasks to report, or none
    # The synthetic task sizes itself to fit what the config asks for.
    big = FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0, search_size=200, heldout_size=500)])
    assert TaskSuite.from_spec(big, tmp_path / "big", seed=0).tasks[0].n("heldout") == 500
    with pytest.raises(ReleaseError, match="unknown evaluation split"):
        TaskSuite.from_spec(SYNTHETIC, tmp_path / "c", seed=0).samples("train")


def test_hub_mode_indexes_only_the_alias_folders(tmp_path):
    """click and musr: lm-eval's registered groups, from their own folders only (nothing is downloaded)."""
    fixed = [lm_eval_tasks_dir().joinpath(*ALIASES[n].folder) for n in ("click", "musr")]
    assert fixed == [lm_eval_tasks_dir() / "click", lm_eval_tasks_dir() / "leaderboard" / "musr"]
    manager = resolve(["click", "leaderboard_musr"], [], fixed)
    assert {"click", "leaderboard_musr"} <= set(manager.all_groups)
    assert len(manager.all_tasks) < 40  # not lm-eval's ~14k


# ---- the evaluator ----

def test_candidate_loop_builds_once_is_repeatable_and_sees_new_weights(tmp_path, father, monkeypatch):
    import lm_eval.tasks
    from lm_eval.models.huggingface import HFLM

    counts = {"TaskManager": 0, "load": 0, "HFLM": 0}

    def counting(name, original):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)
        return wrapper

    manager = lm_eval.tasks.TaskManager
    monkeypatch.setattr(manager, "__init__", counting("TaskManager", manager.__init__))
    monkeypatch.setattr(manager, "load", counting("load", manager.load))
    monkeypatch.setattr(HFLM, "__init__", counting("HFLM", HFLM.__init__))

    model, tok = father
    suite = TaskSuite.from_spec(SYNTHETIC, tmp_path, seed=0)
    fitness = Evaluator(model, tok, suite, split="search", scorer="fast")
    rng_state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    first, second = fitness.evaluate(), fitness.evaluate()
    assert first.fitness == second.fitness and first.loglikelihoods == second.loglikelihoods
    assert first.n == {"synthetic": 12} and first.tokens > 0
    assert fitness.lm.max_length == 8192  # from max_position_embeddings: MuSR prompts are not truncated

    # Zero the LM head in place: every option then has log-likelihood -log(V) and lm-eval's argmax takes
    # option A, so the score is exactly the share of search items whose answer is A.
    head = model.get_output_embeddings().weight
    saved = head.detach().clone()
    with torch.no_grad():
        head.zero_()
    blind = fitness.evaluate()
    with torch.no_grad():
        head.copy_(saved)
    restored = fitness.evaluate()

    vocab = model.config.get_text_config().vocab_size
    lls = [ll for doc in blind.loglikelihoods["darwin_synthetic"].values() for ll in doc]
    assert max(abs(ll + math.log(vocab)) for ll in lls) < 1e-4
    docs = suite.tasks[0].leaves["darwin_synthetic"].eval_docs
    share_a = np.mean([docs[i]["answer"] == 0 for i in suite.samples("search")["darwin_synthetic"]])
    assert blind.fitness == pytest.approx(share_a, abs=1e-12)
    assert blind.loglikelihoods != first.loglikelihoods
    assert restored.fitness == first.fitness and restored.loglikelihoods == first.loglikelihoods

    assert counts == {"TaskManager": 1, "load": 1, "HFLM": 1}  # 4 evaluations, built once
    assert random.getstate() == rng_state[0]  # lm-eval's simple_evaluate would have reseeded these
    assert np.array_equal(np.random.get_state()[1], rng_state[1])
    assert torch.equal(torch.get_rng_state(), rng_state[2])


def _random_requests(tokenizer, seed: int):
    """Contexts longer than the father's sliding window (16), multi-token options, some shared contexts."""
    from lm_eval.api.instance import Instance

    words = ("the detective examined evidence kitchen garden team allocate task murder suspect motive "
             "한국 문화 역사 질문 보기 answer option keys table brother").split()
    rng = random.Random(seed)
    requests = []
    for q in range(4):
        context = " ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) + (" " if q == 1 else "")
        for k in range(rng.randint(2, 4)):
            cont = " " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
            requests.append(Instance("loglikelihood", doc={}, arguments=(context, cont), idx=k))
    requests.append(Instance("loglikelihood", doc={}, arguments=("answer:", " A"), idx=0))  # one-token path
    lengths = [len(tokenizer(r.args[0]).input_ids) for r in requests]
    assert max(lengths) > 16 * 4
    return requests


@pytest.mark.parametrize("which", ["father", "mother"])
def test_prefix_cache_scorer_equals_stock_hflm(tiny_parents, which):
    """Sliding window + KV sharing (father) and GatedDeltaNet recurrent state (mother) survive the cache copy."""
    model, tok = _load(getattr(tiny_parents, which))
    requests = _random_requests(tok, seed=3)
    kwargs = _lm_kwargs(model, tok, batch_size=2)
    stock, fast = StockLM(**kwargs), PrefixCacheLM(verify=0, **kwargs)  # batch 2: several cache copies per context
    want, got = stock.loglikelihood(requests), fast.loglikelihood(requests)
    assert len(got) == len(want) == len(requests)
    assert max(abs(a[0] - b[0]) for a, b in zip(want, got)) < 1e-4
    assert [a[1] for a in want] == [b[1] for b in got]
    assert fast.tokens_processed < stock.tokens_processed


def test_prefix_cache_scorer_equals_stock_hflm_on_the_darwin_child(tiny_parents):
    """The child the search evaluates: Gemma 4 attention/cache with mother FFNs blended in."""
    from transformers import AutoTokenizer

    from release.breeders.hybrid import build_search_hybrid

    model = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    n = model.config.num_hidden_layers
    model.set_ratios([0.3 if i % 2 else 0.0 for i in range(n)])
    tok = AutoTokenizer.from_pretrained(tiny_parents.father)
    requests = _random_requests(tok, seed=5)
    kwargs = _lm_kwargs(model, tok, batch_size=3)
    want = StockLM(**kwargs).loglikelihood(requests)
    fast = PrefixCacheLM(verify=0, **kwargs)
    got = fast.loglikelihood(requests)
    assert fast.caching and max(abs(a[0] - b[0]) for a, b in zip(want, got)) < 1e-4
    assert [a[1] for a in want] == [b[1] for b in got]


def test_contexts_longer_than_max_length_take_the_stock_truncating_path(father):
    model, tok = father
    requests = _random_requests(tok, seed=6)
    # max_length shorter than every context here: HFLM left-truncates
    kwargs = _lm_kwargs(model, tok, batch_size=4, max_length=24)
    stock, fast = StockLM(**kwargs), PrefixCacheLM(verify=0, **kwargs)
    want, got = stock.loglikelihood(requests), fast.loglikelihood(requests)
    assert max(abs(a[0] - b[0]) for a, b in zip(want, got)) < 1e-5
    assert fast.tokens_processed == stock.tokens_processed  # nothing went through the cache


def test_prefix_cache_scorer_checks_itself_and_falls_back_to_stock(tiny_parents):
    model, tok = _load(tiny_parents.father)
    requests = _random_requests(tok, seed=4)
    kwargs = _lm_kwargs(model, tok, batch_size=8)
    want = StockLM(**kwargs).loglikelihood(requests)
    checked = PrefixCacheLM(verify=2, **kwargs)
    got = checked.loglikelihood(requests)
    assert checked.verified == 2 and checked.caching and checked.max_verified_dll < 1e-4
    assert max(abs(a[0] - b[0]) for a, b in zip(want, got)) < 1e-4
    # A check it cannot pass (negative tolerance): it says so and gives the stock path's answers (which
    # differ from one stock run only by the rounding of a different batch composition).
    strict = PrefixCacheLM(verify=1, noise_factor=-1.0, **kwargs)
    fallback = strict.loglikelihood(requests)
    assert not strict.caching and strict.verified == 1
    assert max(abs(a[0] - b[0]) for a, b in zip(want, fallback)) < 1e-5
    assert [a[1] for a in want] == [b[1] for b in fallback]


# ---- the self-check judges against floating-point noise; no path computes logits it does not score ----

def _musr_like_requests(tokenizer, contexts: int = 2, seed: int = 11):
    """Long shared contexts (300-500 tokens, far past the sliding window) with four multi-token options."""
    from lm_eval.api.instance import Instance

    words = "the detective examined evidence kitchen garden team allocate task murder suspect motive keys".split()
    rng = random.Random(seed)
    requests = []
    for _ in range(contexts):
        context = " ".join(rng.choice(words) for _ in range(rng.randint(150, 250))) + "\nAnswer:"
        for k in range(4):
            cont = " " + " ".join(rng.choice(words) for _ in range(rng.randint(4, 8)))
            requests.append(Instance("loglikelihood", doc={}, arguments=(context, cont), idx=k))
    assert min(len(tokenizer(r.args[0]).input_ids) for r in requests) > 250
    return requests


class _CacheDropsPositions(PrefixCacheLM):
    """Planted defect: the context's cache lacks its last positions (the first option token is still right)."""

    def _prefix(self, ctx):
        first, _ = super()._prefix(ctx)
        _, cache = super()._prefix(ctx[:-3])
        return first, cache


class _OffByOneSlice(PrefixCacheLM):
    """Planted defect: each option feeds its tokens shifted by one (cont[1:] instead of cont[:-1])."""

    @staticmethod
    def _tail_tokens(cont):
        return cont[1:]


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def father_in(request, tiny_parents):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, request.param)
    model = AutoModelForCausalLM.from_pretrained(tiny_parents.father, dtype=dtype).eval()
    tok = AutoTokenizer.from_pretrained(tiny_parents.father)
    requests = _musr_like_requests(tok)
    want = StockLM(**_lm_kwargs(model, tok, batch_size=8)).loglikelihood(requests)
    return dtype, model, tok, requests, want


def test_the_fast_scorer_stays_on_when_it_differs_from_stock_by_rounding_only(father_in):
    dtype, model, tok, requests, want = father_in
    fast = PrefixCacheLM(verify=2, **_lm_kwargs(model, tok, batch_size=8))
    got = fast.loglikelihood(requests)
    assert fast.caching and fast.verified == 2  # both contexts checked (and answered the stock way)
    for check in fast.checks:
        assert 0 < check["noise"] and check["max_dll"] <= check["tolerance"] == 4 * check["noise"]
    worst = fast.max_verified_dll  # fast vs stock on the checked contexts
    if dtype == torch.bfloat16:
        # Real rounding differences: the old fixed 1e-4 tolerance turned the fast scorer off here.
        assert 1e-4 < worst < 0.1
    else:
        assert worst < 1e-4
    assert max(abs(a[0] - b[0]) for a, b in zip(want, got)) <= max(c["noise"] for c in fast.checks)
    picks = [[max(range(4), key=lambda j: lls[4 * q + j][0]) for q in range(2)] for lls in (want, got)]
    assert picks[0] == picks[1]


@pytest.mark.parametrize("defect", [_CacheDropsPositions, _OffByOneSlice])
def test_the_self_check_catches_a_real_defect_in_every_dtype(father_in, defect, caplog):
    dtype, model, tok, requests, want = father_in
    planted = defect(verify=2, **_lm_kwargs(model, tok, batch_size=8))
    with caplog.at_level(logging.WARNING, logger="release.evals.scorer"):
        got = planted.loglikelihood(requests)
    assert not planted.caching  # caught: it scores nothing more from a cache
    check = planted.checks[-1]
    assert check["max_dll"] > check["tolerance"] > 0
    assert "beyond floating-point noise" in caplog.text
    # Every answer is the stock path's (batch compositions differ: within that check's noise).
    assert max(abs(a[0] - b[0]) for a, b in zip(want, got)) <= check["noise"]


def test_no_path_computes_logits_for_positions_it_does_not_score(tiny_parents):
    """Stock HFLM takes an fp32 log-softmax over [batch, sequence, vocab]; ours only over scored positions,
    with HFLM's log-likelihoods bit for bit."""
    from lm_eval.models.huggingface import HFLM

    model, tok = _load(tiny_parents.father)
    requests = _musr_like_requests(tok, contexts=3) + _random_requests(tok, seed=7)  # + one-token options
    lengths = [len(tok(r.args[0] + r.args[1]).input_ids) for r in requests]
    longest_option = max(len(tok(r.args[0] + r.args[1]).input_ids) - len(tok(r.args[0]).input_ids)
                         for r in requests) + 1  # + a merge across the boundary
    positions: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, out: positions.append(out.shape[1]))
    try:
        kwargs = {k: v for k, v in _lm_kwargs(model, tok, batch_size=8).items() if k != "progress"}
        reference = HFLM(**kwargs).loglikelihood(requests, disable_tqdm=True)
        assert max(positions) >= max(lengths) - 1  # stock HFLM: every position of the longest input
        positions.clear()
        stock = StockLM(**_lm_kwargs(model, tok, batch_size=8)).loglikelihood(requests)
        assert stock == reference  # the same log-likelihoods and greedy flags, bit for bit
        assert max(positions) <= longest_option + max(lengths) - min(lengths)  # padding + continuation
        stock_positions, positions[:] = sorted(positions), []
        PrefixCacheLM(verify=0, **_lm_kwargs(model, tok, batch_size=8)).loglikelihood(requests)
        assert max(positions) <= longest_option  # the context's last position, then continuation positions
    finally:
        hook.remove()
    assert stock_positions[len(stock_positions) // 2] < max(lengths) // 4  # most batches: a few positions


# ---- final evaluation, calibration, loading ----

def test_evaluate_models_writes_the_results_the_card_reads(tiny_parents, suite, tmp_path, monkeypatch):
    alive = []
    real_load = final_module.load_model

    def load_one_at_a_time(spec, device, dtype):
        assert all(ref() is None for ref in alive), "the previous model is still alive when loading the next"
        model, tok = real_load(spec, device, dtype)
        alive.append(weakref.ref(model))
        return model, tok

    monkeypatch.setattr(final_module, "load_model", load_one_at_a_time)
    models = {
        "child": ModelSpec(tiny_parents.father, "org/child", None, trust_remote_code=True),
        "father": ModelSpec(tiny_parents.father, "org/father", "a" * 40),
        "mother": ModelSpec(tiny_parents.mother, "org/mother", "b" * 40),
    }
    out = tmp_path / "results.json"
    results = evaluate_models(models, suite, out, scorer="fast", device="cpu", progress=False)
    assert json.loads(out.read_text()) == results
    assert results["split"] == "heldout"
    assert results["tasks"] == {"synthetic": {
        "weight": 1.0, "metric": "acc", "n": 8, "dataset": None, "target": "darwin_synthetic", "filter": "none",
        "dataset_config": None, "split": "test", "num_fewshot": 0, "higher_is_better": True, "search_n": 12,
        "output_types": ["multiple_choice"]}}
    assert list(results["models"]) == ["child", "father", "mother"]
    for name, entry in results["models"].items():
        assert entry["repo"] == models[name].repo and entry["revision"] == models[name].revision
        score = entry["scores"]["synthetic"]
        assert 0 <= score["value"] <= 1
        # Binary metric on n items: lm-eval's mean_stderr is sqrt(p(1-p)/(n-1)).
        p = score["value"]
        assert score["stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 7), abs=1e-12)
        assert entry["fitness"] == {"value": score["value"], "stderr": score["stderr"]}
    # The child here is the father's checkpoint: same items, same model, same scores.
    assert results["models"]["child"]["scores"] == results["models"]["father"]["scores"]
    assert results["seconds"] > 0
    assert len(alive) == 3

    from release.card.model_card import Results  # the card writer's own schema

    assert Results.model_validate(results).tasks["synthetic"].n == 8


def test_weighted_fitness_and_its_stderr():
    from release.evals import weighted_fitness

    value, se = weighted_fitness({"click": 0.6, "musr": 0.4}, {"click": 0.5, "musr": 0.25},
                                 {"click": 0.03, "musr": 0.04})
    assert value == pytest.approx(0.6 * 0.5 + 0.4 * 0.25)
    assert se == pytest.approx(math.sqrt(0.6 ** 2 * 0.03 ** 2 + 0.4 ** 2 * 0.04 ** 2))
    # Weights are normalised: 60/40 means the same as 0.6/0.4.
    assert weighted_fitness({"click": 60, "musr": 40}, {"click": 0.5, "musr": 0.25},
                            {"click": 0.03, "musr": 0.04}) == pytest.approx((value, se))
    assert weighted_fitness({"a": 1.0}, {"a": 0.5}, {"a": None}) == (0.5, None)


@pytest.mark.parametrize("which", ["father", "mother"])
def test_calibration_fitness_is_minus_the_lm_loss(tiny_parents, which):
    model, tok = _load(getattr(tiny_parents, which))
    value = calibration_fitness(model, tok)
    from release.evals.calibration import DEFAULT_TEXT

    ids = tok(DEFAULT_TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert value == pytest.approx(-float(loss), abs=1e-5)
    assert value < 0
    with pytest.raises(ReleaseError, match="fewer than 2 tokens"):
        calibration_fitness(model, tok, text="")


@pytest.mark.parametrize("which", ["father", "mother"])
def test_auto_model_for_causal_lm_loads_every_text_weight(tiny_parents, which):
    """The final evaluation loads the parents with AutoModelForCausalLM: no silent random init."""
    from safetensors import safe_open

    folder = getattr(tiny_parents, which)
    model, _ = _load(folder)
    loaded = model.state_dict()
    checked = 0
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, "pt") as f:
            for key in f.keys():
                if not key.startswith("model.language_model."):
                    continue
                name = key if key in loaded else key.replace("model.language_model.", "model.", 1)
                assert torch.equal(loaded[name], f.get_tensor(key)), key
                checked += 1
    assert checked > 20
