"""Commits: the streamed NDJSON commit, a branch's history, and preupload (what to send and how)."""

from __future__ import annotations

import base64
import json
from fnmatch import fnmatch

from release.localhub.access import may_reuse
from release.localhub.errors import HubError
from release.localhub.names import check_path
from release.localhub.routes.request import Request
from release.localhub.repo import Repo
from release.localhub.store import upload_mode
from release.localhub.wire import COMMIT_LINE_MAX


def commit(req: Request, repo: Repo, revision: str):
    account = req.writer()
    header: dict = {}

    def operations():  # streamed: each file is stored as its line arrives, never the whole body at once
        for line in req.body.lines(COMMIT_LINE_MAX):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                raise HubError(400, "Commit body is not valid NDJSON") from None
            if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
                raise HubError(400, "Each line of a commit body must be {\"key\": ..., \"value\": {...}}")
            if item.get("key") == "header":
                header.update(item["value"])
            else:
                yield item

    create_pr = (req.query.get("create_pr") or ["0"])[0] in ("1", "true")
    oid, pr = repo.apply_commit(revision, header, operations(), account.name, create_pr,
                                usable=lambda sha256, size: may_reuse(req.hub.store, repo, account, sha256))
    url = req.repo_url(repo.type, repo.id)
    return 200, {"success": True, "commitOid": oid, "commitUrl": f"{url}/commit/{oid}",
                 "pullRequestUrl": f"{url}/discussions/{pr}" if pr else None, "hookOutput": ""}


def history(req: Request, repo: Repo, revision: str):
    out = []
    for oid, c in repo.log(revision):
        title, _, rest = c["message"].partition("\n")
        item = {"id": oid, "title": title, "message": rest.strip(), "authors": [{"user": c["author"]}],
                "date": c["date"]}
        if req.query.get("expand[]") == ["formatted"]:
            item["formatted"] = {"title": title, "message": rest.strip()}
        out.append(item)
    return 200, out


def preupload(req: Request, repo: Repo, revision: str):
    body = req.json_body()
    _, tree = repo.tree(revision)
    ignore = [p.strip() for p in (body.get("gitIgnore") or "").splitlines() if p.strip() and not p.startswith("#")]
    files = []
    for f in body.get("files") or []:
        path = check_path(f["path"])
        mode = upload_mode(path, int(f.get("size") or 0), base64.b64decode(f.get("sample") or "", validate=True))
        remote = tree.get(path)
        if remote is not None and not req.hub.store.blob_ok(remote["sha256"], remote["size"]):
            remote = None  # damaged on disk: say it is absent, so the client sends it again and heals it
        oid = None if remote is None else remote["sha256"] if remote["lfs"] else remote["git_sha1"]
        ignored = any(fnmatch(path, p) or fnmatch(path.rsplit("/", 1)[-1], p) for p in ignore)
        files.append({"path": path, "uploadMode": mode, "shouldIgnore": ignored, "oid": oid})
    return 200, {"files": files}
