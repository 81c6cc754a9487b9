"""The health check passes a sound child and flags a layer a test deliberately breaks."""

import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from release.config import HealthSpec
from release.breeders.emit import emit_child
from release.errors import ReleaseError
from release.breeders.hybrid import default_layer_map
from release.mri.health import health_check, require_healthy

RATIOS = [0.0, 1.0, 0.0, 0.4, 0.0, 0.3]  # a mother-only layer, two blends, father-only layers
LAYER_MAP = default_layer_map(6, 4)


@pytest.fixture(scope="module")
def child(tiny_parents, tmp_path_factory):
    genome = {"ratios": RATIOS, "layer_map": LAYER_MAP, "frozen": [], "r_max": 1.0}
    return emit_child(tiny_parents.father, tiny_parents.mother, genome, tmp_path_factory.mktemp("h") / "child",
                      max_shard_size="300KB", progress=False)


def _edit(folder, key, change):
    for shard in folder.glob("*.safetensors"):
        tensors = load_file(shard)
        if key in tensors:
            tensors[key] = change(tensors[key])
            save_file(tensors, shard, metadata={"format": "pt"})
            return
    raise KeyError(key)


def _check(tiny_parents, child, out):
    return health_check(child, tiny_parents.father, tiny_parents.mother, out, HealthSpec(), LAYER_MAP, RATIOS,
                        per_domain=1, seed=0)


def test_a_sound_child_passes(tiny_parents, child, tmp_path):
    result = _check(tiny_parents, child, tmp_path)
    assert result["passed"] and result["flagged_layers"] == [] and result["reasons"] == []
    rows = result["layers"]
    assert rows[0]["cos_father"] == pytest.approx(1.0, abs=1e-5)  # father-only layer: the father's branch
    assert rows[1]["cos_mother"] == pytest.approx(1.0, abs=1e-5)  # mother-only layer: the mother's branch
    assert rows[1]["norm_mother"] == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["hidden_cos_father"] == pytest.approx(1.0, abs=1e-5)  # nothing differs before layer 1
    assert [r["kind"] for r in rows] == ["father", "mother", "father", "blend", "father", "blend"]
    for i in (3, 5):  # a blend's update is (1 - r) f + r m: the fitted shares are its ratio's
        assert rows[i]["share_father"] == pytest.approx(1 - RATIOS[i], abs=1e-3)
        assert rows[i]["share_mother"] == pytest.approx(RATIOS[i], abs=1e-3) and not rows[i]["lost_share"]
    assert set(result["perplexity"]) == {"child", "father", "mother"}
    assert result["generation"]["new_tokens"] > 0
    assert (tmp_path / "health.json").is_file() and (tmp_path / "health.png").stat().st_size > 0
    require_healthy(result, tmp_path)  # no error


def test_broken_layers_are_flagged_and_stop_the_release(tiny_parents, child, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(child, broken)
    _edit(broken, "model.layers.2.mlp.down_proj.weight", torch.zeros_like)  # father-only layer zeroed
    _edit(broken, "model.layers.1.post_feedforward_layernorm.weight", lambda w: w * 10)  # mother-only scaled
    result = _check(tiny_parents, broken, tmp_path / "out")
    assert not result["passed"]
    assert result["flagged_layers"] == [1, 2]
    with pytest.raises(ReleaseError, match=r"health check failed: layers 1, 2 diverge from both parents") as e:
        require_healthy(result, tmp_path / "out")
    assert "\n" not in str(e.value) and "--force push" in str(e.value)



def test_the_push_gate_and_its_two_overrides(tmp_path):
    from release.config import ReleaseConfig
    from release.mri.stage import check_before_push
    from release.run.records import Health

    def config(**health):
        return ReleaseConfig.model_validate({"name": "g", "father": {"repo": "a/f"}, "mother": {"repo": "a/m"},
                                             "child": {"repo": "a/c"}, "fitness": {"kind": "calibration"},
                                             "health": health})

    failed = Health(path=str(tmp_path / "h.json"), passed=False, reasons=["layers 3 diverge from both parents"],
                    flagged_layers=[3])
    with pytest.raises(ReleaseError, match="health check failed: layers 3 diverge from both parents"):
        check_before_push(config(), failed, force=set())
    check_before_push(config(), failed, force={"push"})  # --force push
    check_before_push(config(stop_on_failure=False), failed, force=set())  # the config switch
    check_before_push(config(), replace(failed, passed=True, reasons=[], flagged_layers=[]), force=set())


def test_a_blend_layer_that_lost_the_father_ffn_is_flagged(tiny_parents, child, tmp_path):
    """Issue 22 item 14: with only the father FFN zeroed, a blend's update is r m, close to the mother's
    branch, so "diverges from both" never fired."""
    broken = tmp_path / "broken"
    shutil.copytree(child, broken)
    _edit(broken, "model.layers.3.mlp.down_proj.weight", torch.zeros_like)  # the father FFN of a 0.4 blend
    result = _check(tiny_parents, broken, tmp_path / "out")
    row = result["layers"][3]
    assert abs(row["share_father"]) < 0.05 and row["share_mother"] == pytest.approx(0.4, abs=0.05), row
    assert result["flagged_layers"] == [3] and not result["passed"]
    assert result["reasons"] == ["blend layers 3 lost a parent's share of their update"]
    with pytest.raises(ReleaseError, match="lost a parent's share"):
        require_healthy(result, tmp_path / "out")
