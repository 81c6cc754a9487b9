"""On-disk storage of the local hub: content-addressed blobs, JSON commits, refs and repo metadata.

Layout under the root:

    blobs/ab/<sha256>                  file contents, stored once per distinct content
    tmp/                               partial uploads (same filesystem, so os.replace is atomic);
                                       emptied when the store opens: one server owns a root (.lock)
    .lock                              flock held by the serving process, which writes its pid there
    xet/xorbs/<hash>                   Xet uploads (xet.py); the files they rebuild land in blobs/
    repos/<type>s/<ns>/<name>/
        meta.json                      visibility, sdk, Space variables/secrets/hardware, pull request titles
        refs.json                      {"refs/heads/main": <commit id>, "refs/pr/1": ..., "refs/tags/v1": ...}
        commits/<id>.json              {parent, message, author, date, tree: {path: entry}}

A commit id is the sha1 of its JSON, so ids are 40 hex characters like git's. A tree entry is
{"sha256", "size", "git_sha1", "lfs"}: `git_sha1` is what the Hub calls a file's oid (the git blob
sha1 of the content, or of the LFS pointer for LFS files).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path

from release.localhub.errors import HubError
from release.localhub.lock import RootLock
from release.localhub.names import check_path, check_repo_id

log = logging.getLogger("release.localhub")

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
CHUNK = 1 << 20

# Stored through LFS, like the Hub's default .gitattributes; so is any binary or large file.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx",
                "*.gguf", "*.model", "*.npy", "*.npz", "*.pkl", "*.zip", "*.tar", "*.gz", "*.zst",
                "*.parquet", "*.arrow", "*.tflite", "*.ot", "*.wasm")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def upload_mode(path: str, size: int, sample: bytes) -> str:
    """What the Hub's preupload answers: LFS for weights, large or binary files, else a regular blob."""
    if size == 0:
        return "regular"
    if any(fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS) or size > LFS_MIN_SIZE or b"\0" in sample:
        return "lfs"
    return "regular"


