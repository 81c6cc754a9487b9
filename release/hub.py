"""The tool's Hub layer: every Hub operation goes through one `huggingface_hub.HfApi`.

It talks to whatever `HF_ENDPOINT` names: the real Hub when unset, the local hub (`release.localhub`)
in tests and in the embedded default of `make release`. Failures a user can fix come out as one-line
`ReleaseError`s that name the problem and the fix, and never contain the token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its connection errors surface as-is
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from release.errors import ReleaseError

log = logging.getLogger(__name__)

# What breeding needs from a parent: weights, configs, tokenizer and chat template; never other formats.
PULL_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja", "*.txt", "*.model",
                 "*.tiktoken")


@dataclass(frozen=True)
class PulledRepo:
    path: Path  # local snapshot folder
    repo_id: str
    revision: str  # the resolved 40-hex commit sha, recorded for provenance


class Hub:
    """One `HfApi`. Token and endpoint default to HF_TOKEN / HF_ENDPOINT like the `hf` CLI; token=False sends none."""

    def __init__(self, token: str | bool | None = None, endpoint: str | None = None):
        self.api = HfApi(token=token, endpoint=endpoint)

    @property
    def endpoint(self) -> str:
        return self.api.endpoint

    def whoami(self) -> str:
        with self._errors("check the Hub token"):
            return self.api.whoami()["name"]

    def head(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """The commit sha `revision` points to now."""
        with self._errors(f"read {repo_id}", repo_id, revision):
            return self.api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha

    def pull(self, repo_id: str, revision: str = "main", cache_dir: str | Path | None = None,
             allow_patterns: Sequence[str] = PULL_PATTERNS) -> PulledRepo:
        """Download what breeding needs from `repo_id@revision` into the HF cache (reused when present)."""
        with self._errors(f"pull {repo_id}@{revision}", repo_id, revision):
            sha = self.api.repo_info(repo_id, revision=revision).sha  # pin first: every file from one commit
            path = self.api.snapshot_download(repo_id, revision=sha, cache_dir=cache_dir,
                                              allow_patterns=list(allow_patterns))
        log.info("pulled %s@%s (%s) into %s", repo_id, revision, sha, path)
        return PulledRepo(path=Path(path), repo_id=repo_id, revision=sha)

    def push_folder(self, folder: str | Path, repo_id: str, repo_type: str = "model",
                    message: str = "Upload with darwin-release", private: bool = False) -> str:
        """Create the repo if needed and upload `folder` as one commit; returns the head commit sha.

        Files whose content is already on the remote are skipped by the client (it compares the
        sha256 / git-sha1 the Hub reports at preupload), so re-pushing identical content makes no commit.
        """
        with self._errors(f"push {folder} to {repo_id}", repo_id):
            self.api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            commit = self.api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type=repo_type,
                                            commit_message=message)
        log.info("pushed %s to %s %s at %s", folder, repo_type, repo_id, commit.oid)
        return commit.oid

    def deploy_space(self, space_repo: str, folder: str | Path, variables: dict[str, str],
                     secrets: dict[str, str], hardware: str | None = None, private: bool = False,
                     message: str = "Deploy Space with darwin-release") -> str:
        """Create/update a Gradio Space: settings through the API (never in files), then its files."""
        with self._errors(f"deploy Space {space_repo}", space_repo):
            self.api.create_repo(space_repo, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            # Variables and secrets first, so the build the upload triggers already sees them.
            for key, value in variables.items():
                self.api.add_space_variable(space_repo, key, value)
            for key, value in secrets.items():
                self.api.add_space_secret(space_repo, key, value)
            if hardware:
                self.api.request_space_hardware(space_repo, hardware)
            commit = self.api.upload_folder(repo_id=space_repo, folder_path=folder, repo_type="space",
                                            commit_message=message)
        log.info("deployed Space %s at %s (variables: %s; %d secret(s))", space_repo, commit.oid,
                 ", ".join(sorted(variables)) or "none", len(secrets))
        return commit.oid

    @contextmanager
    def _errors(self, action: str, repo_id: str | None = None, revision: str | None = None) -> Iterator[None]:
        """Translate the client's errors into one-line ReleaseErrors; the token never appears in them."""
        where = f"the Hub at {self.endpoint}"
        token = self.api.token if isinstance(self.api.token, str) else get_token()
        try:
            yield
        except RevisionNotFoundError as e:
            raise ReleaseError(f"cannot {action}: revision '{revision}' not found in {repo_id} on {where}; "
                               "use an existing branch, tag or commit sha") from e
        except RepositoryNotFoundError as e:
            raise ReleaseError(f"cannot {action}: repository {repo_id} not found on {where}; check the repo id, "
                               "and for a private repo set HF_TOKEN to a token that can read it") from e
        except RemoteEntryNotFoundError as e:
            raise ReleaseError(f"cannot {action}: a file is missing from {repo_id}@{revision} on {where}; "
                               "check that the repo holds a complete checkpoint") from e
        except LocalTokenNotFoundError as e:
            raise ReleaseError(f"cannot {action}: no Hub token; set HF_TOKEN or run `hf auth login`") from e
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status == 401 and not token:
                raise ReleaseError(f"cannot {action}: {where} needs a token (401); set HF_TOKEN to a write "
                                   "token or run `hf auth login`") from e
            if status in (401, 403):
                raise ReleaseError(f"cannot {action}: {where} rejected the token ({status}); set HF_TOKEN to a "
                                   "valid token with write access to this namespace") from e
            if status == 412:
                raise ReleaseError(f"cannot {action}: {repo_id} changed while pushing (412); run again") from e
            detail = next(iter((e.server_message or str(e)).strip().splitlines()), "")
            if token:
                detail = detail.replace(token, "***")
            raise ReleaseError(f"cannot {action}: {where} answered {status} ({detail})") from e
        except (httpx2.TransportError, LocalEntryNotFoundError, ConnectionError) as e:
            raise ReleaseError(f"cannot {action}: {where} is unreachable ({type(e).__name__}); check the network "
                               "and HF_ENDPOINT, or start the local hub: python -m release.localhub --root .hub "
                               "--port 8765 --token <token>") from e
