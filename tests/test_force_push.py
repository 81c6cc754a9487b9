"""A damaged stored child: verify names the file, `--force push` heals it, verify passes again."""

from tests.localhub_fixtures import TOKEN, repo_name  # first: sets HF_ENDPOINT

# isort: split
import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from release.errors import ReleaseError
from release.hub.client import Hub
from release.hub.safe_push import push_release
from release.hub.verify import verify_child

GENOME = json.loads((Path(__file__).parent / "fixtures" / "card" / "genome.json").read_text())


def _flip_a_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_force_push_heals_a_damaged_stored_shard(tiny_parents, local_hub, tmp_path):
    from release.breeders.emit import emit_child

    hub = Hub(token=TOKEN)
    folder = emit_child(tiny_parents.father, tiny_parents.mother, GENOME, tmp_path / "child",
                        max_shard_size="300KB", progress=False)
    repo = repo_name("healed-child")

    def push(force=False):
        return push_release(hub, folder, repo, "refuse", GENOME["father"]["repo"], GENOME["mother"]["repo"],
                            "Release", force=force)

    pushed = push()
    shard = sorted(p for p in folder.glob("*.safetensors"))[-1]
    info = HfApi(token=TOKEN).get_paths_info(repo, [shard.name], revision=pushed["revision"])[0]
    _flip_a_byte(local_hub.store.blob_path(info.lfs.sha256))  # bit rot in the store, before anyone read it

    with pytest.raises(ReleaseError) as e:
        verify_child(repo, pushed["revision"], folder, hub=hub)
    assert "\n" not in str(e.value) and f"{shard.name} is damaged" in str(e.value)
    assert "--force push" in str(e.value)
    assert not push()["committed"]  # a plain push trusts the file list: nothing to do
    healed = push(force=True)  # the suggested fix
    assert local_hub.store.blob_path(info.lfs.sha256).read_bytes() == shard.read_bytes()
    result = verify_child(repo, healed["revision"], folder, hub=hub)
    assert result["max_abs_logit_diff"] == 0.0