def write_json(path: Path, obj) -> None:
    """Atomic: readers see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(path.read_text())


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_lock = RootLock(self.root)  # StoreLocked when another server holds this root
        for sub in ("blobs", "tmp", "repos"):
            (self.root / sub).mkdir(exist_ok=True)
        self._remove_orphans()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._verified: dict[str, tuple] = {}  # sha256 -> stat signature of the blob last hashed whole

    def close(self) -> None:
        self._root_lock.release()

    def _remove_orphans(self) -> None:
        """Partial uploads and half-written JSON a killed server left: nobody else writes here (the lock)."""
        orphans = list((self.root / "tmp").iterdir()) + list((self.root / "repos").glob("*/*/*/**/.*.tmp"))
        for p in orphans:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        if orphans:
            log.info("removed %d partial upload(s) left by an earlier server in %s", len(orphans), self.root)

    # ---- blobs ----

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def blob_size(self, sha256: str) -> int | None:
        if not SHA256_RE.match(sha256):  # it comes from clients and becomes a path
            return None
        try:
            return self.blob_path(sha256).stat().st_size
        except OSError:
            return None

    def blob_ok(self, sha256: str, size: int | None = None) -> bool:
        """Whether a blob is stored whole: its bytes hash to its name. A damaged blob counts as absent,
        so the client uploads it again. Hashed once per change of the file (size, mtime, inode)."""
        if not SHA256_RE.match(sha256):
            return False
        path = self.blob_path(sha256)
        try:
            st = path.stat()
        except OSError:
            return False
        if size is not None and st.st_size != size:
            return False
        signature = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._verified.get(sha256) == signature:
            return True
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != sha256:
            log.warning("stored blob %s is damaged (its bytes hash to %s): treated as absent", sha256, h.hexdigest())
            return False
        self._verified[sha256] = signature
        return True

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.blob_ok(sha, len(data)):
            self._put_file(self._tmp_write([data]), sha)
        return sha

    def put_stream(self, chunks: Iterable[bytes], sha256: str, size: int) -> None:
        """Stream an upload to disk, hashing as it goes; keep it only if sha256 and size match."""
        h, n = hashlib.sha256(), 0

        def hashed():
            nonlocal n
            for c in chunks:
                h.update(c)
                n += len(c)
                yield c

        tmp = self._tmp_write(hashed())
        if n != size or h.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise HubError(400, f"Uploaded content does not match its announced oid/size: expected sha256 "
                                f"{sha256} and {size} bytes, received sha256 {h.hexdigest()} and {n} bytes")
        self._put_file(tmp, sha256)

    def save_file(self, chunks: Iterable[bytes], dest: Path, check=None) -> None:
        """Stream to a temp file, let `check(path)` refuse it (by raising), then move it to `dest` whole."""
        tmp = self._tmp_write(chunks)
        try:
            if check is not None:
                check(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def _tmp_write(self, chunks: Iterable[bytes]) -> Path:
        tmp = self.root / "tmp" / uuid.uuid4().hex
        try:
            with open(tmp, "wb") as f:
                for c in chunks:
                    f.write(c)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _put_file(self, tmp: Path, sha256: str) -> None:
        """Move a fully written and hashed temp file into place (heals a damaged copy too)."""
        dest = self.blob_path(sha256)
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp, dest)
        st = dest.stat()
        self._verified[sha256] = (st.st_size, st.st_mtime_ns, st.st_ino)

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


class Repo:
    def __init__(self, store: Store, repo_type: str, repo_id: str, path: Path):
        self.store, self.type, self.id, self.dir = store, repo_type, repo_id, path
        self.lock = store.lock(str(path))

    @property
    def meta(self) -> dict:
        return read_json(self.dir / "meta.json")

    def save_meta(self, meta: dict) -> None:
        write_json(self.dir / "meta.json", meta)

    def refs(self) -> dict[str, str]:
        return read_json(self.dir / "refs.json")

    def commit(self, oid: str) -> dict:
        return read_json(self.dir / "commits" / f"{oid}.json")

    def resolve(self, revision: str) -> str:
        """Branch, tag, full ref (refs/pr/1) or commit id -> commit id."""
        refs = self.refs()
        for ref in (f"refs/heads/{revision}", f"refs/tags/{revision}", revision):
            if ref in refs:
                return refs[ref]
        if COMMIT_RE.match(revision) and (self.dir / "commits" / f"{revision}.json").exists():
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def tree(self, revision: str) -> tuple[str, dict]:
        oid = self.resolve(revision)
        return oid, self.commit(oid)["tree"]

    def log(self, revision: str) -> list[tuple[str, dict]]:
        out, oid = [], self.resolve(revision)
        while oid:
            c = self.commit(oid)
            out.append((oid, c))
            oid = c["parent"]
        return out

    def regular_entry(self, data: bytes) -> dict:
        return {"sha256": self.store.put_bytes(data), "size": len(data), "git_sha1": git_sha1(data), "lfs": False}

    def lfs_entry(self, sha256: str, size: int | None) -> dict:
        actual = self.store.blob_size(sha256)
        if actual is None or (size is not None and size != actual) or not self.store.blob_ok(sha256, actual):
            raise HubError(422, f"LFS object {sha256} (size {size}) was not uploaded: "
                                "upload it through the LFS batch API first")
        return {"sha256": sha256, "size": actual, "git_sha1": git_sha1(lfs_pointer(sha256, actual)), "lfs": True}

    def write_commit(self, parent: str | None, message: str, author: str, tree: dict) -> str:
        body = json.dumps({"parent": parent, "message": message, "author": author, "date": now(), "tree": tree},
                          sort_keys=True).encode()
        oid = hashlib.sha1(body).hexdigest()
        tmp = self.dir / "commits" / f".{oid}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self.dir / "commits" / f"{oid}.json")
        return oid

    def apply_commit(self, revision: str, header: dict, ops: list[dict], author: str, create_pr: bool
                     ) -> tuple[str, int | None]:
        """One NDJSON commit: returns (commit id, PR number or None). `ops` may be a stream: each one is
        applied to the store as it arrives; a commit that changes nothing (and is no PR) makes no commit."""
        # Blobs are content-addressed, so they can be written before taking the repo lock.
        changes = [self._change(op) for op in ops]
        message = header.get("summary") or "Commit"
        if header.get("description"):
            message += "\n\n" + header["description"]
        with self.lock:
            refs = self.refs()
            if create_pr:
                parent = self.resolve(revision)
                pr = self._record_pr(refs, header.get("summary") or "Commit", header.get("description") or "",
                                     author)
                ref = f"refs/pr/{pr}"
            else:
                pr = None
                branch = revision.removeprefix("refs/heads/")
                ref = revision if revision.startswith("refs/pr/") else f"refs/heads/{branch}"
                if ref not in refs:
                    raise HubError(404, f"Invalid rev id: {revision} (commits go to an existing branch)",
                                   "RevisionNotFound")
                parent = refs[ref]
            if header.get("parentCommit") and header["parentCommit"] != parent:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(self.commit(parent)["tree"])
            for kind, path, entry in changes:
                if kind == "add":
                    tree[path] = entry
                elif kind == "file":
                    if tree.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                else:
                    gone = [p for p in tree if p.startswith(path + "/")]
                    if not gone:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del tree[p]
            if not create_pr and tree == self.commit(parent)["tree"]:
                return parent, None  # identical content (or a healed blob): nothing new to record
            oid = self.write_commit(parent, message, author, tree)
            refs[ref] = oid
            write_json(self.dir / "refs.json", refs)
            return oid, pr

    def _change(self, op: dict) -> tuple[str, str, dict | None]:
        key, value = op.get("key"), op.get("value") or {}
        path = str(value.get("path", ""))
        path = check_path(path.rstrip("/") if key == "deletedFolder" else path)
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding for {path}: {value.get('encoding')}")
            return "add", path, self.regular_entry(base64.b64decode(value.get("content", ""), validate=True))
        if key == "lfsFile":
            return "add", path, self.lfs_entry(value.get("oid", ""), value.get("size"))
        if key == "deletedFile":
            return "file", path, None
        if key == "deletedFolder":
            return "folder", path, None
        raise HubError(400, f"Unknown commit operation: {key!r}")

    def _record_pr(self, refs: dict, title: str, description: str, author: str) -> int:
        """The next pull request number, with its title kept in meta.json (call with the repo lock held)."""
        pr = 1 + max((int(r.rsplit("/", 1)[1]) for r in refs if r.startswith("refs/pr/")), default=0)
        meta = self.meta
        meta.setdefault("pulls", {})[str(pr)] = {"title": title, "description": description, "author": author,
                                                  "createdAt": now()}
        self.save_meta(meta)
        return pr

    def open_pr(self, title: str, description: str, author: str, base: str = "main") -> int:
        """An empty pull request (refs/pr/N at the head of `base`), as create_pull_request makes."""
        with self.lock:
            refs = self.refs()
            head = self.resolve(base)
            pr = self._record_pr(refs, title, description, author)
            refs[f"refs/pr/{pr}"] = head
            write_json(self.dir / "refs.json", refs)
            return pr

    def pull(self, num: int) -> dict:
        refs = self.refs()
        if f"refs/pr/{num}" not in refs:
            raise HubError(404, f"Discussion {num} not found", "EntryNotFound")
        info = self.meta.get("pulls", {}).get(str(num)) or {}
        return {"num": num, "title": info.get("title", f"Pull request {num}"),
                "description": info.get("description", ""), "author": info.get("author", "deleted"),
                "createdAt": info.get("createdAt", self.meta["createdAt"]), "head": refs[f"refs/pr/{num}"]}

    def set_ref(self, ref: str, oid: str | None, exist_ok_conflict: str) -> None:
        """Create (oid given) or delete (oid None) a branch or tag ref."""
        with self.lock:
            refs = self.refs()
            if oid is None:
                if ref not in refs:
                    raise HubError(404, f"Invalid rev id: {ref}", "RevisionNotFound")
                if ref == "refs/heads/main":
                    raise HubError(403, "Cannot delete the main branch")
                del refs[ref]
            elif ref in refs:
                raise HubError(409, exist_ok_conflict)
            else:
                refs[ref] = oid
            write_json(self.dir / "refs.json", refs)

    def update_meta(self, **changes) -> dict:
        with self.lock:
            meta = {**self.meta, **changes}
            self.save_meta(meta)
            return meta

    def set_entry(self, kind: str, key: str, value: dict | None) -> dict:
        """Set (or, with None, remove) one Space variable or secret; returns that whole table."""
        with self.lock:
            meta = self.meta
            if value is None:
                meta[kind].pop(key, None)
            else:
                meta[kind][key] = value
            self.save_meta(meta)
            return meta[kind]
