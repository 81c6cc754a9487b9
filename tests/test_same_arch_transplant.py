"""The transplant rule for same-architecture breeders: after the search, shares below lo become 0 (the
father's tensor whole) and above hi become 1 (the mother's), re-measured on the live model and kept only
within the search noise; the emitted stock child then holds exactly the parents' tensors there."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from release.breeders import get_breeder
from release.breeders.weights import check_same_architecture, gene_of
from release.config import BreedSpec, GenomeSpec, SearchSpec
from release.mri.stage import after_search, genome_mri_record

IDS = torch.tensor([[2, 10, 20, 30, 40, 50, 60, 70, 80]])
ROOT = Path(__file__).resolve().parents[1]
PARENTS = {"father": {"repo": "darwin-local/zoo-gemma4-lang-a", "revision": "a" * 40},
           "mother": {"repo": "darwin-local/zoo-gemma4-lang-b", "revision": "b" * 40}}  # the default's

SEARCH = {"popsize": 4, "sigma0": 0.15, "seed": 5, "generations": 1, "evaluations": 4, "best_fitness": -1.0,
          "stop_reason": "max_generations", "device": "cpu", "dtype": "float32",
          "fitness": {"kind": "benchmark", "tasks": {"synthetic": 1.0}, "search_items": {"synthetic": 16},
                      "scorer": "fast"}}


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    from release.tiny import write_tiny_same_arch_parents

    return write_tiny_same_arch_parents(tmp_path_factory.mktemp("same-arch-transplant"), seed=0)


def _loss_fitness(live, noise):
    """A real fitness on the live model: minus the next-token loss on fixed ids; `stderr` is the noise."""
    def fitness(genome):
        live.apply(genome)
        with torch.no_grad():
            return -float(live.model(IDS, labels=IDS).loss), {}
    fitness.stderr = noise
    return fitness


def _searched_genome(space):
    """Shares 0.05 (even layers) and 0.95 (odd), one middle share, norms 0.95, density 0.6."""
    values = {"norms": 0.95, "density": 0.6}
    for g in space.genes:
        if g.name.split(".")[0] in ("attn", "ffn"):
            values[g.name] = 0.05 if int(g.name.split(".")[1]) % 2 == 0 else 0.95
    values["ffn.3"] = 0.5  # inside the thresholds: stays as searched
    return [values[g.name] for g in space.genes]


def _tensors(folder: Path, keys) -> dict:
    files = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"] \
        if (folder / "model.safetensors.index.json").is_file() else {k: "model.safetensors" for k in keys}
    out = {}
    for key in keys:
        with safe_open(str(folder / files[key]), framework="pt") as f:
            out[key] = f.get_tensor(key)
    return out


def test_shares_outside_the_thresholds_snap_to_whole_parent_tensors_in_the_stock_child(parents, tmp_path):
    method = "ties"
    config = SimpleNamespace(genome=GenomeSpec(r_max=1.0, init_mean=0.4, transplant=(0.15, 0.85)),
                             breed=BreedSpec(method=method), search=SearchSpec(seed=5))
    breeder = get_breeder(method)
    live = breeder.build_live(parents.father, parents.mother, config, device="cpu", dtype=torch.float32)
    names = live.space.names
    searched = _searched_genome(live.space)

    extra = after_search(config, searched, None, _loss_fitness(live, noise=10.0), None, names)
    t = extra["transplant"]
    assert t["kept"] and extra["genome"] == t["snapped_genome"]
    snapped = dict(zip(names, extra["genome"]))
    assert snapped["density"] == 0.6 and snapped["ffn.3"] == 0.5  # the density and middle shares stay
    assert snapped["attn.0"] == snapped["ffn.2"] == 0.0 and snapped["attn.1"] == snapped["norms"] == 1.0
    assert "attn.0" in t["father_layers"] and "norms" in t["mother_layers"] and "density" not in t["mother_layers"]
    assert t["snapped_fitness"] is not None and t["searched_fitness"] is not None

    # Beyond the noise (noise 0 and a snap that loses) the searched genome ships.
    worse = _loss_fitness(live, noise=0.0)
    dropped = after_search(config, searched, None, lambda g: (worse(g)[0] - (g != searched), {}), None, names)
    assert not dropped["transplant"]["kept"] and dropped["genome"] == searched

    bred = {"genes": names, "genome": extra["genome"], **live.record, **extra}
    ratios = breeder.ratios(breeder.named_genome(bred))
    record = breeder.genome_record(SimpleNamespace(genome=config.genome), bred, PARENTS, SEARCH, ratios) \
        | genome_mri_record(bred, None)
    out = breeder.emit(parents.father, parents.mother, record, tmp_path / "child", "200KB", progress=False)
    saved = json.loads((out / "darwin_genome.json").read_text())
    assert saved["transplant"]["kept"] and saved["transplant"]["thresholds"] == [0.15, 0.85]

    keys = list(check_same_architecture(parents.father, parents.mother))
    child, father, mother = _tensors(out, keys), _tensors(parents.father, keys), _tensors(parents.mother, keys)
    checked = {"father": 0, "mother": 0, "blend": 0}
    for key in keys:
        component, layer = gene_of(key)
        share = snapped["norms" if layer is None else f"{component}.{layer}"]
        if share == 0.0:
            assert torch.equal(child[key], father[key]), key
            checked["father"] += 1
        elif share == 1.0:
            assert torch.equal(child[key], mother[key]), key  # whole, though the density is 0.6
            checked["mother"] += 1
        elif not torch.equal(father[key], mother[key]):
            assert not torch.equal(child[key], father[key]) and not torch.equal(child[key], mother[key]), key
            checked["blend"] += 1
    assert min(checked.values()) > 0

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False).eval()
    live.apply(extra["genome"])  # the stock child is the live model of the snapped genome
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, live.model(IDS).logits)

    # The weights card says what was transplanted.
    from release.card.weights_card import render_weights_card
    from release.config import load_config

    render_weights_card(load_config(ROOT / "configs/default-same-arch.yaml"), saved, None, None, tmp_path / "card")
    card = " ".join((tmp_path / "card" / "README.md").read_text().split())
    assert "**Transplant** (after the search, shares below 0.15 become 0" in card
    assert "snapping attn.0, " in card and "so the snap was kept" in card
