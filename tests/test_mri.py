"""Darwin MRI: known-answer static statistics, a deterministic probe, the trust-weighted genome."""

import json
import math

import pytest
import torch
from safetensors import safe_open

from release.config import GenomeSpec, SearchSpec
from release.errors import ReleaseError
from release.breeders.hybrid import weight_files
from release.mri.prompts import probe_prompts, prompts_license
from release.mri.scan import run_mri
from release.mri.static import static_scan, tensor_stats
from release.mri.trust import snap, trust_weighted
from release.breeders.ffn_genome import GenomeSpace
from release.search.cmaes import run_search


def test_static_stats_known_answers():
    # |w| = 0.5, 1.5, 2.5, 3.5 over [0, 3.5] in 4 bins: one per bin, entropy log2(4) = 2 bits
    s = tensor_stats(torch.tensor([[0.5, -1.5], [2.5, -3.5]]), bins=4)
    assert s["entropy"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(math.sqrt(5.0))  # mean -0.5, deviations 1, -1, 3, -3
    assert s["l2"] == pytest.approx(math.sqrt(21.0))
    assert s["score"] == pytest.approx(2.0 / 2.0 * math.sqrt(21.0) / 2)
    # three values in the top bin, one in the first: -(3/4 log2 3/4 + 1/4 log2 1/4)
    s = tensor_stats(torch.tensor([0.1, 4.0, -4.0, 3.9]), bins=4)
    assert s["entropy"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    constant = tensor_stats(torch.full((3, 5), -2.0), bins=16)
    assert (constant["entropy"], constant["std"], constant["l2"]) == (0.0, 0.0, pytest.approx(2 * math.sqrt(15)))
    zero = tensor_stats(torch.zeros(7))
    assert (zero["entropy"], zero["std"], zero["l2"], zero["score"]) == (0.0, 0.0, 0.0, 0.0)


def test_static_scan_reads_each_ffn_tensor_from_the_shards(tiny_parents):
    layer_map = [0, 1, 1, 2, 2, 3]
    scan = static_scan(tiny_parents.father, tiny_parents.mother, layer_map, bins=32)
    assert len(scan["father"]) == 6 and sorted(scan["mother"]) == ["0", "1", "2", "3"]
    key = "model.language_model.layers.2.mlp.up_proj.weight"
    with safe_open(str(weight_files(tiny_parents.mother)[key]), framework="pt") as f:
        assert scan["mother"]["2"]["tensors"]["up_proj"] == tensor_stats(f.get_tensor(key), bins=32)


def test_probe_prompts_cover_the_domains_with_a_license():
    sets = probe_prompts()
    assert set(sets) == {"reasoning", "code", "math", "knowledge", "language", "korean"}
    assert 24 <= sum(map(len, sets.values())) <= 60
    assert prompts_license() == "Apache-2.0"
    assert probe_prompts(2, seed=1) == probe_prompts(2, seed=1) != probe_prompts(2, seed=2)


@pytest.fixture(scope="module")
def scan(tiny_parents, tmp_path_factory):
    return run_mri(tiny_parents.father, tiny_parents.mother, tmp_path_factory.mktemp("mri"), frozen=[4],
                   per_domain=2, seed=3)


def test_mri_stage_writes_r_mri_per_layer_and_is_deterministic(tiny_parents, scan, tmp_path):
    again = run_mri(tiny_parents.father, tiny_parents.mother, tmp_path, frozen=[4], per_domain=2, seed=3)
    assert again["r_mri"] == scan["r_mri"] and again["probe"] == scan["probe"]
    saved = json.loads((tmp_path / "mri.json").read_text())
    assert saved["r_mri"] == scan["r_mri"] and (tmp_path / "mri.png").stat().st_size > 0
    assert len(scan["r_mri"]) == 6 and all(0 < r < 1 for r in scan["r_mri"])
    assert set(scan["probe"]["domains"]) == {"reasoning", "code", "math", "knowledge", "language", "korean"}
    for row in scan["probe"]["layers"]:
        assert 0 <= row["cos_distance"] <= 2 and row["rel_norm"] > 0
    for row in scan["layers"]:  # r_MRI = MRI_mother / (MRI_father + MRI_mother)
        assert row["r_mri"] == pytest.approx(row["mri"]["mother"] / (row["mri"]["father"] + row["mri"]["mother"]))
        assert row["mri"]["father"] == pytest.approx(0.4 * row["static"]["father"] + 0.6 * row["probe"]["father"])


def test_probe_matches_the_branches_computed_by_hand(tiny_parents, scan):
    from transformers import AutoTokenizer

    from release.breeders.hybrid import build_search_hybrid

    model = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    prompt = probe_prompts(2, seed=3)["math"]
    ids = AutoTokenizer.from_pretrained(tiny_parents.father)
    inputs = {}
    layer = model.model.layers[3]
    layer.ffn_step.register_forward_hook(lambda m, args, out: inputs.update({len(inputs): args}))
    cos = []
    with torch.no_grad():
        for p in prompt:
            inputs.clear()
            model(input_ids=ids(p, return_tensors="pt").input_ids)
            h, f = inputs[0]
            m = layer.post_feedforward_layernorm(model.model.mother_ffns.for_layer(3)(h))
            cos.append(1 - torch.nn.functional.cosine_similarity(f, m, dim=-1).flatten())
    expected = float(torch.cat(cos).mean())
    assert scan["probe"]["domains"]["math"]["layers"][3]["cos_distance"] == pytest.approx(expected, rel=1e-5)


def test_tau_one_gives_r_mri_and_tau_zero_the_genome():
    r_mri = [0.2, 0.7, 0.33, 0.9, 0.05]
    spec = GenomeSpec(frozen=[1], r_max=1.0, mri=True)
    space = GenomeSpace(5, spec, r_mri=r_mri)
    assert space.dimensions == spec.dimensions(5) == 5  # 4 free ratios + tau
    x = [0.1, 0.25, 0.6, 0.4]
    assert space.full([*x, 1.0]) == [0.2, 0.0, 0.33, 0.9, 0.05]  # r_MRI exactly, frozen at 0
    assert space.full([*x, 0.0]) == [0.1, 0.0, 0.25, 0.6, 0.4]  # the genome exactly
    assert space.full([*x, 0.5]) == pytest.approx([0.15, 0.0, 0.29, 0.75, 0.225])
    assert space.describe([*x, 1.7]) == {"tau": 1.0, "r_mri": r_mri}
    # clipped to the bounds
    assert trust_weighted(1.0, [0.9], [0.1], r_max=0.5, frozen=[]) == [0.5]
    assert snap([0.1, 0.15, 0.5, 0.85, 0.9], 0.15, 0.85) == [0.0, 0.15, 0.5, 0.85, 1.0]


def test_mri_needs_r_mri():
    with pytest.raises(ReleaseError, match="run the mri stage first"):
        GenomeSpace(5, GenomeSpec(mri=True))


def test_without_mri_the_search_is_exactly_todays(tmp_path):
    """The genome the unchanged search found for this seed before MRI existed (recorded from main)."""
    space = GenomeSpace(5, GenomeSpec(frozen=[1], r_max=0.5, init_mean=0.1))
    assert space.dimensions == 4 and space.bounds == [0.0, 0.5]
    target = [0.3, 0.0, 0.1, 0.45, 0.2]
    result = run_search(space, lambda g: (-sum((a - b) ** 2 for a, b in zip(g, target)), {}),
                        SearchSpec(popsize=4, max_generations=3, seed=7), tmp_path, "k", progress=False)
    assert result.genome == [0.10475781524979423, 0.0, 0.029833167804476014, 0.25226960156141404,
                             0.2329944069153197]
    assert result.tau is None
    assert "tau" not in json.loads((tmp_path / "candidates.jsonl").read_text().splitlines()[0])


def test_with_mri_the_search_logs_tau_and_r_mri(tmp_path):
    r_mri = [0.3, 0.1, 0.2, 0.4, 0.25]
    space = GenomeSpace(5, GenomeSpec(frozen=[1], r_max=0.5, mri=True, mri_trust_init=0.3), r_mri=r_mri)
    result = run_search(space, lambda g: (-sum((a - b) ** 2 for a, b in zip(g, r_mri)), {}),
                        SearchSpec(popsize=4, max_generations=2, seed=7), tmp_path, "k", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert all(0 <= line["tau"] <= 1 and line["r_mri"] == r_mri for line in lines)
    best = max(lines, key=lambda line: line["fitness"])
    assert result.tau == best["tau"] and result.genome == best["genome"]


def test_transplant_keeps_a_snap_within_the_noise_and_drops_one_that_loses():
    from release.mri.transplant import transplant

    genome = [0.05, 0.0, 0.5, 0.9, 0.1]
    calls = []

    def fitness(g):  # the snap costs 0.01
        calls.append(g)
        return (0.80 if g == genome else 0.79), {"t": 0.0}

    fitness.stderr = 0.02
    kept = transplant(genome, fitness, thresholds=(0.15, 0.85))
    assert calls == [genome, [0.0, 0.0, 0.5, 1.0, 0.0]]  # both measured, side by side
    assert kept["kept"] and kept["genome"] == [0.0, 0.0, 0.5, 1.0, 0.0]
    assert (kept["father_layers"], kept["mother_layers"]) == ([0, 4], [3])
    assert (kept["searched_fitness"], kept["snapped_fitness"], kept["noise"]) == (0.80, 0.79, 0.02)
    fitness.stderr = 0.005
    dropped = transplant(genome, fitness, thresholds=(0.15, 0.85))
    assert not dropped["kept"] and dropped["genome"] == genome and "lost beyond the noise" in dropped["reason"]
    calls.clear()
    nothing = transplant([0.0, 0.3], fitness, thresholds=(0.15, 0.85))
    assert nothing["kept"] and calls == []  # nothing to snap: no evaluation


def _probe_on_the_search_hybrid(tiny_parents, per_domain, seed):
    """The probe's per-domain statistics as computed before it streamed: the whole search hybrid (every mapped
    mother FFN held) at r = 0, the mother branch computed in the FFN step's hook."""
    from transformers import AutoTokenizer

    from release.breeders.hybrid import build_search_hybrid
    from release.mri.probe import token_stats

    model = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    tokenizer = AutoTokenizer.from_pretrained(tiny_parents.father)
    sums, real = {}, [None]

    def hook_for(i):
        def hook(module, args, output):
            residual, father = args
            layer = model.model.layers[i]
            mother = layer.post_feedforward_layernorm(model.model.mother_ffns.for_layer(i)(residual))
            sums[i] = {k: float(v[real[0]].sum()) for k, v in token_stats(residual, father, mother).items()}
        return hook

    handles = [layer.ffn_step.register_forward_hook(hook_for(i)) for i, layer in enumerate(model.model.layers)]
    out = {}
    with torch.no_grad():
        for domain, prompts in probe_prompts(per_domain, seed).items():
            batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right")
            real[0] = batch.attention_mask.bool().flatten()
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            out[domain] = [{k: v / int(real[0].sum()) for k, v in sums[i].items()} for i in range(len(sums))]
    for h in handles:
        h.remove()
    return out


def test_the_mri_holds_the_father_and_one_mother_ffn_with_the_same_probe(tiny_parents, tmp_path):
    """Streaming (issue 25): while the probe runs, the weights alive stay within the larger parent plus one
    mother FFN layer (the MRI once held the whole search hybrid: the father and every mapped mother FFN), and
    its statistics are the ones the search hybrid gave."""
    from tests.weights_memory import fp32_weight_bytes, weights_held

    with weights_held(("ForCausalLM", "MotherFFN")) as held:
        result = run_mri(tiny_parents.father, tiny_parents.mother, tmp_path, per_domain=2, seed=3)
    largest = max(fp32_weight_bytes(f, text_only=True) for f in (tiny_parents.father, tiny_parents.mother))
    mother_ffn = 4 * sum(p.numel() for name, p in _mother_layer(tiny_parents.mother, 0).items())
    assert held["forwards"] > 6 and held["peak"] > largest / 2  # the hook saw the model and the FFNs run
    assert held["peak"] <= largest + 1.5 * mother_ffn, (held["peak"], largest, mother_ffn)
    expected = _probe_on_the_search_hybrid(tiny_parents, per_domain=2, seed=3)
    for domain, rows in expected.items():
        for got, want in zip(result["probe"]["domains"][domain]["layers"], rows, strict=True):
            assert got == pytest.approx(want, rel=1e-6, abs=1e-9), domain


def _mother_layer(folder, j):
    """Mother layer j's FFN tensors (what the hybrid's mother FFN holds besides its norm)."""
    tensors = {}
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            tensors |= {k: f.get_tensor(k) for k in f.keys() if f"language_model.layers.{j}.mlp." in k}
    return tensors
