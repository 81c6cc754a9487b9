"""The health check of a same-architecture child: three stock models compared layer by layer on the
probe prompts; a merged child passes, a child with one damaged layer is flagged and stops the release."""

import json
import shutil
from types import SimpleNamespace

import pytest
from safetensors.torch import load_file, save_file

from release.breeders import get_breeder
from release.config import BreedSpec, GenomeSpec, HealthSpec, SearchSpec
from release.errors import ReleaseError
from release.mri.health import require_healthy
from release.mri.weights_health import weights_health_check

PARENTS = {"father": {"repo": "darwin-local/f", "revision": "a" * 40},
           "mother": {"repo": "darwin-local/m", "revision": "b" * 40}}
DAMAGED = 2


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    """Two tiny Gemma 4 parents and their linear child at shares 0.5 (layer 4 frozen: the father's)."""
    from release.tiny import write_tiny_same_arch_parents

    root = tmp_path_factory.mktemp("same-arch-health")
    parents = write_tiny_same_arch_parents(root, seed=0)
    breeder = get_breeder("linear")
    config = SimpleNamespace(genome=GenomeSpec(frozen=[4], r_max=1.0, init_mean=0.5),
                             breed=BreedSpec(method="linear"), search=SearchSpec(seed=5))
    space = breeder.genome_space(6, config)
    genome = space.full([0.5] * len(space.free))
    named = space.named(genome)
    bred = {"genes": space.names, "genome": genome, "seed": 5, "model_class": "Gemma4ForConditionalGeneration"}
    record = breeder.genome_record(SimpleNamespace(genome=config.genome), bred, PARENTS, {}, breeder.ratios(named))
    out = breeder.emit(parents.father, parents.mother, record, root / "child", "200KB", progress=False)
    return SimpleNamespace(path=out, parents=parents, ratios=record["ratios"], root=root)


def _damaged(child, tmp_path, edit):
    """A copy of the child whose decoder layer DAMAGED has every weight (projections and norms) passed through
    `edit`."""
    copy = tmp_path / "damaged"
    shutil.copytree(child.path, copy)
    for shard in copy.glob("*.safetensors"):
        tensors = load_file(shard)
        hit = {k for k in tensors if f"language_model.layers.{DAMAGED}." in k and k.endswith("weight")}
        if hit:
            save_file({k: edit(v) if k in hit else v for k, v in tensors.items()}, shard, metadata={"format": "pt"})
    return copy


def _check(folder, child, out):
    return weights_health_check(folder, child.parents.father, child.parents.mother, out, HealthSpec(),
                                child.ratios, per_domain=1, seed=0)


def test_a_merged_child_passes_and_a_scaled_layer_is_flagged(child, tmp_path):
    healthy = _check(child.path, child, tmp_path / "ok")
    assert healthy["passed"] and healthy["flagged_layers"] == [] and healthy["reasons"] == []
    assert len(healthy["layers"]) == 6 and healthy["generation"]["new_tokens"] > 0
    frozen = healthy["layers"][4]  # the father's layer 4, on a stream that differs from his before it
    assert frozen["cos_father"] > 0.5 and frozen["ratio"] == {"attn": 0.0, "ffn": 0.0}
    for row in healthy["layers"]:  # on the same input a 0.5 blend lies between its parents: close to both
        assert row["cos_father"] > 0.9 and row["cos_mother"] > 0.9
    assert set(healthy["perplexity"]) == {"child", "father", "mother"}
    saved = json.loads((tmp_path / "ok" / "health.json").read_text())
    assert saved["passed"] and (tmp_path / "ok" / "health.png").stat().st_size > 0
    require_healthy(saved, tmp_path / "ok" / "health.json")  # passes: no error

    # Every weight of one layer scaled 8x: that layer alone is flagged (the measure is local: the layers
    # after it run on its output, yet agree with their parents on the same input), and the release stops.
    report = _check(_damaged(child, tmp_path, lambda v: v * 8), child, tmp_path / "scaled")
    assert report["flagged_layers"] == [DAMAGED], report["layers"][DAMAGED]
    assert report["layers"][DAMAGED]["norm_father"] > 3 and report["layers"][DAMAGED]["norm_mother"] > 3
    assert not report["passed"] and report["reasons"][0] == f"layers {DAMAGED} diverge from both parents"
    with pytest.raises(ReleaseError, match=r"health check failed: layers 2 diverge from both parents"):
        require_healthy(report, tmp_path / "scaled" / "health.json")


