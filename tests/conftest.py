"""Test session setup: isolated HF home, no telemetry, and no network beyond 127.0.0.1.

Environment variables are set at import time, before any test module imports huggingface_hub,
transformers or gradio, because several of their code paths read them once at import.
"""

import os
import socket
import tempfile
from pathlib import Path

import pytest

from tests import background

_HOME = tempfile.mkdtemp(prefix="darwin-test-hf-")
os.environ.update(
    HF_HOME=_HOME,
    TRACKIO_DIR=os.path.join(_HOME, "trackio"),  # trackio reads it at import; never the user's home
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_DISABLE_XET="1",
    HF_HUB_DISABLE_PROGRESS_BARS="1",
    GRADIO_ANALYTICS_ENABLED="False",
    TOKENIZERS_PARALLELISM="false",
    DO_NOT_TRACK="1",
)
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)

# One Hub-compatible endpoint for the whole session, up before huggingface_hub is first imported.
import atexit  # noqa: E402
import shutil  # noqa: E402

from release.localhub import serve  # noqa: E402  (stdlib only: does not import huggingface_hub)

LOCALHUB_TOKEN = "hf_darwin_local_test_token"
_HUB_ROOT = tempfile.mkdtemp(prefix="darwin-test-hub-")
# atexit runs last-registered first: the hub stops, then both temp folders go (hundreds of MB per session).
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
atexit.register(shutil.rmtree, _HUB_ROOT, ignore_errors=True)
_LOCAL_HUB = serve(_HUB_ROOT, tokens=[LOCALHUB_TOKEN])
atexit.register(_LOCAL_HUB.stop)
os.environ.update(HF_ENDPOINT=_LOCAL_HUB.url, DARWIN_LOCALHUB_TOKEN=LOCALHUB_TOKEN)

# Tiny models on a 2-core machine: one thread each is fastest and avoids oversubscription stalls.
import torch  # noqa: E402

torch.set_num_threads(1)

# ../shared/data beside the checkout; DARWIN_SHARED_DATA names another place (e.g. from a git worktree).
SHARED_DATA = Path(os.environ.get("DARWIN_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    # Any test that tries to reach the internet fails loudly instead of hanging or leaking.
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
            raise ConnectionRefusedError(f"tests are offline: refused connection to {host}")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only


@pytest.fixture(scope="session", autouse=True)
def _early_runs(request, tmp_path_factory):
    """Start the collected tests' long subprocess runs in the background (tests/background.py)."""
    pool = background.start(request.session.items, tmp_path_factory)
    yield
    background.stop(pool)


@pytest.fixture(scope="session")
def local_hub():
    """The session's Hub endpoint (HF_ENDPOINT points at it); writes need `local_hub.tokens[0]`."""
    return _LOCAL_HUB


@pytest.fixture(scope="session")
def tiny_parents(tmp_path_factory):
    """Tiny Gemma 4 father and Qwen3.5 mother checkpoints (seed 0), built once per session."""
    from release.tiny import write_tiny_parents

    return write_tiny_parents(tmp_path_factory.mktemp("parents"), seed=0)


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark records not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def space_child_repo(tiny_parents, tmp_path_factory):
    """A tiny Darwin child (custom modeling code, darwin_genome.json, genome.png) on the session hub."""
    import json
    import uuid

    from release.breeders.emit import emit_child
    from release.hub.client import Hub
    from release.card.plots import plot_genome

    genome = json.loads((Path(__file__).parent / "fixtures" / "card" / "genome.json").read_text())
    folder = emit_child(tiny_parents.father, tiny_parents.mother, genome,
                        tmp_path_factory.mktemp("child") / "repo", max_shard_size="300KB", progress=False)
    plot_genome(genome["ratios"], genome["frozen"], genome["r_max"], folder / "genome.png")
    repo = f"darwin-local/space-child-{uuid.uuid4().hex[:8]}"
    Hub(token=LOCALHUB_TOKEN).push_folder(folder, repo)
    return repo
