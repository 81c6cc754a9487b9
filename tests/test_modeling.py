"""The shipped trust_remote_code files: config round trip, save/load through the Auto classes, bf16, KV cache,
and that the files are safe for strangers to run (only torch and transformers, no eval/exec/pickle)."""

import ast
import json

import pytest
import torch
from safetensors import safe_open

from modeling.configuration_darwin import MIXING_RULES, DarwinConfig
from release.breeders.hybrid import build_hybrid, make_child_config, modeling_files

PROMPT = torch.tensor([[2, 71, 300, 45, 512, 9, 128, 77, 601, 33, 250, 18, 404, 66, 90, 333,
                        12, 540, 87, 219, 150, 3, 480, 61]])
GENOME = [0.0, 0.3, 0.0, 1.0, 0.0, 0.5]


@pytest.fixture(scope="module")
def child(tiny_parents):
    """A shipped-form child (only the mother FFNs of active layers) as a live model."""
    config = make_child_config(tiny_parents.father, tiny_parents.mother, GENOME, stored="active")
    return build_hybrid(tiny_parents.father, tiny_parents.mother, config)


@pytest.fixture(scope="module")
def saved(child, tmp_path_factory):
    folder = tmp_path_factory.mktemp("child")
    child.save_pretrained(folder)
    return folder


def test_config_round_trips_through_config_json(child, tmp_path):
    config = child.config
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "darwin"
    assert raw["ratios"] == GENOME
    assert raw["layer_map"] == [0, 1, 1, 2, 2, 3]
    assert raw["stored_mother_layers"] == [1, 2, 3]
    mother = (raw["mother_intermediate_size"], raw["mother_hidden_act"], raw["mother_norm_zero_centred"])
    assert mother == (96, "silu", True)
    assert raw["mixing_rule"] == "ffn_output_blend"
    assert raw["auto_map"] == {"AutoConfig": "configuration_darwin.DarwinConfig",
                               "AutoModelForCausalLM": "modeling_darwin.DarwinForCausalLM"}
    loaded = DarwinConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    # The father's Gemma 4 structure survives: KV sharing, layer types, PLE, softcap.
    assert loaded.kv_sharing_modes == [None, None, "store", "store", "reuse", "reuse"]
    assert loaded.layer_types == ["sliding_attention", "sliding_attention", "full_attention"] * 2
    assert (loaded.hidden_size_per_layer_input, loaded.final_logit_softcapping) == (8, 30.0)


def test_config_refuses_inconsistent_blends(child):
    base = child.config.to_dict()
    base.pop("model_type")
    with pytest.raises(ValueError, match="layer_map has 5 entries"):
        DarwinConfig(**{**base, "layer_map": [0, 1, 1, 2, 2]})
    with pytest.raises(ValueError, match=r"layers \[0\] have nonzero ratios but their mother FFNs are not stored"):
        DarwinConfig(**{**base, "ratios": [0.5, 0.3, 0, 1, 0, 0.5]})
    with pytest.raises(ValueError, match="unknown mixing_rule 'average_weights'"):
        DarwinConfig(**{**base, "mixing_rule": "average_weights"})


