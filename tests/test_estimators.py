"""Cheap search fitness: IRT anchors and racing, against full scoring (seeded responses, then a tiny live model)."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from release.config import FitnessSpec, TaskSpec
from release.search.estimators.irt import build_estimator, fit_items
from release.search.estimators.race import Race
from release.search.estimators.scoring import IrtFitness, ItemScorer, RaceEvaluation
from release.evals import Evaluator, TaskSuite
from release.evals.items import item_layout


# ---- seeded response matrices: two skills, models that answer alike when they are alike ----

class Population:
    """Items of two skills; a model's answer is deterministic in its ability up to a little noise, so close
    models answer the same items the same way (as merges of one base do)."""

    def __init__(self, items: int = 192, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.rng = rng
        skill = rng.integers(0, 2, items)
        self.alpha = np.abs(rng.normal(1.0, 0.5, (items, 1))) * np.eye(2)[skill]
        self.beta = rng.normal(0, 2, items) + rng.normal(0, 1, items)
        self.father, self.mother = np.array([2.0, -1.0]), np.array([-1.0, 2.0])

    def ability(self, t):  # a merge at share t of the mother is better than both at both skills in the middle
        return (1 - t) * self.father + t * self.mother + 1.5 * np.sin(np.pi * t)

    def answer(self, ts, noise: float = 0.3) -> np.ndarray:
        theta = np.array([self.ability(t) for t in ts])
        margin = theta @ self.alpha.T + self.beta + self.rng.normal(0, noise, (len(ts), len(self.beta)))
        return (margin > 0).astype(float)


def test_irt_fit_recovers_who_is_better_on_what():
    pop = Population(seed=1)
    Y = pop.answer([0.0, 1.0, 0.2, 0.5, 0.8])
    model = fit_items(Y, dims=2, seed=0)
    fitted = model.probabilities(model.theta)
    # The fitted probabilities explain the answers far better than each item's mean does.
    base = np.clip(Y.mean(axis=0), 1e-3, 1 - 1e-3)
    ll = lambda p: np.mean(Y * np.log(p) + (1 - Y) * np.log(1 - p))  # noqa: E731
    assert ll(np.clip(fitted, 1e-6, 1 - 1e-6)) > ll(np.broadcast_to(base, Y.shape)) + 0.1


def test_irt_anchors_are_seeded_weighted_and_exact_with_every_item():
    pop = Population(items=64, seed=2)
    Y = pop.answer([0.0, 1.0, 0.3, 0.6, 0.9])
    w = np.random.default_rng(0).uniform(0.5, 1.5, 64)
    w /= w.sum()
    a, b = build_estimator(Y, w, 12, seed=3), build_estimator(Y, w, 12, seed=3)
    assert np.array_equal(a.anchors, b.anchors) and a.lam == b.lam
    assert len(a.anchors) == 12 and a.anchor_weights.sum() == pytest.approx(1.0)
    everything = build_estimator(Y, w, 64, seed=3)  # every item an anchor: the estimate is the full score
    fresh = pop.answer([0.45])[0]
    assert everything.estimate(fresh[everything.anchors]) == pytest.approx(w @ fresh, abs=1e-12)


def test_irt_ranks_a_generation_like_full_scoring_from_an_eighth_of_the_items():
    pop = Population(seed=1)
    w = np.full(192, 1 / 192)
    Y = pop.answer([0.0, 1.0, *np.random.default_rng(5).uniform(0, 1, 6)])
    estimator = build_estimator(Y, w, 24, seed=0)
    rhos, random_rhos = [], []
    for g in range(8):
        R = pop.answer(pop.rng.uniform(0, 1, 12))
        full = R @ w
        rhos.append(spearmanr(full, [estimator.estimate(r[estimator.anchors]) for r in R])[0])
        random_items = pop.rng.choice(192, 24, replace=False)
        random_rhos.append(spearmanr(full, R[:, random_items].mean(axis=1))[0])
    print('irt', np.mean(rhos), 'random', np.mean(random_rhos))
    assert np.mean(rhos) > 0.7
    assert np.mean(rhos) > np.mean(random_rhos)  # the anchors carry more than as many random items


def test_race_stops_early_on_settled_ranks_and_agrees_with_full_scoring():
    pop = Population(seed=4)
    w = np.full(192, 1 / 192)
    spent, rhos = [], []
    for g in range(6):
        R = pop.answer(pop.rng.uniform(0, 1, 8))
        race = Race(8, w, pop.rng.permutation(192), confidence=0.9, round_items=16, cut=4)
        estimates = race.run(lambda i, items: R[i, items])
        rhos.append(spearmanr(R @ w, estimates)[0])
        spent.append(race.items_scored / R.size)
        full_ones = race.seen == 192
        assert np.allclose(estimates[full_ones], (R @ w)[full_ones])  # all items answered: the exact score
        # whoever the race put in the top half is there in full scoring too, up to settled ties
        top_race, top_full = set(np.argsort(-estimates)[:4]), set(np.argsort(-(R @ w))[:4])
        assert len(top_race & top_full) >= 3
    assert np.mean(rhos) > 0.9 and np.mean(spent) < 0.85


def test_a_race_budget_caps_every_candidates_items_and_keeps_the_top_half():
    pop = Population()
    w = np.full(192, 1 / 192)
    agree, spent = [], []
    for trial in range(10):
        ts = np.linspace(0.05, 0.95, 8)  # a wide generation: merges from one specialist to the other
        R = pop.answer(ts)
        race = Race(8, w, pop.rng.permutation(192), confidence=0.9, round_items=8, cut=4, max_items=24)
        estimates = race.run(lambda i, items: R[i, items])
        assert race.seen.max() <= 24 and race.items_scored <= 8 * 24  # nobody answers past the budget
        spent.append(race.items_scored / R.size)
        agree.append(len(set(np.argsort(-estimates)[:4]) & set(np.argsort(-(R @ w))[:4])))
    assert max(spent) <= 24 / 192
    # an eighth of the items still puts 3 of the 4 truly best in the selected half, on average
    assert np.mean(agree) >= 3.0, agree


def test_irt_draws_fresh_anchors_one_per_cluster_seeded_and_unbiased():
    pop = Population()
    Y = pop.answer(np.linspace(0, 1, 7))
    w = np.full(192, 1 / 192)
    estimator = build_estimator(Y, w, 12, seed=0)
    a, b = estimator.draw(np.random.default_rng(1)), estimator.draw(np.random.default_rng(1))
    assert np.array_equal(a, b) and not np.array_equal(a, estimator.draw(np.random.default_rng(2)))
    assert sorted(estimator.cluster_of[a].tolist()) == list(range(len(estimator.anchors)))  # one per cluster
    # stratified sampling: the anchor estimate averaged over draws is the respondent's full score
    y = pop.answer([0.4])[0]
    rng = np.random.default_rng(3)
    draws = [estimator.anchor_weights @ y[estimator.draw(rng)] for _ in range(3000)]
    assert np.mean(draws) == pytest.approx(w @ y, abs=0.01)
    # and the estimate from a drawn set uses those answers where it observed them
    y_hat = estimator.predict(y[a], a)
    assert np.array_equal(y_hat[a], y[a])


def test_race_at_full_confidence_scores_everything_exactly():
    pop = Population(items=48, seed=5)
    R = pop.answer(pop.rng.uniform(0, 1, 5))
    w = np.full(48, 1 / 48)
    race = Race(5, w, np.arange(48), confidence=1 - 1e-12, round_items=8)
    assert np.allclose(race.run(lambda i, items: R[i, items]), R @ w)
    assert race.items_scored == R.size


def test_race_refuses_answers_out_of_order():
    race = Race(2, np.full(4, 0.25), np.array([2, 0, 3, 1]), round_items=2)
    with pytest.raises(ValueError):
        race.record(0, np.array([0, 2]), np.ones(2))


# ---- a tiny live model, real lm-eval scoring ----

SPEC = FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0, search_size=24, heldout_size=8)])


@pytest.fixture(scope="module")
def live(tiny_parents, tmp_path_factory):
    from transformers import AutoTokenizer

    from release.breeders.hybrid import build_search_hybrid

    model = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    tok = AutoTokenizer.from_pretrained(tiny_parents.father)
    suite = TaskSuite.from_spec(SPEC, tmp_path_factory.mktemp("evals"), seed=0)
    evaluator = Evaluator(model, tok, suite, split="search", scorer="fast", batch_size=8)
    return model, evaluator, suite


def _generation(n_layers: int, k: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, n_layers).round(3).tolist() for _ in range(k)]


def test_item_layout_reproduces_the_evaluators_fitness_from_per_item_scores(live):
    model, evaluator, suite = live
    layout = item_layout(suite, "search")
    assert len(layout) == 24 and layout.weights.sum() == pytest.approx(1.0)
    model.set_ratios([0.3] * model.config.num_hidden_layers)
    result = evaluator.evaluate()
    scores, tokens = evaluator.score_items(layout.samples(range(len(layout))))
    y = layout.values(scores, range(len(layout)))
    assert layout.weights @ y == pytest.approx(result.fitness, abs=1e-12)
    assert layout.task_scores(y) == pytest.approx(result.scores)
    assert layout.stderr(y) == pytest.approx(result.stderr)
    assert tokens == pytest.approx(result.tokens, rel=0.05)  # the same items cost the same tokens
    half, half_tokens = evaluator.score_items(layout.samples(range(12)))
    assert layout.values(half, range(12)).tolist() == y[:12].tolist() and half_tokens < tokens


def test_irt_and_race_fitness_rank_a_generation_like_full_scoring_on_the_live_model(live, tmp_path):
    model, evaluator, suite = live
    layout = item_layout(suite, "search")
    n = model.config.num_hidden_layers
    scorer = ItemScorer(evaluator, layout, model.set_ratios)
    calibration = [[0.0] * n, [1.0] * n, *_generation(n, 3, seed=1)]
    irt = IrtFitness(scorer, calibration, anchors=8, dims=2, seed=0, folder=tmp_path / "irt")
    race = RaceEvaluation(scorer, [0.5] * n, confidence=0.9, round_items=6, tie=0.0, seed=0, folder=tmp_path / "race")
    genomes = _generation(n, 6, seed=2)
    full = [irt.full(g)[0] for g in genomes]
    estimated = [irt(g)[0] for g in genomes]
    raced = [None] * len(genomes)
    race.evaluate(genomes, lambda k, value, scores, seconds, worker: raced.__setitem__(k, value))
    if len(set(full)) > 2:
        assert spearmanr(full, estimated)[0] > 0.3 and spearmanr(full, raced)[0] > 0.5
    irt_record, race_record = irt.record(), race.record()
    assert irt_record["anchors"] == 8 and irt_record["candidates"] == 6
    assert irt_record["tokens_full"] == irt_record["full_tokens"] * 6
    # the anchors cost a third of the items: the candidates' tokens are well under a full evaluation each
    assert irt_record["candidate_tokens"] < 0.6 * irt_record["tokens_full"]
    print(full, estimated, raced, irt_record, race_record)
    assert race_record["candidates"] == 6 and race_record["calibration_tokens"] == race_record["full_tokens"]
    assert race_record["tokens_scored"] == race_record["calibration_tokens"] + race_record["candidate_tokens"]
    # a rebuilt estimator reuses its calibration answers (a resumed search scores no probe twice)
    again = IrtFitness(scorer, calibration, anchors=8, dims=2, seed=0, folder=tmp_path / "irt")
    assert again.ledger.calibration_tokens == irt.ledger.calibration_tokens
    assert np.array_equal(again.estimator.anchors, irt.estimator.anchors)


# ---- config ----

def _release_config(**fitness):
    from release.config import ReleaseConfig

    return ReleaseConfig.model_validate({
        "name": "est", "father": {"repo": "a/f"}, "mother": {"repo": "a/m"}, "child": {"repo": "a/c"},
        "fitness": {"tasks": [{"name": "synthetic", "weight": 1.0}], **fitness}})


def test_estimator_config_defaults_to_full_and_refuses_what_it_cannot_do():
    from pydantic import ValidationError

    assert _release_config().fitness.estimator == "full"
    irt = _release_config(estimator="irt", irt={"anchors": 16, "probes": 2}).fitness
    assert (irt.irt.anchors, irt.irt.probes, irt.race.confidence) == (16, 2, 0.9)
    with pytest.raises(ValidationError, match="in this process only"):
        from release.config import ReleaseConfig

        ReleaseConfig.model_validate({**_release_config(estimator="race").model_dump(mode="json"),
                                      "search": {"workers": 2}})
    with pytest.raises(ValidationError, match="kind: benchmark"):
        FitnessSpec(kind="calibration", estimator="irt")
    with pytest.raises(ValidationError):
        FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0)], estimator="tiny")


def test_the_child_is_chosen_among_the_elite_by_full_scoring(live, tmp_path):
    import dataclasses
    import json

    model, evaluator, suite = live
    n = model.config.num_hidden_layers
    scorer = ItemScorer(evaluator, item_layout(suite, "search"), model.set_ratios)
    irt = IrtFitness(scorer, [[0.0] * n, [1.0] * n], anchors=6, dims=1, seed=0, folder=tmp_path)
    genomes = _generation(n, 5, seed=3)
    # estimated values that order the candidates 0 > 1 > 2 > 3 > 4; candidate 0 appears twice
    lines = [{"generation": 0, "candidate": k, "genome": g, "fitness": 1.0 - 0.1 * k, "scores": {}}
             for k, g in enumerate(genomes)] + [{"generation": 1, "candidate": 0, "genome": genomes[0],
                                                 "fitness": 0.95, "scores": {}}]
    log_path = tmp_path / "candidates.jsonl"
    log_path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    @dataclasses.dataclass(frozen=True)
    class Result:
        genome: list
        fitness: float
        scores: dict
        tau: float | None = None
        x: list | None = None

    before = irt.ledger.full_scoring_tokens
    chosen = irt.choose_child(Result(genomes[0], 1.0, {}), log_path, elite=3)
    truth = [irt.full(g)[0] for g in genomes[:3]]  # the three best distinct estimates
    assert chosen.fitness == max(truth) and chosen.genome == genomes[truth.index(max(truth))]
    assert irt.record()["full_scoring_tokens"] > before and irt.record()["tokens_scored"] == (
        irt.ledger.calibration_tokens + irt.ledger.candidate_tokens + irt.ledger.full_scoring_tokens)

    # The search's final mean joins the pool, and with elite 0 it is the child (one full scoring)
    @dataclasses.dataclass(frozen=True)
    class WithMean(Result):
        mean: list | None = None
        mean_x: list | None = None

    mean = _generation(n, 1, seed=9)[0]
    scored = irt.ledger.full_scoring_tokens
    only_mean = irt.choose_child(WithMean(genomes[0], 1.0, {}, mean=mean, mean_x=mean), log_path, elite=0)
    assert only_mean.genome == mean and only_mean.fitness == irt.full(mean)[0] and only_mean.x == mean
    assert irt.ledger.full_scoring_tokens > scored
    both = irt.choose_child(WithMean(genomes[0], 1.0, {}, mean=mean, mean_x=mean), log_path, elite=3)
    assert both.fitness == max(truth + [irt.full(mean)[0]])
    with pytest.raises(ValueError, match="fitness.elite"):
        irt.choose_child(Result(genomes[0], 1.0, {}), log_path, elite=0)  # no mean, no elite: nothing to choose


def test_the_start_check_reuses_the_starts_calibration_answers_and_compares_item_by_item(live, tmp_path):
    from release.search.start import keep_start, one_at_a_time

    model, evaluator, suite = live
    n = model.config.num_hidden_layers
    scorer = ItemScorer(evaluator, item_layout(suite, "search"), model.set_ratios)
    start = [0.5] * n
    irt = IrtFitness(scorer, [[0.0] * n, [1.0] * n, start], anchors=6, dims=1, seed=0, folder=tmp_path / "irt")
    race = RaceEvaluation(scorer, start, confidence=0.9, round_items=6, tie=0.0, seed=0, folder=tmp_path / "race")
    other = _generation(n, 1, seed=4)[0]
    layout = scorer.layout
    y_other, y_start = scorer.full(other)[0], scorer.full(start)[0]
    d = y_other - y_start  # one task: the paired standard error is the per-item differences'
    expected = float(np.std(d, ddof=1) / np.sqrt(len(d)))
    for estimator in (irt, race):
        before = evaluator.lm.tokens_processed
        record = keep_start(other, start, one_at_a_time(estimator.full_fitness), margin=2.0)
        # only the other genome was scored: the start's answers were kept from the calibration
        assert evaluator.lm.tokens_processed - before == scorer.full(other)[1]
        assert record["start_fitness"] == pytest.approx(layout.weights @ y_start)
        assert record["noise"] == pytest.approx(expected)  # item by item, as with full scoring


def test_calibration_genomes_are_the_spaces_corners_and_seeded_first_generation_draws():
    from release.breeders.genome import Gene, GeneSpace
    from release.search.estimators.scoring import calibration_genomes

    space = GeneSpace([Gene("r.0", 0.0, 1.0, 0.5), Gene("r.1", 0.0, 1.0, 0.5, pinned=0.0),
                       Gene("tau", 0.0, 0.5, 0.2, scale=0.5)])
    genomes = calibration_genomes(space, sigma0=0.3, probes=3, seed=1)
    assert genomes[:2] == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.5]]  # every free gene at its low, then its high end
    assert genomes[2] == space.full(space.x0)  # the start, which the start check scores in full anyway
    assert len(genomes) == 6 and genomes == calibration_genomes(space, sigma0=0.3, probes=3, seed=1)
    assert genomes != calibration_genomes(space, sigma0=0.3, probes=3, seed=2)
    for g in genomes[3:]:
        assert 0 <= g[0] <= 1 and g[1] == 0.0 and 0 <= g[2] <= 0.5


def test_full_scoring_keeps_the_stage_and_checkpoint_keys_of_runs_made_before_estimators():
    from release.run.stages import digest

    spec = FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0, search_size=48, heldout_size=96)])
    # the key text and checkpoint fields of this spec before fitness.estimator existed
    before = ("kind='benchmark' tasks=[TaskSpec(name='synthetic', weight=1.0, search_size=48, heldout_size=96)] "
              "data_dir=None scorer='fast' batch_size=8 calibration_text=None")
    assert str(spec) == before and digest([spec]) == digest([before])
    assert set(spec.search_key()) == {"kind", "tasks", "data_dir", "scorer", "batch_size", "calibration_text"}
    irt = spec.model_copy(update={"estimator": "irt"})
    assert "estimator='irt'" in str(irt) and "irt" in irt.search_key() and digest([irt]) != digest([spec])


# ---- in the release: recorded, and never used by the final evaluation ----

def test_a_release_with_irt_records_it_and_its_final_evaluation_scores_every_heldout_item(local_hub, tmp_path):
    import json
    import os
    import uuid

    from release.config import ReleaseConfig
    from release.pipeline import RunOptions, run_release
    from release.search.fitness import evaluate_release

    ns = f"est-{uuid.uuid4().hex[:6]}"
    raw = {"name": "est", "tiny_parents": True, "father": {"repo": f"{ns}/father"}, "mother": {"repo": f"{ns}/mother"},
           "child": {"repo": f"{ns}/child", "max_shard_size": "200KB"}, "hub": {"endpoint": local_hub.url},
           "genome": {"r_max": 0.6, "init_mean": 0.3}, "health": {"enabled": False},
           "search": {"popsize": 4, "sigma0": 0.2, "max_generations": 2, "seed": 3},
           "fitness": {"tasks": [{"name": "synthetic", "weight": 1.0, "search_size": 24, "heldout_size": 16}],
                       "estimator": "irt", "irt": {"anchors": 6, "probes": 1}, "elite": 2},
           "runs_dir": str(tmp_path / "runs")}
    config = ReleaseConfig.model_validate(raw)
    os.environ["HF_TOKEN"] = local_hub.tokens[0]
    try:
        run_release(config, RunOptions(only=("card",), progress=False))
    finally:
        os.environ.pop("HF_TOKEN", None)
    stages = json.loads((config.run_dir / "stages.json").read_text())
    record = stages["breed"]["result"]["estimator"]
    # the corners, the start and one probe
    assert record["estimator"] == "irt" and record["anchors"] == 6 and record["calibration_genomes"] == 4
    assert record["candidates"] == 8 and record["tokens_full"] == 8 * record["full_tokens"]
    assert record["tokens_scored"] == record["calibration_tokens"] + record["candidate_tokens"] + record["full_scoring_tokens"]
    # the searched child is the search's final mean or one of its candidates, chosen by a full score
    log = [json.loads(line) for line in (config.run_dir / "breed" / "candidates.jsonl").read_text().splitlines()]
    mean = json.loads((config.run_dir / "breed" / "best.json").read_text())["mean"]
    searched = stages["breed"]["result"]["searched_genome"]
    assert record["child_from"] in ("mean", "elite")
    assert searched == mean if record["child_from"] == "mean" else searched in [line["genome"] for line in log]

    results = json.loads((config.run_dir / "eval" / "results.json").read_text())
    assert results["tasks"]["synthetic"]["n"] == 16
    # the same final evaluation with full scoring configured: the same numbers (the estimator never reaches it)
    full = config.model_copy(update={"fitness": config.fitness.model_copy(update={"estimator": "full"})})
    again = evaluate_release(full, stages["pull"]["result"], config.run_dir / "child", tmp_path / "full.json",
                             progress=False)
    for role in ("child", "father", "mother"):
        assert again["models"][role]["scores"] == results["models"][role]["scores"]
        assert again["models"][role]["fitness"] == results["models"][role]["fitness"]
    card = (config.run_dir / "child" / "README.md").read_text()
    assert "| estimator      | IRT: each generation answered 6 anchor items of 24, one drawn per cluster" in card


# ---- on the trained zoo: estimates that follow full scoring where it means something ----

@pytest.fixture(scope="module")
def zoo_live(tmp_path_factory):
    zoo = pytest.importorskip("release.zoo.parents", reason="the trained zoo (release/zoo/) is not in this checkout")
    from transformers import AutoTokenizer

    from release.breeders import get_breeder

    tmp = tmp_path_factory.mktemp("zoo")
    writers = zoo.zoo_parent_writers("linear")
    father, mother = writers["father"](tmp / "father"), writers["mother"](tmp / "mother")
    config = _release_config_for_zoo(tmp)
    live = get_breeder("linear").build_live(father, mother, config, device="cpu", dtype=__import__("torch").float32)
    suite = TaskSuite.from_spec(config.fitness, tmp / "evals", seed=0)
    evaluator = Evaluator(live.model, AutoTokenizer.from_pretrained(father), suite, split="search", batch_size=8)
    return live, evaluator, suite


def _release_config_for_zoo(tmp):
    from release.config import ReleaseConfig

    tasks = [{"name": n, "weight": 1.0, "search_size": 16, "heldout_size": 8} for n in ("zoo_lang_a", "zoo_lang_b")]
    return ReleaseConfig.model_validate({
        "name": "zoo-est", "father": {"repo": "a/f"}, "mother": {"repo": "a/m"}, "child": {"repo": "a/c"},
        "breed": {"method": "linear"}, "runs_dir": str(tmp), "fitness": {"tasks": tasks}})


def test_on_the_zoo_irt_and_race_rank_a_generation_like_full_scoring(zoo_live, tmp_path):
    from release.search.estimators.scoring import calibration_genomes

    live, evaluator, suite = zoo_live
    scorer = ItemScorer(evaluator, item_layout(suite, "search"), live.apply)
    rng = np.random.default_rng(0)
    # a wide generation (an early one, large sigma): from near one specialist to near the other
    generation = [live.space.full(np.clip(t + 0.05 * rng.standard_normal(len(live.space.x0)), 0, 1).tolist())
                  for t in (0.05, 0.3, 0.5, 0.7, 0.95)]
    irt = IrtFitness(scorer, calibration_genomes(live.space, 0.3, 1, seed=0), anchors=8, dims=2, seed=0,
                     folder=tmp_path / "irt")
    truth = [irt.full(g)[0] for g in generation]
    estimated = [irt(g)[0] for g in generation]  # on the representative anchors
    drawn = [None] * len(generation)  # as the search runs it: anchors drawn for the generation
    irt.evaluate(generation, lambda k, value, scores, seconds, worker: drawn.__setitem__(k, value))
    race = RaceEvaluation(scorer, live.space.full(list(live.space.x0)), confidence=0.9, round_items=8, tie=0.0, seed=0,
                          folder=tmp_path / "race")
    raced = [None] * len(generation)
    race.evaluate(generation, lambda k, value, scores, seconds, worker: raced.__setitem__(k, value))
    print("full", truth, "irt", estimated, drawn, "race", raced)
    assert max(truth) - min(truth) > 0.1  # trained specialists: merges differ by more than noise
    assert spearmanr(truth, estimated)[0] >= 0.6 and spearmanr(truth, drawn)[0] >= 0.6
    assert spearmanr(truth, raced)[0] >= 0.8
    assert irt.record()["candidate_tokens"] < 0.5 * irt.record()["tokens_full"]  # 8 anchors of 32 items
