"""LFS objects belong to the repos they were uploaded to, as on the Hub: a token cannot make another
user's private file downloadable through its own repo, nor learn whether a sha256 is stored there."""

from tests.localhub_fixtures import http  # first: sets HF_ENDPOINT

# isort: split
import hashlib
import json
import os
import shutil

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import RemoteEntryNotFoundError

from release.localhub import serve
from tests.xet_bodies import Cas, chunk, name, shard

BOB = {"Authorization": "Bearer hf_bob", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("access-hub"), tokens=["hf_alice:alice", "hf_bob:bob"]) as hub:
        yield hub


def _lfs_commit(url: str, repo: str, path: str, oid: str, size: int) -> tuple[int, bytes]:
    """A commit naming an LFS object by its sha256 only, as a client that never uploaded it would send."""
    body = "\n".join(json.dumps(line) for line in (
        {"key": "header", "value": {"summary": "add"}},
        {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}})).encode()
    status, _, answer = http("POST", f"{url}/api/models/{repo}/commit/main", body,
                             {**BOB, "Content-Type": "application/x-ndjson"})
    return status, answer


def _batch(url: str, repo: str, oid: str, size: int) -> dict:
    body = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]}
    status, _, answer = http("POST", f"{url}/{repo}.git/info/lfs/objects/batch", json.dumps(body).encode(), BOB)
    assert status == 200, answer
    return json.loads(answer)["objects"][0]


def _alice_keeps_a_secret(hub, private_repo: str, bob_repo: str, size: int):
    """Alice stores random bytes in a private repo; bob gets a repo of his own. Returns (secret, sha256, bob)."""
    alice, bob = HfApi(endpoint=hub.url, token="hf_alice"), HfApi(endpoint=hub.url, token="hf_bob")
    secret = os.urandom(size)
    alice.create_repo(private_repo, private=True)
    alice.upload_file(path_or_fileobj=secret, path_in_repo="secret.safetensors", repo_id=private_repo)
    bob.create_repo(bob_repo)
    return secret, hashlib.sha256(secret).hexdigest(), bob


def test_a_private_file_cannot_be_read_or_probed_through_another_repo(hub, tmp_path):
    secret, sha, bob = _alice_keeps_a_secret(hub, "alice/private", "bob/mine", 4096)

    status, answer = _lfs_commit(hub.url, "bob/mine", "stolen.safetensors", sha, len(secret))
    assert status == 422 and b"was not uploaded" in answer, answer
    with pytest.raises(RemoteEntryNotFoundError):
        HfApi(endpoint=hub.url).hf_hub_download("bob/mine", "stolen.safetensors", cache_dir=tmp_path / "c1")

    # Probing: alice's object and one stored nowhere get the same answer (upload it), and verify says no.
    never = hashlib.sha256(b"stored nowhere").hexdigest()
    hers, absent = _batch(hub.url, "bob/mine", sha, len(secret)), _batch(hub.url, "bob/mine", never, 14)
    assert set(hers) == set(absent) and "upload" in hers["actions"] and "upload" in absent["actions"]
    status, _, _ = http("POST", hers["actions"]["verify"]["href"],
                        json.dumps({"oid": sha, "size": len(secret)}).encode(), BOB)
    assert status == 422

    # The upload link does not take other bytes; bob uploading the bytes himself proves he has them.
    status, _, _ = http("PUT", hers["actions"]["upload"]["href"], os.urandom(len(secret)))
    assert status == 400 and _lfs_commit(hub.url, "bob/mine", "stolen.safetensors", sha, len(secret))[0] == 422
    bob.upload_file(path_or_fileobj=secret, path_in_repo="own.safetensors", repo_id="bob/mine")
    got = HfApi(endpoint=hub.url).hf_hub_download("bob/mine", "own.safetensors", cache_dir=tmp_path / "c2")
    assert open(got, "rb").read() == secret
    assert sum(1 for p in (hub.store.root / "blobs").rglob(sha)) == 1  # still stored once


def test_a_xet_shard_cannot_claim_a_stored_object_it_does_not_rebuild(hub):
    secret, sha, bob = _alice_keeps_a_secret(hub, "alice/xet-private", "bob/xet", 1024)
    cas = Cas(hub.url, "hf_bob", "bob/xet")
    junk = os.urandom(len(secret))  # the right size, not the bytes
    assert cas.xorb(name(7), chunk(junk, 0, len(junk)))[0] == 200
    status, answer = cas.shard(shard([(sha, [(name(7), 0, 1, len(junk))])]))
    assert status == 400 and b"does not match" in answer, answer
    assert _lfs_commit(hub.url, "bob/xet", "s.safetensors", sha, len(secret))[0] == 422
    assert hub.store.blob_ok(sha, len(secret))  # alice's copy is untouched
    assert http("GET", f"{hub.url}/api/models/alice/xet-private/xet-read-token/main",
                headers={"Authorization": "Bearer hf_bob"})[0] == 404


def test_an_object_in_a_repo_the_token_may_read_is_reused_without_an_upload(hub, tmp_path):
    alice, bob = HfApi(endpoint=hub.url, token="hf_alice"), HfApi(endpoint=hub.url, token="hf_bob")
    public = os.urandom(2048)
    sha = hashlib.sha256(public).hexdigest()
    alice.create_repo("alice/public")
    alice.upload_file(path_or_fileobj=public, path_in_repo="w.safetensors", repo_id="alice/public")
    bob.create_repo("bob/copy")
    assert "actions" not in _batch(hub.url, "bob/copy", sha, len(public))  # readable anyway: already there
    assert _lfs_commit(hub.url, "bob/copy", "w.safetensors", sha, len(public))[0] == 200
    bob.create_commit("bob/copy", [CommitOperationAdd("again.safetensors", public)], commit_message="client")
    got = HfApi(endpoint=hub.url).hf_hub_download("bob/copy", "w.safetensors", cache_dir=tmp_path / "c")
    assert open(got, "rb").read() == public


def test_repos_stored_before_objects_were_tracked_keep_theirs(tmp_path):
    data = os.urandom(3000)
    sha = hashlib.sha256(data).hexdigest()
    with serve(tmp_path / "hub", tokens=["hf_bob:bob"]) as hub:
        api = HfApi(endpoint=hub.url, token="hf_bob")
        api.create_repo("bob/old")
        api.upload_file(path_or_fileobj=data, path_in_repo="a.safetensors", repo_id="bob/old")
    shutil.rmtree(tmp_path / "hub" / "repos" / "models" / "bob" / "old" / "lfs")  # as an older server left it
    with serve(tmp_path / "hub", tokens=["hf_bob:bob"]) as hub:
        assert _lfs_commit(hub.url, "bob/old", "b.safetensors", sha, len(data))[0] == 200
        assert HfApi(endpoint=hub.url).list_repo_files("bob/old") == [".gitattributes", "a.safetensors",
                                                                      "b.safetensors"]