def test_save_pretrained_writes_auto_map_and_both_modeling_files(saved):
    names = sorted(p.name for p in saved.iterdir())
    assert names == ["config.json", "configuration_darwin.py", "generation_config.json", "model.safetensors",
                     "modeling_darwin.py"]
    for path in modeling_files():
        assert (saved / path.name).read_text() == path.read_text()
    raw = json.loads((saved / "config.json").read_text())
    assert raw["auto_map"]["AutoModelForCausalLM"] == "modeling_darwin.DarwinForCausalLM"
    assert raw["architectures"] == ["DarwinForCausalLM"]
    with safe_open(str(saved / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" not in keys  # tied to the embeddings
    assert {k.split(".")[2] for k in keys if k.startswith("model.mother_ffns.")} == {"1", "2", "3"}


def test_auto_model_loads_the_child_with_trust_remote_code_only(child, saved):
    from transformers import AutoModelForCausalLM

    loaded, info = AutoModelForCausalLM.from_pretrained(saved, trust_remote_code=True, output_loading_info=True)
    assert type(loaded).__name__ == "DarwinForCausalLM"
    assert type(loaded).__module__.startswith("transformers_modules.")  # the copied file, not our package
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert loaded.ratios.tolist() == pytest.approx(GENOME)
    with torch.no_grad():
        assert torch.equal(loaded(PROMPT).logits, child(PROMPT).logits)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        AutoModelForCausalLM.from_pretrained(saved, trust_remote_code=False)


def test_bf16_loading(child, saved):
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(saved, trust_remote_code=True, dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16
    assert loaded.model.mother_ffns["3"].gate_proj.weight.dtype == torch.bfloat16
    assert loaded.ratios.dtype == torch.bfloat16 and loaded.ratios[1].item() == pytest.approx(0.3, abs=2e-3)
    assert torch.equal(loaded.model.mother_ffns["1"].norm.weight,
                       child.model.mother_ffns["1"].norm.weight.to(torch.bfloat16))
    with torch.no_grad():
        logits = loaded(PROMPT).logits
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - child(PROMPT).logits).abs().max() < 0.5  # bf16 rounding, softcapped at 30
    tokens = loaded.generate(PROMPT, max_new_tokens=5, do_sample=False)
    assert tokens.shape == (1, PROMPT.shape[1] + 5)


def test_a_bf16_build_from_the_parents_is_the_bf16_load_of_the_saved_child(tiny_parents, child, saved):
    """The search runs bf16 on GPU: the hybrid it evaluates must compute what the shipped child computes."""
    from transformers import AutoModelForCausalLM

    built = build_hybrid(tiny_parents.father, tiny_parents.mother, child.config, dtype=torch.bfloat16)
    loaded = AutoModelForCausalLM.from_pretrained(saved, trust_remote_code=True, dtype=torch.bfloat16)
    assert built.model.embed_tokens.embed_scale.dtype == loaded.model.embed_tokens.embed_scale.dtype
    assert built.ratios.dtype == loaded.ratios.dtype == torch.bfloat16
    with torch.no_grad():
        assert torch.equal(built(PROMPT).logits, loaded(PROMPT).logits)


def test_generation_with_kv_cache_equals_generation_without(child):
    cached = child.generate(PROMPT, max_new_tokens=20, do_sample=False)
    uncached = child.generate(PROMPT, max_new_tokens=20, do_sample=False, use_cache=False)
    assert cached.shape == (1, PROMPT.shape[1] + 20)
    assert torch.equal(cached, uncached)


def test_modeling_files_import_only_torch_and_transformers():
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    for path in modeling_files():
        # What transformers requires a user to have installed before it runs these files, and what it copies.
        assert set(get_imports(str(path))) <= {"torch", "transformers", "typing", "math", "dataclasses"}
        assert get_relative_imports(str(path)) in ([], ["configuration_darwin"])
        tree = ast.parse(path.read_text())
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not called & {"eval", "exec", "compile", "__import__", "open"}
        assert "pickle" not in path.read_text()
    assert get_imports(str(modeling_files()[1])) == ["torch", "transformers"]


def test_the_modeling_docstring_states_the_rule_the_config_names():
    doc = ast.get_docstring(ast.parse(modeling_files()[1].read_text()))
    assert "h = " + MIXING_RULES["ffn_output_blend"] in doc
    assert "model.mother_ffns.J.{gate,up,down}_proj.weight" in doc


# ---- what the child needs: the transformers release it was written for, and every weight it names ----

def _import_child_code(folder, tmp_path, package):
    """Import a child folder's two files as a fresh package, as trust_remote_code does (relative import)."""
    import importlib
    import shutil
    import sys

    root = tmp_path / "code"
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    for path in modeling_files():
        shutil.copy2(folder / path.name, root / package / path.name)
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"{package}.modeling_darwin")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[name]


def test_the_child_records_and_checks_the_transformers_release_it_needs(saved, tmp_path, monkeypatch):
    import transformers

    from modeling.configuration_darwin import TRANSFORMERS_VERSION

    raw = json.loads((saved / "config.json").read_text())
    assert raw["darwin_transformers_version"] == TRANSFORMERS_VERSION == transformers.__version__
    assert _import_child_code(saved, tmp_path, "child_same").DarwinForCausalLM.__name__ == "DarwinForCausalLM"

    # A patch release is accepted (bug fixes only); another minor or major release is refused in one line.
    monkeypatch.setattr(transformers, "__version__", TRANSFORMERS_VERSION.rsplit(".", 1)[0] + ".9")
    _import_child_code(saved, tmp_path / "patch", "child_patch")
    for other in ("5.25.0", "5.23.1", "4.57.1", "6.0.0.dev0"):
        monkeypatch.setattr(transformers, "__version__", other)
        with pytest.raises(ImportError) as error:
            _import_child_code(saved, tmp_path / other, "child_" + other.replace(".", "_"))
        assert str(error.value) == (f"this Darwin model's code was written for transformers {TRANSFORMERS_VERSION} "
                                    f"but {other} is installed: run `pip install transformers=={TRANSFORMERS_VERSION}`")


def test_the_version_check_comes_before_any_gemma4_import(saved, tmp_path, monkeypatch):
    """An old transformers has no Gemma 4 at all: the user must see our line, not `No module named ...gemma4`."""
    import sys

    import transformers

    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    monkeypatch.setitem(sys.modules, "transformers.models.gemma4.configuration_gemma4", None)
    monkeypatch.setitem(sys.modules, "transformers.models.gemma4.modeling_gemma4", None)
    with pytest.raises(ImportError, match=r"written for transformers .* but 4\.57\.1 is installed"):
        _import_child_code(saved, tmp_path, "child_old")


def _drop_tensor(folder, name):
    """Rewrite the child's single shard without tensor `name`."""
    from safetensors.torch import load_file, save_file

    shard = folder / "model.safetensors"
    tensors = load_file(str(shard))
    del tensors[name]
    save_file(tensors, str(shard), metadata={"format": "pt"})


@pytest.mark.parametrize("name", ["model.mother_ffns.3.down_proj.weight", "model.mother_ffns.1.norm.weight",
                                  "model.layers.2.mlp.up_proj.weight"])
def test_a_child_missing_a_weight_it_names_refuses_to_load(saved, tmp_path, name):
    """Without the check, transformers fills the missing tensor with random values and only logs a warning."""
    import shutil

    from transformers import AutoModelForCausalLM

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    _drop_tensor(broken, name)
    with pytest.raises(ValueError) as error:
        AutoModelForCausalLM.from_pretrained(broken, trust_remote_code=True)
    message = str(error.value)
    assert "\n" not in message and name in message and "lack 1 tensor(s)" in message
    assert "refusing to fill them with random values" in message


def test_an_emitted_child_missing_a_mother_ffn_in_its_shards_refuses_to_load(tiny_parents, tmp_path):
    """The pipeline's own writer: config.json names mother FFN 2 (stored_mother_layers), its shard lacks it."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from modeling.configuration_darwin import TRANSFORMERS_VERSION
    from release.breeders.emit import emit_child

    genome = json.loads((Path(__file__).parent / "fixtures" / "card" / "genome.json").read_text())
    child = emit_child(tiny_parents.father, tiny_parents.mother, genome, tmp_path / "child", max_shard_size="50MB",
                       progress=False)
    raw = json.loads((child / "config.json").read_text())
    assert raw["darwin_transformers_version"] == TRANSFORMERS_VERSION and 2 in raw["stored_mother_layers"]
    AutoModelForCausalLM.from_pretrained(child, trust_remote_code=True)  # complete: loads
    _drop_tensor(child, "model.mother_ffns.2.gate_proj.weight")
    with pytest.raises(ValueError, match=r"lack 1 tensor\(s\) that config.json needs "
                                         r"\(model\.mother_ffns\.2\.gate_proj\.weight\)"):
        AutoModelForCausalLM.from_pretrained(child, trust_remote_code=True)


def test_the_space_and_the_package_pin_the_release_the_child_code_needs():
    from pathlib import Path

    from modeling.configuration_darwin import TRANSFORMERS_VERSION

    root = Path(__file__).resolve().parents[1]
    pin = f"transformers=={TRANSFORMERS_VERSION}"
    assert pin in (root / "space" / "requirements.txt").read_text().split()
    assert f'"{pin}"' in (root / "pyproject.toml").read_text()
