"""A damaged parent checkpoint is a one-line error naming the file and the fix (issue 17 item 10), never a
traceback: an index naming a missing shard, a config.json that is not JSON or has no model_type."""

import json
import shutil

import pytest

from release.errors import ReleaseError
from release.breeders.hybrid import build_search_hybrid, make_child_config


@pytest.fixture
def parents(tiny_parents, tmp_path):
    father, mother = tmp_path / "father", tmp_path / "mother"
    shutil.copytree(tiny_parents.father, father)
    shutil.copytree(tiny_parents.mother, mother)
    return father, mother


def _index(folder):
    return json.loads((folder / "model.safetensors.index.json").read_text())


def _damage(case, father, mother):
    """Damage one parent as `case` says; returns (parent folder, words the error must contain)."""
    role = mother if case.startswith("mother") else father
    if case.endswith("missing-shard"):  # the one holding a tensor the child needs
        shard = _index(role)["weight_map"]["model.language_model.layers.0.mlp.gate_proj.weight"]
        (role / shard).unlink()
        return [shard, "index"]
    if case.endswith("index-not-json"):
        (role / "model.safetensors.index.json").write_text('{"weight_map": {')
        return ["model.safetensors.index.json", "not valid"]
    if case.endswith("index-no-weight-map"):
        (role / "model.safetensors.index.json").write_text('{"metadata": {}}')
        return ["model.safetensors.index.json", "weight_map"]
    config = role / "config.json"
    if case.endswith("config-not-json"):
        config.write_text("{not json")
        return ["config.json", "not valid JSON"]
    if case.endswith("config-not-utf8"):
        config.write_bytes(b'{"model_type": "gemma4\xff"}')
        return ["config.json", "not valid JSON"]
    if case.endswith("config-no-model-type"):
        raw = json.loads(config.read_text())
        raw.pop("model_type")
        config.write_text(json.dumps(raw))
        return ["config.json", "model_type"]
    if case.endswith("config-not-a-mapping"):
        config.write_text("[1, 2]")
        return ["config.json", "not valid"]
    raise AssertionError(case)


CASES = ["father-missing-shard", "mother-missing-shard", "father-index-not-json", "mother-index-no-weight-map",
         "father-config-not-json", "mother-config-not-utf8", "father-config-no-model-type",
         "mother-config-no-model-type", "father-config-not-a-mapping"]


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_parent_is_a_one_line_error_naming_the_file(parents, case):
    father, mother = parents
    words = _damage(case, father, mother)
    with pytest.raises(ReleaseError) as e:
        config = make_child_config(father, mother, None)
        build_search_hybrid(father, mother, layer_map=list(config.layer_map))
    message = str(e.value)
    assert "\n" not in message
    assert all(w in message for w in words), message
    assert ("father" if case.startswith("father") else "mother") in message


@pytest.mark.parametrize("case", ["father-missing-shard", "mother-config-not-json", "mother-config-no-model-type",
                                  "father-index-no-weight-map"])
def test_a_damaged_parent_of_a_weight_merge_is_a_one_line_error(tiny_parents, tmp_path, case):
    """The same-architecture breeder reads parents through the same checks."""
    from release.breeders.weights import check_same_architecture

    father, mother = tmp_path / "father", tmp_path / "mother"
    shutil.copytree(tiny_parents.father, father)
    shutil.copytree(tiny_parents.father, mother)  # two parents of one architecture
    words = _damage(case, father, mother)
    with pytest.raises(ReleaseError) as e:
        check_same_architecture(father, mother)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def _poison(folder, key, value=float("nan")):
    """Write `value` into one element of the parent's tensor `key`, in place in its shard."""
    from safetensors.torch import load_file, save_file

    shard = folder / _index(folder)["weight_map"][key]
    tensors = load_file(shard)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[3] = value
    save_file(tensors, shard, metadata={"format": "pt"})
    return shard.name


@pytest.mark.parametrize("role, key, value", [
    ("mother", "model.language_model.layers.1.mlp.up_proj.weight", float("nan")),
    ("father", "model.language_model.layers.0.mlp.down_proj.weight", float("inf")),
])
def test_non_finite_parent_weights_are_one_line_where_the_mri_first_reads_them(parents, role, key, value):
    """Issue 22 item 6: the MRI scan's histogram met NaN as "a bug in darwin-release"."""
    from release.mri.static import static_scan

    father, mother = parents
    shard = _poison(father if role == "father" else mother, key, value)
    config = make_child_config(father, mother, None)
    with pytest.raises(ReleaseError) as e:
        static_scan(father, mother, list(config.layer_map))
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in (role, shard, key, "NaN or infinite")), message


def test_non_finite_weights_outside_the_ffns_are_one_line_when_the_live_model_reads_them(parents):
    father, mother = parents
    key = "model.language_model.layers.2.self_attn.q_proj.weight"
    shard = _poison(father, key)
    config = make_child_config(father, mother, None)
    with pytest.raises(ReleaseError) as e:
        build_search_hybrid(father, mother, layer_map=list(config.layer_map))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in ("father", shard, key)), str(e.value)


def test_a_tensor_that_cannot_be_read_is_one_line_naming_parent_file_and_tensor(parents):
    """Issue 22 item 7: a shard whose data was cut short after the plan read its header."""
    from release.mri.static import static_scan

    father, mother = parents
    key = "model.language_model.layers.0.mlp.gate_proj.weight"
    config = make_child_config(father, mother, None)  # before the damage: its header check would name it
    shard = mother / _index(mother)["weight_map"][key]
    shard.write_bytes(shard.read_bytes()[:-16])
    with pytest.raises(ReleaseError) as e:
        static_scan(father, mother, list(config.layer_map))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in ("mother", shard.name)), str(e.value)
