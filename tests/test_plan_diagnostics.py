"""The plan's prediction of the streaming diagnostics' peak memory (issue 25), against what the MRI and the
health check hold when they run on the tiny parents with every probe prompt (the default): the weights to 1%,
and every tensor alive (weights plus the probe activations they keep) within TOLERANCE. Tensors are counted at
each model's (and, for the MRI, mother FFN's) forward, not RSS: at tiny size the allocator's noise would swamp the figures
(bench/bench_diagnostics_memory.py measures RSS at real width). The perplexity logits the plan adds for the
health check (512 x vocab at most) are not seen by these hooks: at tiny size they are left out here."""

from pathlib import Path

import pytest

from release.breeders.emit import emit_child
from release.breeders.hybrid import default_layer_map
from release.config import HealthSpec, load_config
from release.mri.health import health_check
from release.mri.scan import run_mri
from release.parents.metadata import read_folder
from release.plan.checks import parent_checks
from release.plan.costs import diagnostics_peak, probe_positions
from tests.weights_memory import weights_held

ROOT = Path(__file__).resolve().parents[1]
# What the hooks see beyond the prediction: a forward's own activations in flight (the probe's longest batch,
# the perplexity text's), a few percent of the kept ones at tiny width.
TOLERANCE = 0.15
HOOKED = ("ForCausalLM", "MotherFFN")


@pytest.fixture(scope="module")
def predicted(tiny_parents):
    from transformers import AutoTokenizer

    config = load_config(ROOT / "configs/default.yaml")
    config = config.model_copy(update={"genome": config.genome.model_copy(update={"frozen": []})})  # every layer blends
    plan = parent_checks(config, read_folder("father", tiny_parents.father), read_folder("mother", tiny_parents.mother))
    return diagnostics_peak(plan, "float32", probe_positions(AutoTokenizer.from_pretrained(tiny_parents.father), None, 0))


def test_the_plan_predicts_the_mri_peak(tiny_parents, predicted, tmp_path):
    with weights_held(HOOKED, tensors=True) as held:
        run_mri(tiny_parents.father, tiny_parents.mother, tmp_path)
    assert held["weights"] == pytest.approx(predicted.mri_weights, rel=0.01)
    assert held["peak"] == pytest.approx(predicted.mri, rel=TOLERANCE), (held["peak"], predicted.mri)


def test_the_plan_predicts_the_health_check_peak(tiny_parents, predicted, tmp_path):
    genome = {"ratios": [0.4] * 6, "layer_map": default_layer_map(6, 4), "frozen": [], "r_max": 1.0}
    child = emit_child(tiny_parents.father, tiny_parents.mother, genome, tmp_path / "child", progress=False)
    with weights_held(("ForCausalLM",), tensors=True) as held:  # its peak: the child's phase, kept activations complete
        health_check(child, tiny_parents.father, tiny_parents.mother, tmp_path / "out", HealthSpec(),
                     genome["layer_map"], genome["ratios"])
    assert held["weights"] == pytest.approx(predicted.health_weights, rel=0.01)
    expected = predicted.health_weights + predicted.health_kept  # the child's phase, less its perplexity logits
    assert held["peak"] == pytest.approx(expected, rel=TOLERANCE), (held["peak"], expected)