def test_a_layer_with_every_weight_zeroed_is_flagged_at_the_default_thresholds(child, tmp_path):
    """Issue 22 item 14: Gemma 4's layer_scalar kept such a layer's update at cosine ~0.6 with its parents'."""
    import torch

    report = _check(_damaged(child, tmp_path, torch.zeros_like), child, tmp_path / "zeroed")
    assert report["flagged_layers"] == [DAMAGED], report["layers"][DAMAGED]
    assert report["layers"][DAMAGED]["norm_father"] < 1e-3 and report["layers"][DAMAGED]["norm_mother"] < 1e-3
    assert not report["passed"]


def _statistics_holding_all_three(child):
    """The layer statistics as the check computed them before it streamed: child, father and mother loaded
    together, each parent's layer i run on the child's call to layer i, batch by batch."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from release.mri.health import cosine, norm_ratio
    from release.mri.prompts import probe_prompts
    from release.mri.weights_health import decoder_layers, layer_states

    models = {role: AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval() for role, folder in
              (("child", child.path), ("father", child.parents.father), ("mother", child.parents.mother))}
    tokenizer = AutoTokenizer.from_pretrained(child.parents.father)

    def update(layer, args, kwargs):
        out = layer(*args, **kwargs)
        return (out[0] if isinstance(out, tuple) else out) - (args[0] if args else kwargs["hidden_states"])

    layers = {role: decoder_layers(m) for role, m in models.items()}
    sums = [{} for _ in layers["child"]]
    tokens = 0
    with torch.no_grad():
        for prompts in probe_prompts(1, 0).values():
            batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right")
            real = batch.attention_mask.bool().flatten()
            c = layer_states(models["child"], batch, calls=True)
            nulls = []
            for i, layer in enumerate(layers["child"]):
                null = copy.deepcopy(layer)
                for p in null.parameters():
                    p.zero_()
                nulls.append(update(null, *c[("call", i)]))
            for role in ("father", "mother"):
                own = layer_states(models[role], batch)
                for i, layer in enumerate(layers[role]):
                    args, kwargs = c[("call", i)]
                    u = c[("out", i)] - (args[0] if args else kwargs["hidden_states"]) - nulls[i]
                    p = update(layer, *c[("call", i)]) - nulls[i]
                    for key, value in ((f"cos_{role}", cosine(u, p)), (f"norm_{role}", norm_ratio(u, p)),
                                       (f"hidden_cos_{role}", cosine(c[("out", i)], own[("out", i)]))):
                        sums[i][key] = sums[i].get(key, 0.0) + float(value[real].sum())
            tokens += int(real.sum())
    return [{k: v / tokens for k, v in row.items()} for row in sums]


def test_the_check_holds_one_model_at_a_time_with_the_same_statistics(child, tmp_path):
    """Streaming (issue 25): whenever a model runs, the weights alive stay under 1.5x the largest single
    model's (the check once held child, father and mother together: 3x), and every layer statistic is the
    one the check computed holding all three."""
    from tests.weights_memory import fp32_weight_bytes, weights_held

    with weights_held() as held:
        result = _check(child.path, child, tmp_path)
    largest = max(fp32_weight_bytes(f) for f in (child.path, child.parents.father, child.parents.mother))
    assert result["passed"] and held["forwards"] >= 3 and held["peak"] > largest / 2  # the hook saw models run
    assert held["peak"] <= 1.5 * largest, (held["peak"], largest)
    expected = _statistics_holding_all_three(child)
    for got, want in zip(result["layers"], expected, strict=True):
        assert {k: got[k] for k in want} == pytest.approx(want, rel=1e-6, abs=1e-9), got["layer"]
