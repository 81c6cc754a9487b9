"""Push a release without damaging what a repo already holds (`child.on_existing`).

A repo is *ours* when it does not exist yet, holds nothing but the Hub's own files (a push that was
interrupted after creating it), or its head's `darwin_genome.json` was written by darwin-release for the
same father and mother as this release (the same release, perhaps bred again). Ours: one commit on main
that makes it hold exactly the new release (stale shards and files deleted).

Anything else is foreign, and `on_existing` decides: `refuse` (the default: a one-line error naming the
options), `pr` (a pull request that, merged, leaves exactly the release), `{branch: NAME}` (the same as one
commit on that branch, created from main if needed) or `replace` (one commit on main: the release, every
other file deleted). Identical content never makes a commit, nor a second identical pull request.
"""

from __future__ import annotations

import logging
from pathlib import Path

from release.config import BranchTarget
from release.errors import ReleaseError
from release.hub.client import HUB_FILES, Hub, LocalFile, local_files

log = logging.getLogger(__name__)

GENOME_FILE = "darwin_genome.json"
TOOL_NAME = "darwin-release"


def is_release_of(genome: dict | None, father: str, mother: str) -> bool:
    """Whether a repo's darwin_genome.json says darwin-release wrote it as a child of father x mother."""
    if not genome:
        return False
    try:
        return (genome["tool"]["name"] == TOOL_NAME and genome["father"]["repo"] == father
                and genome["mother"]["repo"] == mother)
    except (KeyError, TypeError):
        return False


def push_release(hub: Hub, folder: str | Path, repo: str, on_existing, father: str, mother: str,
                 message: str, private: bool = False, force: bool = False) -> dict:
    """Push `folder` to `repo` as `on_existing` allows; returns what was done (see module docstring).

    The result: {"repo", "revision" (the commit holding the release), "ref" (what to load it from:
    "main", a branch name or "refs/pr/N"), "target" ("main" | "pr" | "branch"), "pr_url", "committed"}.
    `force` (`--force push`) offers every file again, so the Hub re-receives any whose stored copy is damaged.
    """
    local = local_files(folder)
    if not hub.exists(repo):
        hub.create_repo(repo, private=private)
        return _commit(hub, folder, repo, "main", message, local, force=force)
    head = hub.head(repo)
    remote = hub.files(repo, head)
    ours = set(remote) <= HUB_FILES or is_release_of(hub.read_json(repo, GENOME_FILE, head), father, mother)
    if ours or on_existing == "replace":
        return _commit(hub, folder, repo, "main", message, local, force=force)
    if on_existing == "pr":
        return _pull_request(hub, folder, repo, message, local)
    if isinstance(on_existing, BranchTarget):
        branch = on_existing.branch
        if branch not in hub.branches(repo):
            hub.create_branch(repo, branch, head)
        return _commit(hub, folder, repo, branch, message, local, target="branch", force=force)
    raise ReleaseError(f"push: {repo} already holds a model that is not this release (no darwin_genome.json "
                       f"of {father} x {mother}); set child.on_existing to pr (open a pull request), "
                       "{branch: NAME} (commit to a branch) or replace (overwrite it), or pick another child.repo")


def _same(remote: dict[str, str], local: dict[str, LocalFile]) -> bool:
    return (set(remote) - HUB_FILES == set(local)) and all(f.matches(remote[p]) for p, f in local.items())


def _commit(hub: Hub, folder, repo: str, ref: str, message: str, local: dict[str, LocalFile],
            target: str = "main", force: bool = False) -> dict:
    info = hub.commit_exactly(folder, repo, ref, message, local=local, force=force)
    revision = info.oid if info else hub.head(repo, revision=ref)
    log.info("push %s@%s: %s", repo, ref, f"commit {revision}" if info else "identical content, no commit")
    return {"repo": repo, "revision": revision, "ref": ref, "target": target, "pr_url": None,
            "committed": info is not None}


def _pull_request(hub: Hub, folder, repo: str, message: str, local: dict[str, LocalFile]) -> dict:
    # A rerun must not open a second pull request with the same content.
    for ref, sha in sorted(hub.pull_requests(repo).items()):
        if _same(hub.files(repo, sha), local):
            log.info("push %s: pull request %s already holds this release", repo, ref)
            return {"repo": repo, "revision": sha, "ref": ref, "target": "pr", "pr_url": _pr_url(hub, repo, ref),
                    "committed": False}
    info = hub.commit_exactly(folder, repo, "main", message, local=local, create_pr=True)
    if info is None:  # main already holds exactly this release
        return _commit(hub, folder, repo, "main", message, local)
    ref = info.pr_revision or f"refs/pr/{info.pr_num}"
    log.info("push %s: opened pull request %s (%s)", repo, ref, info.pr_url)
    return {"repo": repo, "revision": info.oid, "ref": ref, "target": "pr", "pr_url": info.pr_url,
            "committed": True}


def _pr_url(hub: Hub, repo: str, ref: str) -> str:
    return f"{hub.endpoint}/{repo}/discussions/{ref.rsplit('/', 1)[-1]}"


def check_space_target(hub: Hub, space_repo: str, child_repo: str, on_existing: str) -> None:
    """Refuse to deploy over a Space this release did not deploy, unless `space.on_existing: replace`.

    Ours: new, empty, or its README's front matter lists the child under `models` (as every deploy writes).
    """
    if on_existing == "replace" or not hub.exists(space_repo, repo_type="space"):
        return
    head = hub.head(space_repo, repo_type="space")
    if set(hub.files(space_repo, head, repo_type="space")) <= HUB_FILES:
        return
    card = hub.card_data(space_repo, head, repo_type="space") or {}
    models = card.get("models") or []
    if child_repo in (models if isinstance(models, list) else [models]):
        return
    raise ReleaseError(f"space: {space_repo} already holds a Space this release did not deploy (its README does "
                       f"not name {child_repo}); set space.on_existing: replace to overwrite it (its other "
                       "files are deleted), or pick another space.repo")
