"""Every route, sent fields of every wrong type (seeded): always a 4xx with a short reason, never a 500."""

from tests.localhub_fixtures import http  # first: sets HF_ENDPOINT

# isort: split
import copy
import hashlib
import json
import random
from http.client import HTTPConnection

import pytest
from huggingface_hub import HfApi

from release.localhub import serve

SHA = hashlib.sha256(b"abc").hexdigest()
WRONG = [None, 0, -1, 1.5, 10**30, True, "", "x", "a" * 3000, "../x", [], [1], {}, {"a": 1}]
FILE = {"path": "b.txt", "content": "YQ==", "encoding": "base64"}
COMMIT = [{"key": "header", "value": {"summary": "s", "description": "d"}}, {"key": "file", "value": FILE},
          {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": SHA, "size": 3}},
          {"key": "deletedFile", "value": {"path": "a.txt"}}, {"key": "deletedFolder", "value": {"path": "d"}}]
ROUTES = [  # (method, path, a valid body)
    ("POST", "/api/repos/create", {"name": "fz-new", "organization": "me", "type": "space", "private": False,
                                   "sdk": "gradio", "variables": [{"key": "A", "value": "b"}], "secrets": []}),
    ("DELETE", "/api/repos/delete", {"name": "fz-none", "organization": "me", "type": "model"}),
    ("POST", "/api/models/me/fz/preupload/main", {"files": [{"path": "a.txt", "size": 3, "sample": "YWJj"}],
                                                  "gitIgnore": "*.tmp"}),
    ("POST", "/api/models/me/fz/commit/main", COMMIT),
    ("POST", "/me/fz.git/info/lfs/objects/batch", {"operation": "upload", "transfers": ["basic"],
                                                   "objects": [{"oid": SHA, "size": 3}], "hash_algo": "sha256"}),
    ("POST", "/me/fz.git/info/lfs/objects/verify", {"oid": SHA, "size": 3}),
    ("POST", "/api/models/me/fz/tag/main", {"tag": "v", "message": "m"}),
    ("POST", "/api/models/me/fz/branch/b1", {"startingPoint": "main"}),
    ("POST", "/api/models/me/fz/discussions", {"title": "t", "description": "d", "pullRequest": True}),
    ("PUT", "/api/models/me/fz/settings", {"private": False, "visibility": "public"}),
    ("POST", "/api/spaces/me/fzs/variables", {"key": "K", "value": "v", "description": "d"}),
    ("DELETE", "/api/spaces/me/fzs/secrets", {"key": "K"}),
    ("POST", "/api/spaces/me/fzs/hardware", {"flavor": "cpu-basic"}),
    ("POST", "/api/validate-yaml", {"content": "---\na: 1\n---\n"}),
]


def _paths(value, at=()):
    """Every place in a JSON value where a wrong value can go."""
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*at, i))


def _replace(value, at, new):
    if not at:
        return new
    out = copy.deepcopy(value)
    target = out
    for k in at[:-1]:
        target = target[k]
    target[at[-1]] = new
    return out


def _encode(path: str, body) -> bytes:
    if path.endswith("/commit/main") and isinstance(body, list):
        return "\n".join(json.dumps(line) for line in body).encode()
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("fuzz-hub"), tokens=["hf_t"]) as hub:
        api = HfApi(endpoint=hub.url, token="hf_t")
        api.create_repo("me/fz")
        api.upload_file(path_or_fileobj=b"abc", path_in_repo="a.txt", repo_id="me/fz")
        api.create_repo("me/fzs", repo_type="space", space_sdk="gradio")
        yield hub


@pytest.mark.parametrize("method, path, valid", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_wrong_types_anywhere_are_a_short_4xx(hub, method, path, valid):
    rng = random.Random(path)
    conn = HTTPConnection("127.0.0.1", hub.httpd.server_address[1], timeout=10)
    auth = {"Authorization": "Bearer hf_t", "Content-Type": "application/json"}
    places = list(_paths(valid))
    for at in places:
        for new in rng.sample(WRONG, 4):
            body = _encode(path, _replace(valid, at, new))
            conn.request(method, path, body=body, headers=auth)
            r = conn.getresponse()
            answer = r.read()
            assert r.status < 500, (at, new, r.status, answer)
            if r.status >= 400:
                assert len(json.loads(answer)["error"]) < 600, answer
    conn.close()
    status, _, _ = http(method, f"{hub.url}{path}", _encode(path, valid), auth)
    assert status < 500


def test_a_refused_space_creation_makes_nothing(hub):
    auth = {"Authorization": "Bearer hf_t", "Content-Type": "application/json"}
    for variables in ([{"key": None, "value": "v"}], [{"value": "v"}], ["x"], [{"key": "K"}]):
        body = {"name": "half", "organization": "me", "type": "space", "sdk": "gradio", "variables": variables}
        status, _, answer = http("POST", f"{hub.url}/api/repos/create", json.dumps(body).encode(), auth)
        assert status == 400, answer
        assert not HfApi(endpoint=hub.url, token="hf_t").repo_exists("me/half", repo_type="space")
