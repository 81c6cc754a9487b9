"""The same-architecture merge operators against mergekit's own implementations, on the same tensors."""

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


@pytest.fixture(scope="module")
def qwen3_pair(tmp_path_factory):
    from release.tiny import write_tiny_causal_pair

    return write_tiny_causal_pair(tmp_path_factory.mktemp("qwen3-pair"), seed=0)


@pytest.mark.parametrize("method", ["linear", "slerp", "ties"])
def test_the_emitted_child_equals_what_mergekit_writes_for_the_same_merge(qwen3_pair, method, tmp_path):
    """mergekit run end to end on a tiny Qwen3 pair; our emitted child, every share t, tensor for tensor."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from safetensors.torch import load_file

    from release.breeders import get_breeder

    father, mother, t, density = str(qwen3_pair.father), str(qwen3_pair.mother), 0.3, 0.5
    recipe = {
        "linear": {"models": [{"model": father, "parameters": {"weight": 1 - t}},
                              {"model": mother, "parameters": {"weight": t}}]},
        "slerp": {"base_model": father, "models": [{"model": father}, {"model": mother}], "parameters": {"t": t}},
        "ties": {"base_model": father, "models": [{"model": mother, "parameters": {"weight": t, "density": density}}],
                 "parameters": {"normalize": False}},
    }[method]
    run_merge(MergeConfiguration.model_validate({"merge_method": method, "dtype": "float32", **recipe}),
              out_path=str(tmp_path / "mergekit"),
              options=MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True))
    genome = {"ratios": {"attn": [t, t], "ffn": [t, t], "norms": [t]}, "seed": 0,
              "density": density if method == "ties" else None}
    ours = get_breeder(method).emit(qwen3_pair.father, qwen3_pair.mother, genome, tmp_path / "ours", "5GB",
                                    progress=False)
    theirs, mine = load_file(tmp_path / "mergekit" / "model.safetensors"), load_file(ours / "model.safetensors")
    assert sorted(theirs) == sorted(mine) and len(mine) == 25
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)


def test_dare_noise_gives_the_same_masks_in_every_storage_form():
    full = merge_ops.dare_noise((300, 7), seed=2, name="w")
    compact = merge_ops.dare_noise((300, 7), seed=2, name="w", dtype=torch.int16)
    floats = merge_ops.dare_noise((300, 7), seed=2, name="w", dtype=torch.float32)
    assert compact.dtype == torch.int16 and torch.equal(floats, full.float())
    for density in (1e-5, 0.3, 0.5, 0.99999):
        keep = merge_ops.dare_keep(full, density)
        assert torch.equal(merge_ops.dare_keep(compact, density), keep), density
        for noise in (full, compact, floats):
            assert torch.equal(merge_ops.dare_keep_weights(noise, density, torch.float32), keep.float()), density
    a, b = _pair((300, 7), 9)
    children = [merge_ops.merge("dare_ties", a, b, 0.4, 0.3, seed=2, name="w", noise=n) for n in (None, compact, floats)]
    assert torch.equal(children[0], children[1]) and torch.equal(children[0], children[2])
