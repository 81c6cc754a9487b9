"""A Hub-compatible endpoint on 127.0.0.1: what the tests and the embedded default of `make release` publish to.

    with serve(root, tokens=["hf_local"]) as hub:   # background thread
        os.environ["HF_ENDPOINT"] = hub.url          # before huggingface_hub is imported

or in the foreground: `python -m release.localhub --root DIR --port PORT --token T`.
"""

from release.localhub.server import USER, LocalHub, serve
from release.localhub.store import HubError, Store

__all__ = ["USER", "HubError", "LocalHub", "Store", "serve"]
