"""`make release CONFIG=configs/default-same-arch.yaml` end to end, offline: the real CLI in a subprocess
with its own HF home and local Hub endpoint (only the run folder, the store and the port are moved).
The release and the reproduction start with the session, in the background (tests/background.py)."""

import json
from pathlib import Path

import yaml

from tests.background import early_run
from tests.cli import ROOT, free_port, run_cli


@early_run
def same_arch_release(tmp: Path, env: dict):
    """The default with a shorter search, released; then `darwin-release reproduce` on its child."""
    raw = yaml.safe_load((ROOT / "configs/default-same-arch.yaml").read_text())
    raw["runs_dir"] = str(tmp / "runs")
    raw["hub"].update(local_root=str(tmp / "hub"), local_port=free_port())
    raw["search"].update(popsize=4, max_generations=1)  # the config's own search is longer; the path is the same
    raw["fitness"]["tasks"][0].update(search_size=16, heldout_size=32)
    config = tmp / "same-arch.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = run_cli(tmp, "run", str(config), environ=env)
    if out.returncode != 0:
        return tmp, raw, config, out, None
    release = json.loads((tmp / "runs" / raw["name"] / "release.json").read_text())
    again = run_cli(tmp, "reproduce", f"{release['child_repo']}@{release['child_revision']}", "--config", str(config),
                    environ=env)
    return tmp, raw, config, out, again


def test_same_architecture_default_releases_a_stock_child(same_arch_release):
    tmp_path, raw, config, out, again = same_arch_release
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trust_remote_code" not in out.stdout  # the printed load line needs none

    run = tmp_path / "runs" / raw["name"]
    release = json.loads((run / "release.json").read_text())
    assert release["method"] == "dare_ties" and release["trust_remote_code"] is False
    assert release["stages_run"] == ["pull", "breed", "emit", "health", "evaluate", "card", "push", "space", "verify"]
    # The health check ran on the stock child against both parents, passed, and let the push go on.
    assert release["health"]["passed"] and release["health"]["flagged_layers"] == []
    health = json.loads((run / "health" / "health.json").read_text())
    assert len(health["layers"]) == 6 and all(row["cos_father"] > 0.5 for row in health["layers"])
    assert release["verify"]["max_abs_logit_diff"] == 0.0 and release["verify"]["reply"].strip()

    child = run / "child"
    genome = json.loads((child / "darwin_genome.json").read_text())
    assert genome["method"] == "dare_ties" and genome["seed"] == raw["search"]["seed"]
    assert genome["father"] == release["father"] and genome["mother"] == release["mother"]
    assert genome["frozen"] == []  # trained parents' defaults: no frozen layer, a neutral start
    assert release["search"]["start"]["reason"]  # the start check ran (search.start_margin 2 by default)
    assert 0.5 <= genome["density"] <= 1.0
    # The transplant rule (on in the default): measured, recorded in the genome, release.json and the card.
    assert genome["transplant"]["thresholds"] == [0.15, 0.85]
    assert release["transplant"]["kept"] == genome["transplant"]["kept"]
    if genome["transplant"]["kept"]:
        shares = genome["ratios"]["attn"] + genome["ratios"]["ffn"] + genome["ratios"]["norms"]
        assert all(s == 0 or 0.15 <= s <= 0.85 or s == 1 for s in shares)
    cfg = json.loads((child / "config.json").read_text())
    assert cfg["architectures"] == ["Gemma4ForConditionalGeneration"] and "auto_map" not in cfg
    assert not list(child.glob("*.py"))
    card = (child / "README.md").read_text()
    assert "**dare_ties**" in card and "https://arxiv.org/abs/2311.03099" in card
    assert "trust_remote_code" not in card
    # The tiny father's repo has no card: the child's class (multimodal Gemma 4) gives the pipeline_tag.
    assert yaml.safe_load(card.split("---\n")[1])["pipeline_tag"] == "image-text-to-text"
    assert "**Transplant**" in card and "The transplant rule was off" not in card
    assert "## Health check" in card and "Result: **passed**" in card and (child / "health.png").is_file()
    # mergekit out: the child ships the merge as a mergekit config, pinned to the parents' commits, in the card too.
    mergekit = yaml.safe_load((child / "mergekit_config.yml").read_text())
    assert mergekit["merge_method"] == "dare_ties" and mergekit["base_model"] == "{repo}@{revision}".format(**release["father"])
    assert mergekit["models"][0]["model"] == "{repo}@{revision}".format(**release["mother"])
    assert "### Configuration" in card and "merge_method: dare_ties" in card and "not to these bytes" in card
    assert "survivors rescaled by 1 / density" in card and genome["dare_rescale"] == "inverse_density"

    # `darwin-release reproduce`: the pushed child rebuilt from its record (method, genome, seed, parents' commits)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"reproduced bit for bit: {release['child_repo']}@{release['child_revision'][:12]} (dare_ties)" in again.stdout
