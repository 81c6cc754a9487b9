"""The builder: a Darwin hybrid assembled from the tiny parents' shards is the father at r = 0, follows the
mixing rule computed by hand from the raw parent tensors, switches genomes in place, and refuses parents
that do not fit with one-line errors."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from release.errors import ReleaseError
from release.breeders.hybrid import (
    MIXING_FORMULA,
    build_hybrid,
    build_search_hybrid,
    child_tensor_sources,
    default_layer_map,
    make_child_config,
)

# 24 tokens: longer than the tiny father's sliding window (16), so sliding and full layers differ.
PROMPT = torch.tensor([[2, 71, 300, 45, 512, 9, 128, 77, 601, 33, 250, 18, 404, 66, 90, 333,
                        12, 540, 87, 219, 150, 3, 480, 61]])


def _raw(folder, key):
    """One tensor straight from a parent's files, located through its index."""
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    with safe_open(str(folder / weight_map[key]), framework="pt") as f:
        return f.get_tensor(key)


def _rms(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _father_model(folder):
    from transformers import Gemma4ForConditionalGeneration

    return Gemma4ForConditionalGeneration.from_pretrained(folder).eval()


def test_default_layer_map_lines_up_both_stacks():
    assert default_layer_map(6, 4) == [0, 1, 1, 2, 2, 3]
    genesis = default_layer_map(42, 32)
    assert len(genesis) == 42 and genesis[0] == 0 and genesis[-1] == 31
    assert all(b - a in (0, 1) for a, b in zip(genesis, genesis[1:]))
    assert genesis[21] == round(21 * 31 / 41) == 16
    assert default_layer_map(1, 4) == [0]


def test_all_ratios_zero_is_the_father_exactly(tiny_parents):
    child = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    father = _father_model(tiny_parents.father)
    assert child.config.stored_mother_layers == [0, 1, 2, 3]  # search form: every mapped mother FFN
    assert child.ratios.tolist() == [0.0] * 6
    assert child.generation_config.eos_token_id == father.generation_config.eos_token_id == [1, 4]
    with torch.no_grad():
        child_logits, father_logits = child(PROMPT).logits, father(PROMPT).logits
    assert torch.equal(child_logits, father_logits)
    child_tokens = child.generate(PROMPT, max_new_tokens=20, do_sample=False)
    father_tokens = father.generate(PROMPT, max_new_tokens=20, do_sample=False)
    assert child_tokens.shape[1] == PROMPT.shape[1] + 20
    assert torch.equal(child_tokens, father_tokens)


def test_every_child_tensor_equals_its_source_in_the_parent_files(tiny_parents):
    config = make_child_config(tiny_parents.father, tiny_parents.mother, None, stored="all")
    child = build_hybrid(tiny_parents.father, tiny_parents.mother, config)
    sources = child_tensor_sources(tiny_parents.father, tiny_parents.mother, config)
    state = child.state_dict()
    assert set(state) - set(sources) == {"lm_head.weight"}  # tied, not stored
    assert child.lm_head.weight is child.model.embed_tokens.weight
    for key, source in sources.items():
        with safe_open(str(source.path), framework="pt") as f:
            assert torch.equal(state[key], f.get_tensor(source.key)), key
    assert sources["model.mother_ffns.2.norm.weight"].key == \
        "model.language_model.layers.2.post_attention_layernorm.weight"
    assert sources["model.layers.4.mlp.up_proj.weight"].key == "model.language_model.layers.4.mlp.up_proj.weight"
    assert not any(s.key.startswith(("mtp.", "model.visual", "model.vision_tower")) for s in sources.values())


def test_blended_layers_follow_the_rule_computed_from_raw_parent_tensors(tiny_parents):
    fd, md = tiny_parents.father, tiny_parents.mother
    child = build_search_hybrid(fd, md)
    ratios = {1: 0.3, 3: 1.0}
    child.set_ratios([ratios.get(i, 0.0) for i in range(6)])
    seen = {}
    for i in ratios:
        layer = child.model.layers[i]
        # h entering the FFN step, and the stream leaving it (the per-layer-input block reads it next).
        layer.pre_feedforward_layernorm.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__((i, "in"), a[0]))
        layer.per_layer_input_gate.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__((i, "out"), a[0]))
    with torch.no_grad():
        child(PROMPT)

    f_eps = json.loads((fd / "config.json").read_text())["text_config"]["rms_norm_eps"]
    m_eps = json.loads((md / "config.json").read_text())["text_config"]["rms_norm_eps"]
    for i, r in ratios.items():
        j = child.config.layer_map[i]
        f = lambda name: _raw(fd, f"model.language_model.layers.{i}.{name}.weight")  # noqa: E731
        m = lambda name: _raw(md, f"model.language_model.layers.{j}.{name}.weight")  # noqa: E731
        h = seen[i, "in"]
        x = _rms(h, f_eps) * f("pre_feedforward_layernorm")
        gated = F.gelu(x @ f("mlp.gate_proj").T, approximate="tanh") * (x @ f("mlp.up_proj").T)
        father = gated @ f("mlp.down_proj").T
        y = _rms(h, m_eps) * (1 + m("post_attention_layernorm"))  # Qwen3.5's zero-centred norm
        mother = (F.silu(y @ m("mlp.gate_proj").T) * (y @ m("mlp.up_proj").T)) @ m("mlp.down_proj").T
        post = f("post_feedforward_layernorm")
        expected = h + (1 - r) * _rms(father, f_eps) * post + r * _rms(mother, f_eps) * post
        torch.testing.assert_close(seen[i, "out"], expected, rtol=1e-5, atol=1e-5)
        # The mother branch really moves the stream (the check above is not vacuous).
        assert (expected - (h + _rms(father, f_eps) * post)).abs().max() > 0.1
    assert "PostNorm_F(MLP_M(Norm_M(h)))" in MIXING_FORMULA


