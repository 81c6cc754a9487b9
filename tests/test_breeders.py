"""The breeder registry and genome spaces: the pipeline reaches every method through them."""

import typing
from pathlib import Path
from types import SimpleNamespace

import cma
import pytest
import torch

from release.breeders import Gene, GeneSpace, get_breeder, layer_genes, methods
from release.config import BreedSpec, GenomeSpec
from release.errors import ReleaseError


def test_registry_names_exactly_the_methods_the_config_accepts():
    accepted = typing.get_args(BreedSpec.model_fields["method"].annotation)
    assert sorted(accepted) == methods()
    assert BreedSpec().method == "ffn_blend"
    with pytest.raises(ReleaseError, match="breed.method 'nope' is not a breeder: choose one of"):
        get_breeder("nope")


def test_gene_space_pins_clips_and_extends():
    space = GeneSpace([Gene("a", 0.0, 1.0, 0.3), Gene("b", 0.0, 1.0, 0.0, pinned=0.0), Gene("c", 0.2, 0.9, 0.5, scale=2)])
    assert space.free == [0, 2] and space.x0 == [0.3, 0.5] and space.stds == [1.0, 2]
    assert space.bounds == [[0.0, 0.2], [1.0, 0.9]]
    assert space.full([1.5, 0.1]) == [1.0, 0.0, 0.2]
    tau = space.extended([Gene("tau", 0.0, 1.0, 0.5)])
    assert tau.names == ["a", "b", "c", "tau"] and tau.full([0.1, 0.3, 0.7]) == [0.1, 0.0, 0.3, 0.7]
    assert tau.named([0.1, 0.0, 0.3, 0.7])["tau"] == 0.7
    with pytest.raises(ReleaseError, match="has 3 values, this genome space has 4 genes"):
        tau.named([0.1, 0.0, 0.3])
    # cma honours per-gene bounds: every sample lies inside its own gene's range.
    es = cma.CMAEvolutionStrategy(space.x0, 0.5, {"bounds": space.bounds, "seed": 1, "verbose": -9})
    for x in es.ask():
        g = space.full(x)
        assert 0 <= g[0] <= 1 and 0.2 <= g[2] <= 0.9


def test_layer_genes_pin_frozen_layers_and_share_the_ffn_blend_bounds():
    space = GeneSpace(layer_genes("attn", 6, GenomeSpec(frozen=[4], r_max=0.5, init_mean=0.15)))
    assert space.names == [f"attn.{i}" for i in range(6)] and space.bounds == [0.0, 0.5]
    assert space.x0 == [0.15] * 5 and space.describe([0.1] * 5) == {} and space.tau([0.1] * 5) is None
    assert space.full([0.1, 0.2, 0.3, 0.6, -1]) == [0.1, 0.2, 0.3, 0.5, 0.0, 0.0]
    with pytest.raises(ReleaseError, match="frozen names layers"):
        layer_genes("ffn", 6, GenomeSpec(frozen=[6]))


def test_ffn_blend_live_apply_switches_the_hybrid_and_runs_ratio_hooks(tiny_parents):
    breeder = get_breeder("ffn_blend")
    config = SimpleNamespace(genome=GenomeSpec(frozen=[4], r_max=0.5))
    live = breeder.build_live(tiny_parents.father, tiny_parents.mother, config, device="cpu", dtype=torch.float32)
    assert live.record["layer_map"] == list(live.model.config.layer_map)
    genome = live.space.full([0.1, 0.0, 0.25, 0.5, 0.4])
    live.apply(genome)
    assert live.model.config.ratios == pytest.approx(genome)
    # A hook (as the MRI trust weighting will be) sees the ratios and the genes, and its result is applied.
    live.hooks.append(lambda ratios, named: {"ffn": [r / 2 for r in ratios["ffn"]]})
    live.apply(genome)
    assert live.model.config.ratios == pytest.approx([r / 2 for r in genome])
    assert breeder.ratios(live.space.named(genome), live.hooks) == {"ffn": pytest.approx([r / 2 for r in genome])}


def test_ffn_blend_lists_the_child_tensors_it_emits(tiny_parents, tmp_path):
    import json

    from safetensors import safe_open

    breeder = get_breeder("ffn_blend")
    genome = json.loads((Path(__file__).parent / "fixtures" / "card" / "genome.json").read_text())
    out = breeder.emit(tiny_parents.father, tiny_parents.mother, genome, tmp_path / "child", "50MB", progress=False)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        written = set(f.keys())
    assert set(breeder.child_tensors(tiny_parents.father, tiny_parents.mother, genome)) == written
    with pytest.raises(ReleaseError, match="swap father and mother"):
        breeder.check_parents(tiny_parents.mother, tiny_parents.father)
