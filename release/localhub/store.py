"""On-disk storage of the local hub: content-addressed blobs (blobs.py) and repos (repo.py) under one root.

Layout under the root:

    blobs/ab/<sha256>                  file contents, stored once per distinct content
    tmp/                               partial uploads (same filesystem, so os.replace is atomic);
                                       emptied when the store opens: one server owns a root (.lock)
    .lock                              flock held by the serving process, which writes its pid there
    xet/xorbs/<hash>                   Xet uploads (xet.py); the files they rebuild land in blobs/
    repos/<type>s/<ns>/<name>/         one repo (repo.py)
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from fnmatch import fnmatch
from pathlib import Path

from release.localhub.blobs import SHA256_RE, Blobs
from release.localhub.errors import HubError
from release.localhub.lock import RootLock
from release.localhub.names import check_repo_id
from release.localhub.repo import Repo, now, read_json, write_json

log = logging.getLogger("release.localhub")

# Stored through LFS, like the Hub's default .gitattributes; so is any binary or large file.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx",
                "*.gguf", "*.model", "*.npy", "*.npz", "*.pkl", "*.zip", "*.tar", "*.gz", "*.zst",
                "*.parquet", "*.arrow", "*.tflite", "*.ot", "*.wasm")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def upload_mode(path: str, size: int, sample: bytes) -> str:
    """What the Hub's preupload answers: LFS for weights, large or binary files, else a regular blob."""
    if size == 0:
        return "regular"
    if any(fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS) or size > LFS_MIN_SIZE or b"\0" in sample:
        return "lfs"
    return "regular"


class Store(Blobs):
    def __init__(self, root: str | Path):
        super().__init__(Path(root))
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_lock = RootLock(self.root)  # StoreLocked when another server holds this root
        for sub in ("blobs", "tmp", "repos"):
            (self.root / sub).mkdir(exist_ok=True)
        self._remove_orphans()
        self._track_legacy_objects()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def close(self) -> None:
        self._root_lock.release()

    def _remove_orphans(self) -> None:
        """Partial uploads and half-written JSON a killed server left: nobody else writes here (the lock)."""
        orphans = list((self.root / "tmp").iterdir()) + list((self.root / "repos").glob("*/*/*/**/.*.tmp"))
        for p in orphans:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        if orphans:
            log.info("removed %d partial upload(s) left by an earlier server in %s", len(orphans), self.root)

    # ---- repos ----

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = check_repo_id(repo_type, repo_id)
        return self.root / "repos" / f"{repo_type}s" / ns / name

    def repo(self, repo_type: str, repo_id: str) -> Repo | None:
        d = self.repo_dir(repo_type, repo_id)
        return Repo(self, repo_type, repo_id, d) if (d / "refs.json").exists() else None

    def lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def create_repo(self, repo_type: str, repo_id: str, author: str, private: bool, sdk: str | None) -> Repo:
        d = self.repo_dir(repo_type, repo_id)
        with self.lock("create"):
            if (d / "refs.json").exists():
                raise HubError(409, f"You already created this {repo_type} repo")
            (d / "commits").mkdir(parents=True, exist_ok=True)
            (d / "lfs").mkdir(exist_ok=True)
            meta = {"type": repo_type, "id": repo_id, "private": private, "createdAt": now()}
            if repo_type == "space":
                meta.update(sdk=sdk, hardware="cpu-basic", variables={}, secrets={})
            write_json(d / "meta.json", meta)
            repo = Repo(self, repo_type, repo_id, d)
            # Like the Hub, a new repo starts with one commit holding .gitattributes.
            entry = repo.regular_entry(GITATTRIBUTES)
            first = repo.write_commit(None, "initial commit", author, {".gitattributes": entry})
            write_json(d / "refs.json", {"refs/heads/main": first})
            return repo

    def delete_repo(self, repo: Repo) -> None:
        """Gone at once for every other request (one rename), then removed; blobs stay: other repos may share them."""
        with repo.lock:
            repo.check_alive()
            trash = self.root / "tmp" / uuid.uuid4().hex
            os.replace(repo.dir, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def holders(self, sha256: str) -> list[Repo]:
        """The repos an LFS object was uploaded to (or committed in)."""
        if not SHA256_RE.match(sha256):
            return []
        out = []
        for marker in (self.root / "repos").glob(f"*/*/*/lfs/{sha256}"):
            d = marker.parent.parent
            try:
                repo = self.repo(d.parent.parent.name[:-1], f"{d.parent.name}/{d.name}")
            except HubError:  # deleted meanwhile, or not a repo folder
                continue
            if repo is not None:
                out.append(repo)
        return out

    def _track_legacy_objects(self) -> None:
        """Repos stored before LFS objects were tracked per repo hold those their commits name."""
        for refs in (self.root / "repos").glob("*/*/*/refs.json"):
            d = refs.parent
            if (d / "lfs").is_dir():
                continue
            tmp = d / ".lfs.tmp"  # a killed server leaves it to _remove_orphans
            tmp.mkdir()
            for commit in (d / "commits").glob("*.json"):
                for entry in read_json(commit)["tree"].values():
                    if entry["lfs"]:
                        (tmp / entry["sha256"]).touch()
            os.replace(tmp, d / "lfs")