def test_layers_at_ratio_zero_run_no_mother_ffn(tiny_parents):
    child = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    calls = {j: 0 for j in child.config.stored_mother_layers}
    for j in calls:
        child.model.mother_ffns[str(j)].register_forward_hook(lambda *_, j=j: calls.__setitem__(j, calls[j] + 1))
    with torch.no_grad():
        child(PROMPT)
        assert calls == {0: 0, 1: 0, 2: 0, 3: 0}
        child.set_ratios([0, 0.2, 0, 0, 0, 0])  # layers 1 and 2 share mother layer 1; only layer 1 is active
        child(PROMPT)
    assert calls == {0: 0, 1: 1, 2: 0, 3: 0}
    assert child.model.mother_ffns.active == [False, True, False, False, False, False]


def test_set_ratios_switches_genome_in_place_without_copying_weights(tiny_parents):
    child = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    pointers = {name: p.data_ptr() for name, p in child.named_parameters()}
    buffer, buffer_ptr = child.ratios, child.ratios.data_ptr()
    with torch.no_grad():
        before = child(PROMPT).logits
        child.set_ratios([0.1, 0.0, 0.25, 0.5, 0.0, 0.4])
        during = child(PROMPT).logits
        child.set_ratios([0.0] * 6)
        after = child(PROMPT).logits
    assert (during - before).abs().max() > 0.1
    assert torch.equal(after, before)  # back at the father, bit for bit
    assert {name: p.data_ptr() for name, p in child.named_parameters()} == pointers
    assert child.ratios is buffer and child.ratios.data_ptr() == buffer_ptr


def test_set_ratios_records_the_genome_in_the_config(tiny_parents):
    child = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    child.set_ratios(torch.tensor([0.0, 0.5, 0.0, 0.25, 0.0, 1.0]))
    assert child.config.ratios == [0.0, 0.5, 0.0, 0.25, 0.0, 1.0]
    assert child.ratios.tolist() == [0.0, 0.5, 0.0, 0.25, 0.0, 1.0]


def test_set_ratios_refuses_genomes_the_model_cannot_run(tiny_parents):
    shipped = make_child_config(tiny_parents.father, tiny_parents.mother, [0, 0, 0, 0.5, 0, 0])
    assert shipped.stored_mother_layers == [2]
    child = build_hybrid(tiny_parents.father, tiny_parents.mother, shipped)
    with pytest.raises(ValueError, match="expected one per layer"):
        child.set_ratios([0.1] * 5)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        child.set_ratios([0, 0, 0, 1.5, 0, 0])
    with pytest.raises(ValueError, match=r"layers \[0\] have nonzero ratios but their mother FFNs are not stored"):
        child.set_ratios([0.2, 0, 0, 0.5, 0, 0])
    child.set_ratios([0, 0, 0, 0.1, 0.3, 0])  # layer 4 maps to the stored mother layer 2 too
    assert child.ratios.tolist() == pytest.approx([0, 0, 0, 0.1, 0.3, 0])


