"""The local hub under clients that hold on: a slow drip is cut at the connection's total deadline, the
connections served at once are capped (503 beyond, without a thread), kept-alive connections are told to
move on before their deadline; and requests that race a repo's deletion, or omit a field, get a clean 4xx."""

from tests.localhub_fixtures import http, standalone_hub  # first: sets HF_ENDPOINT

# isort: split
import hashlib
import json
import select
import socket
import threading
import time
from http.client import HTTPConnection

import pytest
from huggingface_hub import HfApi

from release.localhub import serve
from release.localhub.server import CONNECTION_DEADLINE_S, IDLE_TIMEOUT_S, MAX_CONNECTIONS


@pytest.fixture()
def hub(tmp_path):
    with serve(tmp_path / "hub", tokens=["hf_t"]) as hub:
        yield hub


def _connect(hub) -> socket.socket:
    return socket.create_connection(("127.0.0.1", hub.httpd.server_address[1]), timeout=10)


def _answer(s: socket.socket, timeout: float = 5) -> bytes:
    """Everything the server sends until it closes (or `timeout` passes)."""
    out, end = b"", time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([s], [], [], 0.1)[0]:
            try:
                piece = s.recv(65536)
            except OSError:
                break
            if not piece:
                break
            out += piece
    return out


def test_a_slow_drip_client_is_cut_off_at_the_connection_deadline(hub):
    hub.connection_deadline = 1.0  # the idle timeout stays 120 s: every byte arrives well within it
    s = _connect(hub)
    request = b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b" " * 500
    start, closed = time.monotonic(), False
    for byte in request:
        try:
            s.send(bytes([byte]))
        except OSError:
            closed = True
            break
        if select.select([s], [], [], 0.1)[0] and s.recv(100) == b"":
            closed = True
            break
        if time.monotonic() - start > 8:
            break
    elapsed = time.monotonic() - start
    s.close()
    assert closed and elapsed < 3, f"still connected after {elapsed:.1f} s"


def test_connections_over_the_cap_get_a_503_without_a_thread(hub):
    hub.max_connections = 3
    held = [HTTPConnection("127.0.0.1", hub.httpd.server_address[1], timeout=10) for _ in range(3)]
    for conn in held:  # answered and kept alive: each holds a thread, waiting for its next request
        conn.request("GET", "/api/models/no/such")
        assert conn.getresponse().read()
    threads = threading.active_count()
    extra = [_connect(hub) for _ in range(10)]
    answers = [_answer(s) for s in extra]
    assert all(a.startswith(b"HTTP/1.1 503") and b"Too many connections" in a for a in answers), answers[:2]
    assert threading.active_count() <= threads
    for s in held + extra:
        s.close()
    time.sleep(0.5)
    status, _, answer = http("GET", f"{hub.url}/api/models/no/such")
    assert status == 401 and b"Repository not found" in answer  # served again once they are gone


def test_the_command_line_sets_the_cap_and_the_deadline(tmp_path):
    with standalone_hub(tmp_path / "hub", "hf_t", tmp_path / "log", "--max-connections", "1",
                        "--connection-deadline", "1.5") as (_, url):
        host, port = url.removeprefix("http://").split(":")
        for _ in range(20):  # once the fixture's own probe has left, this one is served and kept alive
            held = HTTPConnection(host, int(port), timeout=10)
            held.request("GET", "/api/models/no/such")
            r = held.getresponse()
            r.read()
            if r.status != 503:
                break
            held.close()
            time.sleep(0.2)
        refused = socket.create_connection((host, int(port)), timeout=10)
        assert _answer(refused).startswith(b"HTTP/1.1 503")
        start = time.monotonic()
        assert _answer(held.sock, timeout=5) == b"" and time.monotonic() - start < 3  # cut at its deadline
        refused.close()
        held.close()


