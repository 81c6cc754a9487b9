"""Darwin MRI trust for same-architecture breeders: r_MRI per layer from both parents' layer tensors and a
probe, a `tau` gene, and the ratio hook that pulls the attention and FFN shares towards r_MRI, in the live
search model and in the emitted child alike."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from release.breeders import get_breeder
from release.config import BreedSpec, GenomeSpec, SearchSpec
from release.errors import ReleaseError
from release.mri.weights_trust import scan_same_arch
from tests.background import early_run
from tests.cli import free_port, run_cli

IDS = torch.tensor([[2, 10, 20, 30, 40, 50, 60, 70, 80]])
ROOT = Path(__file__).resolve().parents[1]
PARENTS = {"father": {"repo": "darwin-local/f", "revision": "a" * 40},
           "mother": {"repo": "darwin-local/m", "revision": "b" * 40}}


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    from release.tiny import write_tiny_same_arch_parents

    return write_tiny_same_arch_parents(tmp_path_factory.mktemp("same-arch-trust"), seed=0)


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def test_r_mri_is_one_half_for_identical_parents_and_per_layer_for_different_ones(parents):
    same = scan_same_arch(parents.father, parents.father, per_domain=1)
    assert len(same) == 6 and all(row["cos_distance"] < 1e-6 and row["r_mri"] == pytest.approx(0.5) for row in same)
    layers = scan_same_arch(parents.father, parents.mother, per_domain=1)
    assert all(row["cos_distance"] > 0 and 0 < row["r_mri"] < 1 for row in layers)
    assert len({round(row["r_mri"], 6) for row in layers}) > 1  # a per-layer diagnosis, not one number
    # the probe's mean share is the father's: the mean mother probe is 1 by construction
    assert sum(row["probe"]["mother"] for row in layers) / 6 == pytest.approx(1.0)


def test_tau_pulls_the_shares_to_r_mri_in_the_live_model_and_the_emitted_child(parents, tmp_path):
    r_mri = [0.1, 0.2, 0.3, 0.4, 0.9, 0.6]
    config = SimpleNamespace(genome=GenomeSpec(frozen=[4], r_max=0.5, init_mean=0.3, mri=True),
                             breed=BreedSpec(method="linear"), search=SearchSpec(seed=5))
    breeder = get_breeder("linear")
    with pytest.raises(ReleaseError, match="no r_MRI per layer was given"):
        breeder.build_live(parents.father, parents.mother, config, device="cpu", dtype=torch.float32)
    with pytest.raises(ReleaseError, match="genome.mri and genome.transplant together"):
        breeder.genome_space(6, SimpleNamespace(genome=GenomeSpec(mri=True, transplant=(0.1, 0.9)),
                                                breed=BreedSpec()))
    from release.config import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs/default-same-arch.yaml").read_text().replace("  r_max: 1.0",
                                                                                 "  mri: true\n  r_max: 1.0"))
    with pytest.raises(ReleaseError, match="genome.mri and genome.transplant together are not wired") as e:
        load_config(bad)
    assert "\n" not in str(e.value)
    live = breeder.build_live(parents.father, parents.mother, config, device="cpu", dtype=torch.float32,
                              r_mri=r_mri)
    names = live.space.names
    assert names[-1] == "tau" and live.space.genes[-1].init == 0.5
    genome = [g.pinned if g.pinned is not None else 0.2 for g in live.space.genes]

    # tau = 1: every free layer's shares are r_MRI, clipped to r_max; the frozen layer stays the father's.
    genome[-1] = 1.0
    ratios = breeder.ratios(live.space.named(genome), live.hooks)
    assert ratios["attn"] == ratios["ffn"] == [0.1, 0.2, 0.3, 0.4, 0.0, 0.5] and ratios["norms"] == [0.2]
    assert live.space.tau([0.2] * (len(live.space.free) - 1) + [1.0]) == 1.0  # tau is the last free gene
    live.apply(genome)
    trusted = _logits(live.model)
    plain = [min(max(r, 0.0), 0.5) for r in r_mri]  # the same shares as genes, with tau 0
    as_genes = dict(zip(names, genome))
    for i in range(6):
        if i != 4:
            as_genes[f"attn.{i}"] = as_genes[f"ffn.{i}"] = plain[i]
    as_genes["tau"] = 0.0
    live.apply([as_genes[n] for n in names])
    assert torch.equal(_logits(live.model), trusted)

    # tau = 0.5: halfway between the genes and r_MRI; the emitted child (same hooks) equals the live model.
    genome[-1] = 0.5
    live.apply(genome)
    expected = _logits(live.model)
    bred = {"genes": names, "genome": genome, **live.record, "r_mri": r_mri}
    hooks = breeder.ratio_hooks(config, bred["r_mri"])
    ratios = breeder.ratios(breeder.named_genome(bred), hooks)
    assert ratios["ffn"][0] == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)
    record = breeder.genome_record(SimpleNamespace(genome=config.genome), bred, PARENTS, {}, ratios)
    out = breeder.emit(parents.father, parents.mother, record, tmp_path / "child", "200KB", progress=False)
    child = AutoModelForCausalLM.from_pretrained(out).eval()
    assert torch.equal(_logits(child), expected)
    assert json.loads((out / "darwin_genome.json").read_text())["genes"]["tau"] == 0.5


@early_run
def trusted_card(tmp: Path, env: dict):
    """The same-architecture default with genome.mri on, a frozen layer and a short search, run by the
    real CLI up to the card (in the background from the session's start: tests/background.py)."""
    raw = yaml.safe_load((ROOT / "configs/default-same-arch.yaml").read_text())
    raw["runs_dir"] = str(tmp / "runs")
    raw["hub"].update(local_root=str(tmp / "hub"), local_port=free_port())
    raw["search"].update(popsize=4, max_generations=1)
    raw["fitness"]["tasks"][0].update(search_size=8, heldout_size=8)
    raw["genome"].pop("transplant")
    raw["genome"].update(mri=True, frozen=[4])  # a frozen layer stays the father's under the trust too
    raw["mri"] = {"prompts_per_domain": 1}
    config = tmp / "trust.yaml"
    config.write_text(yaml.safe_dump(raw))
    return tmp, raw, run_cli(tmp, "card", str(config), timeout=300, environ=env)


def test_the_pipeline_scans_breeds_with_tau_and_emits_the_trusted_child(trusted_card):
    """The real CLI up to the card with genome.mri on the same-architecture default: the mri stage writes r_MRI,
    the search learns tau, and darwin_genome.json records both."""
    tmp_path, raw, out = trusted_card
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / raw["name"]
    scan = json.loads((run / "mri" / "mri.json").read_text())
    assert len(scan["r_mri"]) == 6 and all(0 < r < 1 for r in scan["r_mri"])
    genome = json.loads((run / "child" / "darwin_genome.json").read_text())
    tau = genome["genes"]["tau"]
    assert 0 <= tau <= 1 and genome["mri"]["trust"] and genome["mri"]["tau"] == pytest.approx(tau)
    assert genome["mri"]["r_mri"] == scan["r_mri"]
    g, r = genome["genes"], scan["r_mri"]
    for i in (0, 1, 2, 3, 5):  # the shares are the trusted ones; layer 4 is frozen
        expected = min(max(tau * r[i] + (1 - tau) * g[f"ffn.{i}"], 0.0), raw["genome"]["r_max"])
        assert genome["ratios"]["ffn"][i] == pytest.approx(expected)
    assert genome["ratios"]["ffn"][4] == 0.0
    card = " ".join((run / "child" / "README.md").read_text().split())
    assert f"The search learned the trust tau = {tau:.3f}" in card and "**Darwin MRI**" in card
    assert "Result: **passed**" in card  # the health check ran on the trusted child too


def test_the_scan_holds_one_parent_at_a_time_with_the_same_distances(parents):
    """Streaming (issue 25): the scan once held both parents; now one at a time (the father's hidden states
    kept), and each layer's distance is the one both parents loaded together give."""
    from transformers import AutoTokenizer

    from release.mri.health import cosine
    from release.mri.prompts import probe_prompts
    from release.mri.weights_health import layer_states
    from tests.weights_memory import fp32_weight_bytes, weights_held

    with weights_held() as held:
        layers = scan_same_arch(parents.father, parents.mother, per_domain=1)
    largest = max(fp32_weight_bytes(f) for f in (parents.father, parents.mother))
    assert held["forwards"] >= 2 and largest / 2 < held["peak"] <= 1.5 * largest, (held["peak"], largest)
    father, mother = (AutoModelForCausalLM.from_pretrained(f, dtype=torch.float32).eval()
                      for f in (parents.father, parents.mother))
    tokenizer = AutoTokenizer.from_pretrained(parents.father)
    sums, tokens = [0.0] * 6, 0
    for prompts in probe_prompts(1, 0).values():
        batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right")
        real = batch.attention_mask.bool().flatten()
        f, m = layer_states(father, batch), layer_states(mother, batch)
        for i in range(6):
            sums[i] += float((1 - cosine(f[("out", i)], m[("out", i)]))[real].sum())
        tokens += int(real.sum())
    assert [row["cos_distance"] for row in layers] == pytest.approx([s / tokens for s in sums], rel=1e-6, abs=1e-9)
