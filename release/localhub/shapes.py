"""The Hub's JSON shapes for what the store holds: tree entries, accounts, pull requests, Space runtimes."""

from __future__ import annotations

import hashlib
import json

from release.localhub.errors import HubError
from release.localhub.repo import Repo, lfs_pointer
from release.localhub.tokens import Account


def file_json(path: str, e: dict) -> dict:
    out = {"type": "file", "path": path, "oid": e["git_sha1"], "size": e["size"]}
    if e["lfs"]:
        out["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": len(lfs_pointer(e["sha256"], e["size"]))}
    return out


def dir_json(path: str, tree: dict) -> dict:
    inside = sorted((p, e["git_sha1"]) for p, e in tree.items() if p.startswith(path + "/"))
    return {"type": "directory", "path": path, "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0}


def list_tree(tree: dict, path: str, recursive: bool) -> list[dict]:
    prefix = f"{path}/" if path else ""
    out: dict[str, dict] = {}
    for p, e in sorted(tree.items()):
        if not p.startswith(prefix):
            continue
        parts = p[len(prefix):].split("/")
        for i in range(1, len(parts) if recursive else min(2, len(parts))):
            d = prefix + "/".join(parts[:i])
            out.setdefault(d, dir_json(d, tree))
        if recursive or len(parts) == 1:
            out[p] = file_json(p, e)
    if path and not out:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
    return [out[k] for k in sorted(out)]


def account_json(account: Account) -> dict:
    """whoami-v2: the token's user and the orgs it may write."""
    orgs = [{"type": "org", "name": org, "fullname": org, "roleInOrg": "write"} for org in account.orgs]
    return {"type": "user", "id": hashlib.sha1(account.name.encode()).hexdigest()[:24], "name": account.name,
            "fullname": "Darwin local hub", "email": None, "emailVerified": False, "isPro": False,
            "canPay": False, "orgs": orgs, "avatarUrl": "",
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}}


def pull_json(repo: Repo, pr: dict) -> dict:
    """A pull request as get_discussion_details reads it (opened, never merged here)."""
    opened = {"id": f"pr{pr['num']}", "type": "comment", "createdAt": pr["createdAt"], "author": {"name": pr["author"]},
              "data": {"edited": False, "hidden": False, "latest": {"raw": pr["description"],
                                                                    "html": pr["description"]}}}
    return {"num": pr["num"], "title": pr["title"], "status": "draft", "isPullRequest": True,
            "author": {"name": pr["author"]}, "createdAt": pr["createdAt"], "pinned": False,
            "repo": {"name": repo.id, "type": repo.type}, "events": [opened],
            "changes": {"base": "refs/heads/main", "headCommitId": pr["head"]}, "filesWithConflicts": [], "diff": ""}


def space_runtime(space: Repo) -> dict:
    meta = space.meta
    _, tree = space.tree("main")
    # The local hub stores Spaces but does not run them (the pipeline serves the app itself).
    stage = "RUNNING" if {"app.py", "Dockerfile"} & set(tree) else "NO_APP_FILE"
    return {"stage": stage, "hardware": {"current": meta["hardware"], "requested": meta["hardware"]},
            "storage": None, "gcTimeout": None, "replicas": {"current": 1, "requested": 1},
            "devMode": False, "sdk": meta.get("sdk")}
