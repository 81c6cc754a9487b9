"""Pushing with hf_xet installed and HF_HUB_DISABLE_XET unset (a user's plain environment) works against a
standalone local hub, as `make hub` serves it: the Xet upload protocol ends in ordinary, verified blobs."""

from tests.localhub_fixtures import standalone_hub  # first: sets HF_ENDPOINT

# isort: split
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from release.localhub import lz4
from release.localhub.xet import chunk_index, hash_name, read_chunk, unpack_chunk

ROOT = Path(__file__).resolve().parents[1]

CLIENT = textwrap.dedent('''
    import hashlib, json, os, struct, sys
    from pathlib import Path
    import huggingface_hub
    from huggingface_hub import HfApi
    from huggingface_hub.utils._runtime import is_xet_available
    assert is_xet_available(), "this test needs hf_xet installed and HF_HUB_DISABLE_XET unset"
    api, folder = HfApi(token="hf_t"), Path(sys.argv[1])
    api.create_repo("me/model")
    # compressible float weights (LZ4 / byte-grouped chunks), random bytes (stored raw) and a text file
    floats = b"".join(struct.pack("<f", (i % 251) * 0.01) for i in range(300_000))
    (folder / "a.safetensors").write_bytes(floats)
    (folder / "b.safetensors").write_bytes(os.urandom(200_000))
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "old.bin").write_bytes(os.urandom(1000))
    first = api.upload_folder(repo_id="me/model", folder_path=folder)
    (folder / "old.bin").unlink()
    (folder / "b.safetensors").write_bytes(os.urandom(150_000))
    pr = api.upload_folder(repo_id="me/model", folder_path=folder, create_pr=True)
    replaced = api.upload_folder(repo_id="me/model", folder_path=folder, delete_patterns=["*.bin"])
    out = {"first": first.oid, "pr": pr.pr_revision, "pr_url": pr.pr_url, "replaced": replaced.oid,
           "files": api.list_repo_files("me/model"), "pr_files": api.list_repo_files("me/model", revision=pr.pr_revision)}
    from release.hub.client import Hub  # the project's own push, as `darwin-release` runs it against `make hub`
    pushed = Hub(token="hf_t").push_folder(folder, "me/via-release")
    out["via_release"] = api.repo_info("me/via-release").sha == pushed
    for name in ("a.safetensors", "b.safetensors"):
        got = api.hf_hub_download("me/model", name, cache_dir=folder.parent / "cache")
        out[name] = Path(got).read_bytes() == (folder / name).read_bytes()
    print(json.dumps(out))
''')


def test_push_with_xet_enabled_to_a_standalone_local_hub(tmp_path):
    with standalone_hub(tmp_path / "hub", "hf_t", tmp_path / "server.log") as (_, url):
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_XET", "HF_TOKEN")}
        env.update(HF_ENDPOINT=url, HF_HOME=str(tmp_path / "hf-home"))
        folder = tmp_path / "model"
        folder.mkdir()
        child = subprocess.run([sys.executable, "-c", CLIENT, str(folder)], env=env, capture_output=True,
                               text=True, timeout=120, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["a.safetensors"] and out["b.safetensors"] and out["via_release"]
    assert out["pr"] == "refs/pr/1" and out["pr_url"].endswith("/me/model/discussions/1")
    assert out["pr_files"] == [".gitattributes", "a.safetensors", "b.safetensors", "config.json", "old.bin"]
    assert out["files"] == [".gitattributes", "a.safetensors", "b.safetensors", "config.json"]  # replaced
    schemes = set()
    for xorb in (tmp_path / "hub" / "xet" / "xorbs").glob("*[0-9a-f]"):
        with xorb.open("rb") as f:
            for at in chunk_index(f):
                f.seek(at)
                schemes.add(f.read(8)[4])
                read_chunk(f, at)  # every stored chunk decodes to its declared size
    assert schemes >= {0} and schemes & {1, 2}  # raw and compressed chunks were both decoded
    logged = (tmp_path / "server.log").read_text()
    assert "POST /xet-cas/v1/xorbs/default/" in logged and "POST /xet-cas/v1/shards 200" in logged


def test_hashes_and_chunk_codecs():
    raw = bytes(range(32))
    assert hash_name(raw) == "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    data = bytes(range(10)) * 3  # 30 bytes: not a multiple of 4
    groups = b"".join(data[g::4] for g in range(4))
    literal_block = bytes([len(groups) << 4 if len(groups) < 15 else 0xF0]) + (
        b"" if len(groups) < 15 else bytes([len(groups) - 15])) + groups
    assert unpack_chunk(literal_block, 2, len(data)) == data  # byte grouping undone
    assert lz4.decompress(b"\x1f\x61\x01\x00\x05\x50aaaaa", 30) == b"a" * 30  # an overlapping match, then literals
    with pytest.raises(lz4.LZ4Error):
        lz4.decompress(b"\x1f\x61\x09\x00", 30)
