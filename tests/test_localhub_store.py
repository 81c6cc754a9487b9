"""The local hub's store: damaged blobs are re-uploaded and healed, one server per root, no orphans."""

from tests.localhub_fixtures import TOKEN  # noqa: F401  (first: sets HF_ENDPOINT)

# isort: split
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi

from release.errors import ReleaseError
from release.hub.session import open_hub
from release.localhub import Store, StoreLocked, serve

ROOT = Path(__file__).resolve().parents[1]


def _blob(root: Path, data: bytes) -> Path:
    sha = hashlib.sha256(data).hexdigest()
    return root / "blobs" / sha[:2] / sha


def test_a_damaged_blob_is_uploaded_again_and_healed(tmp_path):
    root, folder = tmp_path / "hub", tmp_path / "model"
    folder.mkdir()
    weights, config = os.urandom(50_000), b'{"hidden_size": 8}'
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_bytes(config)
    with serve(root, tokens=["hf_t"]) as hub:
        api = HfApi(endpoint=hub.url, token="hf_t")
        api.create_repo("me/m")
        head = api.upload_folder(repo_id="me/m", folder_path=folder).oid
        for data in (weights, config):  # bit rot: same size, different bytes
            damaged = bytearray(data)
            damaged[len(data) // 2] ^= 0xFF
            _blob(root, data).write_bytes(bytes(damaged))
        again = api.upload_folder(repo_id="me/m", folder_path=folder).oid
        assert again == head  # same content: no new commit, but the bytes were sent again
        assert _blob(root, weights).read_bytes() == weights and _blob(root, config).read_bytes() == config
        got = api.hf_hub_download("me/m", "model.safetensors", cache_dir=tmp_path / "cache")
        assert Path(got).read_bytes() == weights


def test_one_server_per_root(tmp_path):
    root = tmp_path / "hub"
    with serve(root) as hub:
        with pytest.raises(StoreLocked, match=f"in use by process {os.getpid()}"):
            serve(root)
        cli = subprocess.run([sys.executable, "-m", "release.localhub", "--root", str(root)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
        assert cli.returncode != 0 and cli.stderr.strip().count("\n") == 0
        assert f"in use by process {os.getpid()}" in cli.stderr
        config = SimpleNamespace(hub=SimpleNamespace(endpoint="local", local_root=str(root), local_port=0))
        with pytest.raises(ReleaseError, match=f"in use by process {os.getpid()}.*hub.local_root"):
            with open_hub(config):
                pass
        assert hub.url  # the first server still serves
    with serve(root):  # released on stop
        pass


def test_partial_uploads_left_by_a_killed_server_are_removed(tmp_path):
    root = tmp_path / "hub"
    with serve(root, tokens=["hf_t"]) as hub:
        api = HfApi(endpoint=hub.url, token="hf_t")
        api.create_repo("me/m")
        api.upload_file(path_or_fileobj=b"kept", path_in_repo="a.txt", repo_id="me/m")
    (root / "tmp" / "5e1d0c0ffee").write_bytes(b"\0" * 1000)  # what a kill mid-upload leaves
    repo = root / "repos" / "models" / "me" / "m"
    (repo / ".refs.json.1234.tmp").write_text("{")
    (repo / "commits" / ".abc.tmp").write_text("{")
    store = Store(root)
    try:
        assert list((root / "tmp").iterdir()) == []
        assert not list(repo.rglob(".*.tmp"))
        assert store.repo("model", "me/m").tree("main")[1]["a.txt"]["size"] == 4
    finally:
        store.close()


def test_a_missing_or_truncated_blob_is_a_short_500_not_a_broken_answer(tmp_path):
    import http.client

    with serve(tmp_path / "hub", tokens=["hf_t"]) as hub:
        api = HfApi(endpoint=hub.url, token="hf_t")
        api.create_repo("me/m")
        api.upload_file(path_or_fileobj=b"gone soon", path_in_repo="a.txt", repo_id="me/m")
        api.upload_file(path_or_fileobj=b"kept", path_in_repo="b.txt", repo_id="me/m")
        conn = http.client.HTTPConnection("127.0.0.1", hub.httpd.server_address[1], timeout=10)
        _blob(tmp_path / "hub", b"gone soon").write_bytes(b"gone")  # truncated
        conn.request("GET", "/me/m/resolve/main/a.txt")
        r = conn.getresponse()
        assert r.status == 500 and b"damaged: push the file again" in r.read()
        _blob(tmp_path / "hub", b"gone soon").unlink()
        conn.request("GET", "/me/m/resolve/main/a.txt")
        r = conn.getresponse()
        assert r.status == 500 and b"missing: push the file again" in r.read()
        conn.request("GET", "/me/m/resolve/main/b.txt")
        assert conn.getresponse().read() == b"kept"
        conn.close()
