"""A Hub-compatible endpoint on 127.0.0.1: what the tests and the embedded default of `make release` publish to.

    with serve(root, tokens=["hf_local"]) as hub:   # background thread
        os.environ["HF_ENDPOINT"] = hub.url          # before huggingface_hub is imported

or in the foreground: `python -m release.localhub --root DIR --port PORT --token T[:namespace,org...]`.
One server per root: a second one on the same root raises StoreLocked naming the pid that holds it.
"""

from release.localhub.errors import HubError, StoreLocked
from release.localhub.server import LocalHub, serve
from release.localhub.store import Store
from release.localhub.tokens import USER

__all__ = ["USER", "HubError", "LocalHub", "Store", "StoreLocked", "serve"]
