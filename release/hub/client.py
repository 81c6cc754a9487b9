"""The tool's Hub layer: every Hub operation goes through one `huggingface_hub.HfApi`.

It talks to whatever `HF_ENDPOINT` names: the real Hub when unset, the local hub (`release.localhub`)
in tests and in the embedded default of `make release`. Failures a user can fix come out as one-line
`ReleaseError`s that name the problem and the fix, and never contain the token.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its connection errors surface as-is
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token, hf_hub_url
from huggingface_hub.errors import (
    FileMetadataError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from release.errors import ReleaseError
from release.hub.blob_check import verify_snapshot
from release.parents.headers import PREFIX, header_length

log = logging.getLogger(__name__)

# What breeding needs from a parent: weights, configs, tokenizer and chat template; never other formats.
PULL_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja", "*.txt", "*.model",
                 "*.tiktoken")


@dataclass(frozen=True)
class PulledRepo:
    path: Path  # local snapshot folder
    repo_id: str
    revision: str  # the resolved 40-hex commit sha, recorded for provenance


@dataclass(frozen=True)
class LocalFile:
    path: Path
    sha256: str  # what the Hub reports for an LFS file
    git_sha1: str  # ... and for a regular one

    def matches(self, remote_oid: str | None) -> bool:
        return remote_oid in (self.sha256, self.git_sha1)


def local_files(folder: str | Path) -> dict[str, LocalFile]:
    """Every file under `folder` by its repo path, with both ids the Hub may report for it (one read each)."""
    folder = Path(folder)
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % path.stat().st_size)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                sha256.update(chunk)
                sha1.update(chunk)
        out[path.relative_to(folder).as_posix()] = LocalFile(path, sha256.hexdigest(), sha1.hexdigest())
    return out


# Files the Hub keeps in every repo, which a release neither uploads nor deletes.
HUB_FILES = frozenset({".gitattributes"})


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

    def account(self) -> dict:
        """The token's whoami answer: user name, orgs with roles, and the token's role or fine-grained scopes."""
        with self._errors("check the Hub token"):
            return self.api.whoami()

    def gating(self, repo_id: str, revision: str = "main") -> str | bool:
        """False, or how access to a gated repo is granted ('auto' or 'manual')."""
        with self._errors(f"read {repo_id}", repo_id, revision, reading=True):
            return self.api.model_info(repo_id, revision=revision).gated or False

    def head(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """The commit sha `revision` points to now."""
        with self._errors(f"read {repo_id}", repo_id, revision, reading=True):
            return self.api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha

    def weights_metadata(self, repo_id: str, revision: str = "main"):
        """(commit sha, config.json bytes, file sizes) of a model repo, without its weights (config None when
        the repo holds no config.json). Its index and shard headers: `small_file`, `safetensors_header`."""
        with self._errors(f"read the metadata of {repo_id}@{revision}", repo_id, revision):
            info = self.api.model_info(repo_id, revision=revision, files_metadata=True)
            files = {s.rfilename: s.size or 0 for s in info.siblings or []}
            if "config.json" not in files:  # e.g. a repo created by an upload that never came
                return info.sha, None, files
            config = Path(self.api.hf_hub_download(repo_id, "config.json", revision=info.sha)).read_bytes()
        return info.sha, config, files

    def small_file(self, repo_id: str, filename: str, revision: str) -> bytes:
        """The bytes of a small file of the repo (an index, a config)."""
        with self._errors(f"read {filename} of {repo_id}@{revision}", repo_id, revision, reading=True):
            return Path(self.api.hf_hub_download(repo_id, filename, revision=revision)).read_bytes()

    def safetensors_header(self, repo_id: str, filename: str, revision: str,
                           file_size: int | None) -> tuple[int, bytes]:
        """(N, the N bytes of JSON) of a safetensors file's header, by HTTP range requests (as huggingface_hub's
        get_safetensors_metadata reads it: the first 100 kB, then the rest when the header is longer)."""
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.api.token)
        fix = "the parent repo is not a usable checkpoint: choose another revision or repair the repo"
        with self._errors(f"read the header of {filename} in {repo_id}@{revision}", repo_id, revision,
                          reading=True):
            first = get_session().get(url, headers={**headers, "range": "bytes=0-100000"},
                                      timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
            hf_raise_for_status(first)
            length = header_length(first.content, f"{repo_id}@{revision}: {filename}", file_size, fix)
            if PREFIX + length <= len(first.content):
                return length, first.content[PREFIX:PREFIX + length]
            rest = get_session().get(url, headers={**headers, "range": f"bytes={PREFIX}-{PREFIX + length - 1}"},
                                     timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
            hf_raise_for_status(rest)
            return length, rest.content[:length]

    def pull(self, repo_id: str, revision: str = "main", cache_dir: str | Path | None = None,
             allow_patterns: Sequence[str] = PULL_PATTERNS, verified: Path | None = None,
             rehash: bool = False, action: str = "pull", damaged_fix: str | None = None) -> PulledRepo:
        """Download what breeding needs from `repo_id@revision` into the HF cache (reused when present).

        Every file, downloaded now or found in the cache, is checked against the id the Hub gave it
        (`verified` remembers blobs already checked; `rehash` checks them all again). `action` and
        `damaged_fix` word the errors for callers other than the pull stage (verify).
        """
        with self._errors(f"{action} {repo_id}@{revision}", repo_id, revision, reading=True):
            sha = self.api.repo_info(repo_id, revision=revision).sha  # pin first: every file from one commit
            path = self.api.snapshot_download(repo_id, revision=sha, cache_dir=cache_dir,
                                              allow_patterns=list(allow_patterns))
        verify_snapshot(Path(path), f"{action} {repo_id}@{sha[:12]}", verified, rehash,
                        **({"fix": damaged_fix} if damaged_fix else {}))
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

    def holds_checkpoint(self, repo_id: str) -> bool:
        """Whether main holds a complete checkpoint: config.json and every shard its index names.

        Judged by content, not existence: a publish killed after creating the repo leaves it empty.
        """
        if not self.exists(repo_id):
            return False
        head = self.head(repo_id)
        files = self.files(repo_id, head)
        if "config.json" not in files:
            return False
        if "model.safetensors" in files:
            return True
        index = self.read_json(repo_id, "model.safetensors.index.json", head) or {}
        weight_map = index.get("weight_map")
        shards = set(weight_map.values()) if isinstance(weight_map, dict) else set()  # a wrong shape: not complete
        return bool(shards) and shards <= set(files)

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> None:
        with self._errors(f"create {repo_id}", repo_id):
            self.api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)

    def exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._errors(f"read {repo_id}", repo_id, reading=True):
            return self.api.repo_exists(repo_id, repo_type=repo_type)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, str]:
        """path -> the id the Hub reports for its content (sha256 for LFS files, git sha1 otherwise)."""
        with self._errors(f"list the files of {repo_id}@{revision}", repo_id, revision, reading=True):
            entries = self.api.list_repo_tree(repo_id, revision=revision, repo_type=repo_type, recursive=True)
            return {e.path: (e.lfs.sha256 if e.lfs else e.blob_id) for e in entries if hasattr(e, "blob_id")}

    def read_json(self, repo_id: str, filename: str, revision: str) -> dict | None:
        """A small JSON file of the repo, or None when it is absent or not JSON."""
        with self._errors(f"read {filename} of {repo_id}@{revision}", repo_id, revision, reading=True):
            try:
                path = self.api.hf_hub_download(repo_id, filename, revision=revision)
            except RemoteEntryNotFoundError:
                return None
        try:
            value = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def card_data(self, repo_id: str, revision: str, repo_type: str = "model") -> dict | None:
        """The YAML front matter of the repo's README.md, or None when there is none."""
        from huggingface_hub.repocard import metadata_load

        with self._errors(f"read README.md of {repo_id}@{revision}", repo_id, revision, reading=True):
            try:
                path = self.api.hf_hub_download(repo_id, "README.md", revision=revision, repo_type=repo_type)
            except RemoteEntryNotFoundError:
                return None
        try:
            return metadata_load(path)
        except (OSError, ValueError):
            return None

    def pull_requests(self, repo_id: str) -> dict[str, str]:
        """ref ('refs/pr/N') -> head commit of every pull request of the repo."""
        with self._errors(f"list the pull requests of {repo_id}", repo_id, reading=True):
            refs = self.api.list_repo_refs(repo_id, include_pull_requests=True)
        return {r.ref: r.target_commit for r in refs.pull_requests or []}

    def branches(self, repo_id: str) -> dict[str, str]:
        with self._errors(f"list the branches of {repo_id}", repo_id, reading=True):
            return {r.name: r.target_commit for r in self.api.list_repo_refs(repo_id).branches}

    def create_branch(self, repo_id: str, branch: str, start: str) -> None:
        with self._errors(f"create branch {branch} in {repo_id}", repo_id, start):
            self.api.create_branch(repo_id, branch=branch, revision=start)

    def commit_exactly(self, folder: str | Path, repo_id: str, revision: str, message: str,
                       local: dict[str, LocalFile] | None = None, create_pr: bool = False, force: bool = False):
        """One commit that makes `revision` hold exactly the files of `folder` (plus the Hub's own).

        Uploads what differs and deletes what the folder lacks; returns the CommitInfo, or None when
        no commit was made because `revision` already holds exactly that content. With `create_pr` the
        commit opens a pull request against `revision` instead.

        `force` offers every file again instead of trusting the file list: the Hub's preupload answer
        then decides, so a file whose stored copy is damaged (which the Hub reports as absent) is
        uploaded again, while intact ones are still skipped.
        """
        local = local_files(folder) if local is None else local
        with self._errors(f"push {folder} to {repo_id}@{revision}", repo_id, revision):
            head = self.api.repo_info(repo_id, revision=revision).sha
            remote = self.files(repo_id, head)
            adds = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f.path))
                    for p, f in local.items() if force or not f.matches(remote.get(p))]
            deletes = [CommitOperationDelete(path_in_repo=p) for p in remote if p not in local and p not in HUB_FILES]
            if not adds and not deletes:
                return None
            info = self.api.create_commit(repo_id, operations=[*deletes, *adds], commit_message=message,
                                          revision=revision, create_pr=create_pr,
                                          parent_commit=None if create_pr else head)
        return None if info.oid == head else info  # the client skips a commit that would change nothing

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
            # Exactly the folder's files: whatever an earlier deploy left and this one lacks is deleted.
            commit = self.api.upload_folder(repo_id=space_repo, folder_path=folder, repo_type="space",
                                            commit_message=message, delete_patterns="*")
        log.info("deployed Space %s at %s (variables: %s; %d secret(s))", space_repo, commit.oid,
                 ", ".join(sorted(variables)) or "none", len(secrets))
        return commit.oid

    @contextmanager
    def _errors(self, action: str, repo_id: str | None = None, revision: str | None = None,
                reading: bool = False) -> Iterator[None]:
        """Translate the client's errors into one-line ReleaseErrors; the token never appears in them.

        `reading`: the action only reads, so a token it lacks needs read access, not write access.
        """
        try:
            yield
        except (HfHubHTTPError, LocalEntryNotFoundError, LocalTokenNotFoundError, httpx2.TransportError,
                ConnectionError) as e:
            raise ReleaseError(self._explain(e, action, repo_id, revision, reading)) from e

    def _explain(self, e: Exception, action: str, repo_id: str | None, revision: str | None, reading: bool) -> str:
        where = f"the Hub at {self.endpoint}"
        token = self.api.token if isinstance(self.api.token, str) else get_token()
        # A download that failed without a cached copy wraps the real answer: judge by that one, so a
        # 4xx is never called "unreachable".
        if isinstance(e, LocalEntryNotFoundError) and isinstance(e.__cause__, (HfHubHTTPError, FileMetadataError)):
            e = e.__cause__
        if isinstance(e, RevisionNotFoundError):
            return (f"cannot {action}: revision '{revision}' not found in {repo_id} on {where}; "
                    "use an existing branch, tag or commit sha")
        if isinstance(e, RepositoryNotFoundError):
            return (f"cannot {action}: repository {repo_id} not found on {where}; check the repo id, "
                    "and for a private repo set HF_TOKEN to a token that can read it")
        if isinstance(e, RemoteEntryNotFoundError):
            return (f"cannot {action}: a file is missing from {repo_id}@{revision} on {where}; "
                    "check that the repo holds a complete checkpoint")
        if isinstance(e, LocalTokenNotFoundError):
            return f"cannot {action}: no Hub token; set HF_TOKEN or run `hf auth login`"
        if isinstance(e, FileMetadataError):
            return (f"cannot {action}: {where} answered without the file metadata a Hub sends; "
                    "check that HF_ENDPOINT names a Hub")
        if isinstance(e, HfHubHTTPError):
            access = "read" if reading else "write"
            status = e.response.status_code if e.response is not None else None
            if status == 401 and not token:
                return (f"cannot {action}: {where} needs a token (401); set HF_TOKEN to a token "
                        f"with {access} access or run `hf auth login`")
            if status in (401, 403):
                return (f"cannot {action}: {where} rejected the token ({status}); set HF_TOKEN to a "
                        f"valid token with {access} access to {repo_id or 'this namespace'}")
            if status == 412:
                return f"cannot {action}: {repo_id} changed while pushing (412); run again"
            detail = next(iter((e.server_message or str(e)).strip().splitlines()), "")
            if token:
                detail = detail.replace(token, "***")
            retry = "; run again once it answers normally" if status and status >= 500 else ""
            return f"cannot {action}: {where} answered {status} ({detail}){retry}"
        return (f"cannot {action}: {where} is unreachable ({type(e).__name__}); check the network "
                "and HF_ENDPOINT, or start the local hub: python -m release.localhub --root .hub "
                "--port 8765 --token <token>")
