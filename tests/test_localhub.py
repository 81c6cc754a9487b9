"""The local hub, driven by the real huggingface_hub client (and transformers), offline."""

from tests.localhub_fixtures import (  # first: sets HF_ENDPOINT
    ENDPOINT,
    TOKEN,
    free_port,
    peak_rss_mb,
    repo_name,
    standalone_hub,
)

# isort: split
import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.sha import git_hash
from safetensors import safe_open

from release.localhub import serve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def api():
    return HfApi(token=TOKEN)


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_whoami_and_bad_token(api):
    assert api.whoami()["name"] == "darwin-local"
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(token="hf_wrong").whoami()
    assert e.value.response.status_code == 401


def test_create_repo_conflict_and_info(api):
    repo = repo_name("create")
    url = api.create_repo(repo)
    assert url.repo_id == repo and url.repo_type == "model"
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo(repo)
    assert e.value.response.status_code == 409
    api.create_repo(repo, exist_ok=True)
    info = api.repo_info(repo)
    assert len(info.sha) == 40 and int(info.sha, 16) >= 0
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]


def test_tiny_model_round_trip_and_from_pretrained(api, tiny_parents, tmp_path):
    """Several shards go up in parallel LFS uploads, come back byte-identical, and transformers loads them."""
    from transformers import AutoModelForCausalLM

    father, repo = tiny_parents.father, repo_name("father")
    assert len(list(father.glob("*.safetensors"))) >= 2
    api.create_repo(repo)
    commit = api.upload_folder(repo_id=repo, folder_path=father, commit_message="Add tiny father")
    snap = Path(snapshot_download(repo, cache_dir=tmp_path / "fresh-cache"))
    assert snap.name == commit.oid
    local = sorted(p.relative_to(father).as_posix() for p in father.rglob("*") if p.is_file())
    for name in local:
        assert (snap / name).read_bytes() == (father / name).read_bytes(), name
    tree = {f.path: f for f in api.list_repo_tree(repo, recursive=True)}
    assert set(tree) == set(local) | {".gitattributes"}
    assert all(tree[n].lfs is not None for n in local if n.endswith(".safetensors"))
    assert tree["config.json"].lfs is None

    model = AutoModelForCausalLM.from_pretrained(repo)  # through HF_ENDPOINT, the way users load it
    params = model.state_dict()
    shard = sorted(father.glob("*.safetensors"))[0]
    with safe_open(shard, "pt") as f:
        for key in list(f.keys())[:5]:
            assert torch.equal(params[key], f.get_tensor(key)), key  # real weights, not random init


def test_pinned_revision_returns_old_bytes(api, tmp_path):
    repo = repo_name("pinned")
    api.create_repo(repo)
    first = api.upload_file(path_or_fileobj=b"version one", path_in_repo="notes/v.txt", repo_id=repo).oid
    api.upload_file(path_or_fileobj=b"version two", path_in_repo="notes/v.txt", repo_id=repo)
    old = hf_hub_download(repo, "notes/v.txt", revision=first, cache_dir=tmp_path)
    new = hf_hub_download(repo, "notes/v.txt", cache_dir=tmp_path)
    assert Path(old).read_bytes() == b"version one" and Path(new).read_bytes() == b"version two"
    assert [f.path for f in api.list_repo_tree(repo, "notes", revision=first)] == ["notes/v.txt"]


def test_identical_reupload_makes_no_commit(api, tmp_path):
    repo = repo_name("same")
    folder = _write(tmp_path, {"a.txt": b"hello", "w.safetensors": os.urandom(4096)})
    api.create_repo(repo)
    first = api.upload_folder(repo_id=repo, folder_path=folder).oid
    again = api.upload_folder(repo_id=repo, folder_path=folder).oid
    assert again == first
    assert len(api.list_repo_commits(repo)) == 2  # initial commit + one upload


def test_private_repo_needs_a_token(api, tmp_path):
    repo = repo_name("private")
    api.create_repo(repo, private=True)
    api.upload_file(path_or_fileobj=b"secret weights", path_in_repo="w.txt", repo_id=repo)
    anonymous = HfApi(token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.repo_info(repo)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo, "w.txt", token=False, cache_dir=tmp_path)
    assert api.repo_info(repo).private is True
    assert Path(hf_hub_download(repo, "w.txt", token=TOKEN, cache_dir=tmp_path)).read_bytes() == b"secret weights"


def test_public_repo_reads_without_token_but_writes_need_one(api):
    repo = repo_name("public")
    api.create_repo(repo)
    assert HfApi(token=False).repo_info(repo).sha == api.repo_info(repo).sha
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(token=False).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    assert e.value.response.status_code == 401


def test_missing_repo_revision_and_file_raise_the_client_typed_errors(api, tmp_path):
    repo = repo_name("typed")
    api.create_repo(repo)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(repo_name("missing"))
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, ".gitattributes", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo, "missing.json", cache_dir=tmp_path)
    assert api.file_exists(repo, ".gitattributes") and not api.file_exists(repo, "missing.json")


