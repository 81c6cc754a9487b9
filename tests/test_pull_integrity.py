"""Pull checks every file against its Hub id; parents are judged by content, not by the repo's existence."""

from tests.localhub_fixtures import TOKEN, repo_name  # first: sets HF_ENDPOINT

# isort: split
import json
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from release.hub.blob_check import verify_snapshot
from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.hub.client import Hub
from release.pipeline import RunOptions, run_release

WEIGHTS = bytes(range(256)) * 64  # an LFS file (16 KB of binary)


@pytest.fixture(scope="module")
def hub():
    return Hub(token=TOKEN)


def _published(hub, tmp_path: Path) -> tuple[str, str]:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "toy"}')
    (folder / "model.safetensors").write_bytes(WEIGHTS)
    repo = repo_name("weights")
    hub.push_folder(folder, repo)
    return repo, HfApi(token=TOKEN).get_paths_info(repo, ["model.safetensors"])[0].lfs.sha256


def _flip_a_byte(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_damaged_blob_in_the_local_cache_is_a_one_line_error_naming_the_file(hub, tmp_path):
    repo, _ = _published(hub, tmp_path)
    marker = tmp_path / "verified.json"
    pulled = hub.pull(repo, cache_dir=tmp_path / "cache", verified=marker)
    blob = (pulled.path / "model.safetensors").resolve()
    assert len(json.loads(marker.read_text())) == 2  # config.json and the weights, each checked once
    _flip_a_byte(blob)
    with pytest.raises(ReleaseError) as e:
        hub.pull(repo, cache_dir=tmp_path / "cache", verified=marker)  # the "already in the cache" path
    message = str(e.value)
    assert "\n" not in message and "model.safetensors is damaged" in message and "pull again" in message
    assert not blob.exists()  # the damaged blob is gone: the next pull downloads it again
    again = hub.pull(repo, cache_dir=tmp_path / "cache", verified=marker)
    assert (again.path / "model.safetensors").read_bytes() == WEIGHTS


def test_checked_blobs_are_not_hashed_again_unless_asked(hub, tmp_path):
    repo, _ = _published(hub, tmp_path)
    marker = tmp_path / "verified.json"
    pulled = hub.pull(repo, cache_dir=tmp_path / "cache", verified=marker)
    assert verify_snapshot(pulled.path, "again", marker) == 0  # remembered by path, size and mtime
    _flip_a_byte((pulled.path / "model.safetensors").resolve(), keep_mtime=True)
    assert verify_snapshot(pulled.path, "again", marker) == 0  # same stamp: trusted (cheap reruns)
    with pytest.raises(ReleaseError, match="model.safetensors is damaged"):
        verify_snapshot(pulled.path, "again", marker, rehash=True)  # --force pull hashes everything


def test_a_damaged_blob_on_the_hub_fails_the_pull(hub, local_hub, tmp_path):
    repo, sha256 = _published(hub, tmp_path)
    _flip_a_byte(local_hub.store.blob_path(sha256))  # bit rot in the server's store: the download is bad
    try:
        with pytest.raises(ReleaseError) as e:
            hub.pull(repo, cache_dir=tmp_path / "cache")
        assert "\n" not in str(e.value) and "model.safetensors" in str(e.value)
    finally:
        _flip_a_byte(local_hub.store.blob_path(sha256))  # other tests share the store


def _config(tmp_path: Path, local_hub, father: str, mother: str) -> ReleaseConfig:
    return ReleaseConfig.model_validate(dict(
        name="integrity", tiny_parents=True, father={"repo": father}, mother={"repo": mother},
        child={"repo": repo_name("child")}, fitness={"kind": "calibration"}, runs_dir=str(tmp_path / "runs"),
        hub={"endpoint": local_hub.url},
    ))


def test_an_interrupted_publish_is_completed_and_damage_records_no_pull(hub, local_hub, tiny_parents, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    father, mother = repo_name("tiny-father"), repo_name("tiny-mother")
    api = HfApi(token=TOKEN)
    api.create_repo(father)  # a publish killed after creating the repo: it exists, and is empty
    hub.push_folder(tiny_parents.mother, mother)  # complete: left as it is
    mother_head = hub.head(mother)
    config = _config(tmp_path, local_hub, father, mother)
    first = run_release(config, RunOptions(only=("pull",), progress=False))
    assert first["ran"] == ["pull"] and hub.holds_checkpoint(father) and hub.head(mother) == mother_head
    files = set(api.list_repo_files(father))
    assert "config.json" in files and any(f.endswith(".safetensors") for f in files)
    # Damage a shard of the pulled father in the cache: the rerun fails and records no pull.
    pulled = first["pull"]["father"]
    shard = sorted(Path(pulled["path"]).glob("*.safetensors"))[0].resolve()
    _flip_a_byte(shard)
    with pytest.raises(ReleaseError, match="is damaged"):
        run_release(config, RunOptions(force={"pull"}, only=("pull",), progress=False))
    assert "pull" not in json.loads((config.run_dir / "stages.json").read_text())
    # The next run downloads the shard again and goes on.
    assert run_release(config, RunOptions(only=("pull",), progress=False))["ran"] == ["pull"]


def test_a_parent_repo_without_a_checkpoint_is_refused_and_no_pull_recorded(hub, local_hub, tmp_path):
    father, mother = repo_name("empty-father"), repo_name("mother")
    HfApi(token=TOKEN).create_repo(father)  # exists, holds only .gitattributes
    _, _ = _published(hub, tmp_path)
    hub.push_folder(tmp_path / "src", mother)
    config = _config(tmp_path, local_hub, father, mother).model_copy(update={"tiny_parents": False})
    with pytest.raises(ReleaseError, match=f"the father {father}@.* holds no config.json") as e:
        run_release(config, RunOptions(only=("pull",), progress=False))
    assert "\n" not in str(e.value)
    assert not (config.run_dir / "stages.json").exists() or \
        "pull" not in json.loads((config.run_dir / "stages.json").read_text())
