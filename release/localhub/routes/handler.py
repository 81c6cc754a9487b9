"""The URL table of the local hub: which function answers which method and path, as huggingface_hub 2.4 calls them."""

from __future__ import annotations

from release.localhub import shapes
from release.localhub.errors import HubError
from release.localhub.routes import commits, files, refs, repos, spaces, uploads
from release.localhub.routes.request import Request


def take_revision(segments: list[str]) -> tuple[str, list[str]]:
    """The client quotes revisions ('refs%2Fpr%2F1' is one segment); accept an unquoted refs/x/y too."""
    if not segments:
        return "main", []
    if segments[0] == "refs" and len(segments) >= 3:
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


class Handler(Request):
    def route(self, s: list[str]):
        m = self.command
        if s[0] == "api":
            return self._api(s[1:])
        if s[0] == "xet-cas":
            return uploads.xet_cas(self, s[1:])
        repo_type = "model"
        if s[0] in ("spaces", "datasets"):
            repo_type, s = s[0][:-1], s[1:]
        if len(s) == 6 and s[1].endswith(".git") and s[2:5] == ["info", "lfs", "objects"] and m == "POST" \
                and s[5] in ("batch", "verify"):
            repo = self.repo(repo_type, f"{s[0]}/{s[1][:-4]}", write=True)
            return uploads.lfs_batch(self, repo) if s[5] == "batch" else uploads.lfs_verify(self, repo)
        if len(s) >= 5 and s[2] == "resolve" and m in ("GET", "HEAD"):
            revision, rest = take_revision(s[3:])
            return files.resolve(self, self.repo(repo_type, f"{s[0]}/{s[1]}"), revision, "/".join(rest))
        raise HubError(404, f"No such route in the local hub: {m} /{'/'.join(s)}")

    def _api(self, s: list[str]):
        m = self.command
        match s:
            case ["whoami-v2"] if m == "GET":
                return repos.whoami(self)
            case ["repos", "create"] if m == "POST":
                return repos.create_repo(self)
            case ["repos", "delete"] if m == "DELETE":
                return repos.delete_repo(self)
            case ["validate-yaml"] if m == "POST":
                return repos.validate_yaml(self)
            case ["lfs", "upload", oid] if m == "PUT":
                return uploads.lfs_upload(self, oid)
            case [("models" | "datasets" | "spaces") as t, ns, name, *rest]:
                return self._repo_api(t[:-1], f"{ns}/{name}", rest)
        raise HubError(404, f"No such route in the local hub: {m} /api/{'/'.join(s)}")

    def _repo_api(self, t: str, repo_id: str, rest: list[str]):
        m = self.command
        match [m, *rest[:1]]:
            case ["GET"]:
                return repos.info(self, self.repo(t, repo_id), "main")
            case ["GET", "revision"]:
                return repos.info(self, self.repo(t, repo_id), take_revision(rest[1:])[0])
            case ["GET", "tree"]:
                revision, path = take_revision(rest[1:])
                return repos.tree(self, self.repo(t, repo_id), revision, "/".join(path))
            case ["POST", "paths-info"]:
                return repos.paths_info(self, self.repo(t, repo_id), take_revision(rest[1:])[0])
            case ["GET", "refs"]:
                return refs.list_refs(self, self.repo(t, repo_id))
            case ["GET", "commits"]:
                return commits.history(self, self.repo(t, repo_id), take_revision(rest[1:])[0])
            case ["POST", "preupload"]:
                return commits.preupload(self, self.repo(t, repo_id, write=True), take_revision(rest[1:])[0])
            case ["POST", "commit"]:
                return commits.commit(self, self.repo(t, repo_id, write=True), take_revision(rest[1:])[0])
            case ["POST" | "DELETE", "branch"] if len(rest) >= 2:
                return refs.branch(self, self.repo(t, repo_id, write=True), "/".join(rest[1:]))
            case ["POST", "tag"]:
                return refs.tag(self, self.repo(t, repo_id, write=True), take_revision(rest[1:])[0])
            case ["PUT", "settings"]:
                return repos.settings(self, self.repo(t, repo_id, write=True))
            case ["POST", "discussions"] if len(rest) == 1:
                return refs.open_pr(self, self.repo(t, repo_id, write=True))
            case ["GET", "discussions"] if len(rest) == 2 and rest[1].isdigit():
                return refs.pull_details(self.repo(t, repo_id), int(rest[1]))
            case ["GET", ("xet-write-token" | "xet-read-token") as kind]:
                return uploads.xet_token(self, self.repo(t, repo_id, write=kind == "xet-write-token"), kind)
        if t == "space" and len(rest) == 1:
            space = self.repo(t, repo_id, write=True)  # the Hub shows Space settings to writers only
            match [m, rest[0]]:
                case ["GET" | "POST" | "DELETE", ("variables" | "secrets") as kind]:
                    return spaces.table(self, space, kind)
                case ["GET", "runtime"] | ["POST", "restart"]:
                    return 200, shapes.space_runtime(space)
                case ["POST", "hardware"]:
                    return spaces.hardware(self, space)
        raise HubError(404, f"No such route in the local hub: {m} /api/{t}s/{repo_id}/{'/'.join(rest)}")