def test_delete_file_and_folder(api, tmp_path):
    repo = repo_name("delete")
    api.create_repo(repo)
    api.upload_folder(repo_id=repo, folder_path=_write(tmp_path, {"keep.txt": b"k", "drop.txt": b"d",
                                                                  "sub/a.txt": b"a", "sub/b/c.txt": b"c"}))
    api.delete_file("drop.txt", repo)
    api.delete_folder("sub", repo)
    assert api.list_repo_files(repo) == [".gitattributes", "keep.txt"]
    with pytest.raises(RemoteEntryNotFoundError):
        api.create_commit(repo, [CommitOperationDelete("drop.txt")], commit_message="again")


def test_create_pr_commits_to_refs_pr(api, tmp_path):
    repo = repo_name("pr")
    api.create_repo(repo)
    commit = api.upload_file(path_or_fileobj=b"proposal", path_in_repo="p.txt", repo_id=repo, create_pr=True)
    assert commit.pr_revision == "refs/pr/1" and commit.pr_num == 1
    assert "p.txt" not in api.list_repo_files(repo)
    assert "p.txt" in api.list_repo_files(repo, revision="refs/pr/1")
    path = hf_hub_download(repo, "p.txt", revision="refs/pr/1", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"proposal"
    prs = api.list_repo_refs(repo, include_pull_requests=True).pull_requests
    assert [(r.ref, r.target_commit) for r in prs] == [("refs/pr/1", commit.oid)]
    second = api.upload_file(path_or_fileobj=b"another", path_in_repo="q.txt", repo_id=repo, create_pr=True)
    assert second.pr_revision == "refs/pr/2"


def test_stale_parent_commit_is_412(api):
    repo = repo_name("stale")
    api.create_repo(repo)
    base = api.repo_info(repo).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo, parent_commit=base)
    with pytest.raises(HfHubHTTPError) as e:
        api.upload_file(path_or_fileobj=b"2", path_in_repo="b.txt", repo_id=repo, parent_commit=base)
    assert e.value.response.status_code == 412
    assert api.list_repo_files(repo) == [".gitattributes", "a.txt"]


def test_branches_and_history(api, tmp_path):
    repo = repo_name("branch")
    api.create_repo(repo)
    api.upload_file(path_or_fileobj=b"main 1", path_in_repo="m.txt", repo_id=repo, commit_message="First")
    api.create_branch(repo, branch="dev")
    api.create_branch(repo, branch="dev", exist_ok=True)
    with pytest.raises(HfHubHTTPError):
        api.create_branch(repo, branch="dev")
    dev = api.upload_file(path_or_fileobj=b"dev only", path_in_repo="d.txt", repo_id=repo, revision="dev",
                          commit_message="On dev")
    assert Path(hf_hub_download(repo, "d.txt", revision="dev", cache_dir=tmp_path)).read_bytes() == b"dev only"
    assert "d.txt" not in api.list_repo_files(repo)
    refs = {b.name: b.target_commit for b in api.list_repo_refs(repo).branches}
    assert refs["dev"] == dev.oid and refs["main"] != dev.oid
    assert [c.title for c in api.list_repo_commits(repo, revision="dev")] == ["On dev", "First", "initial commit"]
    api.create_tag(repo, tag="v1", revision="dev")
    assert api.repo_info(repo, revision="v1").sha == dev.oid
    api.delete_branch(repo, branch="dev")
    assert [b.name for b in api.list_repo_refs(repo).branches] == ["main"]


def test_concurrent_commits_to_one_repo_all_land(api):
    repo = repo_name("concurrent")
    api.create_repo(repo)
    errors = []

    def push(i):
        try:
            api.upload_file(path_or_fileobj=f"file {i}".encode(), path_in_repo=f"f{i}.txt", repo_id=repo)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(api.list_repo_files(repo)) == sorted([".gitattributes"] + [f"f{i}.txt" for i in range(6)])
    assert len(api.list_repo_commits(repo)) == 7


def test_resolve_headers_etags_and_ranges(api):
    repo = repo_name("headers")
    api.create_repo(repo)
    blob = os.urandom(1000)
    commit = api.create_commit(repo, [CommitOperationAdd("w.safetensors", blob),
                                      CommitOperationAdd("c.json", b'{"a": 1}')], commit_message="files")
    lfs = get_hf_file_metadata(hf_hub_url(repo, "w.safetensors"))
    assert lfs.commit_hash == commit.oid and lfs.size == 1000
    assert lfs.etag == hashlib.sha256(blob).hexdigest()
    regular = get_hf_file_metadata(hf_hub_url(repo, "c.json"))
    assert regular.etag == git_hash(b'{"a": 1}') and regular.size == 8
    status, headers, body = _request("GET", hf_hub_url(repo, "w.safetensors"), headers={"Range": "bytes=10-19"})
    assert status == 206 and body == blob[10:20] and headers["Content-Range"] == "bytes 10-19/1000"
    status, headers, _ = _request("GET", hf_hub_url(repo, "nope.bin"))
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound" and headers["X-Repo-Commit"] == commit.oid


