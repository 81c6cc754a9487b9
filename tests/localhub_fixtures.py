"""Point huggingface_hub at a local hub for the whole test session. Import this before huggingface_hub.

huggingface_hub and transformers read HF_ENDPOINT/HF_HOME once, at import, so the hub must be up and
the variables set first. When conftest already started a session hub (HF_ENDPOINT on 127.0.0.1 and
DARWIN_LOCALHUB_TOKEN set) it is reused; otherwise one is started here on a temp root.
"""

import atexit
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

from tests.cli import free_port  # the hub tests import it from here too

os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="darwin-test-hf-"))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["HF_HUB_DISABLE_XET"] = "1"  # the local hub speaks the LFS protocol, not Xet
os.environ.pop("HF_HUB_OFFLINE", None)

if os.environ.get("DARWIN_LOCALHUB_TOKEN") and os.environ.get("HF_ENDPOINT", "").startswith("http://127.0.0.1:"):
    TOKEN = os.environ["DARWIN_LOCALHUB_TOKEN"]
else:
    from release.localhub import serve

    TOKEN = "hf_darwin_local_test_token"
    _hub = serve(tempfile.mkdtemp(prefix="darwin-localhub-"), tokens=[TOKEN])
    atexit.register(_hub.stop)
    os.environ["HF_ENDPOINT"] = _hub.url
    os.environ["DARWIN_LOCALHUB_TOKEN"] = TOKEN
ENDPOINT = os.environ["HF_ENDPOINT"]

import huggingface_hub.constants  # noqa: E402  (only now: it reads HF_ENDPOINT at import)

if huggingface_hub.constants.ENDPOINT != ENDPOINT:
    raise RuntimeError(
        f"huggingface_hub was imported with endpoint {huggingface_hub.constants.ENDPOINT} before the local hub "
        f"({ENDPOINT}) was set up: start the hub in tests/conftest.py, before any test module is imported")

USER = "darwin-local"


def repo_name(stem: str) -> str:
    """A fresh repo id, so tests sharing the session hub never see each other's repos."""
    return f"{USER}/{stem}-{uuid.uuid4().hex[:8]}"


@contextmanager
def standalone_hub(root: Path, token: str, log_path: Path, *options: str):
    """`python -m release.localhub` in its own process (as `make hub` serves it), answering when entered.

    Yields (process, url); the server's log goes to `log_path`; `options` are more command-line flags."""
    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "release.localhub", "--root", str(root), "--port", str(port),
                                   "--token", token, *options], cwd=Path(__file__).resolve().parents[1], stderr=log, stdout=log)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{url}/api/models/x/y").close()
                except urllib.error.HTTPError:
                    break  # it answers
                except OSError:
                    time.sleep(0.1)
            yield server, url
        finally:
            server.terminate()
            server.wait(10)


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MB: what a request made it hold at its worst."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def http(method: str, url: str, data=None, headers=None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one plain HTTP request; error statuses are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
