"""release.hub.client against the local hub: pull, push, Space deploy, and the errors users see."""

from tests.localhub_fixtures import ENDPOINT, TOKEN, free_port, repo_name  # first: sets HF_ENDPOINT

# isort: split
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from release.errors import ReleaseError
from release.hub.client import Hub, PulledRepo


@pytest.fixture(scope="module")
def hub():
    return Hub(token=TOKEN)


@pytest.fixture(scope="module")
def father_repo(hub, tiny_parents):
    """The tiny father, pushed once, plus a file that pull must leave behind."""
    repo = repo_name("father")
    sha = hub.push_folder(tiny_parents.father, repo, message="Add tiny father")
    HfApi(token=TOKEN).upload_file(path_or_fileobj=b"not needed", path_in_repo="extras/notes.md", repo_id=repo)
    return repo, sha


def test_push_then_pull_records_the_resolved_sha(hub, father_repo, tiny_parents, tmp_path):
    repo, _ = father_repo
    pulled = hub.pull(repo, "main", cache_dir=tmp_path)
    assert isinstance(pulled, PulledRepo) and pulled.repo_id == repo
    assert pulled.revision == hub.head(repo) and len(pulled.revision) == 40
    local = sorted(p.name for p in tiny_parents.father.iterdir())
    assert sorted(p.name for p in pulled.path.iterdir()) == local  # no .gitattributes, no extras/
    for name in local:
        assert (pulled.path / name).read_bytes() == (tiny_parents.father / name).read_bytes()


def test_pull_reuses_the_cache(hub, father_repo, tmp_path):
    repo, _ = father_repo
    first = hub.pull(repo, cache_dir=tmp_path)
    shard = sorted(first.path.glob("*.safetensors"))[0].resolve()
    stamp = shard.stat().st_mtime_ns
    time.sleep(0.01)
    again = hub.pull(repo, cache_dir=tmp_path)
    assert again == first and shard.stat().st_mtime_ns == stamp


def test_pull_a_pinned_revision_after_a_new_commit(hub, tmp_path):
    repo = repo_name("pinned")
    v1 = hub.push_folder(_folder(tmp_path / "v1", {"config.json": b'{"v": 1}'}), repo)
    v2 = hub.push_folder(_folder(tmp_path / "v2", {"config.json": b'{"v": 2}'}), repo)
    assert v1 != v2
    old = hub.pull(repo, v1, cache_dir=tmp_path / "cache")
    assert old.revision == v1 and (old.path / "config.json").read_bytes() == b'{"v": 1}'
    assert (hub.pull(repo, cache_dir=tmp_path / "cache").path / "config.json").read_bytes() == b'{"v": 2}'


def test_repush_of_identical_content_makes_no_commit(hub, father_repo, tiny_parents):
    repo, _ = father_repo
    api = HfApi(token=TOKEN)
    head, commits = hub.head(repo), len(api.list_repo_commits(repo))
    assert hub.push_folder(tiny_parents.father, repo, message="Same again") == head
    assert len(api.list_repo_commits(repo)) == commits


def test_push_commit_message_and_private_repo(hub, tmp_path):
    repo = repo_name("child")
    sha = hub.push_folder(_folder(tmp_path, {"config.json": b"{}"}), repo, message="Release child v1",
                          private=True)
    api = HfApi(token=TOKEN)
    assert api.list_repo_commits(repo)[0].title == "Release child v1"
    assert api.repo_info(repo).private and api.repo_info(repo).sha == sha


def test_deploy_space_sets_variables_and_secrets_through_the_api(hub, tmp_path):
    space = repo_name("space")
    folder = _folder(tmp_path, {"app.py": b"import os\nMODEL_ID = os.environ['MODEL_ID']\n",
                                "requirements.txt": b"transformers\n"})
    sha = hub.deploy_space(space, folder, variables={"MODEL_ID": "darwin-local/child"},
                           secrets={"API_KEY": "s3cr3t"}, hardware="cpu-upgrade")
    api = HfApi(token=TOKEN)
    info = api.space_info(space)
    assert info.sha == sha and info.sdk == "gradio"
    assert {s.rfilename for s in info.siblings} >= {"app.py", "requirements.txt"}
    assert api.get_space_variables(space)["MODEL_ID"].value == "darwin-local/child"
    assert set(api.get_space_secrets(space)) == {"API_KEY"}
    assert api.get_space_runtime(space).hardware == "cpu-upgrade"
    # Redeploying identical files only updates settings.
    again = hub.deploy_space(space, folder, variables={"MODEL_ID": "darwin-local/child-2"}, secrets={})
    assert again == sha and api.get_space_variables(space)["MODEL_ID"].value == "darwin-local/child-2"


def test_bad_token_is_a_clear_error_without_the_token(tmp_path):
    bad = "hf_this_token_is_wrong_123"
    with pytest.raises(ReleaseError) as e:
        Hub(token=bad).push_folder(_folder(tmp_path, {"a.txt": b"a"}), repo_name("x"))
    assert "rejected the token" in str(e.value) and "HF_TOKEN" in str(e.value)
    assert bad not in str(e.value) and bad not in str(e.value.__cause__)
    with pytest.raises(ReleaseError, match="rejected the token"):
        Hub(token=bad).whoami()


def test_missing_token_says_how_to_set_one(hub, tmp_path):
    repo = repo_name("public")
    hub.push_folder(_folder(tmp_path, {"a.txt": b"a"}), repo)
    with pytest.raises(ReleaseError, match="needs a token.*HF_TOKEN"):
        Hub(token=False).push_folder(_folder(tmp_path, {"b.txt": b"b"}), repo)


def test_missing_repo_and_revision_and_private_repo(hub, tmp_path):
    with pytest.raises(ReleaseError, match="repository .* not found"):
        hub.pull(repo_name("missing"))
    repo = repo_name("revs")
    hub.push_folder(_folder(tmp_path, {"config.json": b"{}"}), repo, private=True)
    with pytest.raises(ReleaseError, match="revision 'nope' not found"):
        hub.pull(repo, "nope")
    with pytest.raises(ReleaseError, match="private repo") as e:
        Hub(token=False).pull(repo)
    assert "\n" not in str(e.value)


def test_unreachable_endpoint_is_one_fast_clear_error(tmp_path):
    dead = Hub(token=TOKEN, endpoint=f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(ReleaseError, match="unreachable.*release.localhub"):
        dead.pull("darwin-local/anything")
    with pytest.raises(ReleaseError, match="unreachable"):
        dead.push_folder(_folder(tmp_path, {"a.txt": b"a"}), "darwin-local/anything")
    assert time.monotonic() - start < 5


def test_hub_uses_hf_endpoint_by_default():
    assert Hub().endpoint == ENDPOINT


def _folder(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path
