"""A shipped child has three kinds of layer: father FFN only, mother FFN only, blend. Each stores and runs
only what its kind needs, and equals the search hybrid running the same genome."""

import json
import logging
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from release.breeders.emit import emit_child
from release.breeders.hybrid import build_search_hybrid

# tiny father: 6 layers; layer 1 mother-only, layer 3 blend, the rest father-only
RATIOS = [0.0, 1.0, 0.0, 0.4, 0.0, 0.0]


@pytest.fixture(scope="module")
def shipped(tiny_parents, tmp_path_factory):
    genome = {"ratios": RATIOS, "layer_map": None, "frozen": [], "r_max": 1.0}
    out = tmp_path_factory.mktemp("kinds") / "child"
    genome["layer_map"] = build_search_hybrid(tiny_parents.father, tiny_parents.mother).config.layer_map
    return emit_child(tiny_parents.father, tiny_parents.mother, genome, out, max_shard_size="300KB", progress=False)


def _stored_keys(folder):
    keys = set()
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            keys.update(f.keys())
    return keys


def test_config_records_each_layers_kind(shipped):
    config = json.loads((shipped / "config.json").read_text())
    assert config["layer_kinds"] == ["father", "mother", "father", "blend", "father", "father"]


def test_shards_hold_only_what_each_kind_needs(shipped):
    keys = _stored_keys(shipped)
    layer_map = json.loads((shipped / "config.json").read_text())["layer_map"]
    assert not any(k.startswith("model.layers.1.mlp.") for k in keys)  # mother-only: no father FFN
    assert "model.layers.1.pre_feedforward_layernorm.weight" not in keys
    assert "model.layers.1.post_feedforward_layernorm.weight" in keys  # the mother branch goes through it
    assert "model.layers.3.mlp.down_proj.weight" in keys
    mothers = {int(k.split(".")[2]) for k in keys if k.startswith("model.mother_ffns.")}
    assert mothers == {layer_map[1], layer_map[3]}  # father-only layers bring no mother FFN


def _load_warnings(folder):
    """Load with AutoModelForCausalLM; return the model and what transformers logged at WARNING or above."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage().lower())

    handler = Catch(level=logging.WARNING)
    hf_logging.get_logger().addHandler(handler)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
    finally:
        hf_logging.get_logger().removeHandler(handler)
    return model, [m for m in records if "missing" in m or "unexpected" in m or "newly initialized" in m]


def test_shipped_child_loads_cleanly_and_equals_the_search_hybrid(tiny_parents, shipped):
    child, warnings = _load_warnings(shipped)
    assert warnings == []
    assert child.model.layers[1].mlp is None  # not allocated at load
    assert child.model.layers[0].mother_ffns.active == [False, True, False, True, False, False]

    hybrid = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    hybrid.set_ratios(RATIOS)
    ids = torch.tensor([[2, 17, 33, 5, 81, 9, 40]])
    with torch.no_grad():
        torch.testing.assert_close(child(input_ids=ids).logits, hybrid(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_the_warning_capture_sees_a_father_ffn_where_none_belongs(shipped, tmp_path):
    """The check above is not vacuous: a mother-only layer that carries a father FFN is reported."""
    copy = tmp_path / "child"
    shutil.copytree(shipped, copy)
    shard = sorted(copy.glob("*.safetensors"))[0]
    tensors = load_file(shard)
    tensors["model.layers.1.mlp.down_proj.weight"] = torch.zeros(64, 128)
    save_file(tensors, shard, metadata={"format": "pt"})
    index = copy / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"]["model.layers.1.mlp.down_proj.weight"] = shard.name
        index.write_text(json.dumps(data))
    _, warnings = _load_warnings(copy)
    assert any("model.layers.1.mlp.down_proj.weight" in m and "unexpected" in m for m in warnings)


def test_kinds_fix_their_ratio(shipped):
    from transformers import AutoModelForCausalLM

    child = AutoModelForCausalLM.from_pretrained(shipped, trust_remote_code=True)
    with pytest.raises(ValueError, match=r"layers \[1\] are mother-only"):
        child.set_ratios([0.0, 0.5, 0.0, 0.4, 0.0, 0.0])
