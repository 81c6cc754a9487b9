"""The same-architecture merge operators against mergekit's own implementations, on the same tensors."""

from types import SimpleNamespace

import pytest
import torch

from release.breeders import merge_ops

mergekit = pytest.importorskip("mergekit", reason="mergekit is a dev-only reference (pip install -e .[dev])")
from mergekit.merge_methods.base import TensorBatch, TensorGroup  # noqa: E402
from mergekit.merge_methods.registry import get as mergekit_method  # noqa: E402
from mergekit.merge_methods.slerp import slerp as mk_slerp  # noqa: E402

SHAPES = [(48, 32), (64,), (3, 5, 7)]


def _pair(shape, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g)
    return a, a + scale * torch.randn(shape, generator=g)  # a fine-tune: close to the father


def _group(a, b):
    return TensorGroup.from_tensors([a, b], base_index=0, name="w")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_linear_equals_mergekit(shape, t):
    a, b = _pair(shape, 1)
    batch = TensorBatch((a[None], b[None]))
    ours = merge_ops.merge("linear", a, b, t)
    theirs = mergekit_method("linear").merge_batch(batch, weight=torch.tensor([[1 - t, t]]),
                                                              normalize=True)[0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("scale", [0.05, 3.0, 0.0])  # close, far apart, colinear (linear fallback)
def test_slerp_equals_mergekit(shape, t, scale):
    a, b = _pair(shape, 2, scale)
    theirs = mk_slerp(torch.tensor([t]), a[None], b[None])[0]
    torch.testing.assert_close(merge_ops.merge("slerp", a, b, t), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("t,density", [(0.5, 0.3), (1.0, 0.5), (0.7, 0.9), (0.4, 1.0), (0.6, 0.01)])
def test_ties_equals_mergekit(shape, t, density):
    a, b = _pair(shape, 3)
    ties = mergekit_method("ties")
    theirs = ties.merge_group(_group(a, b), int8_mask=False, normalize=False, rescale=False,
                              **{"lambda": 1.0}, weight={1: t}, density={1: density})
    torch.testing.assert_close(merge_ops.merge("ties", a, b, t, density), theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("t", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_ties_on_bf16_parents_keeps_exactly_k_entries_as_mergekit_does(t, density):
    """bf16 parents (every real checkpoint): their differences take few distinct values, so many entries tie
    at the cut. TIES keeps exactly k of them, the same ones mergekit keeps, and the child equals mergekit's."""
    ties = mergekit_method("ties")
    tied = 0
    for shape, seed in (((256, 64), 10), ((4096,), 11), ((3, 5, 7), 12)):
        a, b = (x.bfloat16() for x in _pair(shape, seed))
        delta = b.float() - a.float()
        n, k = delta.numel(), max(1, int(density * delta.numel()))
        cut = delta.abs().flatten().kthvalue(n - k + 1).values
        tied += int((delta.abs() >= cut).sum()) - k  # entries a threshold rule would keep beyond k
        keep = merge_ops.magnitude_keep(delta, density)
        assert int(keep.sum()) == k, (shape, int(keep.sum()), k)
        # mergekit's merge in float32 over the bf16 parents (a config's `dtype: float32`)
        theirs = ties.merge_group(_group(a.float(), b.float()), int8_mask=False, normalize=False, rescale=False,
                                  **{"lambda": 1.0}, weight={1: t}, density={1: density})
        ours = merge_ops.merge("ties", a, b, t, density)
        assert torch.equal(ours != a.float(), theirs != a.float()), shape  # the same entries moved
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert tied > 0  # the parents do tie at the cut: the case the threshold rule got wrong


def test_ties_keeps_the_same_entries_on_every_call_and_for_float64():
    a, b = (x.bfloat16() for x in _pair((512, 33), 13))
    delta = b.float() - a.float()
    first = merge_ops.magnitude_keep(delta, 0.4)
    assert torch.equal(first, merge_ops.magnitude_keep(delta.clone(), 0.4))
    assert torch.equal(merge_ops.magnitude_keep(delta.double(), 0.4), first)
    assert int(merge_ops.magnitude_keep(delta, 1e-9).sum()) == 1  # at least one entry, as mergekit
    assert merge_ops.magnitude_keep(delta, 1.0) is None and not merge_ops.magnitude_keep(delta, 0.0).any()


def test_ratio_zero_is_the_father_and_one_the_mother_exactly_for_every_method():
    a, b = _pair((40, 24), 4, scale=1.0)
    for method in merge_ops.METHODS:
        assert torch.equal(merge_ops.merge(method, a, b, 0.0, 0.6, seed=1, name="w"), a), method
        assert torch.equal(merge_ops.merge(method, a, b, 1.0, 1.0, seed=1, name="w"), b), method


def test_dare_drops_at_the_rate_asked_rescales_survivors_and_is_seeded():
    a, b = _pair((256, 256), 5)
    delta = b - a
    t, density = 0.6, 0.3
    child = merge_ops.merge("dare_ties", a, b, t, density, seed=7, name="layers.0.mlp.up_proj.weight")
    kept = child != a
    rate = kept.float().mean().item()
    assert abs(rate - density) < 0.01, rate  # 65536 entries: 3 sigma is 0.0054
    # Survivors carry the task vector rescaled by 1 / (1 - p) = 1 / density; dropped entries are the father's.
    torch.testing.assert_close(child[kept], (a + t * delta / density)[kept], rtol=0, atol=1e-6)
    # Same genome, seed and name: the same child; another seed or tensor name: another mask.
    again = merge_ops.merge("dare_ties", a, b, t, density, seed=7, name="layers.0.mlp.up_proj.weight")
    assert torch.equal(child, again)
    other = merge_ops.merge("dare_ties", a, b, t, density, seed=8, name="layers.0.mlp.up_proj.weight")
    assert not torch.equal(child, other)
    renamed = merge_ops.merge("dare_ties", a, b, t, density, seed=7, name="layers.1.mlp.up_proj.weight")
    assert not torch.equal(child, renamed)
    # The expected task vector is preserved: E[mask / density] = 1 (mergekit rescales by the L1 norm instead).
    assert abs((child - a).abs().sum().item() / (t * delta.abs().sum().item()) - 1) < 0.02
    # Masks nest as density grows: a surviving entry survives at every higher density.
    denser = merge_ops.merge("dare_ties", a, b, t, 0.5, seed=7, name="layers.0.mlp.up_proj.weight") != a
    assert bool((denser | ~kept).all())


def test_dare_masks_are_the_same_on_every_device_and_for_huge_indices():
    noise = merge_ops.dare_noise((1000,), seed=3, name="w")
    assert noise.dtype == torch.int32 and int(noise.min()) >= 0 and int(noise.max()) < merge_ops.NOISE_LEVELS
    # Integer-only arithmetic: recomputing from the indices reproduces it (a GPU run gives the same ints).
    idx = torch.arange(1000, dtype=torch.int64)
    x = merge_ops._mix(merge_ops._mix((idx & 0xFFFFFFFF) ^ merge_ops.tensor_salt(3, "w")) ^ (idx >> 32))
    assert torch.equal((x >> 16).to(torch.int32), noise)
    hist = torch.bincount(noise // 4096, minlength=16).float()
    assert hist.min() > 30 and hist.max() < 100  # roughly uniform over 16 bins of 62.5 expected


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def qwen3_pair(request, tmp_path_factory):
    from release.tiny import write_tiny_causal_pair

    pair = write_tiny_causal_pair(tmp_path_factory.mktemp(f"qwen3-pair-{request.param}"), seed=0,
                                  dtype=getattr(torch, request.param))
    return SimpleNamespace(father=pair.father, mother=pair.mother, dtype=getattr(torch, request.param))


def _within_one_step(mine: torch.Tensor, theirs: torch.Tensor, key: str):
    """Equal up to the rounding order of float32 arithmetic: 1e-6 in float32, one rounding step in bf16."""
    if mine.dtype == torch.bfloat16:
        torch.testing.assert_close(mine.float(), theirs.float(), rtol=2 ** -7, atol=1e-30, msg=key)
    else:
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("method", ["linear", "slerp", "ties"])
def test_mergekit_run_on_the_shipped_config_writes_the_childs_tensors(qwen3_pair, method, tmp_path):
    """Every same-architecture child ships mergekit_config.yml: mergekit run on it (parents given as local
    folders for the pinned repo@commit) writes our emitted child, tensor for tensor, per-layer shares included."""
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from safetensors.torch import load_file

    from release.breeders import get_breeder
    from release.breeders.mergekit_out import MERGEKIT_FILE

    father, mother = {"repo": "darwin-local/father", "revision": "a" * 40}, {"repo": "darwin-local/mother", "revision": "b" * 40}
    genome = {"method": method, "ratios": {"attn": [0.3, 0.75], "ffn": [1.0, 0.2], "norms": [0.45]}, "seed": 0,
              "density": 0.5 if method == "ties" else None, "father": father, "mother": mother,
              "tool": {"name": "darwin-release", "version": "test"}}
    ours = get_breeder(method).emit(qwen3_pair.father, qwen3_pair.mother, genome, tmp_path / "ours", "5GB",
                                    progress=False)
    text = (ours / MERGEKIT_FILE).read_text()
    assert f"darwin-local/father@{'a' * 40}" in text and f"darwin-local/mother@{'b' * 40}" in text
    local = text.replace(f"darwin-local/father@{'a' * 40}", str(qwen3_pair.father)).replace(
        f"darwin-local/mother@{'b' * 40}", str(qwen3_pair.mother))
    run_merge(MergeConfiguration.model_validate(yaml.safe_load(local)), out_path=str(tmp_path / "mergekit"),
              options=MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True))
    theirs, mine = load_file(tmp_path / "mergekit" / "model.safetensors"), load_file(ours / "model.safetensors")
    father_t = load_file(qwen3_pair.father / "model.safetensors")
    assert sorted(theirs) == sorted(mine) and len(mine) == 25
    differing = 0
    for key in mine:
        assert mine[key].dtype == theirs[key].dtype == father_t[key].dtype, key
        _within_one_step(mine[key], theirs[key], key)
        differing += int((mine[key] != theirs[key]).sum())
    total = sum(t.numel() for t in mine.values())
    if qwen3_pair.dtype == torch.bfloat16:  # float32 rounding-order differences rarely cross a bf16 rounding edge
        assert differing <= total // 1000, (differing, total)
    # the per-layer shares were applied: layer 0's FFN is the mother's, whole; layer 1's attention 3/4 of her
    mother_t = load_file(qwen3_pair.mother / "model.safetensors")
    assert torch.equal(theirs["model.layers.0.mlp.up_proj.weight"], mother_t["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(theirs["model.layers.1.self_attn.q_proj.weight"], father_t["model.layers.1.self_attn.q_proj.weight"])


def test_dare_noise_gives_the_same_masks_in_every_storage_form():
    full = merge_ops.dare_noise((300, 7), seed=2, name="w")
    compact = merge_ops.dare_noise((300, 7), seed=2, name="w", dtype=torch.int16)
    floats = merge_ops.dare_noise((300, 7), seed=2, name="w", dtype=torch.float32)
    assert compact.dtype == torch.int16 and torch.equal(floats, full.float())
    for density in (1e-7, 1e-5, 0.3, 0.5, 0.99999, 0.999995):  # the ends: thresholds 0 and 65536
        keep = merge_ops.dare_keep(full, density)
        assert torch.equal(merge_ops.dare_keep(compact, density), keep), density
        for noise in (full, compact, floats):
            assert torch.equal(merge_ops.dare_keep_weights(noise, density, torch.float32), keep.float()), density
    a, b = _pair((300, 7), 9)
    children = [merge_ops.merge("dare_ties", a, b, 0.4, 0.3, seed=2, name="w", noise=n) for n in (None, compact, floats)]
    assert torch.equal(children[0], children[1]) and torch.equal(children[0], children[2])


def test_dare_live_form_gives_the_same_child_as_the_whole_computation():
    """The CPU live form keeps the task vector and the noise as float32 and writes the mask into the live tensor
    first; after any path of densities and shares (up, down, repeated, the ends) its child is the one `dare_ties`
    computes from scratch."""
    a, b = _pair((300, 70), 14)
    live = {"noise": merge_ops.dare_noise(a.shape, 3, "w", dtype=torch.float32), "delta": b - a,
            "l1": merge_ops.task_vector_l1(b - a)}
    out = torch.empty_like(a)
    for rescale in merge_ops.DARE_RESCALES:
        for t, density in [(0.3, 0.5), (0.4, 0.2), (0.9, 0.95), (0.5, 0.5), (0.2, 1e-5), (0.6, 1.0),
                           (0.7, 0.99999), (0.1, 0.0), (0.35, 0.6)]:
            merge_ops.merge("dare_ties", a, b, t, density, seed=3, name="w", out=out, rescale=rescale, **live)
            whole = merge_ops.merge("dare_ties", a, b, t, density, seed=3, name="w", rescale=rescale)
            assert torch.equal(out, whole), (rescale, t, density)


def test_dare_l1_rescale_is_mergekits_given_the_same_mask():
    """breed.dare_rescale: l1 rescales the survivors to the task vector's L1 norm, as mergekit's dare_ties does by
    default: given our mask, mergekit's own rescale gives the same child."""
    from mergekit.sparsify import RescaleNorm, rescaled_masked_tensor

    a, b = _pair((200, 40), 15)
    for t, density in [(0.5, 0.3), (0.8, 0.7), (0.3, 0.2)]:
        keep = merge_ops.dare_keep(merge_ops.dare_noise(a.shape, 4, "w"), density)
        theirs = a + t * rescaled_masked_tensor(b - a, keep.float(), RescaleNorm.l1)
        ours = merge_ops.merge("dare_ties", a, b, t, density, seed=4, name="w", rescale="l1")
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        assert not torch.allclose(ours, merge_ops.merge("dare_ties", a, b, t, density, seed=4, name="w"))
    with pytest.raises(ValueError, match="unknown DARE rescale"):
        merge_ops.merge("dare_ties", a, b, 0.5, 0.5, seed=4, name="w", rescale="l2")


def _siblings(shape, seed, dtype=torch.float32):
    """A base and two fine-tunes of it (siblings): the setting of a merge over a common ancestor."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g)
    a, b = (base + 0.05 * torch.randn(shape, generator=g) for _ in range(2))
    return base.to(dtype), a.to(dtype), b.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("t,density", [(0.5, 0.3), (0.3, 0.7), (0.8, 0.5), (0.6, 1.0)])
def test_ties_over_a_common_base_equals_mergekits_base_model(dtype, t, density):
    """Two siblings merged over their ancestor: task vectors A - base and B - base, each trimmed to its density,
    weighted 1 - t and t, signs elected (mergekit `ties` with `base_model`, normalize false)."""
    ties = mergekit_method("ties")
    for shape, seed in (((96, 40), 20), ((3, 5, 7), 21)):
        base, a, b = _siblings(shape, seed, dtype)
        group = TensorGroup.from_tensors([base.float(), a.float(), b.float()], base_index=0, name="w")
        theirs = ties.merge_group(group, int8_mask=False, normalize=False, rescale=False, **{"lambda": 1.0},
                                  weight={1: 1 - t, 2: t}, density={1: density, 2: density})
        ours = merge_ops.merge("ties", a, b, t, density, base=base)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        # not the two-parent merge: the ancestor matters
        assert not torch.allclose(ours, merge_ops.merge("ties", a, b, t, density), atol=1e-4)
    base, a, b = _siblings((50, 20), 22, dtype)
    assert torch.equal(merge_ops.merge("ties", a, b, 0.0, density, base=base), a.float())
    assert torch.equal(merge_ops.merge("ties", a, b, 1.0, density, base=base), b.float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rescale", ["inverse_density", "l1"])
def test_dare_ties_over_a_common_base_is_mergekits_sign_election_given_the_same_masks(dtype, rescale):
    """DARE-TIES over the ancestor: each sibling's task vector dropped by its own seeded mask (the father's and the
    mother's differ) and rescaled, then mergekit's own sign election and sum over the two."""
    from mergekit.merge_methods.generalized_task_arithmetic import get_mask
    from mergekit.sparsify import RescaleNorm, rescaled_masked_tensor

    base, a, b = _siblings((120, 30), 23, dtype)
    t, density, name = 0.4, 0.5, "model.layers.0.mlp.up_proj.weight"
    dropped = []
    for parent, weight, salt in ((a, 1 - t, f"{name}#father"), (b, t, name)):
        delta = parent.float() - base.float()
        keep = merge_ops.dare_keep(merge_ops.dare_noise(delta.shape, 6, salt), density).float()
        masked = delta * keep / density if rescale == "inverse_density" else \
            rescaled_masked_tensor(delta, keep, RescaleNorm.l1)
        dropped.append(masked * weight)
    deltas = torch.stack(dropped)
    theirs = base.float() + (deltas * get_mask(deltas, method="sum")).sum(dim=0)
    ours = merge_ops.merge("dare_ties", a, b, t, density, seed=6, name=name, rescale=rescale, base=base)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    father_kept = merge_ops.dare_keep(merge_ops.dare_noise(a.shape, 6, f"{name}#father"), density)
    assert not torch.equal(father_kept, merge_ops.dare_keep(merge_ops.dare_noise(a.shape, 6, name), density))


def _sibling(base_dir, out, seed: int):
    """A seeded fine-tune of `base_dir`: the base's folder with every float tensor nudged."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(base_dir, out)
    g = torch.Generator().manual_seed(seed)
    tensors = load_file(out / "model.safetensors")
    for key in sorted(tensors):
        t = tensors[key]
        tensors[key] = (t.float() + 0.1 * (t.float().abs().mean() + 1e-3) * torch.randn(t.shape, generator=g)).to(t.dtype)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.mark.parametrize("method", ["ties", "dare_ties"])
def test_siblings_merged_over_their_base_live_emitted_and_by_mergekit(qwen3_pair, method, tmp_path):
    """A x B with their common ancestor: the live model equals the emitted child, which records the base; for TIES
    mergekit run on the shipped config (base_model: the ancestor) writes the same tensors."""
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from safetensors.torch import load_file

    from release.breeders import get_breeder
    from release.breeders.mergekit_out import MERGEKIT_FILE
    from release.config import BreedSpec, GenomeSpec, SearchSpec

    base = qwen3_pair.father
    father, mother = _sibling(base, tmp_path / "a", 1), _sibling(base, tmp_path / "b", 2)
    breeder = get_breeder(method)
    config = SimpleNamespace(genome=GenomeSpec(r_max=1.0, init_mean=0.4), breed=BreedSpec(method=method),
                             search=SearchSpec(seed=5))
    live = breeder.build_live(father, mother, config, device="cpu", dtype=torch.float32, base_dir=base)
    assert live.record["base"] is True
    genome = live.space.full([0.35 if n.startswith("attn") else 0.6 if n != "density" else 0.5
                              for n in (live.space.names[i] for i in live.space.free)])
    live.apply(genome)
    state = {k: v.clone() for k, v in live.model.state_dict().items()}
    parents = {role: {"repo": f"darwin-local/{role}", "revision": c * 40}
               for role, c in (("father", "a"), ("mother", "b"), ("base", "c"))}
    bred = {"genes": live.space.names, "genome": genome, **live.record}
    record = breeder.genome_record(SimpleNamespace(genome=config.genome), bred, parents, {},
                                   breeder.ratios(live.space.named(genome)))
    assert record["base"] == parents["base"]
    with pytest.raises(Exception, match="common ancestor"):
        breeder.emit(father, mother, record, tmp_path / "no-base", "5GB", progress=False)
    out = breeder.emit(father, mother, record, tmp_path / "child", "5GB", progress=False, base_dir=base)
    mine = load_file(out / "model.safetensors")
    for key, value in mine.items():
        assert torch.equal(value, state[key].to(value.dtype)), key  # the live model is the emitted child
    two_parent = get_breeder(method).merged_tensor("model.layers.0.mlp.up_proj.weight",
                                                   load_file(father / "model.safetensors")["model.layers.0.mlp.up_proj.weight"],
                                                   load_file(mother / "model.safetensors")["model.layers.0.mlp.up_proj.weight"],
                                                   {**record, "base": None})
    assert not torch.equal(two_parent, mine["model.layers.0.mlp.up_proj.weight"])  # the ancestor changed the child
    text = (out / MERGEKIT_FILE).read_text()
    config_yaml = yaml.safe_load(text)
    assert config_yaml["base_model"] == f"darwin-local/base@{'c' * 40}" and len(config_yaml["models"]) == 2
    if method == "dare_ties":
        return  # mergekit draws its own masks: the operator test compares it given ours
    for role, folder in (("father", father), ("mother", mother), ("base", base)):
        text = text.replace(f"darwin-local/{role}@{parents[role]['revision']}", str(folder))
    run_merge(MergeConfiguration.model_validate(yaml.safe_load(text)), out_path=str(tmp_path / "mergekit"),
              options=MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True))
    theirs = load_file(tmp_path / "mergekit" / "model.safetensors")
    assert sorted(theirs) == sorted(mine)
    for key in mine:
        _within_one_step(mine[key], theirs[key], key)


def test_mergekit_filters_give_every_tensor_its_own_share_even_where_names_nest():
    """mergekit matches a filter as a substring, first match winning: a tower tensor whose name contains a decoder
    layer's module prefix gets a filter of its own, ahead of the layer's."""
    from mergekit.config import MergeConfiguration, evaluate_setting

    from release.breeders.mergekit_out import mergekit_config

    names = ["model.layers.1.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight",
             "model.layers.1.input_layernorm.weight", "vision.model.layers.1.mlp.up_proj.weight", "lm_head.weight"]
    shares = {"model.layers.1.mlp.up_proj.weight": 0.7, "model.layers.1.self_attn.q_proj.weight": 0.2}
    genome = {"method": "ties", "father": {"repo": "f", "revision": "a"}, "mother": {"repo": "m", "revision": "b"}}
    config = mergekit_config(genome, names, "bfloat16", lambda k: shares.get(k, 0.4), lambda k: 0.5)
    weight = config["models"][0]["parameters"]["weight"]
    assert weight[0] == {"filter": "vision.model.layers.1.mlp.up_proj.weight", "value": 0.4}
    parsed = MergeConfiguration.model_validate(config).models[0].parameters["weight"]  # mergekit's own reading
    for name in names:
        assert evaluate_setting(name, parsed, validate=float) == shares.get(name, 0.4), name
    assert config["out_dtype"] == "bfloat16" and config["base_model"] == "f@a"
