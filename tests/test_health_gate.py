"""A failed health check stops the release before push; --force push overrides it."""

import os
import uuid

import pytest
import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.pipeline import RunOptions, run_release

BROKEN = "model.layers.0.post_feedforward_layernorm.weight"  # every layer kind has it


def _as_if_emit_wrote_it(run_dir, child):
    """Record the edited child as emit's own output (a bug in emit, say): otherwise the run folder's integrity
    check sees the change and simply emits the child again (tests/test_release.py)."""
    import json

    from release.run.manifest import file_manifest

    stages = json.loads((run_dir / "stages.json").read_text())
    stages["emit"]["files"] = file_manifest([child], within=run_dir)
    (run_dir / "stages.json").write_text(json.dumps(stages))


def test_a_broken_layer_stops_the_release_before_push(local_hub, tmp_path, monkeypatch):
    ns = f"gate-{uuid.uuid4().hex[:6]}"
    config = ReleaseConfig.model_validate({
        "name": "gate", "tiny_parents": True,
        "father": {"repo": f"{ns}/father"}, "mother": {"repo": f"{ns}/mother"},
        "child": {"repo": f"{ns}/child", "max_shard_size": "200KB"},
        "genome": {"frozen": [4], "r_max": 0.5, "init_mean": 0.2},
        "search": {"popsize": 2, "max_generations": 1, "seed": 1},
        "fitness": {"kind": "calibration"}, "mri": {"prompts_per_domain": 1},
        "hub": {"endpoint": local_hub.url}, "runs_dir": str(tmp_path / "runs"),
    })
    monkeypatch.setitem(os.environ, "HF_TOKEN", local_hub.tokens[0])
    run_release(config, RunOptions(only=("emit",), progress=False))
    child = config.run_dir / "child"
    for shard in child.glob("*.safetensors"):  # break layer 0 of the emitted child: its FFN update vanishes
        tensors = load_file(shard)
        if BROKEN in tensors:
            tensors[BROKEN] = torch.zeros_like(tensors[BROKEN])
            save_file(tensors, shard, metadata={"format": "pt"})
    _as_if_emit_wrote_it(config.run_dir, child)

    with pytest.raises(ReleaseError) as e:
        run_release(config, RunOptions(only=("push",), progress=False))
    assert str(e.value).startswith("health check failed: layers 0 diverge from both parents")
    assert "\n" not in str(e.value) and "--force push" in str(e.value)
    assert not HfApi().repo_exists(config.child.repo)  # nothing was pushed

    forced = run_release(config, RunOptions(only=("push",), force={"push"}, progress=False))
    assert forced["stages_run"] == ["push"] and HfApi().repo_exists(config.child.repo)
