"""Branches, tags and pull requests (the Hub's discussions API, pull requests only)."""

from __future__ import annotations

from release.localhub import shapes
from release.localhub.errors import HubError
from release.localhub.names import check_ref_name
from release.localhub.routes.request import Request
from release.localhub.repo import Repo


def list_refs(req: Request, repo: Repo):
    out = {"branches": [], "tags": [], "converts": [], "pullRequests": []}
    kinds = {"refs/heads/": "branches", "refs/tags/": "tags", "refs/pr/": "pullRequests"}
    for ref, oid in sorted(repo.refs().items()):
        for prefix, kind in kinds.items():
            if ref.startswith(prefix):
                name = ref if kind == "pullRequests" else ref[len(prefix):]
                out[kind].append({"name": name, "ref": ref, "targetCommit": oid})
    if not req.query.get("include_prs"):
        del out["pullRequests"]
    return 200, out


def branch(req: Request, repo: Repo, name: str):
    check_ref_name("branch", name)
    if req.command == "DELETE":
        repo.set_ref(f"refs/heads/{name}", None, "")
    else:
        start = repo.resolve(req.json_body().get("startingPoint") or "main")
        repo.set_ref(f"refs/heads/{name}", start, f"Reference already exists: refs/heads/{name}")
    return 200, {}


def tag(req: Request, repo: Repo, revision: str):
    name = check_ref_name("tag", req.json_body().get("tag"))
    repo.set_ref(f"refs/tags/{name}", repo.resolve(revision), f"Tag already exists: {name}")
    return 200, {}


def open_pr(req: Request, repo: Repo):
    body = req.json_body()
    if body.get("pullRequest") is not True:
        raise HubError(400, "The local hub has pull requests only, not discussions")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise HubError(400, "A pull request needs a title")
    num = repo.open_pr(title.strip(), str(body.get("description") or ""), req.writer().name)
    return 200, {"num": num, "url": f"{req.repo_url(repo.type, repo.id)}/discussions/{num}"}


def pull_details(repo: Repo, num: int):
    return 200, shapes.pull_json(repo, repo.pull(num))