def test_the_real_defaults(tmp_path):
    with serve(tmp_path / "hub") as hub:
        assert (hub.idle_timeout, hub.connection_deadline, hub.max_connections) == (
            IDLE_TIMEOUT_S, CONNECTION_DEADLINE_S, MAX_CONNECTIONS)
    assert 50e9 / CONNECTION_DEADLINE_S < 15e6  # one 50 GB LFS file at 15 MB/s fits in a connection
    assert CONNECTION_DEADLINE_S > 2 * IDLE_TIMEOUT_S
    assert MAX_CONNECTIONS >= 4 * 10  # the test session's hub peaks at 10 at once (client pool, parallel uploads)


def test_a_kept_alive_connection_is_told_to_close_past_half_its_deadline(hub):
    hub.connection_deadline = 1.0
    conn = HTTPConnection("127.0.0.1", hub.httpd.server_address[1], timeout=10)
    conn.request("GET", "/api/models/no/such")
    r = conn.getresponse()
    r.read()
    assert r.getheader("Connection") != "close"
    time.sleep(0.6)
    conn.request("GET", "/api/models/no/such")
    r = conn.getresponse()
    r.read()
    assert r.getheader("Connection") == "close"
    conn.close()


def test_tags_and_branches_need_a_valid_name(hub):
    api = HfApi(endpoint=hub.url, token="hf_t")
    api.create_repo("me/tags")
    auth = {"Authorization": "Bearer hf_t", "Content-Type": "application/json"}
    for body in ({}, {"tag": None}, {"tag": 5}, {"tag": ""}, {"tag": "a b"}, {"tag": "refs/pr/1"}, {"tag": "x..y"}):
        status, _, answer = http("POST", f"{hub.url}/api/models/me/tags/tag/main", json.dumps(body).encode(), auth)
        assert status == 400 and b"Invalid tag name" in answer, (body, answer)
    for name in ("a..b", "refs%2Fheads%2Fx", "x.lock"):
        assert http("POST", f"{hub.url}/api/models/me/tags/branch/{name}", b"{}", auth)[0] == 400, name
    api.create_tag("me/tags", tag="v1.0")
    api.create_branch("me/tags", branch="feature/x")
    refs = api.list_repo_refs("me/tags")
    assert [t.name for t in refs.tags] == ["v1.0"] and {b.name for b in refs.branches} == {"main", "feature/x"}


@pytest.mark.parametrize("made_again", [False, True])
def test_deleting_a_repo_while_a_commit_streams_in_is_a_clean_404(hub, made_again):
    api = HfApi(endpoint=hub.url, token="hf_t")
    api.create_repo("me/doomed")
    lines = [{"key": "header", "value": {"summary": "late"}},
             {"key": "file", "value": {"path": "a.txt", "content": "YQ==", "encoding": "base64"}},
             {"key": "file", "value": {"path": "b.txt", "content": "Yg==", "encoding": "base64"}}]
    first, rest = (("\n".join(json.dumps(x) for x in part) + "\n").encode() for part in (lines[:2], lines[2:]))
    s = _connect(hub)
    head = (b"POST /api/models/me/doomed/commit/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hf_t\r\n"
            b"Content-Type: application/x-ndjson\r\nConnection: close\r\nContent-Length: %d\r\n\r\n")
    s.sendall(head % (len(first) + len(rest)) + first)
    stored = hub.store.blob_path(hashlib.sha256(b"a").hexdigest())
    for _ in range(100):  # the server has stored a.txt and waits for the rest
        if stored.exists():
            break
        time.sleep(0.05)
    api.delete_repo("me/doomed")
    if made_again:  # another repo under the same name: the commit must not land there either
        api.create_repo("me/doomed")
    s.sendall(rest)
    answer = _answer(s, timeout=5)
    s.close()
    assert answer.startswith(b"HTTP/1.1 404") and b"RepoNotFound" in answer, answer[:300]
    if made_again:
        assert api.list_repo_files("me/doomed") == [".gitattributes"]
    else:
        assert not api.repo_exists("me/doomed")
        assert not any((hub.store.root / "tmp").iterdir())  # the deleted repo's files are gone
