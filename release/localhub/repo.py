"""One repo on disk: its metadata, refs, commits (JSON trees of content-addressed blobs) and pull requests.

    repos/<type>s/<ns>/<name>/
        meta.json          visibility, sdk, Space variables/secrets/hardware, pull request titles
        refs.json          {"refs/heads/main": <commit id>, "refs/pr/1": ..., "refs/tags/v1": ...}
        commits/<id>.json  {parent, message, author, date, tree: {path: entry}}
        lfs/<sha256>       the LFS objects uploaded to this repo (empty marker files)

A commit id is the sha1 of its JSON, so ids are 40 hex characters like git's. A tree entry is
{"sha256", "size", "git_sha1", "lfs"}: `git_sha1` is what the Hub calls a file's oid (the git blob
sha1 of the content, or of the LFS pointer for LFS files).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

from release.localhub.blobs import SHA256_RE
from release.localhub.errors import HubError
from release.localhub.names import check_path

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def write_json(path: Path, obj) -> None:
    """Atomic: readers see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(path.read_text())


class Repo:
    """A repo as it was when opened: one deleted while a request works on it answers 404 (`gone`), and so
    does one deleted and made again under the same name (it is another repo)."""

    def __init__(self, store, repo_type: str, repo_id: str, path: Path):
        self.store, self.type, self.id, self.dir = store, repo_type, repo_id, path
        self.lock = store.lock(str(path))
        self.created = self.meta["createdAt"]

    def gone(self) -> HubError:
        return HubError(404, f"Repository not found: {self.id} (it was deleted)", "RepoNotFound")

    def check_alive(self) -> None:
        """With the lock held, before a write: the repo opened is still the one on disk."""
        if self._read("meta.json")["createdAt"] != self.created or not (self.dir / "refs.json").exists():
            raise self.gone()

    def _read(self, *parts: str):
        try:
            return read_json(self.dir.joinpath(*parts))
        except FileNotFoundError:
            if not (self.dir / "refs.json").exists():  # deleted meanwhile, not damaged
                raise self.gone() from None
            raise

    @property
    def meta(self) -> dict:
        return self._read("meta.json")

    def save_meta(self, meta: dict) -> None:
        write_json(self.dir / "meta.json", meta)

    def refs(self) -> dict[str, str]:
        return self._read("refs.json")

    def commit(self, oid: str) -> dict:
        return self._read("commits", f"{oid}.json")

    # ---- LFS objects: each repo holds those uploaded to it, as on the Hub ----

    def has_object(self, sha256: str) -> bool:
        return bool(SHA256_RE.match(sha256)) and (self.dir / "lfs" / sha256).exists()

    def add_object(self, sha256: str) -> None:
        try:
            (self.dir / "lfs" / sha256).touch()
        except FileNotFoundError:  # never recreate the folder of a deleted repo
            raise self.gone() from None

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

    def lfs_entry(self, sha256: str, size: int | None, usable) -> dict:
        """A tree entry for an LFS object of this repo, or one `usable(sha256, size)` lets it take (one the
        committer may read elsewhere). Anything else is 'not uploaded', whether it is stored or not."""
        actual = self.store.blob_size(sha256)
        if (actual is None or (size is not None and size != actual) or not self.store.blob_ok(sha256, actual)
                or not (self.has_object(sha256) or usable(sha256, actual))):
            raise HubError(422, f"LFS object {sha256} (size {size}) was not uploaded: "
                                "upload it through the LFS batch API first")
        self.add_object(sha256)
        return {"sha256": sha256, "size": actual, "git_sha1": git_sha1(lfs_pointer(sha256, actual)), "lfs": True}

    def write_commit(self, parent: str | None, message: str, author: str, tree: dict) -> str:
        body = json.dumps({"parent": parent, "message": message, "author": author, "date": now(), "tree": tree},
                          sort_keys=True).encode()
        oid = hashlib.sha1(body).hexdigest()
        tmp = self.dir / "commits" / f".{oid}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self.dir / "commits" / f"{oid}.json")
        return oid

    def apply_commit(self, revision: str, header: dict, ops: list[dict], author: str, create_pr: bool,
                     usable=lambda sha256, size: False) -> tuple[str, int | None]:
        """One NDJSON commit: returns (commit id, PR number or None). `ops` may be a stream: each one is
        applied to the store as it arrives; a commit that changes nothing (and is no PR) makes no commit.
        `usable(sha256, size)`: whether an LFS object stored for another repo may be named (lfs_entry)."""
        # Blobs are content-addressed, so they can be written before taking the repo lock.
        changes = [self._change(op, usable) for op in ops]
        for field in ("summary", "description", "parentCommit"):
            if header.get(field) is not None and not isinstance(header[field], str):
                raise HubError(400, f"The commit header's {field} must be a string")
        message = header.get("summary") or "Commit"
        if header.get("description"):
            message += "\n\n" + header["description"]
        with self.lock:
            self.check_alive()  # deleted while the operations streamed in: nothing to commit to
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

    def _change(self, op: dict, usable) -> tuple[str, str, dict | None]:
        key, value = op.get("key"), op.get("value") or {}
        path = str(value.get("path", ""))
        path = check_path(path.rstrip("/") if key == "deletedFolder" else path)
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding for {path}: {value.get('encoding')}")
            return "add", path, self.regular_entry(base64.b64decode(value.get("content", ""), validate=True))
        if key == "lfsFile":
            return "add", path, self.lfs_entry(value.get("oid", ""), value.get("size"), usable)
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
            self.check_alive()
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
            self.check_alive()
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
            self.check_alive()
            meta = {**self.meta, **changes}
            self.save_meta(meta)
            return meta

    def set_entry(self, kind: str, key: str, value: dict | None) -> dict:
        """Set (or, with None, remove) one Space variable or secret; returns that whole table."""
        with self.lock:
            self.check_alive()
            meta = self.meta
            if value is None:
                meta[kind].pop(key, None)
            else:
                meta[kind][key] = value
            self.save_meta(meta)
            return meta[kind]
