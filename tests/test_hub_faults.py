"""Hub faults come out as one line: the endpoint dying mid-push or mid-verify, 4xx answers, read tokens."""

from tests.localhub_fixtures import TOKEN, repo_name  # first: sets HF_ENDPOINT

# isort: split
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release.errors import ReleaseError
from release.hub.client import Hub
from release.localhub import serve
from release.hub.safe_push import push_release
from release.run.stages import StageBook


def _release(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    return path


def _dies_before(hub: Hub, method: str, server) -> None:
    """The endpoint goes down just as the client calls `method` (the rest of the stage already talked to it)."""
    original = getattr(hub.api, method)

    def call(*args, **kwargs):
        server.stop()
        return original(*args, **kwargs)

    setattr(hub.api, method, call)


@pytest.mark.parametrize("method", ["create_commit", "snapshot_download"])
def test_the_endpoint_going_down_mid_stage_is_one_line_and_records_nothing(tmp_path, method, monkeypatch):
    import huggingface_hub.utils._http as client_http

    # The client retries a dead endpoint with backoff (~25 s); the retries still happen, without the waits.
    monkeypatch.setattr(client_http.time, "sleep", lambda s: None)
    server = serve(tmp_path / "store", tokens=[TOKEN])
    hub = Hub(token=TOKEN, endpoint=server.url)
    repo = repo_name("dies")
    folder = _release(tmp_path / "child")
    if method == "snapshot_download":  # verify: the push went through, then the download fails
        pushed = push_release(hub, folder, repo, "refuse", "a/f", "a/m", "Release")
        stage = lambda: (hub.pull(repo, pushed["revision"], allow_patterns=("*",), action="verify"), [])  # noqa: E731
    else:
        stage = lambda: (push_release(hub, folder, repo, "refuse", "a/f", "a/m", "Release"), [])  # noqa: E731
    _dies_before(hub, method, server)
    book = StageBook(tmp_path)
    with pytest.raises(ReleaseError) as e:
        book.run("push", ["key"], stage)
    message = str(e.value)
    assert "\n" not in message and "unreachable" in message and server.url in message
    assert "push" not in StageBook(tmp_path).records


class _Refusing(BaseHTTPRequestHandler):
    """An endpoint that answers every request with 400, like a proxy in front of the wrong host."""

    def _answer(self):
        body = b'{"error": "Bad request"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args):
        pass


def test_a_4xx_is_never_called_unreachable():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        hub = Hub(token=TOKEN, endpoint=f"http://127.0.0.1:{httpd.server_address[1]}")
        for call in (lambda: hub.read_json("a/b", "config.json", "main"), lambda: hub.pull("a/b")):
            with pytest.raises(ReleaseError) as e:
                call()
            assert "answered 400" in str(e.value) and "unreachable" not in str(e.value)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_rejected_token_on_pull_asks_for_read_access(tmp_path):
    hub = Hub(token=TOKEN)
    repo = repo_name("readable")
    hub.push_folder(_release(tmp_path / "r"), repo)
    with pytest.raises(ReleaseError) as e:
        Hub(token="hf_not_a_valid_token_0123456789").pull(repo)
    assert "read access" in str(e.value) and "write" not in str(e.value)
