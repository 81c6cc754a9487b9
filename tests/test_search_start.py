"""Issue 28: defaults for trained parents, the winner's-curse guard at the start, the transplant's noise floor."""

import math

import pytest

from release.config import ReleaseConfig
from release.mri.transplant import NOISE_FLOOR, transplant
from release.search.start import keep_start, paired_stderr

BASE = {"name": "t", "father": {"repo": "a/f"}, "mother": {"repo": "a/m"}, "child": {"repo": "a/c"},
        "fitness": {"kind": "calibration"}}


def test_weight_merges_start_neutral_unless_the_config_says_otherwise():
    merge = ReleaseConfig.model_validate({**BASE, "breed": {"method": "dare_ties"}})
    assert merge.genome.frozen == [] and (merge.genome.init_mean, merge.genome.r_max) == (0.5, 1.0)
    assert merge.search.start_margin == 2.0
    own = ReleaseConfig.model_validate({**BASE, "breed": {"method": "linear"}, "genome": {"init_mean": 0.3},
                                        "search": {"start_margin": 0}})
    assert (own.genome.init_mean, own.genome.r_max, own.search.start_margin) == (0.3, 1.0, 0.0)
    blend = ReleaseConfig.model_validate(BASE)  # ffn_blend keeps its own defaults
    assert (blend.genome.init_mean, blend.genome.r_max, blend.search.start_margin) == (0.1, 0.5, 0.0)
    assert merge.breed.density_min >= 0.5  # DARE of trained parents collapses at lower densities


def _fitness(values: dict, items: dict | None = None, stderr: float | None = 0.02):
    calls = []

    def fitness(genome):
        calls.append(list(genome))
        fitness.stderr = stderr
        key = tuple(genome)
        return values[key], {"t": values[key]}

    fitness.calls = calls
    if items is not None:
        fitness.items = lambda: (items[tuple(calls[-1])], {"t": 1.0})
    return fitness


def test_the_start_ships_unless_the_best_beats_it_beyond_the_margin():
    start, best = [0.5, 0.5], [0.7, 0.4]
    # a gain of 0.03 against 2 x hypot(0.02, 0.02) = 0.057: within the winner's curse, the start ships
    near = _fitness({tuple(best): 0.83, tuple(start): 0.80})
    record = keep_start(best, start, near, margin=2.0)
    assert near.calls == [best, start]  # both scored again, side by side
    assert record["kept_start"] and record["genome"] == start
    assert record["noise"] == pytest.approx(math.hypot(0.02, 0.02)) and "the start ships" in record["reason"]
    far = _fitness({tuple(best): 0.90, tuple(start): 0.80})
    record = keep_start(best, start, far, margin=2.0)
    assert not record["kept_start"] and record["genome"] == best and "the searched best ships" in record["reason"]
    same = _fitness({})
    assert keep_start(start, start, same, margin=2.0)["genome"] == start and same.calls == []


def test_the_noise_is_paired_over_items_when_the_fitness_reports_them():
    start, best = [0.5], [0.6]
    # the best answers 6 more of 40 items and never loses one the start got: a clear paired gain
    a = {"t": {i: 1.0 if i < 26 else 0.0 for i in range(40)}}
    b = {"t": {i: 1.0 if i < 20 else 0.0 for i in range(40)}}
    fitness = _fitness({tuple(best): 0.65, tuple(start): 0.50}, items={tuple(best): a, tuple(start): b},
                       stderr=0.079)
    d = [1.0] * 6 + [0.0] * 34
    expected = math.sqrt(sum((x - 0.15) ** 2 for x in d) / 39 / 40)
    assert paired_stderr(a, b, {"t": 1.0}) == pytest.approx(expected)
    record = keep_start(best, start, fitness, margin=2.0)
    assert record["noise"] == pytest.approx(expected) and not record["kept_start"]  # unpaired would keep it


def test_the_transplant_noise_is_never_zero():
    genome = [0.05, 0.5]

    def fitness(g):  # a snap that loses less than the floor
        return (0.800 if g == genome else 0.800 - NOISE_FLOOR / 2), {}

    fitness.stderr = 0.0  # e.g. a fitness that reports none
    record = transplant(genome, fitness, thresholds=(0.15, 0.85))
    assert record["noise"] == NOISE_FLOOR > 0 and record["kept"]
