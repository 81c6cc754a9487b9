"""Repos as a whole: create, delete, settings, info, tree listings; and the account behind a token."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qs

from release.localhub import shapes
from release.localhub.errors import HubError
from release.localhub.names import check_path
from release.localhub.routes.request import Request
from release.localhub.repo import Repo, lfs_pointer, now
from release.localhub.tokens import Account


def named_repo(body: dict, account: Account) -> str:
    """The repo a create/delete body names; a missing name is an error, never the repo 'None'."""
    name, org = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not name or (org is not None and not isinstance(org, str)):
        raise HubError(400, "The request must name the repo: {\"name\": \"...\", \"organization\": \"...\"}")
    return f"{org or account.name}/{name}"


def whoami(req: Request):
    return 200, shapes.account_json(req.writer())


def validate_yaml(req: Request):
    content = req.json_body().get("content") or ""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
    if match:
        try:
            import yaml  # present with transformers; the stdlib has no YAML parser

            meta = yaml.safe_load(match.group(1))
            if meta is not None and not isinstance(meta, dict):
                raise ValueError("the metadata must be a YAML mapping")
        except ImportError:
            pass
        except Exception as e:
            return 400, {"errors": [{"message": f"Invalid YAML metadata: {e}"}], "warnings": []}
    return 200, {"errors": [], "warnings": []}


def create_repo(req: Request):
    account = req.writer()
    body = req.json_body()
    repo_type = body.get("type") or "model"
    repo_id = named_repo(body, account)
    req.check_write(account, repo_type, repo_id)
    private = body.get("visibility") == "private" or body.get("private") is True
    tables = {kind: [(item["key"], {"value": str(item["value"]), "description": item.get("description"),
                                    "updatedAt": now()}) for item in body.get(kind) or []]
              for kind in ("variables", "secrets")} if repo_type == "space" else {}  # checked before anything is made
    if any(not isinstance(key, str) or not key for entries in tables.values() for key, _ in entries):
        raise HubError(400, "Each Space variable or secret needs a key")
    try:
        repo = req.hub.store.create_repo(repo_type, repo_id, account.name, private, body.get("sdk"))
    except HubError as e:
        if e.status == 409:
            return 409, {"error": e.message, "url": req.repo_url(repo_type, repo_id)}
        raise
    if repo_type == "space":
        repo.update_meta(hardware=body.get("hardware") or "cpu-basic")
        for kind, entries in tables.items():
            for key, entry in entries:
                repo.set_entry(kind, key, entry)
    return 200, {"url": req.repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id}


def delete_repo(req: Request):
    body = req.json_body()
    repo = req.repo(body.get("type") or "model", named_repo(body, req.writer()), write=True)
    req.hub.store.delete_repo(repo)
    return 200, {}


def settings(req: Request, repo: Repo):
    body = req.json_body()
    if "private" in body or "visibility" in body:
        repo.update_meta(private=bool(body.get("private")) or body.get("visibility") == "private")
    return 200, {}


def info(req: Request, repo: Repo, revision: str):
    oid, tree = repo.tree(revision)
    meta = repo.meta
    siblings = []
    for path, e in sorted(tree.items()):
        s = {"rfilename": path, "size": e["size"], "blobId": e["git_sha1"]}
        if e["lfs"]:
            s["lfs"] = {"size": e["size"], "sha256": e["sha256"],
                        "pointerSize": len(lfs_pointer(e["sha256"], e["size"]))}
        siblings.append(s)
    out = {"_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id,
           "author": repo.id.split("/")[0], "sha": oid, "private": meta["private"], "gated": False,
           "disabled": False, "createdAt": meta["createdAt"], "lastModified": repo.commit(oid)["date"],
           "downloads": 0, "likes": 0, "tags": [], "siblings": siblings}
    if repo.type == "space":
        out.update(sdk=meta.get("sdk"), runtime=shapes.space_runtime(repo), subdomain=repo.id.replace("/", "-").lower())
    return 200, out


def tree(req: Request, repo: Repo, revision: str, path: str):
    _, entries = repo.tree(revision)
    if path.strip("/"):
        check_path(path.strip("/"))
    recursive = (req.query.get("recursive") or ["false"])[0].lower() in ("1", "true")
    return 200, shapes.list_tree(entries, path.strip("/"), recursive)


def paths_info(req: Request, repo: Repo, revision: str):
    _, entries = repo.tree(revision)
    form = parse_qs(req.body.read().decode(), max_num_fields=10_000)
    out = []
    for path in form.get("paths", []):
        path = check_path(path.strip("/"))
        if path in entries:
            out.append(shapes.file_json(path, entries[path]))
        elif any(p.startswith(path + "/") for p in entries):
            out.append(shapes.dir_json(path, entries))
    return 200, out
