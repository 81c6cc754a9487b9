"""The HTTP routes of the local hub: the ones huggingface_hub 2.4 calls, answered the way the Hub answers.

The client's source is the spec (hf_api.py, _commit_api.py, lfs.py, file_download.py, utils/_http.py).
Things it relies on: errors as {"error": ...} with X-Error-Code so it raises its typed errors; a quoted
ETag and X-Repo-Commit on every resolve answer; LFS uploads through a `basic` transfer whose PUT href
carries its own credential (the client sends no Authorization there); keep-alive connections, so every
request body is read to the end (or the connection closed) and every answer has a Content-Length.
Bodies are bounded and streamed (wire.py), idle sockets time out, and tokens write only their namespaces.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from release.localhub import shapes
from release.localhub.errors import HubError
from release.localhub.names import check_path
from release.localhub.store import CHUNK, SHA256_RE, Repo, lfs_pointer, now, upload_mode
from release.localhub.tokens import Account
from release.localhub.wire import COMMIT_LINE_MAX, Body
from release.localhub.xet import SHARD_MAX, XORB_MAX

log = logging.getLogger("release.localhub")

LINGER_S = 1.0  # after refusing a body mid-stream: time for the client to read the answer before the close


def _segments(path: str) -> list[str]:
    try:
        return [unquote(seg, errors="strict") for seg in path.strip("/").split("/")]
    except UnicodeDecodeError:
        raise HubError(400, "The request path is not valid percent-encoded UTF-8") from None


def _take_revision(segments: list[str]) -> tuple[str, list[str]]:
    """The client quotes revisions ('refs%2Fpr%2F1' is one segment); accept an unquoted refs/x/y too."""
    if not segments:
        return "main", []
    if segments[0] == "refs" and len(segments) >= 3:
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


def _repo_id(body: dict, account: Account) -> str:
    """The repo a create/delete body names; a missing name is an error, never the repo 'None'."""
    name, org = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not name or (org is not None and not isinstance(org, str)):
        raise HubError(400, "The request must name the repo: {\"name\": \"...\", \"organization\": \"...\"}")
    return f"{org or account.name}/{name}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    server_version = "darwin-localhub"

    def do_GET(self):
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    @property
    def hub(self):  # the LocalHub serving this request
        return self.server.hub

    # ---- plumbing ----

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.hub.idle_timeout)  # idle or stalled clients are let go

    def _handle(self) -> None:
        self.body, self._answered = None, False
        try:
            self.body = Body(self.rfile, self.headers)
            url = urlsplit(self.path)
            self.query = parse_qs(url.query, max_num_fields=50)
            answer = self._route(_segments(url.path))
            if answer is not None:
                self._send(*answer)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            if self._answered:  # failed mid-answer: the client sees a short body; nothing more can be said
                log.exception("answer to %s %s broke off", self.command, urlsplit(self.path).path)
                self.close_connection = True
            else:
                self._handle_failure()

    def _handle_failure(self) -> None:
        """Answer the exception being handled: a HubError as itself, anything else as a short 4xx/500."""
        try:
            raise
        except HubError as e:
            self._error(e)
        except (KeyError, TypeError, ValueError, AttributeError):  # a field missing or of the wrong type
            log.debug("malformed %s %s", self.command, urlsplit(self.path).path, exc_info=True)
            self._error(HubError(400, "Malformed request: a field is missing or has the wrong type"))
        except Exception:  # a bug here must still answer, or the client waits forever
            log.exception("internal error on %s %s", self.command, urlsplit(self.path).path)
            self._error(HubError(500, "Internal error in the local hub (its log has the details)"))

    def _json(self) -> dict:
        try:
            data = json.loads(self.body.read() or b"{}")
        except ValueError:
            raise HubError(400, "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object")
        return data

    def _start(self, status: int, headers: dict, length: int, content_type: str = "application/json") -> None:
        """Status line and headers. The request body must be consumed first: drained if small, else the
        connection closes after this answer (a kept-alive connection must never resume mid-body)."""
        keep = self.body is not None and self.body.finish()
        self._answered = True
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        if not keep:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _send(self, status: int, payload=None, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload if payload is not None else {}).encode()
        self._start(status, headers or {}, len(data))
        if self.command != "HEAD":
            self.wfile.write(data)
        if self.close_connection and self.body is not None and not self.body.done:
            self._linger()

    def _linger(self) -> None:
        """Let a client that is still sending read our answer: stop writing, discard its bytes briefly."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and self.connection.recv(CHUNK):
                pass
        except OSError:
            pass

    def _error(self, e: HubError) -> None:
        message = " ".join(e.message.split())[:500].encode("ascii", "backslashreplace").decode()  # headers are latin-1
        headers = {"X-Error-Message": message, **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        try:
            self._send(e.status, {"error": e.message}, headers)
        except OSError:
            self.close_connection = True

    def log_request(self, code="-", size="-"):
        log.info("%s %s %s", self.command, urlsplit(self.path).path, code)  # no query: it may hold a ticket

    def log_message(self, format, *args):
        (log.info if format.startswith("Request timed out") else log.warning)(re.sub(r"ticket=[^&\s\"]+", "ticket=***", format % args))  # an idle keep-alive close is routine

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or '%s:%s' % self.server.server_address[:2]}"

    # ---- auth ----

    def _account(self) -> Account | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        account = self.hub.account(auth.removeprefix("Bearer ").strip())
        if account is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return account

    def _writer(self) -> Account:
        account = self._account()
        if account is None:
            raise HubError(401, "You must be authenticated to do this: send a write token (Authorization: Bearer ...)")
        return account

    def _may_write(self, account: Account, repo_type: str, repo_id: str) -> None:
        namespace = repo_id.split("/")[0]
        if not account.may_write(namespace):
            raise HubError(403, f"You don't have the rights to write to the {repo_type} {repo_id}: this token may "
                                f"write only {', '.join(sorted(account.namespaces))}")

    def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        account = self._writer() if write else self._account()
        repo = self.hub.store.repo(repo_type, repo_id)
        # Like the Hub: a private repo is invisible (404) to tokens that may not write its namespace.
        visible = repo is not None and (not repo.meta["private"] or
                                        (account is not None and account.may_write(repo_id.split("/")[0])))
        if not visible:
            raise HubError(404 if account else 401, f"Repository not found: {repo_id}", "RepoNotFound")
        if write:
            self._may_write(account, repo_type, repo_id)
        return repo

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self._base()}/{prefix}{repo_id}"

    # ---- routing ----

    def _route(self, s: list[str]):
        m = self.command
        if s[0] == "api":
            return self._api(s[1:])
        if s[0] == "xet-cas":
            return self._xet_cas(s[1:])
        repo_type = "model"
        if s[0] in ("spaces", "datasets"):
            repo_type, s = s[0][:-1], s[1:]
        if len(s) == 6 and s[1].endswith(".git") and s[2:] == ["info", "lfs", "objects", "batch"] and m == "POST":
            return self.lfs_batch(self._repo(repo_type, f"{s[0]}/{s[1][:-4]}", write=True))
        if len(s) >= 5 and s[2] == "resolve" and m in ("GET", "HEAD"):
            revision, rest = _take_revision(s[3:])
            return self.resolve(self._repo(repo_type, f"{s[0]}/{s[1]}"), revision, "/".join(rest))
        raise HubError(404, f"No such route in the local hub: {m} /{'/'.join(s)}")

    def _api(self, s: list[str]):
        m = self.command
        match s:
            case ["whoami-v2"] if m == "GET":
                return self.whoami()
            case ["repos", "create"] if m == "POST":
                return self.create_repo()
            case ["repos", "delete"] if m == "DELETE":
                return self.delete_repo()
            case ["validate-yaml"] if m == "POST":
                return self.validate_yaml()
            case ["lfs", "upload", oid] if m == "PUT":
                return self.lfs_upload(oid)
            case ["lfs", "verify"] if m == "POST":
                return self.lfs_verify()
            case [("models" | "datasets" | "spaces") as t, ns, name, *rest]:
                return self._repo_api(t[:-1], f"{ns}/{name}", rest)
        raise HubError(404, f"No such route in the local hub: {m} /api/{'/'.join(s)}")

    def _repo_api(self, t: str, repo_id: str, rest: list[str]):
        m = self.command
        match [m, *rest[:1]]:
            case ["GET"]:
                return self.info(self._repo(t, repo_id), "main")
            case ["GET", "revision"]:
                return self.info(self._repo(t, repo_id), _take_revision(rest[1:])[0])
            case ["GET", "tree"]:
                revision, path = _take_revision(rest[1:])
                return self.tree(self._repo(t, repo_id), revision, "/".join(path))
            case ["POST", "paths-info"]:
                return self.paths_info(self._repo(t, repo_id), _take_revision(rest[1:])[0])
            case ["GET", "refs"]:
                return self.refs(self._repo(t, repo_id))
            case ["GET", "commits"]:
                return self.commits(self._repo(t, repo_id), _take_revision(rest[1:])[0])
            case ["POST", "preupload"]:
                return self.preupload(self._repo(t, repo_id, write=True), _take_revision(rest[1:])[0])
            case ["POST", "commit"]:
                return self.commit(self._repo(t, repo_id, write=True), _take_revision(rest[1:])[0])
            case ["POST" | "DELETE", "branch"] if len(rest) >= 2:
                return self.branch(self._repo(t, repo_id, write=True), "/".join(rest[1:]))
            case ["POST", "tag"]:
                return self.tag(self._repo(t, repo_id, write=True), _take_revision(rest[1:])[0])
            case ["PUT", "settings"]:
                return self.settings(self._repo(t, repo_id, write=True))
            case ["POST", "discussions"] if len(rest) == 1:
                return self.open_pr(self._repo(t, repo_id, write=True))
            case ["GET", "discussions"] if len(rest) == 2 and rest[1].isdigit():
                return self.pull_details(self._repo(t, repo_id), int(rest[1]))
            case ["GET", ("xet-write-token" | "xet-read-token") as kind]:
                return self.xet_token(self._repo(t, repo_id, write=kind == "xet-write-token"), kind)
        if t == "space" and len(rest) == 1:
            space = self._repo(t, repo_id, write=True)  # the Hub shows Space settings to writers only
            match [m, rest[0]]:
                case ["GET" | "POST" | "DELETE", ("variables" | "secrets") as kind]:
                    return self.space_table(space, kind)
                case ["GET", "runtime"] | ["POST", "restart"]:
                    return 200, shapes.space_runtime(space)
                case ["POST", "hardware"]:
                    space.update_meta(hardware=self._json().get("flavor") or "cpu-basic")
                    return 200, shapes.space_runtime(space)
        raise HubError(404, f"No such route in the local hub: {m} /api/{t}s/{repo_id}/{'/'.join(rest)}")

    # ---- account ----

    def whoami(self):
        return 200, shapes.account_json(self._writer())

    def validate_yaml(self):
        content = self._json().get("content") or ""
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

    # ---- repos ----

    def create_repo(self):
        account = self._writer()
        body = self._json()
        repo_type = body.get("type") or "model"
        repo_id = _repo_id(body, account)
        self._may_write(account, repo_type, repo_id)
        private = body.get("visibility") == "private" or body.get("private") is True
        try:
            repo = self.hub.store.create_repo(repo_type, repo_id, account.name, private, body.get("sdk"))
        except HubError as e:
            if e.status == 409:
                return 409, {"error": e.message, "url": self._repo_url(repo_type, repo_id)}
            raise
        if repo_type == "space":
            repo.update_meta(hardware=body.get("hardware") or "cpu-basic")
            for kind in ("variables", "secrets"):
                for item in body.get(kind) or []:
                    repo.set_entry(kind, item["key"], {"value": item["value"], "description": item.get("description"),
                                                        "updatedAt": now()})
        url = self._repo_url(repo_type, repo_id)
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def delete_repo(self):
        body = self._json()
        repo = self._repo(body.get("type") or "model", _repo_id(body, self._writer()), write=True)
        with repo.lock:
            shutil.rmtree(repo.dir)  # blobs stay: other repos may share them
        return 200, {}

    def settings(self, repo: Repo):
        body = self._json()
        if "private" in body or "visibility" in body:
            repo.update_meta(private=bool(body.get("private")) or body.get("visibility") == "private")
        return 200, {}

    def info(self, repo: Repo, revision: str):
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

    def tree(self, repo: Repo, revision: str, path: str):
        _, tree = repo.tree(revision)
        if path.strip("/"):
            check_path(path.strip("/"))
        recursive = (self.query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        return 200, shapes.list_tree(tree, path.strip("/"), recursive)

    def paths_info(self, repo: Repo, revision: str):
        _, tree = repo.tree(revision)
        form = parse_qs(self.body.read().decode(), max_num_fields=10_000)
        out = []
        for path in form.get("paths", []):
            path = check_path(path.strip("/"))
            if path in tree:
                out.append(shapes.file_json(path, tree[path]))
            elif any(p.startswith(path + "/") for p in tree):
                out.append(shapes.dir_json(path, tree))
        return 200, out

    def refs(self, repo: Repo):
        out = {"branches": [], "tags": [], "converts": [], "pullRequests": []}
        kinds = {"refs/heads/": "branches", "refs/tags/": "tags", "refs/pr/": "pullRequests"}
        for ref, oid in sorted(repo.refs().items()):
            for prefix, kind in kinds.items():
                if ref.startswith(prefix):
                    name = ref if kind == "pullRequests" else ref[len(prefix):]
                    out[kind].append({"name": name, "ref": ref, "targetCommit": oid})
        if not self.query.get("include_prs"):
            del out["pullRequests"]
        return 200, out

    def commits(self, repo: Repo, revision: str):
        out = []
        for oid, c in repo.log(revision):
            title, _, rest = c["message"].partition("\n")
            item = {"id": oid, "title": title, "message": rest.strip(), "authors": [{"user": c["author"]}],
                    "date": c["date"]}
            if self.query.get("expand[]") == ["formatted"]:
                item["formatted"] = {"title": title, "message": rest.strip()}
            out.append(item)
        return 200, out

    def branch(self, repo: Repo, name: str):
        if self.command == "DELETE":
            repo.set_ref(f"refs/heads/{name}", None, "")
        else:
            start = repo.resolve(self._json().get("startingPoint") or "main")
            repo.set_ref(f"refs/heads/{name}", start, f"Reference already exists: refs/heads/{name}")
        return 200, {}

    def tag(self, repo: Repo, revision: str):
        body = self._json()
        repo.set_ref(f"refs/tags/{body.get('tag')}", repo.resolve(revision), f"Tag already exists: {body.get('tag')}")
        return 200, {}

    # ---- pull requests (the Hub's discussions API, pull requests only) ----

    def open_pr(self, repo: Repo):
        body = self._json()
        if body.get("pullRequest") is not True:
            raise HubError(400, "The local hub has pull requests only, not discussions")
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise HubError(400, "A pull request needs a title")
        num = repo.open_pr(title.strip(), str(body.get("description") or ""), self._writer().name)
        return 200, {"num": num, "url": f"{self._repo_url(repo.type, repo.id)}/discussions/{num}"}

    def pull_details(self, repo: Repo, num: int):
        return 200, shapes.pull_json(repo, repo.pull(num))

    # ---- uploads ----

    def preupload(self, repo: Repo, revision: str):
        body = self._json()
        _, tree = repo.tree(revision)
        ignore = [p.strip() for p in (body.get("gitIgnore") or "").splitlines() if p.strip() and not p.startswith("#")]
        files = []
        for f in body.get("files") or []:
            path = check_path(f["path"])
            mode = upload_mode(path, int(f.get("size") or 0), base64.b64decode(f.get("sample") or "", validate=True))
            remote = tree.get(path)
            if remote is not None and not self.hub.store.blob_ok(remote["sha256"], remote["size"]):
                remote = None  # damaged on disk: say it is absent, so the client sends it again and heals it
            oid = None if remote is None else remote["sha256"] if remote["lfs"] else remote["git_sha1"]
            ignored = any(fnmatch(path, p) or fnmatch(path.rsplit("/", 1)[-1], p) for p in ignore)
            files.append({"path": path, "uploadMode": mode, "shouldIgnore": ignored, "oid": oid})
        return 200, {"files": files}

    def lfs_batch(self, repo: Repo):
        body = self._json()
        if body.get("operation") != "upload":
            raise HubError(400, "The local hub's LFS batch API only handles uploads")
        objects = []
        for obj in body.get("objects") or []:
            oid, size = str(obj.get("oid")), obj.get("size")
            if not SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "oid must be a sha256 hex digest, size an int"}})
            elif self.hub.store.blob_ok(oid, size):
                objects.append({"oid": oid, "size": size})  # already stored: nothing to upload
            else:
                ticket = self.hub.new_ticket(oid, size)
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                    "upload": {"href": f"{self._base()}/api/lfs/upload/{oid}?size={size}&ticket={ticket}"},
                    "verify": {"href": f"{self._base()}/api/lfs/verify"}}})
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_upload(self, oid: str):
        ticket = (self.query.get("ticket") or [""])[0]
        size = (self.query.get("size") or [""])[0]
        if not size.isdigit() or not self.hub.ticket_ok(ticket, oid, int(size)):
            raise HubError(403, "Invalid or expired upload link: ask the LFS batch API for a new one")
        size = int(size)
        if self.body.length is not None and self.body.length != size:
            raise HubError(400, f"Content-Length {self.body.length} is not the object's size {size}")
        self.hub.store.put_stream(self.body.chunks(limit=size), oid, size)
        self.hub.spend_ticket(ticket)
        return 200, {}

    def lfs_verify(self):
        self._writer()
        body = self._json()
        size = body.get("size")
        if not isinstance(size, int) or not self.hub.store.blob_ok(str(body.get("oid")), size):
            raise HubError(422, f"LFS object {body.get('oid')} of size {body.get('size')} is not stored")
        return 200, {}

    def commit(self, repo: Repo, revision: str):
        account = self._writer()
        header: dict = {}

        def operations():  # streamed: each file is stored as its line arrives, never the whole body at once
            for line in self.body.lines(COMMIT_LINE_MAX):
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

        create_pr = (self.query.get("create_pr") or ["0"])[0] in ("1", "true")
        oid, pr = repo.apply_commit(revision, header, operations(), account.name, create_pr)
        url = self._repo_url(repo.type, repo.id)
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{url}/commit/{oid}",
                     "pullRequestUrl": f"{url}/discussions/{pr}" if pr else None, "hookOutput": ""}

    # ---- Xet (xet.py) ----

    def xet_token(self, repo: Repo, kind: str):
        token, expiry = self.hub.new_xet_token(write=kind == "xet-write-token")
        cas = f"{self._base()}/xet-cas"
        headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": expiry}
        return 200, {"casUrl": cas, "accessToken": token, "exp": expiry}, headers

    def _xet_cas(self, s: list[str]):
        m = self.command
        write = m == "POST"
        if not self.hub.xet_token_ok(self.headers.get("Authorization", "").removeprefix("Bearer ").strip(), write):
            raise HubError(401, "Invalid or expired Xet token: ask /api/<repo>/xet-write-token for a new one")
        match [m, *s]:
            case ["POST", "v1", "xorbs", "default", name]:
                return 200, {"was_inserted": self.hub.xet.put_xorb(name, self.body.chunks(XORB_MAX))}
            case ["POST", "v1", "shards"]:
                self.hub.xet.put_shard(self.body.read(SHARD_MAX))
                return 200, {"result": 1}
            case ["GET", "v1", "chunks", _, _]:
                raise HubError(404, "Chunk not tracked by global deduplication")
        raise HubError(404, f"No such Xet route in the local hub: {m} /xet-cas/{'/'.join(s)}")

    # ---- files ----

    def resolve(self, repo: Repo, revision: str, path: str):
        check_path(path)
        oid, tree = repo.tree(revision)
        e = tree.get(path)
        if e is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": oid})
        etag = f'"{e["sha256"] if e["lfs"] else e["git_sha1"]}"'
        headers = {"X-Repo-Commit": oid, "ETag": etag, "Accept-Ranges": "bytes"}
        if e["lfs"]:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": e["size"]})
        size, start, end, status = e["size"], 0, e["size"] - 1, 200
        rng = self.headers.get("Range")
        if rng and size:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or not (m.group(1) or m.group(2)):
                raise HubError(416, f"Invalid range: {rng}", headers={"Content-Range": f"bytes */{size}"})
            if m.group(1):
                start, end = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
            else:
                start = max(0, size - int(m.group(2)))
            if start > end:
                raise HubError(416, f"Range not satisfiable: {rng}", headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        try:
            f = open(self.hub.store.blob_path(e["sha256"]), "rb")  # before the status line: it may be gone
        except OSError:
            log.error("stored blob %s of %s:%s is missing", e["sha256"], repo.id, path)
            raise HubError(500, f"The stored content of {path} is missing: push the file again") from None
        with f:
            if os.fstat(f.fileno()).st_size != size:  # truncated: the answer could not match its Content-Length
                log.error("stored blob %s of %s:%s is damaged (wrong size)", e["sha256"], repo.id, path)
                raise HubError(500, f"The stored content of {path} is damaged: push the file again")
            self._start(status, headers, end - start + 1, "application/octet-stream")
            if self.command == "GET" and end >= start:
                self.connection.sendfile(f, start, end - start + 1)  # streamed by the kernel, never in memory
        return None

    # ---- Spaces ----

    def space_table(self, space: Repo, kind: str):
        if self.command == "GET":
            table = space.meta[kind]
        elif self.command == "POST":
            body = self._json()
            if not body.get("key"):
                raise HubError(400, f"A Space {kind[:-1]} needs a key")
            table = space.set_entry(kind, body["key"], {"value": str(body.get("value", "")),
                                                        "description": body.get("description"), "updatedAt": now()})
        else:
            table = space.set_entry(kind, self._json().get("key", ""), None)
        if kind == "secrets":  # like the Hub: secret values are write-only
            table = {k: {"description": v.get("description"), "updatedAt": v["updatedAt"]} for k, v in table.items()}
        return 200, table
