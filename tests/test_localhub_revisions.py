"""What safe push and the plan need from the local hub, driven by the real client: range requests
(safetensors headers), pull requests, commits to another branch, and commits that delete files."""

from tests.localhub_fixtures import TOKEN, repo_name  # first: sets HF_ENDPOINT

# isort: split
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from safetensors.torch import save_file


@pytest.fixture(scope="module")
def api():
    return HfApi(token=TOKEN)


def _tensors(seed: int, names: list[str]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(3 + i, 5, generator=g) for i, n in enumerate(names)}


def test_safetensors_metadata_of_a_single_file_repo_by_range_requests(api, tmp_path):
    repo = repo_name("st-single")
    api.create_repo(repo)
    tensors = _tensors(0, ["a.weight", "b.weight"])
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    api.upload_folder(repo_id=repo, folder_path=tmp_path)
    meta = api.get_safetensors_metadata(repo)
    assert not meta.sharded and meta.weight_map == {"a.weight": "model.safetensors", "b.weight": "model.safetensors"}
    info = meta.files_metadata["model.safetensors"]
    assert {k: (v.dtype, v.shape) for k, v in info.tensors.items()} == {
        "a.weight": ("F32", [3, 5]), "b.weight": ("F32", [4, 5])}
    assert info.metadata == {"format": "pt"}


def test_safetensors_metadata_of_a_sharded_repo(api, tmp_path):
    repo = repo_name("st-sharded")
    api.create_repo(repo)
    shards = {"model-00001-of-00002.safetensors": _tensors(1, ["l0.w", "l1.w"]),
              "model-00002-of-00002.safetensors": _tensors(2, ["l2.w"])}
    weight_map = {}
    for name, tensors in shards.items():
        save_file(tensors, tmp_path / name)
        weight_map.update(dict.fromkeys(tensors, name))
    index = {"metadata": {"total_size": 123}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    api.upload_folder(repo_id=repo, folder_path=tmp_path)
    meta = api.get_safetensors_metadata(repo)
    assert meta.sharded and meta.weight_map == weight_map and meta.metadata == {"total_size": 123}
    assert meta.files_metadata["model-00002-of-00002.safetensors"].tensors["l2.w"].shape == [3, 5]
    assert meta.parameter_count == {"F32": 15 + 20 + 15}


def test_pr_commit_returns_its_url_and_ref(api):
    repo = repo_name("pr-url")
    api.create_repo(repo)
    commit = api.create_commit(repo, [CommitOperationAdd("README.md", b"# new release\n")],
                               commit_message="Release", create_pr=True)
    assert commit.pr_url.endswith(f"/{repo}/discussions/1") and commit.pr_revision == "refs/pr/1"
    assert api.list_repo_files(repo, revision=commit.pr_revision) == [".gitattributes", "README.md"]
    assert api.list_repo_files(repo) == [".gitattributes"]  # main untouched


def test_upload_folder_to_a_new_branch(api, tmp_path):
    repo = repo_name("branch-folder")
    api.create_repo(repo)
    main = api.upload_file(path_or_fileobj=b"old", path_in_repo="w.txt", repo_id=repo).oid
    (tmp_path / "w.txt").write_bytes(b"new")
    (tmp_path / "x.safetensors").write_bytes(b"\0" * 64)
    api.create_branch(repo, branch="darwin-release")
    commit = api.upload_folder(repo_id=repo, folder_path=tmp_path, revision="darwin-release")
    assert api.repo_info(repo).sha == main
    assert api.repo_info(repo, revision="darwin-release").sha == commit.oid
    path = hf_hub_download(repo, "w.txt", revision="darwin-release", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == b"new"


def test_commits_that_delete_files(api, tmp_path):
    repo = repo_name("replace")
    api.create_repo(repo)
    old = tmp_path / "old"
    for name in ("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "config.json", "keep.md"):
        (old / name).parent.mkdir(exist_ok=True)
        (old / name).write_bytes(name.encode())
    api.upload_folder(repo_id=repo, folder_path=old)
    new = tmp_path / "new"
    new.mkdir()
    (new / "model.safetensors").write_bytes(b"\1" * 32)
    (new / "config.json").write_bytes(b"{}")
    # upload_folder(delete_patterns=...): one commit adds the new files and removes the stale shards
    commit = api.upload_folder(repo_id=repo, folder_path=new, delete_patterns=["*.safetensors"])
    assert api.list_repo_files(repo) == [".gitattributes", "config.json", "keep.md", "model.safetensors"]
    assert api.list_repo_commits(repo)[0].commit_id == commit.oid
    # explicit CommitOperationDelete next to additions, in one commit
    api.create_commit(repo, [CommitOperationDelete("keep.md"), CommitOperationAdd("card.md", b"card")],
                      commit_message="replace")
    assert api.list_repo_files(repo) == [".gitattributes", "card.md", "config.json", "model.safetensors"]


def test_create_pull_request_then_commit_to_its_ref(api):
    repo = repo_name("pr-open")
    api.create_repo(repo)
    pr = api.create_pull_request(repo, title="Darwin release", description="new child")
    assert pr.is_pull_request and pr.git_reference == "refs/pr/1" and pr.title == "Darwin release"
    commit = api.create_commit(repo, [CommitOperationAdd("w.txt", b"child")], commit_message="child",
                               revision=pr.git_reference)
    assert api.list_repo_files(repo, revision="refs/pr/1") == [".gitattributes", "w.txt"]
    assert api.get_discussion_details(repo, 1).title == "Darwin release"
    refs = api.list_repo_refs(repo, include_pull_requests=True).pull_requests
    assert [(r.ref, r.target_commit) for r in refs] == [("refs/pr/1", commit.oid)]
    second = api.create_commit(repo, [CommitOperationAdd("x.txt", b"x")], commit_message="Second", create_pr=True)
    assert second.pr_num == 2 and api.get_discussion_details(repo, 2).title == "Second"
