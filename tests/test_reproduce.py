"""`darwin-release reproduce`: a published child is rebuilt from its darwin_genome.json and its parents'
recorded commits, and every tensor compared byte for byte, for both breeders (on the session's Hub).
The embedded defaults' own pushed children are reproduced in test_release.py and test_same_arch_release.py."""

import json
import shutil
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from release.breeders import get_breeder
from release.errors import ReleaseError
from release.hub.client import Hub
from release.hub.reproduce import compare_tensors, parse_spec, reproduce
from tests.conftest import LOCALHUB_TOKEN

FIXTURE = Path(__file__).parent / "fixtures" / "card" / "genome.json"


@pytest.fixture(scope="module")
def hub():
    return Hub(token=LOCALHUB_TOKEN)


def _publish(hub, folder: Path, name: str) -> tuple[str, str]:
    repo = f"darwin-local/{name}-{uuid.uuid4().hex[:8]}"
    return repo, hub.push_folder(folder, repo)


def _card(folder: Path, genome: dict) -> None:
    parents = "\n".join(f"- {genome[role]['repo']}" for role in ("father", "mother"))
    (folder / "README.md").write_text(f"---\nbase_model:\n{parents}\n---\n# a child\n")


def _release(hub, tmp: Path, father: Path, mother: Path, genome: dict, name: str) -> tuple[str, str, Path]:
    """Publish both parents, emit the child of `genome` (with their commits) and publish it."""
    for role, folder in (("father", father), ("mother", mother)):
        repo, sha = _publish(hub, folder, f"{name}-{role}")
        genome[role] = {"repo": repo, "revision": sha}
    child = get_breeder(genome["method"]).emit(father, mother, genome, tmp / "child", max_shard_size="300KB",
                                                progress=False)
    _card(child, genome)
    repo, sha = _publish(hub, child, name)
    return repo, sha, child


def _tamper(hub, repo: str, child: Path, tmp: Path) -> tuple[str, str]:
    """Commit the child again with one element of one tensor moved; returns (tensor name, new commit)."""
    edited = tmp / "edited"
    shutil.copytree(child, edited)
    shard = sorted(edited.glob("*.safetensors"))[-1]
    tensors = load_file(shard)
    key = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[1] += 0.25
    save_file(tensors, shard, metadata={"format": "pt"})
    return key, hub.push_folder(edited, repo, message="one tensor changed")


@pytest.fixture(scope="module")
def ffn_child(hub, tiny_parents, tmp_path_factory):
    genome = {"method": "ffn_blend", **json.loads(FIXTURE.read_text())}
    genome["search"]["x"] = [r for i, r in enumerate(genome["ratios"]) if i not in genome["frozen"]]  # CMA-ES's point
    return _release(hub, tmp_path_factory.mktemp("ffn"), tiny_parents.father, tiny_parents.mother, genome,
                    "reproduce-ffn")


@pytest.fixture(scope="module")
def dare_child(hub, tmp_path_factory):
    from release.tiny import write_tiny_same_arch_parents

    tmp = tmp_path_factory.mktemp("dare")
    parents = write_tiny_same_arch_parents(tmp / "parents", seed=3)
    genome = {"method": "dare_ties", "genes": {},
              "ratios": {"attn": [0.0, 0.3, 0.6, 1.0, 0.0, 0.45], "ffn": [0.2, 0.0, 0.7, 0.5, 0.0, 1.0],
                         "norms": [0.35]},
              "density": 0.6, "seed": 11, "frozen": [4], "r_max": 1.0,
              "model_class": "Gemma4ForConditionalGeneration", "search": {},
              "tool": {"name": "darwin-release", "version": "0"}}
    return _release(hub, tmp, parents.father, parents.mother, genome, "reproduce-dare")


@pytest.mark.parametrize("which", ["ffn_child", "dare_child"])
def test_a_published_child_is_reproduced_bit_for_bit_and_a_changed_tensor_is_named(hub, which, request,
                                                                                    tmp_path):
    repo, sha, child = request.getfixturevalue(which)
    result = reproduce(hub, repo)
    assert result.identical, result.difference
    assert result.revision == sha and result.tensors == sum(len(load_file(f)) for f in child.glob("*.safetensors"))
    assert result.notes == []  # the card names both parents; versions unrecorded here
    assert result.summary().startswith(f"reproduced bit for bit: {repo}@{sha[:12]}")

    key, edited = _tamper(hub, repo, child, tmp_path)
    changed = reproduce(hub, f"{repo}@{edited}")
    assert not changed.identical and changed.revision == edited
    assert f"first differing tensor {key}: 1 of " in changed.difference
    assert "largest |published - rebuilt| 0.25" in changed.difference
    assert reproduce(hub, f"{repo}@{sha}").identical  # the earlier commit is still the child its card says


