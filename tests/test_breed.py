"""Breeding end to end on the tiny parents: search on the live hybrid, emit the child, load it back."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.pipeline import RunOptions, run_release
from tests.background import early_run

ROOT = Path(__file__).resolve().parents[1]
FROZEN = [2, 4]


def _config(endpoint: str, tmp_path, **overrides) -> dict:
    ns = f"breed-{uuid.uuid4().hex[:6]}"
    raw = {
        "name": "breed-test",
        "tiny_parents": True,
        "father": {"repo": f"{ns}/father"},
        "mother": {"repo": f"{ns}/mother"},
        "child": {"repo": f"{ns}/child", "max_shard_size": "200KB"},
        "genome": {"frozen": FROZEN, "r_max": 0.6, "init_mean": 0.3},
        "search": {"popsize": 4, "sigma0": 0.2, "max_generations": 2, "seed": 3},
        "fitness": {"kind": "calibration"},
        "hub": {"endpoint": endpoint},
        "runs_dir": str(tmp_path / "runs"),
    }
    raw.update(overrides)
    return raw


@pytest.fixture(scope="module")
def bred(local_hub, tmp_path_factory):
    """Pull, breed and emit once for the module (calibration fitness: cheap and deterministic)."""
    tmp = tmp_path_factory.mktemp("breed")
    os.environ["HF_TOKEN"] = local_hub.tokens[0]
    try:
        config = ReleaseConfig.model_validate(_config(local_hub.url, tmp))
        run_release(config, RunOptions(only=("emit",), progress=False))
    finally:
        os.environ.pop("HF_TOKEN", None)
    return config


def _stored_keys(folder: Path) -> set[str]:
    keys = set()
    for shard in folder.glob("*.safetensors"):
        with safe_open(shard, "pt") as f:
            keys.update(f.keys())
    return keys


def test_emitted_child_gives_the_live_hybrids_logits_at_the_best_genome(bred):
    from transformers import AutoModelForCausalLM

    from release.breeders.hybrid import build_search_hybrid

    run = bred.run_dir
    best = json.loads((run / "breed" / "best.json").read_text())
    pulled = json.loads((run / "stages.json").read_text())["pull"]["result"]
    live = build_search_hybrid(Path(pulled["father"]["path"]), Path(pulled["mother"]["path"]))
    live.set_ratios(best["genome"])
    child = AutoModelForCausalLM.from_pretrained(run / "child", trust_remote_code=True).eval()
    ids = torch.tensor([[2, 40, 41, 42, 43, 100, 200, 300, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28]])
    with torch.no_grad():
        assert torch.equal(child(ids).logits, live(ids).logits)
    assert child.config.ratios == best["genome"]


def test_child_stores_no_mother_ffn_for_a_layer_at_ratio_zero(bred):
    folder = bred.run_dir / "child"
    genome = json.loads((folder / "darwin_genome.json").read_text())
    ratios, layer_map = genome["ratios"], genome["layer_map"]
    active_mothers = {layer_map[i] for i, r in enumerate(ratios) if r > 0}
    stored = {int(k.split(".")[2]) for k in _stored_keys(folder) if k.startswith("model.mother_ffns.")}
    assert stored == active_mothers
    assert len(list(folder.glob("*.safetensors"))) >= 2 and (folder / "model.safetensors.index.json").exists()
    for name in ("config.json", "modeling_darwin.py", "configuration_darwin.py", "tokenizer.json",
                 "chat_template.jinja", "generation_config.json"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_darwin.DarwinForCausalLM"


def test_frozen_layers_are_zero_in_every_candidate_and_in_the_child(bred):
    run = bred.run_dir
    rows = [json.loads(line) for line in (run / "breed" / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 8  # 2 generations x popsize 4
    assert all(row["genome"][i] == 0.0 for row in rows for i in FROZEN)
    genome = json.loads((run / "child" / "darwin_genome.json").read_text())
    assert [genome["ratios"][i] for i in FROZEN] == [0.0, 0.0]
    assert genome["frozen"] == FROZEN
    assert len(genome["father"]["revision"]) == 40 and len(genome["mother"]["revision"]) == 40
    assert genome["tool"]["name"] == "darwin-release"
    assert genome["search"]["evaluations"] == 8


@early_run
def bred_by_the_cli(tmp_path, env):
    """`breed` then `emit` with progress bars, on the session's hub, in the background from the session's start
    (tests/background.py)."""
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(_config(env["HF_ENDPOINT"], tmp_path)))
    env = {**env, "HF_TOKEN": env["DARWIN_LOCALHUB_TOKEN"]}
    breed = subprocess.run([sys.executable, "-m", "release", "breed", str(path), "--progress"], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=300)
    emit = subprocess.run([sys.executable, "-m", "release", "emit", str(path), "--progress"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    return tmp_path, breed, emit


def test_breed_and_emit_from_the_cli_with_progress(bred_by_the_cli):
    tmp_path, breed, emit = bred_by_the_cli
    assert breed.returncode == 0, breed.stderr
    assert "search" in breed.stderr and "8/8" in breed.stderr  # tqdm: evaluations done / planned
    assert emit.returncode == 0, emit.stderr
    assert "write shards" in emit.stderr
    stages = json.loads((tmp_path / "runs" / "breed-test" / "stages.json").read_text())
    assert set(stages) == {"pull", "mri", "breed", "emit"}
    assert (tmp_path / "runs" / "breed-test" / "child" / "config.json").is_file()


def test_force_redoes_one_stage_and_a_rerun_skips_the_rest(bred):
    summary = run_release(bred, RunOptions(only=("emit",), progress=False))
    assert summary["ran"] == []  # everything up to date
    summary = run_release(bred, RunOptions(only=("emit",), force={"emit"}, progress=False))
    assert summary["ran"] == ["emit"]
    with pytest.raises(Exception, match="not a stage"):
        run_release(bred, RunOptions(only=("emit",), force={"breeed"}, progress=False))


def test_dry_run_does_everything_but_write_to_the_hub(bred, local_hub, tmp_path):
    from huggingface_hub import HfApi

    raw = _config(local_hub.url, tmp_path, father=bred.father.model_dump(), mother=bred.mother.model_dump())
    config = ReleaseConfig.model_validate(raw)  # parents already on the Hub; no token: nothing to write
    summary = run_release(config, RunOptions(dry_run=True, progress=False))
    assert summary["dry_run"] and summary["skipped"] == ["push", "verify"]
    assert summary["ran"] == ["pull", "mri", "breed", "emit", "health", "card"]  # calibration: nothing to evaluate
    card = (config.run_dir / "child" / "README.md").read_text()
    assert "evaluation was skipped" in card.lower() or "not evaluated" in card.lower()
    assert not HfApi().repo_exists(config.child.repo)
    assert not (config.run_dir / "release.json").exists()


def test_a_checkpoint_from_another_config_is_refused_until_forced(bred):
    changed = bred.model_copy(update={"search": bred.search.model_copy(update={"seed": 99})})
    with pytest.raises(ReleaseError, match="another config") as e:
        run_release(changed, RunOptions(only=("breed",), progress=False))
    assert "--force breed" in str(e.value) and "\n" not in str(e.value)
    summary = run_release(changed, RunOptions(only=("breed",), force={"breed"}, progress=False))
    assert summary["ran"] == ["breed"] and summary["breed"]["evaluations"] == 8
