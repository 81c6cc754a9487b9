"""The local hub under hostile or broken clients: bounded bodies, short 4xx answers, idle timeouts,
connections that stay in step after an error, and file paths / repo ids it refuses."""

from tests.localhub_fixtures import ENDPOINT, TOKEN, peak_rss_mb, repo_name, standalone_hub  # first: sets HF_ENDPOINT

# isort: split
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi

from release.localhub import serve

ROOT = Path(__file__).resolve().parents[1]
HOST, PORT = urlsplit(ENDPOINT).hostname, urlsplit(ENDPOINT).port
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def repo():
    name = repo_name("limits")
    HfApi(token=TOKEN).create_repo(name)
    HfApi(token=TOKEN).upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=name)
    return name


def _ask(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.getheader("Connection"), r.read()



def _huge_post(port: int, path: str, announced: int, send_mb: int, headers: str = "") -> tuple[bytes, float]:
    """POST announcing `announced` bytes, stream up to `send_mb` MB while reading the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {announced}\r\n{headers}\r\n".encode())
    start = time.monotonic()

    def stream():
        try:
            for _ in range(send_mb):
                s.sendall(b"\0" * (1 << 20))
        except OSError:
            pass  # the server stopped reading and closed: expected

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    answer = b""
    while b"\r\n\r\n" not in answer:
        piece = s.recv(65536)
        if not piece:
            break
        answer += piece
    elapsed = time.monotonic() - start
    sender.join(10)
    s.close()
    return answer, elapsed


def test_a_400mb_unauthenticated_post_is_refused_without_growing_the_server(tmp_path):
    with standalone_hub(tmp_path / "hub", "hf_t", tmp_path / "server.log") as (server, url):
        port = urlsplit(url).port
        before = peak_rss_mb(server.pid)
        for path in ("/api/validate-yaml", "/api/repos/create", "/api/models/a/b/paths-info/main",
                     "/a/b.git/info/lfs/objects/batch", "/api/lfs/upload/" + "0" * 64 + "?size=5&ticket=x"):
            answer, elapsed = _huge_post(port, path, 400 << 20, send_mb=64)
            status = int(answer.split(b" ")[1])
            assert 400 <= status < 500 and elapsed < 5, (path, answer[:200], elapsed)
        answer, _ = _huge_post(port, "/api/validate-yaml", 400 << 20, send_mb=64)
        assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer
        growth = peak_rss_mb(server.pid) - before
        assert growth < 40, f"server peak RSS grew by {growth:.0f} MB"
        assert server.poll() is None  # still serving


def test_chunked_bodies_are_bounded_too():
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(16):
            s.sendall(b"100000\r\n" + b"\0" * (1 << 20) + b"\r\n")
    except OSError:
        pass
    answer = s.recv(65536)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("raw, status", [
    (b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET /%ff%fe/x/resolve/main/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
])
def test_malformed_framing_is_a_short_4xx_and_closes(raw, status):
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(raw)
    answer = b""
    while piece := s.recv(65536):  # the server closes: the framing cannot be trusted
        answer += piece
    s.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), answer[:200]
    assert b"Traceback" not in answer and len(body) < 300


def test_malformed_bodies_answer_4xx_without_internals_and_keep_the_connection(repo):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
    cases = [
        ("POST", "/api/validate-yaml", b"{not json", {}),
        ("POST", "/api/validate-yaml", b"[1, 2]", {}),
        ("POST", "/api/repos/create", b'{"name": null}', AUTH),
        ("POST", "/api/repos/create", b'{"name": 5}', AUTH),
        ("POST", "/api/repos/create", b'{"name": "null"}', AUTH),
        ("POST", f"/api/models/{repo}/preupload/main", b'{"files": [1]}', AUTH),
        ("POST", f"/api/models/{repo}/preupload/main", b'{"files": [{"path": "x", "sample": "%%%"}]}', AUTH),
        ("POST", f"/api/models/{repo}/commit/main", b'{"key": "header"\n', AUTH),
        ("POST", f"/api/models/{repo}/commit/main", b'{"key": "file", "value": {"path": "b.txt", "content": 7}}\n',
         AUTH),
        ("POST", f"/{repo}.git/info/lfs/objects/batch", b'{"operation": "upload", "objects": ["x"]}', AUTH),
        ("PUT", "/api/lfs/upload/" + "0" * 64 + "?size=abc&ticket=x", b"12345", {}),
        ("POST", "/api/repos/create", b'{"name": "x"}', {}),  # 401 with a small unread body
        ("GET", "/api/models/no/such/route/here", None, {}),
    ]
    for method, path, body, headers in cases:
        status, connection, answer = _ask(conn, method, path, body, headers)
        assert 400 <= status < 500, (path, body, status, answer)
        assert connection != "close" and b"Traceback" not in answer and b"Error:" not in answer, answer
        assert len(json.loads(answer)["error"]) < 300
        # the same connection still answers the next request correctly
        status, _, answer = _ask(conn, "GET", f"/{repo}/resolve/main/a.txt")
        assert (status, answer) == (200, b"hello")
    conn.close()


@pytest.mark.parametrize("path", ["a%00b.txt", ".git/config", "x/.git/HEAD", "%2e%2e/%2e%2e/etc/passwd",
                                  "a/%252e%252e/b", "a/../b", "./a", "a\\b", "/abs", "a//b", "x\x01y"])
def test_bad_file_paths_are_refused_everywhere(repo, path):
    api = HfApi(token=TOKEN)
    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
    quoted = urllib.request.quote(path, safe="/%")
    status, _, _ = _ask(conn, "GET", f"/{repo}/resolve/main/{quoted}")
    assert status == 400, path
    line = json.dumps({"key": "file", "value": {"path": path, "content": "eA==", "encoding": "base64"}})
    status, _, answer = _ask(conn, "POST", f"/api/models/{repo}/commit/main", line.encode(), AUTH)
    assert status == 400 and b"Invalid path" in answer, (path, answer)
    status, _, _ = _ask(conn, "POST", f"/api/models/{repo}/preupload/main",
                        json.dumps({"files": [{"path": path, "size": 1, "sample": ""}]}).encode(), AUTH)
    assert status == 400
    conn.close()
    assert api.list_repo_files(repo) == [".gitattributes", "a.txt"]


@pytest.mark.parametrize("repo_id", ["darwin-local/null", "darwin-local/None", "darwin-local/a--b",
                                     "darwin-local/a..b", "darwin-local/-a", "darwin-local/a.", "null/x",
                                     "darwin-local/" + "a" * 97])
def test_invalid_repo_ids_are_refused(repo_id):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
    ns, name = repo_id.split("/")
    status, _, answer = _ask(conn, "POST", "/api/repos/create",
                             json.dumps({"name": name, "organization": ns}).encode(), AUTH)
    assert status == 400 and b"Invalid repo id" in answer, (repo_id, answer)
    status, _, _ = _ask(conn, "GET", f"/api/models/{repo_id}")
    assert status == 400
    conn.close()


def test_idle_connections_time_out(tmp_path):
    with serve(tmp_path / "hub", tokens=["hf_t"]) as hub:
        hub.idle_timeout = 0.3
        s = socket.create_connection(("127.0.0.1", hub.httpd.server_address[1]), timeout=10)
        start = time.monotonic()
        assert s.recv(100) == b""  # the server hangs up on a client that sends nothing
        assert time.monotonic() - start < 5
        s.close()
        s = socket.create_connection(("127.0.0.1", hub.httpd.server_address[1]), timeout=10)
        s.sendall(b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # stalls mid-body
        assert s.recv(100) == b""
        s.close()


def test_non_ascii_in_a_refused_path_still_gets_an_answer(repo):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
    status, _, answer = _ask(conn, "GET", f"/{repo}/resolve/main/%C3%A9/%2e%2e/x")
    assert status == 400 and "é" in json.loads(answer)["error"]
    assert _ask(conn, "GET", f"/{repo}/resolve/main/a.txt")[2] == b"hello"
    conn.close()