def test_a_different_seed_in_the_record_is_a_different_dare_child(dare_child, tmp_path):
    """The comparison sees what the record changes: DARE's drop masks come from the recorded seed."""
    _, _, child = dare_child
    genome = json.loads((child / "darwin_genome.json").read_text())
    father, mother = (Path(Hub().pull(genome[r]["repo"], genome[r]["revision"]).path) for r in ("father", "mother"))
    rebuilt = get_breeder("dare_ties").emit(father, mother, {**genome, "seed": 12}, tmp_path / "other",
                                            max_shard_size="5GB", progress=False)
    _, difference = compare_tensors(child, rebuilt)
    assert difference and difference.startswith("first differing tensor model.") and " elements differ" in difference


def test_the_card_and_the_library_versions_are_read_and_disagreements_noted(hub, ffn_child, tmp_path):
    repo, _, child = ffn_child
    edited = tmp_path / "edited"
    shutil.copytree(child, edited)
    genome = json.loads((edited / "darwin_genome.json").read_text())
    genome["tool"]["transformers"] = "0.0.1"
    genome["search"]["x"][1] += 0.01  # no longer the point the ratios came from
    (edited / "darwin_genome.json").write_text(json.dumps(genome))
    (edited / "README.md").write_text("---\nbase_model: someone/else\n---\n")
    sha = hub.push_folder(edited, repo)
    result = reproduce(hub, f"{repo}@{sha}")
    assert result.identical  # the record, not the card, is what is rebuilt
    assert any("base_model (someone/else) does not name" in n and genome["father"]["repo"] in n for n in result.notes)
    assert any(n.startswith("the child was written with transformers 0.0.1, this is ") for n in result.notes)
    assert any(n.startswith("the searched ratios do not follow from CMA-ES's recorded point") for n in result.notes)


def test_what_cannot_be_reproduced_is_one_line_naming_why(hub, tiny_parents):
    for spec in ("no-owner", "a/b@", "a b/c"):
        with pytest.raises(ReleaseError, match="is not a repo: give owner/name"):
            parse_spec(spec)
    assert parse_spec("o/n") == ("o/n", "main") and parse_spec("o/n@v1") == ("o/n", "v1")
    repo, _ = _publish(hub, tiny_parents.father, "not-a-child")
    with pytest.raises(ReleaseError, match=r"has no darwin_genome.json, so no recipe") as e:
        reproduce(hub, repo)
    assert "\n" not in str(e.value)


def test_the_rebuild_compares_names_shapes_and_dtypes_too(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    save_file({"x": torch.zeros(2, 3), "y": torch.ones(4)}, a / "model.safetensors")
    save_file({"x": torch.zeros(2, 3, dtype=torch.bfloat16), "y": torch.ones(4)}, b / "model.safetensors")
    assert compare_tensors(a, b)[1] == "first differing tensor x: published torch.float32 [2, 3], rebuilt torch.bfloat16 [2, 3]"
    save_file({"x": torch.zeros(2, 3)}, b / "model.safetensors")
    assert compare_tensors(a, b)[1].startswith("the published child holds y, which the rebuild does not")
    save_file({"x": torch.zeros(2, 3), "y": torch.ones(4)}, b / "model.safetensors")
    assert compare_tensors(a, b) == (2, None)


def test_a_childs_own_mergekit_config_imports_back_to_its_method_parents_and_density(dare_child):
    """mergekit out, then in: the shipped mergekit_config.yml names the same parents at the same commits."""
    import yaml

    from release.breeders.mergekit_in import import_mergekit

    _, _, child = dare_child
    genome = json.loads((child / "darwin_genome.json").read_text())
    config, notes = import_mergekit(yaml.safe_load((child / "mergekit_config.yml").read_text()), "back")
    assert config["breed"]["method"] == "dare_ties"
    assert config["father"] == genome["father"] and config["mother"] == genome["mother"]
    assert config["breed"]["density_init"] == pytest.approx(genome["density"], abs=0.05)  # the mean over tensors
    assert config["breed"]["dare_rescale"] == genome.get("dare_rescale", "inverse_density")
    assert all("\n" not in n and len(n) < 300 for n in notes)