def test_lfs_upload_link_checks_content_and_is_single_use(api):
    repo = repo_name("lfs")
    api.create_repo(repo)
    data = os.urandom(2048)
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
             "objects": [{"oid": oid, "size": len(data)}]}
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, _, body = _request("POST", f"{ENDPOINT}/{repo}.git/info/lfs/objects/batch", json.dumps(batch).encode(),
                               auth)
    answer = json.loads(body)
    assert status == 200 and answer["transfer"] == "basic"
    href = answer["objects"][0]["actions"]["upload"]["href"]
    assert _request("PUT", href, b"x" * len(data))[0] == 400  # wrong content is refused
    assert _request("PUT", href, iter([data[:1000], data[1000:]]))[0] == 200  # an iterable goes chunked
    assert _request("PUT", href, data)[0] == 403  # the link is spent
    status, _, body = _request("POST", f"{ENDPOINT}/{repo}.git/info/lfs/objects/batch", json.dumps(batch).encode(),
                               auth)
    assert "actions" not in json.loads(body)["objects"][0]  # already stored: nothing to upload


def test_space_variables_secrets_runtime_and_hardware(api):
    space = repo_name("space")
    api.create_repo(space, repo_type="space", space_sdk="gradio")
    api.upload_file(path_or_fileobj=b"import gradio\n", path_in_repo="app.py", repo_id=space, repo_type="space")
    api.add_space_variable(space, "MODEL_ID", "darwin-local/child")
    assert api.get_space_variables(space)["MODEL_ID"].value == "darwin-local/child"
    api.add_space_secret(space, "API_KEY", "s3cr3t-value")
    secrets = api.get_space_secrets(space)
    assert "API_KEY" in secrets and not hasattr(secrets["API_KEY"], "value")
    status, _, body = _request("GET", f"{ENDPOINT}/api/spaces/{space}/secrets",
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"s3cr3t-value" not in body
    info = api.space_info(space)
    assert info.sdk == "gradio" and "app.py" in [s.rfilename for s in info.siblings]
    assert api.get_space_runtime(space).stage == "RUNNING"
    assert api.request_space_hardware(space, "cpu-upgrade").requested_hardware == "cpu-upgrade"
    assert api.get_space_runtime(space).hardware == "cpu-upgrade"
    api.delete_space_variable(space, "MODEL_ID")
    assert api.get_space_variables(space) == {}


def test_restart_keeps_repos_and_dedups_blobs(tmp_path):
    root, port, token = tmp_path / "hub", free_port(), "hf_restart"
    weights = os.urandom(5000)
    with serve(root, port=port, tokens=[token]) as hub:
        api = HfApi(endpoint=hub.url, token=token)
        for name in ("a", "b"):  # same content in two repos: stored once
            api.create_repo(f"darwin-local/{name}")
            head = api.upload_file(path_or_fileobj=weights, path_in_repo="w.bin", repo_id=f"darwin-local/{name}").oid
    blobs = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    assert sum(p.read_bytes() == weights for p in blobs) == 1
    with serve(root, port=port, tokens=[token]) as hub:
        api = HfApi(endpoint=hub.url, token=token)
        assert api.repo_info("darwin-local/b").sha == head
        path = api.hf_hub_download("darwin-local/b", "w.bin", cache_dir=tmp_path / "cache")
        assert Path(path).read_bytes() == weights



def test_200mb_file_streams_through_a_small_server(tmp_path):
    size_mb, token = 200, "hf_big_upload_token"
    big = tmp_path / "big.bin"
    with standalone_hub(tmp_path / "hub", token, tmp_path / "server.log") as (server, url):
        api = HfApi(endpoint=url, token=token)
        api.create_repo("darwin-local/big")
        api.upload_file(path_or_fileobj=b"warm up", path_in_repo="small.txt", repo_id="darwin-local/big")
        before = peak_rss_mb(server.pid)

        digest = hashlib.sha256()
        with big.open("wb") as f:  # streamed to disk: the test never holds the file either
            for _ in range(size_mb):
                chunk = os.urandom(1 << 20)
                digest.update(chunk)
                f.write(chunk)
        api.upload_file(path_or_fileobj=big, path_in_repo="big.bin", repo_id="darwin-local/big")
        got = Path(api.hf_hub_download("darwin-local/big", "big.bin", cache_dir=tmp_path / "cache"))
        growth = peak_rss_mb(server.pid) - before
        with got.open("rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()
        assert growth < 60, f"server peak RSS grew by {growth:.0f} MB for a {size_mb} MB file"
    big.unlink(missing_ok=True)
    logged = (tmp_path / "server.log").read_text()
    assert "PUT /api/lfs/upload/" in logged and "GET /darwin-local/big/resolve/main/big.bin 200" in logged
    assert token not in logged and "ticket=" not in logged
