"""The Hub session of one run: which endpoint, which client, and the embedded local hub while it runs.

Stages and the Space code open it here (never through the pipeline), so no module imports its caller.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.localhub import LocalHub, StoreLocked

LOCAL_HOST = "127.0.0.1"


@dataclass
class HubSession:
    endpoint: str

    @cached_property
    def hub(self):
        from release.hub.client import Hub  # late: open_hub has set HF_ENDPOINT by now

        return Hub()

    def resolves(self, repo: str, ref: str, revision: str, repo_type: str = "model") -> bool:
        """Whether `ref` of `repo` still resolves to commit `revision` (the store may have been wiped)."""
        try:
            return self.hub.head(repo, repo_type=repo_type, revision=ref) == revision
        except ReleaseError:
            return False


@contextmanager
def open_hub(config: ReleaseConfig):
    """Point huggingface_hub at the config's endpoint; for `local`, serve the embedded store meanwhile.

    Must run before huggingface_hub or transformers are imported: both read HF_ENDPOINT at import.
    """
    endpoint = config.hub.endpoint
    if endpoint != "local":
        if endpoint:
            os.environ["HF_ENDPOINT"] = endpoint.rstrip("/")
        yield HubSession(endpoint=os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        return

    token = "hf_local_" + secrets.token_hex(16)  # write access for this run only; reads need none
    try:
        local = LocalHub(config.hub.local_root, port=config.hub.local_port, tokens=[token], host=LOCAL_HOST)
    except StoreLocked as e:
        raise ReleaseError(f"{e} (hub.local_root)") from None
    except OSError as e:
        raise ReleaseError(f"cannot serve the local hub on port {config.hub.local_port} ({e.strerror}): stop "
                           "`make hub` or whatever holds the port, or set hub.local_port") from None
    local.start()
    os.environ.update(HF_ENDPOINT=local.url, HF_TOKEN=token, HF_HUB_DISABLE_XET="1")
    try:
        yield HubSession(endpoint=local.url)
    finally:
        local.stop()
        os.environ.pop("HF_TOKEN", None)