def test_shipped_form_stores_each_active_mother_ffn_once(tiny_parents):
    # Layers 1 and 2 both blend mother layer 1; layer 5 blends mother layer 3; the rest stay at 0.
    config = make_child_config(tiny_parents.father, tiny_parents.mother, [0, 0.3, 0.2, 0, 0, 0.4], stored="active")
    assert config.layer_map == [0, 1, 1, 2, 2, 3]
    assert config.stored_mother_layers == [1, 3]
    sources = child_tensor_sources(tiny_parents.father, tiny_parents.mother, config)
    mother_keys = sorted(k for k in sources if k.startswith("model.mother_ffns."))
    assert mother_keys == [f"model.mother_ffns.{j}.{n}.weight" for j in (1, 3)
                           for n in ("down_proj", "gate_proj", "norm", "up_proj")]
    assert len({(s.path, s.key) for s in sources.values()}) == len(sources)  # no tensor read twice
    # Same genome, same numbers as the search form.
    shipped = build_hybrid(tiny_parents.father, tiny_parents.mother, config)
    search = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    search.set_ratios(config.ratios)
    with torch.no_grad():
        assert torch.equal(shipped(PROMPT).logits, search(PROMPT).logits)


def test_a_folder_of_config_modeling_files_and_streamed_tensors_loads(tiny_parents, tmp_path):
    """What the emitter writes (no live model involved) is all `from_pretrained` needs."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from release.breeders.hybrid import modeling_files

    config = make_child_config(tiny_parents.father, tiny_parents.mother, [0, 0.3, 0.2, 0, 0, 0.4])
    sources = child_tensor_sources(tiny_parents.father, tiny_parents.mother, config)
    tensors = {}
    for key, source in sources.items():
        with safe_open(str(source.path), framework="pt") as f:
            tensors[key] = f.get_tensor(source.key)
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(tmp_path)
    for path in modeling_files():
        shutil.copy(path, tmp_path / path.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "configuration_darwin.py", "model.safetensors", "modeling_darwin.py"]
    loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    live = build_hybrid(tiny_parents.father, tiny_parents.mother, config)
    with torch.no_grad():
        assert torch.equal(loaded(PROMPT).logits, live(PROMPT).logits)


def _copy_config(src, dst, edit=None):
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    if edit:
        edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_swapped_parents_are_refused(tiny_parents):
    with pytest.raises(ReleaseError, match="swap father and mother") as e:
        make_child_config(tiny_parents.mother, tiny_parents.father, None)
    _one_line(e)
    with pytest.raises(ReleaseError, match="mother .* is a 'gemma4' model, expected 'qwen3_5'") as e:
        build_search_hybrid(tiny_parents.father, tiny_parents.father)
    _one_line(e)


def test_hidden_size_mismatch_is_refused(tiny_parents, tmp_path):
    def narrow(config):
        config["text_config"]["hidden_size"] = 32

    mother = _copy_config(tiny_parents.mother, tmp_path / "mother", narrow)
    with pytest.raises(ReleaseError, match="hidden sizes differ: father 64, mother 32") as e:
        build_search_hybrid(tiny_parents.father, mother)
    _one_line(e)


def test_missing_tensor_is_refused(tiny_parents, tmp_path):
    mother = _copy_config(tiny_parents.mother, tmp_path / "mother")
    index = json.loads((tiny_parents.mother / "model.safetensors.index.json").read_text())
    del index["weight_map"]["model.language_model.layers.2.mlp.up_proj.weight"]
    (mother / "model.safetensors.index.json").write_text(json.dumps(index))
    for shard in tiny_parents.mother.glob("*.safetensors"):
        (mother / shard.name).symlink_to(shard)
    with pytest.raises(ReleaseError, match=r"lacks tensor model\.language_model\.layers\.2\.mlp\.up_proj\.weight") as e:
        build_search_hybrid(tiny_parents.father, mother)
    _one_line(e)


@pytest.mark.parametrize("layer_map, message", [
    ([0, 1, 2, 3], r"has 4 entries, expected one per father layer \(6\)"),
    ([0, 1, 1, 2, 2, 4], r"names mother layers \[4\], but the mother has layers 0\.\.3"),
    ([0, -1, 1, 2, 2, 3], r"names mother layers \[-1\]"),
])
def test_bad_layer_maps_are_refused(tiny_parents, layer_map, message):
    with pytest.raises(ReleaseError, match=message) as e:
        build_search_hybrid(tiny_parents.father, tiny_parents.mother, layer_map=layer_map)
    _one_line(e)


def test_bad_genomes_are_refused_when_making_a_config(tiny_parents):
    with pytest.raises(ReleaseError, match=r"genome has 5 ratios, expected one per father layer \(6\)") as e:
        make_child_config(tiny_parents.father, tiny_parents.mother, [0.1] * 5)
    _one_line(e)
    with pytest.raises(ReleaseError, match=r"child genome: ratios of layers \[2\] are outside \[0, 1\]") as e:
        make_child_config(tiny_parents.father, tiny_parents.mother, [0, 0, -0.1, 0, 0, 0])
    _one_line(e)
