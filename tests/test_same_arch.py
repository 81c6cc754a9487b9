"""Same-architecture breeding: weight merges of two tiny Gemma 4 ConditionalGeneration parents.

The live search model switches genomes in place; every share 0 is the father exactly, every share 1
(density 1) the mother exactly; the emitted child is a stock checkpoint of the parents' class that
loads without trust_remote_code and equals the live model for the chosen genome.
"""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from release.breeders import get_breeder
from release.breeders.weights import check_same_architecture, gene_of
from release.config import BreedSpec, GenomeSpec, SearchSpec
from release.errors import ReleaseError

IDS = torch.tensor([[2, 10, 20, 30, 40, 50, 60, 70, 80]])
PARENTS = {"father": {"repo": "darwin-local/f", "revision": "a" * 40},
           "mother": {"repo": "darwin-local/m", "revision": "b" * 40}}


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    from release.tiny import write_tiny_same_arch_parents

    return write_tiny_same_arch_parents(tmp_path_factory.mktemp("same-arch"), seed=0)


def _config(method):
    return SimpleNamespace(genome=GenomeSpec(frozen=[4], r_max=1.0, init_mean=0.4),
                           breed=BreedSpec(method=method), search=SearchSpec(seed=5))


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def _genome(space, shares: dict[str, float]):
    """Every gene set by its prefix (attn, ffn, norms, density); frozen genes stay pinned."""
    return [g.pinned if g.pinned is not None else shares[g.name.split(".")[0]] for g in space.genes]


def test_tensors_are_assigned_to_attention_ffn_or_norms():
    assert gene_of("model.language_model.layers.3.self_attn.q_proj.weight") == ("attn", 3)
    assert gene_of("model.layers.12.mlp.down_proj.weight") == ("ffn", 12)
    assert gene_of("model.language_model.layers.0.linear_attn.in_proj_qkvz.weight") == ("attn", 0)
    assert gene_of("model.language_model.layers.2.input_layernorm.weight") == ("norms", None)
    assert gene_of("model.vision_tower.encoder.layers.0.self_attn.q_proj.weight") == ("norms", None)
    assert gene_of("model.language_model.embed_tokens.weight") == ("norms", None)


@pytest.mark.parametrize("method", ["linear", "slerp", "ties", "dare_ties"])
def test_live_model_is_father_at_0_mother_at_1_and_the_emitted_stock_child_equals_it(parents, method, tmp_path):
    father = AutoModelForCausalLM.from_pretrained(parents.father).eval()
    mother = AutoModelForCausalLM.from_pretrained(parents.mother).eval()
    breeder = get_breeder(method)
    config = _config(method)
    live = breeder.build_live(parents.father, parents.mother, config, device="cpu", dtype=torch.float32)
    assert type(live.model).__name__ == "Gemma4ForConditionalGeneration"
    names = live.space.names
    assert names[:6] == [f"attn.{i}" for i in range(6)] and names[6:12] == [f"ffn.{i}" for i in range(6)]
    assert names[12:] == (["norms", "density"] if method in ("ties", "dare_ties") else ["norms"])

    live.apply(_genome(live.space, {"attn": 0.0, "ffn": 0.0, "norms": 0.0, "density": 0.5}))
    assert torch.equal(_logits(live.model), _logits(father))
    genome = _genome(live.space, {"attn": 1.0, "ffn": 1.0, "norms": 1.0, "density": 1.0})
    genome[names.index("attn.4")] = genome[names.index("ffn.4")] = 1.0  # unfreeze layer 4 to get all of her
    live.apply(genome)
    assert torch.equal(_logits(live.model), _logits(mother))

    # A mixed genome, after others: the in-place switch leaves no trace of earlier candidates.
    chosen = live.space.full([0.1 * (i % 7) + 0.05 for i in range(len(live.space.free))])
    live.apply(chosen)
    expected = _logits(live.model)
    live.apply(live.space.full([0.9] * len(live.space.free)))
    live.apply(chosen)
    assert torch.equal(_logits(live.model), expected)

    bred = {"genes": names, "genome": chosen, "search": {}, **live.record}
    record = breeder.genome_record(SimpleNamespace(genome=config.genome), bred, PARENTS, {"seed": 5},
                                   breeder.ratios(live.space.named(chosen)))
    out = breeder.emit(parents.father, parents.mother, record, tmp_path / "child", "200KB", progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert "auto_map" not in cfg and cfg["architectures"] == ["Gemma4ForConditionalGeneration"]
    assert not list(out.glob("*.py"))
    child = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False).eval()
    assert type(child).__name__ == "Gemma4ForConditionalGeneration"
    assert torch.equal(_logits(child), expected)
    saved = json.loads((out / "darwin_genome.json").read_text())
    assert saved["method"] == method and saved["seed"] == 5 and saved["father"] == PARENTS["father"]
    assert saved["paper"]["url"].startswith("https://")
    assert set(breeder.child_tensors(parents.father, parents.mother, saved)) == set(
        json.loads((out / "model.safetensors.index.json").read_text())["weight_map"])

    # The Space app loads the stock child and describes its genome.
    from release.hub.space import load_app

    app = load_app()
    model, tokenizer, error = app.load(str(out), None)
    assert error is None and type(model).__name__ == "Gemma4ForConditionalGeneration"
    header = app.header(str(out), None, None)
    assert f"Method `{method}`: mean mother share attention" in header


