"""The card's MRI and health sections come from the run's own records: darwin_genome.json and health.json."""

import json
from pathlib import Path

from PIL import Image

from release.card.model_card import render_model_card
from tests.test_card import FIXTURES, _config, _section, _table_row

R_MRI = [0.08, 0.3, 0.42, 0.5, 0.9, 0.61]


def _genome():
    genome = json.loads((FIXTURES / "genome.json").read_text())
    genome["ratios"] = [0.0, 0.12, 0.3, 0.0, 1.0, 0.4875]  # layer 4 transplanted to the mother's FFN
    genome["layer_kinds"] = ["father", "blend", "blend", "father", "mother", "blend"]
    genome["mri"] = {"trust": True, "tau": 0.4123, "r_mri": R_MRI, "thresholds": [0.15, 0.85], "static_weight": 0.4,
                     "father_dominant": [0], "mother_dominant": [4]}
    genome["transplant"] = {"thresholds": [0.15, 0.85], "kept": True, "reason": "kept", "father_layers": [0],
                            "mother_layers": [4], "searched_fitness": 0.5447, "snapped_fitness": 0.5439,
                            "noise": 0.004}
    return genome


def _health(flagged=()):
    layers = [{"layer": i, "kind": k, "cos_father": 1.0 - 0.1 * i, "cos_mother": 0.2 + 0.1 * i,
               "hidden_cos_father": 0.99, "flagged": i in flagged}
              for i, k in enumerate(["father", "blend", "blend", "father", "mother", "blend"])]
    return {"passed": not flagged, "reasons": [f"layers {', '.join(map(str, flagged))} diverge from both parents"]
            if flagged else [], "flagged_layers": list(flagged), "layers": layers,
            "perplexity": {"child": 301.5, "father": 298.25, "mother": 310.0},
            "generation": {"prompt": "The capital of France is", "new_tokens": 8, "text": "x"},
            "thresholds": {"min_cosine": 0.5, "max_norm_ratio": 3.0, "max_perplexity_ratio": 2.0}}


def test_card_shows_r_mri_beside_final_r_tau_transplant_and_health(tmp_path):
    render_model_card(_config(), _genome(), None, FIXTURES / "search_log.jsonl", tmp_path, health=_health())
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    mri = _section(text, "## Darwin MRI")
    assert "tau = 0.412" in mri
    assert _table_row(mri, "    4") == ["4", "0.900", "1.000", "mother", "mother-dominant"]
    assert _table_row(mri, "    0") == ["0", "0.080", "0.000", "father", "father-dominant"]
    assert "snapping layers 0, 4 scored\n0.544 against the searched genome's 0.545" in mri
    assert "so the snap was kept" in mri
    assert "3 father FFN, 1 mother FFN,\n1 blend" not in mri and "2 father FFN, 1 mother FFN,\n3 blend" in mri
    health = _section(text, "## Health check")
    assert "**passed**" in health
    assert _table_row(health, "    2") == ["2", "blend", "0.800", "0.400", "0.990", ""]
    assert "child 301.50,\nfather 298.25, mother 310.00" in health
    for png in ("mri.png", "health.png"):
        assert Image.open(tmp_path / png).size == (800, 360)
        assert f"]({png})" in text


def test_card_says_when_the_snap_was_dropped_and_a_layer_failed(tmp_path):
    genome = _genome()
    genome["ratios"][4], genome["layer_kinds"][4] = 0.5, "blend"
    genome["transplant"].update(kept=False, snapped_fitness=0.41)
    render_model_card(_config(), genome, None, None, tmp_path, health=_health(flagged=[2]))
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "dropped: the searched genome ships" in _section(text, "## Darwin MRI")
    assert "**FAILED: layers 2 diverge from both parents**" in text
    assert _table_row(_section(text, "## Health check"), "    2")[-1] == "flagged"


def test_without_mri_or_health_there_are_no_sections_and_no_stale_charts(tmp_path):
    (tmp_path / "mri.png").write_bytes(b"old")
    render_model_card(_config(), json.loads((FIXTURES / "genome.json").read_text()), None, None, tmp_path)
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "## Darwin MRI" not in text and "## Health check" not in text
    assert not (tmp_path / "mri.png").exists()
