"""Uploads of large files: the LFS batch API (a `basic` transfer whose PUT href carries its own one-time
credential, since the client sends no Authorization there) and the Xet CAS (xet.py does the decoding).

Every answer about a stored object is about this repo: an object stored for another repo counts as
present only if the caller may read it there (access.py); otherwise the client uploads it, and the
upload proves it has the bytes. Whatever is uploaded is recorded as an object of the repo it was for.
"""

from __future__ import annotations

from release.localhub.access import may_reuse
from release.localhub.blobs import SHA256_RE
from release.localhub.errors import HubError
from release.localhub.repo import Repo
from release.localhub.routes.request import Request
from release.localhub.xet import SHARD_MAX, XORB_MAX


def lfs_batch(req: Request, repo: Repo):
    body = req.json_body()
    if body.get("operation") != "upload":
        raise HubError(400, "The local hub's LFS batch API only handles uploads")
    account, store = req.writer(), req.hub.store
    objects = []
    for obj in body.get("objects") or []:
        oid, size = str(obj.get("oid")), obj.get("size")
        if not SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
            objects.append({"oid": oid, "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "oid must be a sha256 hex digest, size an int"}})
        elif store.blob_ok(oid, size) and may_reuse(store, repo, account, oid):
            repo.add_object(oid)
            objects.append({"oid": oid, "size": size})  # already stored: nothing to upload
        else:
            ticket = req.hub.grants.new_ticket(repo, account, oid, size)
            git = f"{req.repo_url(repo.type, repo.id)}.git/info/lfs/objects"
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{req.base_url()}/api/lfs/upload/{oid}?size={size}&ticket={ticket}"},
                "verify": {"href": f"{git}/verify"}}})
    return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}


def lfs_upload(req: Request, oid: str):
    ticket = (req.query.get("ticket") or [""])[0]
    size = (req.query.get("size") or [""])[0]
    grant = req.hub.grants.ticket(ticket, oid, int(size)) if size.isdigit() else None
    if grant is None:
        raise HubError(403, "Invalid or expired upload link: ask the LFS batch API for a new one")
    repo = req.hub.store.repo(grant.repo_type, grant.repo_id)
    if repo is None:
        raise HubError(404, f"Repository not found: {grant.repo_id} (it was deleted)", "RepoNotFound")
    size = int(size)
    if req.body.length is not None and req.body.length != size:
        raise HubError(400, f"Content-Length {req.body.length} is not the object's size {size}")
    req.hub.store.put_stream(req.body.chunks(limit=size), oid, size)
    repo.add_object(oid)
    req.hub.grants.spend_ticket(ticket)
    return 200, {}


def lfs_verify(req: Request, repo: Repo):
    body = req.json_body()
    oid, size = str(body.get("oid")), body.get("size")
    if not isinstance(size, int) or not repo.has_object(oid) or not req.hub.store.blob_ok(oid, size):
        raise HubError(422, f"LFS object {oid[:80]} of size {str(size)[:20]} is not stored in {repo.id}")
    return 200, {}


def xet_token(req: Request, repo: Repo, kind: str):
    token, expiry = req.hub.grants.new_xet_token(repo, req.account(), write=kind == "xet-write-token")
    cas = f"{req.base_url()}/xet-cas"
    headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": expiry}
    return 200, {"casUrl": cas, "accessToken": token, "exp": expiry}, headers


def xet_cas(req: Request, s: list[str]):
    m = req.command
    token = req.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    grant = req.hub.grants.xet_token(token, write=m == "POST")
    if grant is None:
        raise HubError(401, "Invalid or expired Xet token: ask /api/<repo>/xet-write-token for a new one")
    match [m, *s]:
        case ["POST", "v1", "xorbs", "default", name]:
            return 200, {"was_inserted": req.hub.xet.put_xorb(name, req.body.chunks(XORB_MAX))}
        case ["POST", "v1", "shards"]:
            store = req.hub.store
            repo = store.repo(grant.repo_type, grant.repo_id)
            if repo is None:
                raise HubError(404, f"Repository not found: {grant.repo_id} (it was deleted)", "RepoNotFound")
            req.hub.xet.put_shard(req.body.chunks(SHARD_MAX), repo, deadline=req.deadline,
                                  usable=lambda sha256, size: may_reuse(store, repo, grant.account, sha256))
            return 200, {"result": 1}
        case ["GET", "v1", "chunks", _, _]:
            raise HubError(404, "Chunk not tracked by global deduplication")
    raise HubError(404, f"No such Xet route in the local hub: {m} /xet-cas/{'/'.join(s)}")