def _copy_with(folder, tmp_path, edit):
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    edit(copy)
    return copy


def test_parents_of_different_architectures_or_shapes_are_refused_before_any_work(parents, tmp_path):
    def other_type(folder):
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(cfg | {"model_type": "gemma3"}))

    with pytest.raises(ReleaseError, match=r"father is a 'gemma4' model and mother a 'gemma3' one.*ffn_blend"):
        check_same_architecture(parents.father, _copy_with(parents.mother, tmp_path / "a", other_type))

    def reshaped(folder):
        index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
        key = "model.language_model.layers.1.mlp.up_proj.weight"
        tensors = load_file(folder / index[key])
        tensors[key] = tensors[key][:-1]
        save_file(tensors, folder / index[key])

    with pytest.raises(ReleaseError, match=r"layers.1.mlp.up_proj.weight has shape \(128, 64\) in the father "
                                           r"but \(127, 64\) in the mother"):
        get_breeder("ties").check_parents(parents.father, _copy_with(parents.mother, tmp_path / "b", reshaped))
    with pytest.raises(ReleaseError, match="is a 'gemma4' model, expected 'qwen3_5'"):
        get_breeder("ffn_blend").check_parents(parents.father, parents.mother)


def test_cross_architecture_genome_settings_are_refused_for_weight_merges():
    breeder = get_breeder("linear")
    with pytest.raises(ReleaseError, match="genome.layer_map is for ffn_blend"):
        breeder.genome_space(6, SimpleNamespace(genome=GenomeSpec(layer_map=[0] * 6), breed=BreedSpec()))
    space = breeder.genome_space(6, SimpleNamespace(genome=GenomeSpec(frozen=[1], r_max=0.8), breed=BreedSpec()))
    assert space.bounds == [0.0, 0.8] and len(space.free) == 2 * 5 + 1


def test_lineage_configs_chain_generation_to_generation(tmp_path):
    from pathlib import Path

    from release.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    opus, david = load_config(root / "darwin-4b-opus.yaml"), load_config(root / "darwin-4b-david.yaml")
    genesis, tiny = load_config(root / "darwin-4b-genesis.yaml"), load_config(root / "default-same-arch.yaml")
    assert (opus.father.repo, opus.mother.repo) == ("google/gemma-4-E4B-it", "TeichAI/Claude-Opus-Distill-E4B")
    assert (david.father.repo, david.mother.repo) == (opus.child.repo, "DavidAU/DECKARD-Expresso-Universe")
    assert genesis.father.repo == david.child.repo and genesis.breed.method == "ffn_blend"
    assert opus.breed.method == david.breed.method == tiny.breed.method == "dare_ties"
    assert david.genome.mri and not opus.genome.mri  # Gen 2 was MRI-guided
    assert tiny.tiny_parents and tiny.hub.endpoint == "local"
    bad = tmp_path / "bad.yaml"
    bad.write_text((root / "default-same-arch.yaml").read_text().replace("density_init: 0.7", "density_init: 0.1"))
    with pytest.raises(ReleaseError, match=r"breed: need density_min <= density_init <= density_max, got 0.5, 0.1") as e:
        load_config(bad)
    assert "\n" not in str(e.value)
    bad.write_text((root / "default-same-arch.yaml").read_text().replace("method: dare_ties", "method: dare"))
    with pytest.raises(ReleaseError, match=r"breed.method: Input should be 'ffn_blend', 'linear'"):
        load_config(bad)
