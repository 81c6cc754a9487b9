"""Issue 28, end to end through the real CLI: a calibration search that reports benchmark tasks on held-out
items, a card that says what was optimised, and a rerun after removing the (report-only) tasks that keeps
the finished search."""

import json
import random
from pathlib import Path

import yaml

from tests.background import early_run
from tests.cli import ROOT, free_port, run_cli

WORDS = "the quick brown fox jumps over a lazy dog while seven bakers sing near old harbour walls".split()


@early_run
def calibration_release(tmp_path: Path, env: dict):
    """The first release, in the background from the session's start (tests/background.py)."""
    rng = random.Random(0)
    text = tmp_path / "calibration.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(40)))
    raw = yaml.safe_load((ROOT / "configs/default-same-arch.yaml").read_text())
    raw.pop("space")
    raw["runs_dir"] = str(tmp_path / "runs")
    raw["hub"].update(local_root=str(tmp_path / "hub"), local_port=free_port())
    raw["breed"] = {"method": "linear"}
    raw["genome"].pop("transplant", None)
    raw["search"].update(popsize=4, max_generations=1)
    raw["fitness"] = {"kind": "calibration", "calibration_text": str(text),
                      "calibration": {"chunk_tokens": 64, "heldout": 0.25},
                      "tasks": [{"name": "synthetic", "weight": 1.0, "search_size": 16, "heldout_size": 32}]}
    config = tmp_path / "calibration.yaml"
    config.write_text(yaml.safe_dump(raw))
    return tmp_path, raw, config, run_cli(tmp_path, "run", str(config), environ=env)


def test_a_calibration_search_reports_held_out_tasks_and_survives_an_unrelated_edit(calibration_release):
    tmp_path, raw, config, out = calibration_release
    assert out.returncode == 0, out.stderr[-3000:]

    run = tmp_path / "runs" / raw["name"]
    results = json.loads((run / "eval" / "results.json").read_text())
    facts = results["calibration"]
    assert facts["mode"] == "whole text" and facts["chunk_tokens"] == 64
    assert facts["heldout_tokens"] > 0 and facts["search_tokens"] > 3 * facts["heldout_tokens"] / 2
    for role in ("child", "father", "mother"):  # both signals scored on what the search never saw
        model = results["models"][role]
        assert model["calibration"]["tokens"] == facts["heldout_tokens"] and model["calibration"]["stderr"] > 0
        assert model["scores"]["synthetic"]["value"] >= 0 and model["fitness"]["stderr"] is not None
    genome = json.loads((run / "child" / "darwin_genome.json").read_text())
    assert genome["search"]["fitness"]["tasks"] == {}  # the tasks were reported, not optimised
    card = (run / "child" / "README.md").read_text()
    assert f"{facts['search_tokens']:,} tokens scored, in chunks of 64" in card and "calibration.txt" in card
    assert "Held-out log-likelihood per token" in card and f"({facts['heldout_tokens']:,} tokens)" in card
    assert "| Synthetic" in card or "| synthetic" in card.lower()
    assert str(tmp_path) not in card

    search_log = (run / "breed" / "candidates.jsonl").read_bytes()
    raw["fitness"].pop("tasks")  # the tasks only fed the report: the finished search stands
    config.write_text(yaml.safe_dump(raw))
    again = run_cli(tmp_path, "run", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    release = json.loads((run / "release.json").read_text())
    assert "breed" not in release["stages_run"] and "evaluate" in release["stages_run"]
    assert (run / "breed" / "candidates.jsonl").read_bytes() == search_log
    card = (run / "child" / "README.md").read_text()
    assert "Held-out log-likelihood per token" in card and "Synthetic" not in card
